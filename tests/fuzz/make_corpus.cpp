// SPDX-License-Identifier: BSD-3-Clause
// Writes the seed corpora of the fuzz harnesses (tests/fuzz/corpus/<harness>/)
// with the library's own encoders, so that every seed is a valid input that
// reaches deep into its decoder. Deterministic: the same files every run.
//   sparcl-fuzz-corpus <corpus dir>
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <vector>

#include "collectives/global_meta.hpp"
#include "config.hpp"
#include "fuzz_util.hpp"
#include "src/codec/codec.hpp"

using namespace sparcl;

namespace {

std::string g_root;
int g_files = 0;

void write(const std::string& harness, const std::string& name, const std::vector<uint8_t>& bytes) {
  const std::string dir = g_root + "/" + harness;
  mkdir(g_root.c_str(), 0755);
  mkdir(dir.c_str(), 0755);
  const std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
  ++g_files;
}

template <class T>
void put(std::vector<uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}
void put_line(std::vector<uint8_t>& out, const std::string& s) {
  out.insert(out.end(), s.begin(), s.end());
  out.push_back('\n');
}
std::vector<uint8_t> bytes_of(const Buffer& b) { return std::vector<uint8_t>(b.data(), b.data() + b.size()); }

// Messages over `r` (sparse every `stride`-th index, or dense) for V, I.
// (encoding: the values' encoding, float32 only; checksum: the CRC32C trailer.)
template <class V, class I>
void wire_messages(unsigned types, Range r, unsigned pick, const std::string& tag, Encoding encoding = Encoding::Raw,
                   bool checksum = false) {
  const uint64_t dim = sizeof(I) == 8 ? (uint64_t(1) << 32) + 1000 : 1000;
  const uint32_t bucket = codec::qsgd_bits(encoding) ? 512 : 0;  // wire_header's receiver expects 512
  const Identity id = sparcl_fuzz::receiver_identity(dim, value_type_code<V>(), encoding, bucket, checksum);
  for (uint64_t stride : {uint64_t(0), uint64_t(1), uint64_t(3), uint64_t(50)}) {
    Stream<V, I> s;
    s.range = r;
    if (stride == 1) {
      s.dense = true;
      for (uint64_t i = r.begin; i < r.end; ++i) s.val.push_back(V(int64_t(i % 7) - 3));
    } else if (stride) {
      for (uint64_t i = r.begin; i < r.end; i += stride) {
        s.idx.push_back(I(i));
        s.val.push_back(V(0.5) * V(i % 5));
      }
    }
    const SharedBuffer msg = encode(id, sparcl_fuzz::kReceiverStep, s.view());
    std::vector<uint8_t> seed{uint8_t(types | (pick << 2))};
    const std::vector<uint8_t> body = bytes_of(*msg);
    seed.insert(seed.end(), body.begin(), body.end());
    const std::string name = tag + "_stride" + std::to_string(stride);
    write("wire_payload", name, seed);
    write("wire_header", name, body);
  }
}

void wire_corpora() {
  // pick 0: the header's own range; 1-7: sparcl_fuzz::kPayloadRanges.
  const uint64_t top = uint64_t(1) << 32;
  for (unsigned pick : {1u, 3u, 4u, 6u}) {
    const Range r = sparcl_fuzz::kPayloadRanges[pick - 1];
    const Range wide{r.begin + top, r.end + top};
    const std::string p = "_range" + std::to_string(pick);
    wire_messages<float, uint32_t>(0, r, pick, "f32_u32" + p);
    wire_messages<float, uint64_t>(1, wide, pick, "f32_u64" + p);
    wire_messages<double, uint32_t>(2, r, pick, "f64_u32" + p);
    wire_messages<double, uint64_t>(3, wide, pick, "f64_u64" + p);
  }
  wire_messages<float, uint32_t>(0, Range{100, 200}, 0, "f32_u32_own_range");
  // The value encodings and the checksum trailer (on two ranges each).
  for (int code = 1; codec::is_value_codec(code); ++code) {
    const auto e = Encoding(code);
    for (unsigned pick : {1u, 3u}) {
      const Range r = sparcl_fuzz::kPayloadRanges[pick - 1];
      const std::string p = "_range" + std::to_string(pick);
      wire_messages<float, uint32_t>(0, r, pick, std::string("f32_u32_") + codec::value_codec_name(e) + p, e);
    }
  }
  wire_messages<float, uint32_t>(0, sparcl_fuzz::kPayloadRanges[0], 1, "f32_u32_crc_range1", Encoding::Raw, true);
  wire_messages<float, uint32_t>(0, sparcl_fuzz::kPayloadRanges[2], 3, "f32_u32_qsgd4_crc_range3",
                                 Encoding::Qsgd4, true);
  const SharedBuffer abort_msg = encode_abort(sparcl_fuzz::receiver_identity(1000, SPARCL_FLOAT32),
                                              SPARCL_ERR_INVALID_ARG, "rank 2: index 7 at position 1 is >= dim 5");
  write("wire_header", "abort", bytes_of(*abort_msg));
  const SharedBuffer sealed_abort =
      encode_abort(sparcl_fuzz::receiver_identity(1000, SPARCL_FLOAT32, Encoding::Raw, 0, true), SPARCL_ERR_TIMEOUT,
                   "rank 1: timed out after 100 ms");
  write("wire_header", "abort_crc", bytes_of(*sealed_abort));
  write("wire_header", "short", std::vector<uint8_t>(10, 0x53));
}

void value_corpora() {
  using namespace codec;
  const std::vector<float> x = {0.0f, -0.0f, 1.0f, -2.5f, 3.14159f, 65504.0f, 1e-8f, -7.0f, 0.125f, 100.0f, -1e4f};
  for (int code = 0; is_value_codec(code); ++code) {
    const auto codec = ValueCodec(code);
    for (size_t n : {size_t(0), size_t(1), size_t(7), x.size()}) {
      for (size_t bucket : {size_t(1), size_t(4), size_t(512)}) {
        if (!qsgd_bits(codec) && bucket != 512) continue;
        std::vector<uint8_t> enc(encoded_values_size(codec, n, bucket));
        encode_values(codec, x.data(), n, bucket, 99, enc.data());
        std::vector<uint8_t> seed;
        put<uint8_t>(seed, uint8_t(code));
        put<uint16_t>(seed, uint16_t(bucket));
        put<uint16_t>(seed, uint16_t(n));
        seed.insert(seed.end(), enc.begin(), enc.end());
        write("value_codec", std::string(value_codec_name(codec)) + "_n" + std::to_string(n) + "_b" +
                                 std::to_string(bucket), seed);
      }
    }
  }
}

void index_corpora() {
  using namespace codec;
  struct Set {
    const char* name;
    uint64_t begin, length;
    std::vector<uint32_t> offsets;
    bool at_top;
  };
  const Set sets[] = {
      {"varint_small", 10, 100, {0, 1, 5, 99}, false},
      {"varint_gaps", 0, 60000, {0, 200, 20000, 59999}, false},
      {"bitmap", 1000, 64, {0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 60, 61, 62, 63}, false},
      {"bitmap_odd", 7, 13, {0, 2, 4, 6, 8, 10, 12}, false},
      {"full", 5, 9, {0, 1, 2, 3, 4, 5, 6, 7, 8}, false},
      {"empty", 3, 40, {}, false},
      {"top", 0, 300, {0, 150, 299}, true},
  };
  for (const Set& s : sets) {
    const uint64_t end = s.at_top ? uint64_t(1) << 32 : s.begin + s.length;
    const uint64_t begin = end - s.length;
    std::vector<uint32_t> idx;
    for (uint32_t o : s.offsets) idx.push_back(uint32_t(begin + o));
    std::vector<uint8_t> enc;
    encode_indices(idx.data(), idx.size(), begin, end, enc);
    std::vector<uint8_t> seed;
    put<uint16_t>(seed, uint16_t(idx.size() | (s.at_top ? 0x8000 : 0)));
    put<uint32_t>(seed, uint32_t(s.at_top ? 0 : begin));
    put<uint16_t>(seed, uint16_t(s.length));
    seed.insert(seed.end(), enc.begin(), enc.end());
    write("index_codec", s.name, seed);
  }
}

void config_corpora() {
  struct Case {
    const char* name;
    uint8_t struct_size;
    int32_t algorithm, transport;
    int64_t timeout_ms;
    int32_t progress_thread;
    int32_t encoding;
    uint64_t bucket;
    int32_t checksum;
    uint16_t flags;
    std::vector<std::string> lines;  // provider, then the eight variables
  };
  const uint8_t full = uint8_t(sizeof(sparcl_config_t));
  const uint8_t old = uint8_t(offsetof(sparcl_config_t, timeout_ms) + sizeof(int64_t));
  const uint8_t v1 = uint8_t(offsetof(sparcl_config_t, encoding));  // before the wire fields
  const Case cases[] = {
      {"defaults", full, 0, 0, 1800000, 0, 0, 512, 0, 0, {}},
      {"null_config", full, 0, 0, 0, 0, 0, 512, 0, 1, {}},
      {"fields", full, 4, 2, 250, 1, 4, 64, 1, 2, {"shm"}},
      {"old_header", old, 1, 1, 100, 0, 0, 0, 0, 0, {}},
      {"v1_header", v1, 2, 0, 100, 1, 9, 0, 7, 0, {}},
      {"environment", full, 0, 0, 1000, 0, 0, 512, 0, 0x3FE,
       {"tcp;ofi_rxm", "split_dense", "300", "ucx", "1", "verbs;ofi_rxm", "qsgd4", "128", "1"}},
      {"bad_environment", full, 0, 0, 1000, 0, 0, 512, 0, 4 | 8 | 128 | 256 | 512,
       {"", "Ring", "-5", "", "", "", "qsgd3", "0", "yes"}},
  };
  for (const Case& c : cases) {
    std::vector<uint8_t> seed;
    put<uint8_t>(seed, c.struct_size);
    put<int32_t>(seed, c.algorithm);
    put<int32_t>(seed, c.transport);
    put<int64_t>(seed, c.timeout_ms);
    put<int32_t>(seed, c.progress_thread);
    put<int32_t>(seed, c.encoding);
    put<uint64_t>(seed, c.bucket);
    put<int32_t>(seed, c.checksum);
    put<uint16_t>(seed, c.flags);
    for (const std::string& l : c.lines) put_line(seed, l);
    write("config", c.name, seed);
  }
}

void input_corpora() {
  struct Case {
    const char* name;
    uint64_t dim;
    int32_t index_type, value_type;
    uint32_t flags;
    std::vector<uint64_t> idx;
    std::vector<double> val;
  };
  const Case cases[] = {
      {"sorted_u32_f32", 100, SPARCL_INDEX_U32, SPARCL_FLOAT32, 0, {1, 5, 99}, {1, -2, 3}},
      {"sorted_u64_f64", 1000, SPARCL_INDEX_U64, SPARCL_FLOAT64, 0, {0, 500, 999}, {0.5, 1, -0.0}},
      {"unsorted_dups", 50, SPARCL_INDEX_U32, SPARCL_FLOAT32, SPARCL_SPARSE_UNSORTED, {9, 3, 9, 0, 3}, {1, 2, 3, 4, 5}},
      {"wide_dim", (uint64_t(1) << 32) + 7, SPARCL_INDEX_U64, SPARCL_FLOAT32, 0, {3, uint64_t(1) << 32}, {1, 2}},
      {"unsorted_wide", (uint64_t(1) << 33), SPARCL_INDEX_U64, SPARCL_FLOAT64, SPARCL_SPARSE_UNSORTED,
       {uint64_t(1) << 32, 2, 2}, {1, 2, 3}},
      {"out_of_range", 10, SPARCL_INDEX_U32, SPARCL_FLOAT32, 0, {2, 10}, {1, 1}},
  };
  for (const Case& c : cases) {
    std::vector<uint8_t> seed;
    put<uint64_t>(seed, c.dim);
    put<int32_t>(seed, c.index_type);
    put<int32_t>(seed, c.value_type);
    put<uint32_t>(seed, c.flags);
    put<uint16_t>(seed, uint16_t(c.idx.size()));
    put<uint8_t>(seed, 0);
    for (uint64_t i : c.idx) {
      if (c.index_type == SPARCL_INDEX_U32)
        put<uint32_t>(seed, uint32_t(i));
      else
        put<uint64_t>(seed, i);
    }
    for (double v : c.val) {
      if (c.value_type == SPARCL_FLOAT32)
        put<float>(seed, float(v));
      else
        put<double>(seed, v);
    }
    write("sparse_input", c.name, seed);
  }
}

// Agreement messages of global selection as an owner of rank 1's range
// (4 ranks, k = 100, dim = 10000) sends them: every mode, and the balanced
// partition's quantile pairs.
void global_meta_corpora() {
  constexpr uint64_t dim = 10000, k = 100;
  const Range range = split_range(Range{0, dim}, 4, 1);
  struct Seed {
    const char* name;
    uint8_t selector;  // bit 0 exact, 1 balanced, 2 hashed, 3 estimating, 4 own fields from the message
    std::vector<double> values;
  };
  const IndexPermutation perm(dim);
  std::vector<Seed> seeds = {
      {"sampled_reusing", 16, {kMetaFormat, 0, double(k), 3, 0, 123456, 50, 20}},
      {"sampled_estimating", 16 | 8, {kMetaFormat, 0, double(k), 3, 1, 0, 5, 0, 7e8, 6e8, 5e8, 4e8, 3e8}},
      {"exact", 16 | 1, {kMetaFormat, 1, double(k), 3, 0, 0, 3, 0}},
      {"exact_hashed", 16 | 4 | 1, {kMetaFormat, 1, double(k), 3, 0, 0, 2, 0}},
      {"balanced", 16 | 2, {kMetaFormat, 0, double(k), 3, 0, 0, 40, 0}},
      {"balanced_empty", 16 | 2, {kMetaFormat, 0, double(k), 3, 0, 0, 0, 0}},
  };
  for (uint64_t j = 0; j < 3; ++j) seeds[2].values.insert(seeds[2].values.end(), {9e8 - double(j), double(range.begin + 7 * j)});
  for (uint64_t j = 0; j < 2; ++j)
    seeds[3].values.insert(seeds[3].values.end(), {9e8, double(perm.inverse(range.begin + 11 * j))});
  for (uint64_t j = 1; j <= kBalanceQuantiles; ++j)
    seeds[4].values.insert(seeds[4].values.end(), {double(range.begin + 10 * j), double(5 * j)});
  for (uint64_t j = 1; j <= kBalanceQuantiles; ++j) seeds[5].values.insert(seeds[5].values.end(), {double(range.begin), 0});
  for (const Seed& sd : seeds) {
    std::vector<uint8_t> seed;
    put<uint8_t>(seed, sd.selector);
    put<uint8_t>(seed, 3);                   // 4 ranks
    put<uint16_t>(seed, uint16_t(k - 1));
    put<uint32_t>(seed, uint32_t(dim - 1));
    put<uint8_t>(seed, 1);                   // the sender: rank 1
    for (double v : sd.values) put<double>(seed, v);
    write("global_meta", sd.name, seed);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  wire_corpora();
  value_corpora();
  index_corpora();
  config_corpora();
  input_corpora();
  global_meta_corpora();
  std::printf("wrote %d seed files under %s\n", g_files, g_root.c_str());
  return 0;
}
