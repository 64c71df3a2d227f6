// SPDX-License-Identifier: BSD-3-Clause
// The one exception type used inside sparcl; the C boundary turns it into a status.
#pragma once

#include <stdexcept>
#include <string>

#include "sparcl/sparcl.h"

namespace sparcl {

class Error : public std::runtime_error {
 public:
  Error(sparcl_status_t status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  sparcl_status_t status() const { return status_; }

 private:
  sparcl_status_t status_;
};

[[noreturn]] inline void fail(sparcl_status_t status, const std::string& message) {
  throw Error(status, message);
}

inline void require(bool condition, sparcl_status_t status, const char* message) {
  if (!condition) throw Error(status, message);
}

}  // namespace sparcl
