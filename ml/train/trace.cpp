// SPDX-License-Identifier: BSD-3-Clause
#include "trace.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace sparcl {
namespace train {

namespace {

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int b = 0; b < 4; ++b) out.push_back(uint8_t(v >> (8 * b)));
}
void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int b = 0; b < 8; ++b) out.push_back(uint8_t(v >> (8 * b)));
}
void put_varint(std::vector<uint8_t>& out, uint32_t v) {
  while (v >= 0x80) {
    out.push_back(uint8_t(v | 0x80));
    v >>= 7;
  }
  out.push_back(uint8_t(v));
}

class Reader {
 public:
  Reader(const std::vector<uint8_t>& b, const std::string& name) : b_(b), name_(name) {}
  [[noreturn]] void bad(size_t at, const std::string& why) const {
    throw std::runtime_error("trace " + name_ + ": offset " + std::to_string(at) + ": " + why);
  }
  bool done() const { return at_ == b_.size(); }
  size_t at() const { return at_; }
  uint64_t fixed(int bytes, const char* what) {
    if (b_.size() - at_ < size_t(bytes)) bad(at_, std::string("truncated ") + what);
    uint64_t v = 0;
    for (int k = 0; k < bytes; ++k) v |= uint64_t(b_[at_ + size_t(k)]) << (8 * k);
    at_ += size_t(bytes);
    return v;
  }
  uint32_t varint(const char* what) {
    const size_t start = at_;
    uint64_t v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
      if (at_ == b_.size()) bad(start, std::string("truncated ") + what);
      const uint8_t byte = b_[at_++];
      v |= uint64_t(byte & 0x7F) << shift;
      if (!(byte & 0x80)) {
        if (v > UINT32_MAX) bad(start, std::string(what) + " does not fit 32 bits");
        return uint32_t(v);
      }
    }
    bad(start, std::string(what) + " is longer than 5 bytes");
  }
  void magic() {
    if (b_.size() < sizeof kTraceMagic || std::memcmp(b_.data(), kTraceMagic, sizeof kTraceMagic) != 0)
      bad(0, "not a sparcl trace (magic SPCLTRC1 expected)");
    at_ = sizeof kTraceMagic;
  }

 private:
  const std::vector<uint8_t>& b_;
  std::string name_;
  size_t at_ = 0;
};

}  // namespace

std::string trace_path_of_rank(const std::string& path, int rank) { return path + "." + std::to_string(rank); }

TraceWriter::TraceWriter(const std::string& path, uint32_t rank, uint32_t ranks, const std::vector<uint64_t>& dims)
    : path_(path), dims_(dims) {
  if (ranks == 0 || rank >= ranks) throw std::invalid_argument("trace: rank " + std::to_string(rank) + " of " + std::to_string(ranks));
  if (dims.empty()) throw std::invalid_argument("trace: no layers");
  for (uint64_t d : dims)
    if (d == 0 || d > UINT32_MAX) throw std::invalid_argument("trace: layer dims must lie in 1 .. 2^32-1");
  file_ = std::fopen(path.c_str(), "wb");
  if (!file_) throw std::runtime_error("trace " + path + ": cannot create: " + std::strerror(errno));
  buffer_.assign(kTraceMagic, kTraceMagic + sizeof kTraceMagic);
  put_u32(buffer_, kTraceVersion);
  put_u32(buffer_, rank);
  put_u32(buffer_, ranks);
  put_u32(buffer_, uint32_t(dims.size()));
  for (uint64_t d : dims) put_u64(buffer_, d);
}

TraceWriter::~TraceWriter() {
  try {
    close();
  } catch (...) {  // a destructor cannot report it; close() can
  }
}

void TraceWriter::add(uint32_t step, uint32_t layer, const uint32_t* indices, size_t count) {
  if (!file_) throw std::logic_error("trace " + path_ + ": closed");
  if (layer >= dims_.size()) throw std::invalid_argument("trace: no layer " + std::to_string(layer));
  if (step < last_step_) throw std::invalid_argument("trace: steps must not go back");
  last_step_ = step;
  put_u32(buffer_, step);
  put_u32(buffer_, layer);
  put_u32(buffer_, uint32_t(count));
  uint64_t next = 0;  // smallest index allowed next; gaps are coded from it
  for (size_t j = 0; j < count; ++j) {
    if (indices[j] < next || indices[j] >= dims_[layer])
      throw std::invalid_argument("trace: indices must increase strictly and stay below the layer's dim");
    put_varint(buffer_, uint32_t(indices[j] - next));
    next = uint64_t(indices[j]) + 1;
  }
  if (buffer_.size() >= (1u << 20)) {
    write(buffer_.data(), buffer_.size());
    buffer_.clear();
  }
}

void TraceWriter::write(const void* data, size_t bytes) {
  if (bytes && std::fwrite(data, 1, bytes, file_) != bytes)
    throw std::runtime_error("trace " + path_ + ": write failed: " + std::strerror(errno));
}

void TraceWriter::close() {
  if (!file_) return;
  std::FILE* f = file_;
  write(buffer_.data(), buffer_.size());
  buffer_.clear();
  file_ = nullptr;
  if (std::fclose(f) != 0) throw std::runtime_error("trace " + path_ + ": close failed: " + std::strerror(errno));
}

Trace parse_trace(const std::vector<uint8_t>& bytes, const std::string& name) {
  Reader in(bytes, name);
  in.magic();
  Trace t;
  const size_t version_at = in.at();
  if (in.fixed(4, "version") != kTraceVersion) in.bad(version_at, "unknown version (1 expected)");
  const size_t rank_at = in.at();
  t.rank = uint32_t(in.fixed(4, "rank"));
  t.ranks = uint32_t(in.fixed(4, "ranks"));
  if (t.ranks == 0 || t.rank >= t.ranks) in.bad(rank_at, "rank not below ranks");
  const size_t layers_at = in.at();
  const uint32_t layers = uint32_t(in.fixed(4, "layer count"));
  if (layers == 0) in.bad(layers_at, "no layers");
  if (uint64_t(layers) * 8 > bytes.size()) in.bad(layers_at, "more layers than the file can hold");
  for (uint32_t l = 0; l < layers; ++l) {
    const size_t at = in.at();
    const uint64_t d = in.fixed(8, "layer dim");
    if (d == 0 || d > UINT32_MAX) in.bad(at, "layer dim outside 1 .. 2^32-1");
    t.dims.push_back(d);
  }
  uint32_t last_step = 0;
  while (!in.done()) {
    const size_t at = in.at();
    TraceRecord r;
    r.step = uint32_t(in.fixed(4, "record step"));
    if (r.step < last_step) in.bad(at, "step " + std::to_string(r.step) + " after step " + std::to_string(last_step));
    last_step = r.step;
    const size_t layer_at = in.at();
    r.layer = uint32_t(in.fixed(4, "record layer"));
    if (r.layer >= layers) in.bad(layer_at, "layer " + std::to_string(r.layer) + " of " + std::to_string(layers));
    const size_t count_at = in.at();
    const uint32_t count = uint32_t(in.fixed(4, "record count"));
    if (count > t.dims[r.layer]) in.bad(count_at, "more indices than the layer's dim");
    if (count > bytes.size() - in.at()) in.bad(count_at, "more indices than bytes left");
    r.indices.reserve(count);
    uint64_t next = 0;
    for (uint32_t j = 0; j < count; ++j) {
      const size_t index_at = in.at();
      const uint64_t i = next + in.varint("index gap");
      if (i >= t.dims[r.layer]) in.bad(index_at, "index " + std::to_string(i) + " >= the layer's dim");
      r.indices.push_back(uint32_t(i));
      next = i + 1;
    }
    t.records.push_back(std::move(r));
  }
  return t;
}

Trace read_trace(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("trace " + path + ": cannot open: " + std::strerror(errno));
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) bytes.insert(bytes.end(), chunk, chunk + n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) throw std::runtime_error("trace " + path + ": read failed");
  return parse_trace(bytes, path);
}

}  // namespace train
}  // namespace sparcl
