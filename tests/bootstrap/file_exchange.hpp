// SPDX-License-Identifier: BSD-3-Clause
// A launcher's allgather for sparcl_comm_create() without MPI, for tests that
// fork their ranks: in each round every rank writes its blob to a file in a
// shared directory (atomically, via rename) and reads everyone's.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace sparcl_testing {

struct FileExchange {
  std::string dir;
  int rank = 0, size = 0, round = 0;
};

inline std::string blob_path(const FileExchange& x, int round, int rank) {
  return x.dir + "/r" + std::to_string(round) + "_" + std::to_string(rank);
}

// A sparcl_bootstrap_allgather_fn; `ctx` is a FileExchange. Waits 60 s at most.
inline int file_allgather(const void* send, void* recv, size_t bytes, void* ctx) {
  auto& x = *static_cast<FileExchange*>(ctx);
  const int round = x.round++;
  const std::string mine = blob_path(x, round, x.rank);
  {
    std::ofstream out(mine + ".tmp", std::ios::binary);
    out.write(static_cast<const char*>(send), std::streamsize(bytes));
    if (!out) return 1;
  }
  if (std::rename((mine + ".tmp").c_str(), mine.c_str()) != 0) return 2;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (int r = 0; r < x.size; ++r) {
    std::vector<char> data;
    for (;;) {
      std::ifstream in(blob_path(x, round, r), std::ios::binary);
      if (in) {
        data.assign(std::istreambuf_iterator<char>(in), {});
        if (data.size() == bytes) break;
      }
      if (std::chrono::steady_clock::now() > deadline) return 3;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    std::memcpy(static_cast<char*>(recv) + size_t(r) * bytes, data.data(), bytes);
  }
  return 0;
}

}  // namespace sparcl_testing
