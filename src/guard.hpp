// SPDX-License-Identifier: BSD-3-Clause
// The exception boundary of the C API: runs a body, turns any exception into
// a status and records its message on the communicator (or, without one, in
// the calling thread's last error).
#pragma once

#include <new>
#include <string>

#include "comm.hpp"
#include "error.hpp"

namespace sparcl {

std::string& thread_last_error();

inline sparcl_status_t record(sparcl_comm_t comm, sparcl_status_t status, const char* message) {
  if (comm)
    comm->set_last_error(message);
  else
    thread_last_error() = message;
  return status;
}

// The one answer to a NULL communicator.
inline sparcl_status_t null_comm() { return record(nullptr, SPARCL_ERR_INVALID_ARG, "communicator is NULL"); }

template <class F>
sparcl_status_t guarded(sparcl_comm_t comm, F&& body) {
  try {
    body();
    return SPARCL_SUCCESS;
  } catch (const Error& e) {
    return record(comm, e.status(), e.what());
  } catch (const std::bad_alloc&) {
    return record(comm, SPARCL_ERR_NO_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return record(comm, SPARCL_ERR_INTERNAL, e.what());
  } catch (...) {
    return record(comm, SPARCL_ERR_INTERNAL, "unknown exception");
  }
}

}  // namespace sparcl
