// SPDX-License-Identifier: BSD-3-Clause
// Point-to-point latency and bandwidth of a sparcl transport backend, beside
// a plain MPI ping-pong in the same run. Two ranks; rank 0 sends a message,
// rank 1 returns it; half the round trip is the one-way time, bytes / that
// time the bandwidth (1 MB = 10^6 bytes). The transport is chosen as
// everywhere else (SPARCL_TRANSPORT=mpi|ofi|ucx, SPARCL_OFI_PROVIDER, UCX_TLS).
// bench/transport/compare.sh runs it beside the libraries' own tools.
//
//   mpirun -np 2 sparcl-pingpong [-b min] [-e max] [-f factor] [-s size,size,...]
//                                [-i max_iterations] [-B bytes_per_size]
//
// Sizes take K, M, G (powers of 1024). Each size runs
// clamp(bytes_per_size / size, 10, max_iterations) round trips (default
// 1000 and 256M) after two warm-up round trips, sparcl first, then MPI.
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "comm.hpp"
#include "sparcl/sparcl_mpi.h"

namespace {

using sparcl::Buffer;
using sparcl::Request;
using sparcl::Tag;
using sparcl::Transport;

void wait(Transport& t, Request& r) {
  while (!r.test()) t.progress();
}

// One-way time (s) of `bytes`-byte messages over the sparcl transport.
double sparcl_one_way(Transport& t, uint32_t comm_id, size_t bytes, int iterations, uint64_t& seq) {
  auto payload = std::make_shared<Buffer>(bytes);
  if (bytes) std::memset(payload->data(), 1, bytes);
  const int peer = 1 - t.rank();
  double start = 0;
  for (int it = -2; it < iterations; ++it) {  // two warm-up round trips
    if (it == 0) start = MPI_Wtime();
    const Tag tag{comm_id, seq++, false};
    if (t.rank() == 0) {
      auto s = t.isend(peer, tag, payload);
      auto r = t.irecv(peer, tag);
      wait(t, *s);
      wait(t, *r);
    } else {
      auto r = t.irecv(peer, tag);
      wait(t, *r);
      auto s = t.isend(peer, tag, payload);
      wait(t, *s);
    }
  }
  return (MPI_Wtime() - start) / iterations / 2;
}

// Sends from one buffer and receives into another, as sparcl's transport
// does (and applications do): one buffer for both ran 15-30% faster at 4 MB
// on the 2-core VM, the pair's 8 MB staying in its cache.
double mpi_one_way(size_t bytes, int iterations) {
  std::vector<char> send(std::max<size_t>(bytes, 1), '\1'), receive(send.size(), '\0');
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  double start = 0;
  for (int it = -2; it < iterations; ++it) {
    if (it == 0) start = MPI_Wtime();
    if (rank == 0) {
      MPI_Send(send.data(), int(bytes), MPI_BYTE, 1, 3, MPI_COMM_WORLD);
      MPI_Recv(receive.data(), int(bytes), MPI_BYTE, 1, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
      MPI_Recv(receive.data(), int(bytes), MPI_BYTE, 0, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(send.data(), int(bytes), MPI_BYTE, 0, 3, MPI_COMM_WORLD);
    }
  }
  return (MPI_Wtime() - start) / iterations / 2;
}

// "4096", "4K", "64M": bytes, or 0 when it is not a size.
size_t parse_size(const std::string& text) {
  char* end = nullptr;
  const unsigned long long n = std::strtoull(text.c_str(), &end, 10);
  if (end == text.c_str()) return 0;
  const std::string unit = end;
  const int shift = unit.empty() ? 0 : unit == "K" ? 10 : unit == "M" ? 20 : unit == "G" ? 30 : -1;
  if (shift < 0 || n > (~0ull >> shift)) return 0;
  return size_t(n) << shift;
}

struct Options {
  std::vector<size_t> sizes;
  int max_iterations = 1000;
  size_t bytes_per_size = size_t(256) << 20;
};

bool parse(int argc, char** argv, Options& o) {
  size_t min_bytes = 8, max_bytes = size_t(4) << 20, factor = 2;
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) return false;
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "-b") {
      min_bytes = parse_size(v);
    } else if (a == "-e") {
      max_bytes = parse_size(v);
    } else if (a == "-f") {
      factor = std::strtoull(v.c_str(), nullptr, 10);
    } else if (a == "-i") {
      o.max_iterations = std::atoi(v.c_str());
    } else if (a == "-B") {
      o.bytes_per_size = parse_size(v);
    } else if (a == "-s") {
      for (size_t p = 0; p <= v.size();) {
        const size_t q = std::min(v.find(',', p), v.size());
        const size_t s = parse_size(v.substr(p, q - p));
        if (s == 0 || s > size_t(1) << 30) return false;
        o.sizes.push_back(s);
        p = q + 1;
      }
    } else {
      return false;
    }
  }
  if (o.sizes.empty()) {
    if (min_bytes == 0 || min_bytes > max_bytes || max_bytes > size_t(1) << 30 || factor < 2) return false;
    for (size_t b = min_bytes; b <= max_bytes; b *= factor) o.sizes.push_back(b);
  }
  return o.max_iterations >= 10 && o.bytes_per_size > 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  Options o;
  if (ranks != 2 || !parse(argc, argv, o)) {
    if (rank == 0)
      std::fprintf(stderr,
                   "usage: mpirun -np 2 sparcl-pingpong [-b min] [-e max] [-f factor] [-s size,size,...] "
                   "[-i max_iterations (>= 10)] [-B bytes_per_size]\n  sizes up to 1G, with K, M or G\n");
    MPI_Finalize();
    return 2;
  }
  sparcl_comm_t comm = nullptr;
  if (sparcl_comm_create_mpi(MPI_COMM_WORLD, nullptr, &comm) != SPARCL_SUCCESS) {
    if (rank == 0) std::fprintf(stderr, "sparcl_comm_create_mpi: %s\n", sparcl_comm_last_error(nullptr));
    MPI_Finalize();
    return 1;
  }
  Transport& t = comm->transport();
  if (rank == 0) {
    std::printf("# sparcl-pingpong: transport %s; one-way time = half a round trip; MB/s = 10^6 bytes/s\n",
                t.name());
    std::printf("# %10s %6s %12s %12s %12s %12s %10s\n", "bytes", "iters", "sparcl(us)", "sparcl(MB/s)", "MPI(us)",
                "MPI(MB/s)", "sparcl/MPI");
  }
  uint64_t seq = 0;
  for (size_t bytes : o.sizes) {
    const int iters = int(std::clamp<size_t>(o.bytes_per_size / bytes, 10, size_t(o.max_iterations)));
    MPI_Barrier(MPI_COMM_WORLD);
    const double ts = sparcl_one_way(t, comm->id(), bytes, iters, seq);
    MPI_Barrier(MPI_COMM_WORLD);
    const double tm = mpi_one_way(bytes, iters);
    if (rank == 0)
      std::printf("  %10zu %6d %12.2f %12.1f %12.2f %12.1f %10.3f\n", bytes, iters, ts * 1e6, bytes / ts / 1e6,
                  tm * 1e6, bytes / tm / 1e6, tm / ts);
    std::fflush(stdout);
  }
  sparcl_comm_free(comm);
  MPI_Finalize();
  return 0;
}
