// SPDX-License-Identifier: BSD-3-Clause
// Gradient traces: which entries one rank's compressors selected, per step
// and tensor ("layer"), in a compact file (docs/traces.md gives the layout).
// sparcl-train --record-trace writes one file per rank; a reader validates a
// whole file and rejects a damaged one with the byte offset and the reason.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace sparcl {
namespace train {

constexpr char kTraceMagic[8] = {'S', 'P', 'C', 'L', 'T', 'R', 'C', '1'};
constexpr uint32_t kTraceVersion = 1;

struct TraceRecord {
  uint32_t step = 0;
  uint32_t layer = 0;
  std::vector<uint32_t> indices;  // strictly increasing, < the layer's dim
};

struct Trace {
  uint32_t rank = 0, ranks = 1;
  std::vector<uint64_t> dims;  // per layer
  std::vector<TraceRecord> records;  // in file order: steps nondecreasing
};

// Appends records to `path` (created or truncated). Throws
// std::runtime_error naming the file on an I/O error.
class TraceWriter {
 public:
  TraceWriter(const std::string& path, uint32_t rank, uint32_t ranks, const std::vector<uint64_t>& dims);
  ~TraceWriter();
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;
  // `indices[0, count)` strictly increasing and < dims[layer] (checked).
  void add(uint32_t step, uint32_t layer, const uint32_t* indices, size_t count);
  // Flushes and closes (also done by the destructor, which cannot report errors).
  void close();

 private:
  void write(const void* data, size_t bytes);
  std::string path_;
  std::FILE* file_ = nullptr;
  std::vector<uint64_t> dims_;
  uint32_t last_step_ = 0;
  std::vector<uint8_t> buffer_;
};

// The whole file. Throws std::runtime_error("trace PATH: offset N: reason")
// for anything that is not a valid trace (bad magic or version, truncation,
// a layer or index out of range, indices not increasing, steps going back).
Trace read_trace(const std::string& path);
// The same on bytes in memory (`name` for the messages).
Trace parse_trace(const std::vector<uint8_t>& bytes, const std::string& name);

// The file a rank writes for --record-trace PATH: PATH.<rank>.
std::string trace_path_of_rank(const std::string& path, int rank);

}  // namespace train
}  // namespace sparcl
