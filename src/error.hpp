// SPDX-License-Identifier: BSD-3-Clause
// The one exception type used inside sparcl; the C boundary turns it into a status.
#pragma once

#include <cstring>
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

// The integer stored in an enum that came from C. A C caller may store any
// int there, and loading an out-of-range value as the C++ enum type is
// undefined behaviour, so sparcl reads such fields through this.
template <class E>
int raw(const E& e) {
  static_assert(sizeof(E) == sizeof(int), "C enums are int-sized");
  int v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

inline void require(bool condition, sparcl_status_t status, const char* message) {
  if (!condition) throw Error(status, message);
}

}  // namespace sparcl
