/*
 * sparcl: sparse collective communication for distributed deep learning.
 * SPDX-License-Identifier: BSD-3-Clause
 */
/**
 * @file sparcl_mpi.h
 * @brief Creating a sparcl communicator from an MPI communicator.
 *
 * Kept apart from sparcl.h so that programs that do not use MPI need no mpi.h.
 */
#ifndef SPARCL_SPARCL_MPI_H
#define SPARCL_SPARCL_MPI_H

/* Only MPI's C interface is used; skip the deprecated C++ bindings so that C++
 * programs need not link libmpi_cxx. */
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include "sparcl/sparcl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every declaration below is part of the library's exported ABI. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/**
 * Creates a communicator over the ranks of `mpi_comm` (collective over it).
 * The library duplicates `mpi_comm`, so the caller may free its own at any
 * time. MPI must be initialised (MPI_THREAD_MULTIPLE is not required).
 * Configurations are compared across ranks: a difference gives
 * SPARCL_ERR_MISMATCH on every rank.
 *
 * Bounded by the configuration's timeout (config.timeout_ms, SPARCL_TIMEOUT_MS):
 * if a rank of `mpi_comm` does not call it in time, the others return
 * SPARCL_ERR_TIMEOUT. MPI cannot withdraw a started collective, so one of
 * sparcl's may then stay pending on `mpi_comm`: do not use `mpi_comm` for
 * collectives afterwards (the usual answer to a missing rank is MPI_Abort).
 *
 * @param mpi_comm  communicator whose ranks take part
 * @param config    configuration, or NULL for the defaults
 * @param comm      receives the new communicator
 */
sparcl_status_t sparcl_comm_create_mpi(MPI_Comm mpi_comm, const sparcl_config_t *config,
                                       sparcl_comm_t *comm);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* SPARCL_SPARCL_MPI_H */
