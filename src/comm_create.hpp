// SPDX-License-Identifier: BSD-3-Clause
// Creating a communicator once a bootstrap connects the ranks.
#pragma once

#include <functional>
#include <memory>

#include "bootstrap.hpp"
#include "comm.hpp"

namespace sparcl {

// Collective over the bootstrap's ranks. Every step that can fail on some
// ranks only (a bad configuration, a missing provider) is agreed on, so all
// ranks return the same error. `make_mpi` builds the MPI transport when the
// bootstrap came from MPI; it is empty otherwise.
std::unique_ptr<sparcl_comm> create_comm(Bootstrap& boot, const sparcl_config_t* config,
                                         const std::function<std::unique_ptr<Transport>()>& make_mpi);

}  // namespace sparcl
