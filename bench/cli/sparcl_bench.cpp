// SPDX-License-Identifier: BSD-3-Clause
// sparcl-bench: microbenchmark of sparcl's sparse allreduce, shaped like
// nccl-tests / OSU (-b -e -f -n -w -c), that measures in the same run, on the
// same data, dense MPI_Allreduce and the allgather-based sparse allreduce of
// Horovod and PyTorch's gloo backend. One row per (elements, density, method).
//
//   mpirun -np 4 sparcl-bench -b 64K -e 16M -f 4 -d 0.001,0.01,0.1 -a all -c --csv out.csv
//
// Formulas and column meanings: docs/benchmarking.md. Uses sparcl's public C
// API only; the baselines call MPI directly.
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "ml/train/trace.hpp"
#include "sparcl/compress.h"
#include "sparcl/sparcl_mpi.h"

namespace {

// ---------------------------------------------------------------- options --

enum class Dist { Uniform, Zipf, Clustered, Trace };
enum class Output { Sparse, Dense };

struct Options {
  uint64_t min_elements = 1u << 16, max_elements = 1u << 20;
  uint64_t factor = 2, increment = 0;  // -f (multiplicative) or -i (additive)
  std::vector<double> densities{0.001, 0.01, 0.1};
  std::vector<std::string> algorithms{"auto"};
  std::vector<std::string> transports{"mpi"};
  std::vector<Output> outputs{Output::Sparse};
  std::vector<std::string> encodings{"raw"};  // -v: value encodings on the wire
  std::vector<std::string> partitions{"equal"};  // --partition: config.partition, one communicator each
  bool reduce_scatter = false;                   // --collective reduce_scatter
  std::string compress;                      // --compress METHOD: time sparcl_allreduce_compressed
  std::string trace;                         // --trace PATH: replay PATH.<rank> of sparcl-train --record-trace
  long long trace_step = -1;                 // --trace-step: the recorded step replayed (-1: the last)
  std::string dtype = "float";
  Dist dist = Dist::Uniform;
  double overlap = 0.0;
  double zipf_s = 1.0;
  uint64_t cluster_len = 64;
  int iters = 5, warmups = 1;
  bool check = false, median = false, quiet = false, fixed_iters = false;
  bool corrupt = false;  // tests of -c: rank 0 gives sparcl one value off by one
  bool base_allreduce = true, base_allgather = true;
  uint64_t seed = 1;
  std::string csv, json;
};

// The library's names, indexed by sparcl_algorithm_t and sparcl_value_encoding_t.
template <class Enum>
std::vector<std::string> names_of(const char* (*name)(Enum)) {
  std::vector<std::string> out;
  for (int e = 0; const char* n = name(static_cast<Enum>(e)); ++e) out.push_back(n);
  return out;
}
const std::vector<std::string> kAlgorithms = names_of(sparcl_algorithm_name);
const int kAlgorithmCount = int(kAlgorithms.size());
const std::vector<std::string> kEncodings = names_of(sparcl_encoding_name);

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

struct CompressMethod {
  const char* name;
  sparcl_compress_method_t method;
};
const CompressMethod kCompressMethods[] = {{"topk", SPARCL_COMPRESS_TOPK},
                                           {"approx_topk", SPARCL_COMPRESS_APPROX_TOPK},
                                           {"topk_bucket", SPARCL_COMPRESS_TOPK_BUCKET},
                                           {"randomk", SPARCL_COMPRESS_RANDOMK},
                                           {"none", SPARCL_COMPRESS_NONE}};

void usage(FILE* f) {
  std::fprintf(
      f,
      "usage: mpirun -np P sparcl-bench [options]     (P >= 2: one rank communicates nothing)\n"
      "Sizes are ELEMENTS (vector dimensions), not bytes as in nccl-tests: -b 16M is 16Mi values,\n"
      "64 MiB of float; the bytes column shows elements * value size. -d is DENSITIES, not a data type.\n"
      "sparcl-bench times a SUM allreduce of sparse vectors in host memory: nccl-tests' -o sum and -g 1\n"
      "are accepted, other -o/-g values are not.\n"
      "sizes (elements; K/M/G suffixes are powers of 1024):\n"
      "  -b, --minelements N    smallest vector dimension (default 64K)\n"
      "  -e, --maxelements N    largest vector dimension (default 1M)\n"
      "  -f, --stepfactor F     multiply the size by F between points (default 2)\n"
      "  -i, --stepelements N   add N between points instead (overrides -f)\n"
      "data:\n"
      "  -d, --densities LIST   nonzeros per rank / elements, e.g. 0.001,0.01,0.1 or 1%% (default 0.001,0.01,0.1)\n"
      "  --dist KIND            where the nonzeros are: uniform (default), zipf (index i drawn with\n"
      "                         probability ~ 1/(i+1)^s, s = --zipf-s, default 1), clustered (runs of\n"
      "                         --cluster-len consecutive indices, default 64)\n"
      "  --trace PATH           instead: replay the selections of sparcl-train --record-trace PATH (files\n"
      "                         PATH.<rank>), one point per recorded layer at its density; rank r replays\n"
      "                         recorded rank r mod R at step S - r / R (R ranks recorded; S: --trace-step N,\n"
      "                         default the last step recorded); values drawn as for the other --dist\n"
      "  --overlap F            fraction of each rank's nonzeros at indices shared by all ranks (default 0:\n"
      "                         independent draws)\n"
      "  --dtype T              value type: float (default) or double\n"
      "  -v, --values LIST      value encodings on the wire, one sparcl communicator each: raw (default),\n"
      "                         fp16, bf16, qsgd8, qsgd4, qsgd2, or all (config.encoding); with --compress\n"
      "                         the compressors' encodings\n"
      "  --seed S               random seed (default 1)\n"
      "what to run:\n"
      "  -a, --algorithms LIST  comma-separated, or all (default auto); one sparcl communicator each:\n"
      "                         %s (--list-algorithms says what each does)\n"
      "                         with --compress also global: global selection (about k entries of the\n"
      "                         sum, SPARCL_SELECTION_GLOBAL) where the others select locally\n"
      "  -t, --transports LIST  mpi (default), ofi, ucx: sparcl_config_t.transport\n"
      "  --output LIST          sparcl output that is timed: sparse (result object, default) and/or dense\n"
      "                         (a dense receive buffer)\n"
      "  --baselines LIST       allreduce,allgather (default), or none\n"
      "  --collective C         allreduce (default) or reduce_scatter: sparcl_reduce_scatter_sparse (each\n"
      "                         rank gets the sum over its range; the allreduce baseline becomes\n"
      "                         MPI_Reduce_scatter, x_bytes compares with a dense ring reduce-scatter)\n"
      "  --partition LIST       equal (default), balanced, hashed, or all: config.partition (owner ranges of\n"
      "                         split_allgather, split_dense and the reduce-scatter), one communicator each\n"
      "  -o, --op sum           the reduction (sum is the only one; accepted for nccl-tests habits)\n"
      "  -g, --ngpus 1          processes use host memory, one rank each (accepted for nccl-tests habits)\n"
      "  --compress METHOD      time sparcl_allreduce_compressed of a dense N(0,1) gradient per rank instead:\n"
      "                         topk, approx_topk, topk_bucket, randomk or none, keeping -d of the entries,\n"
      "                         values in each -v encoding; beside MPI_Allreduce of the dense gradient.\n"
      "                         With --dist zipf, entry i is scaled by (i+1)^(-s/2): its expected square\n"
      "                         (energy) falls as 1/(i+1)^s, so the ranks' largest entries share indices.\n"
      "                         With --trace, the gradient is N(0,1) at the replayed indices of each layer\n"
      "                         and 0 elsewhere, so top-k at the layer's density selects exactly them\n"
      "measurement:\n"
      "  -n, --iters N          timed iterations per point at 1M elements and above (default 5); smaller\n"
      "                         sizes run N*min(10, 1M/elements) (more for small messages, as OSU does)\n"
      "  --fixed-iters          N iterations at every size\n"
      "  -w, --warmup_iters N   untimed warm-up iterations per point (default 1)\n"
      "  -c, --check            compare every result with an independently computed sum; count wrong values\n"
      "  --median               per-rank time = median over iterations (default: mean)\n"
      "output:\n"
      "  --csv FILE, --json FILE  also write the rows there (the JSON adds the run's parameters)\n"
      "  -q, --quiet            no progress on stderr\n"
      "  --list-algorithms      the algorithms of this library, one a line, and what each does\n"
      "  -h, --help\n"
      "exit status: 0 ok, 1 wrong values or a failed collective, 2 bad usage, 3 nothing to run (e.g. the\n"
      "only transport asked for is not in this build: SPARCL_ERR_UNSUPPORTED)\n",
      joined(kAlgorithms).c_str());
}

// The library's algorithms, one a line: name and what it does.
void list_algorithms(FILE* f) {
  for (int a = 0; a < sparcl_algorithm_count(); ++a)
    std::fprintf(f, "%-20s %s\n", sparcl_algorithm_name(sparcl_algorithm_t(a)),
                 sparcl_algorithm_summary(sparcl_algorithm_t(a)));
}

struct UsageError {
  std::string what;
};

[[noreturn]] void bad(const std::string& what) { throw UsageError{what}; }

std::vector<std::string> split(const std::string& s, char sep = ',') {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t p = s.find(sep, start);
    std::string item = s.substr(start, p == std::string::npos ? std::string::npos : p - start);
    if (!item.empty()) out.push_back(item);
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return out;
}

// "65536", "64K", "16M", "1G", "1.5M".
uint64_t parse_count(const std::string& text, const char* flag) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || errno != 0 || !(v >= 0)) bad(std::string(flag) + ": '" + text + "' is not a count");
  double mult = 1;
  const std::string suffix = end;
  if (suffix == "K" || suffix == "k")
    mult = 1024.0;
  else if (suffix == "M" || suffix == "m")
    mult = 1024.0 * 1024.0;
  else if (suffix == "G" || suffix == "g")
    mult = 1024.0 * 1024.0 * 1024.0;
  else if (!suffix.empty())
    bad(std::string(flag) + ": '" + text + "': unknown suffix (use K, M or G)");
  const double n = v * mult;
  if (n > 9.0e18 || n != std::floor(n)) bad(std::string(flag) + ": '" + text + "' is not a whole count");
  return static_cast<uint64_t>(n);
}

int parse_int(const std::string& text, const char* flag, int lo) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end || errno || v < lo || v > INT_MAX)
    bad(std::string(flag) + ": '" + text + "' is not an integer >= " + std::to_string(lo));
  return int(v);
}

// nccl-tests' -d takes a data type; sparcl-bench's takes densities.
bool is_type_name(const std::string& text) {
  static const char* const kTypes[] = {"float", "double", "half", "bfloat16", "bf16", "fp16", "fp32", "fp64",
                                       "float16", "float32", "float64", "int", "int8", "uint8", "int32", "uint32",
                                       "int64", "uint64", "char", "all"};
  for (const char* t : kTypes)
    if (text == t) return true;
  return false;
}

double parse_fraction(const std::string& text, const char* flag) {
  if (std::string(flag) == "-d" && is_type_name(text))
    bad("-d: '" + text + "' is a data type, but -d takes densities (nonzeros per rank / elements, e.g. "
        "-d 0.01 or -d 1%); the value type is --dtype float|double, the wire encoding -v");
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || errno) bad(std::string(flag) + ": '" + text + "' is not a number");
  if (std::string(end) == "%")
    v /= 100;
  else if (*end)
    bad(std::string(flag) + ": '" + text + "' is not a number");
  if (!(v >= 0 && v <= 1)) bad(std::string(flag) + ": '" + text + "' is not within [0, 1]");
  return v;
}

Options parse(int argc, char** argv, bool& help, bool& list) {
  Options o;
  help = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], v;
    const size_t eq = a.find('=');
    bool inline_value = false;
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
      inline_value = true;
    }
    bool value_taken = false;
    auto value = [&]() -> std::string {
      value_taken = true;
      if (inline_value) return v;
      if (i + 1 >= argc) bad(a + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help")
      help = true;
    else if (a == "--list-algorithms")
      list = true;
    else if (a == "-o" || a == "--op") {
      const std::string op = value();
      if (op != "sum")
        bad("-o: '" + op + "': sparcl-bench measures the SUM allreduce of sparse vectors only (-o sum)");
    } else if (a == "-g" || a == "--ngpus") {
      const std::string g = value();
      if (g != "1")
        bad("-g: '" + g + "': sparcl-bench measures one process per rank on host memory (-g 1); start more "
            "ranks with mpirun -np P instead");
    }
    else if (a == "-b" || a == "--minelements")
      o.min_elements = parse_count(value(), "-b");
    else if (a == "-e" || a == "--maxelements")
      o.max_elements = parse_count(value(), "-e");
    else if (a == "-f" || a == "--stepfactor")
      o.factor = parse_count(value(), "-f");
    else if (a == "-i" || a == "--stepelements")
      o.increment = parse_count(value(), "-i");
    else if (a == "-d" || a == "--densities") {
      o.densities.clear();
      for (const auto& d : split(value())) o.densities.push_back(parse_fraction(d, "-d"));
      if (o.densities.empty()) bad("-d: no densities");
    } else if (a == "-a" || a == "--algorithms") {
      o.algorithms.clear();
      for (const auto& s : split(value())) {
        if (s == "all") {
          for (const std::string& n : kAlgorithms)
            if (std::find(o.algorithms.begin(), o.algorithms.end(), n) == o.algorithms.end()) o.algorithms.push_back(n);
          continue;
        }
        if (std::find(kAlgorithms.begin(), kAlgorithms.end(), s) == kAlgorithms.end() && s != "global")
          bad("-a: unknown algorithm '" + s + "' (" + joined(kAlgorithms) + ", all; global with --compress)");
        if (std::find(o.algorithms.begin(), o.algorithms.end(), s) == o.algorithms.end()) o.algorithms.push_back(s);
      }
      if (o.algorithms.empty()) bad("-a: no algorithms");
    } else if (a == "-t" || a == "--transports") {
      o.transports.clear();
      for (const auto& s : split(value())) {
        if (s != "mpi" && s != "ofi" && s != "ucx") bad("-t: unknown transport '" + s + "' (mpi, ofi, ucx)");
        if (std::find(o.transports.begin(), o.transports.end(), s) == o.transports.end()) o.transports.push_back(s);
      }
      if (o.transports.empty()) bad("-t: no transports");
    } else if (a == "--output") {
      o.outputs.clear();
      for (const auto& s : split(value())) {
        Output out;
        if (s == "sparse")
          out = Output::Sparse;
        else if (s == "dense")
          out = Output::Dense;
        else
          bad("--output: '" + s + "' is not sparse or dense");
        if (std::find(o.outputs.begin(), o.outputs.end(), out) == o.outputs.end()) o.outputs.push_back(out);
      }
      if (o.outputs.empty()) bad("--output: nothing given");
    } else if (a == "--collective") {
      const std::string c = value();
      if (c != "allreduce" && c != "reduce_scatter") bad("--collective: '" + c + "' is not allreduce or reduce_scatter");
      o.reduce_scatter = c == "reduce_scatter";
    } else if (a == "--partition") {
      o.partitions.clear();
      for (const auto& s : split(value())) {
        const std::vector<std::string> names =
            s == "all" ? std::vector<std::string>{"equal", "balanced", "hashed"} : std::vector<std::string>{s};
        for (const auto& name : names) {
          if (name != "equal" && name != "balanced" && name != "hashed")
            bad("--partition: '" + name + "' is not equal, balanced, hashed or all");
          if (std::find(o.partitions.begin(), o.partitions.end(), name) == o.partitions.end())
            o.partitions.push_back(name);
        }
      }
      if (o.partitions.empty()) bad("--partition: nothing given");
    } else if (a == "--baselines") {
      o.base_allreduce = o.base_allgather = false;
      for (const auto& s : split(value())) {
        if (s == "allreduce")
          o.base_allreduce = true;
        else if (s == "allgather")
          o.base_allgather = true;
        else if (s != "none")
          bad("--baselines: '" + s + "' is not allreduce, allgather or none");
      }
    } else if (a == "-v" || a == "--values") {
      o.encodings.clear();
      for (const auto& e : split(value())) {
        std::vector<std::string> names{e};
        if (e == "all") names = kEncodings;
        for (const auto& name : names) {
          if (std::find(kEncodings.begin(), kEncodings.end(), name) == kEncodings.end())
            bad("-v: unknown value encoding '" + name + "' (" + joined(kEncodings) + ", all)");
          if (std::find(o.encodings.begin(), o.encodings.end(), name) == o.encodings.end())
            o.encodings.push_back(name);
        }
      }
      if (o.encodings.empty()) bad("-v: no encodings");
    } else if (a == "--compress") {
      o.compress = value();
      bool known = false;
      for (const auto& m : kCompressMethods) known |= o.compress == m.name;
      if (!known) bad("--compress: unknown method '" + o.compress + "' (topk, approx_topk, topk_bucket, randomk, none)");
    } else if (a == "--dtype") {
      o.dtype = value();
      if (o.dtype == "float32") o.dtype = "float";
      if (o.dtype == "float64") o.dtype = "double";
      if (o.dtype != "float" && o.dtype != "double") bad("--dtype: '" + o.dtype + "' is not float or double");
    } else if (a == "--dist") {
      const std::string d = value();
      if (d == "uniform")
        o.dist = Dist::Uniform;
      else if (d == "zipf")
        o.dist = Dist::Zipf;
      else if (d == "clustered")
        o.dist = Dist::Clustered;
      else
        bad("--dist: '" + d + "' is not uniform, zipf or clustered");
    } else if (a == "--trace") {
      o.trace = value();
      o.dist = Dist::Trace;
    } else if (a == "--trace-step") {
      o.trace_step = (long long)parse_count(value(), "--trace-step");
    } else if (a == "--overlap")
      o.overlap = parse_fraction(value(), "--overlap");
    else if (a == "--zipf-s") {
      const std::string s = value();
      char* end = nullptr;
      o.zipf_s = std::strtod(s.c_str(), &end);
      if (end == s.c_str() || *end || !(o.zipf_s > 0 && o.zipf_s <= 10)) bad("--zipf-s: '" + s + "' is not in (0, 10]");
    } else if (a == "--cluster-len") {
      o.cluster_len = parse_count(value(), "--cluster-len");
      if (o.cluster_len == 0) bad("--cluster-len must be >= 1");
    } else if (a == "-n" || a == "--iters")
      o.iters = parse_int(value(), "-n", 1);
    else if (a == "-w" || a == "--warmup_iters")
      o.warmups = parse_int(value(), "-w", 0);
    else if (a == "-c" || a == "--check") {
      // nccl-tests takes "-c 0|1"; accept an optional 0/1 too (--check=0|1 as well).
      o.check = true;
      if (inline_value) {
        const std::string c = value();
        if (c != "0" && c != "1") bad("--check: '" + c + "' is not 0 or 1");
        o.check = c == "1";
      } else if (i + 1 < argc && (std::string(argv[i + 1]) == "0" || std::string(argv[i + 1]) == "1"))
        o.check = std::string(argv[++i]) == "1";
    } else if (a == "--median")
      o.median = true;
    else if (a == "--fixed-iters")
      o.fixed_iters = true;
    else if (a == "--test-corrupt")
      o.corrupt = true;
    else if (a == "-q" || a == "--quiet")
      o.quiet = true;
    else if (a == "--seed")
      o.seed = parse_count(value(), "--seed");
    else if (a == "--csv")
      o.csv = value();
    else if (a == "--json")
      o.json = value();
    else
      bad("unknown option '" + a + "' (-h for help)");
    if (inline_value && !value_taken) bad(a + " takes no value");
  }
  if (o.min_elements < 1) bad("-b must be >= 1");
  if (o.max_elements < o.min_elements) bad("-e must be >= -b");
  if (o.max_elements > uint64_t(INT_MAX))
    bad("-e: at most " + std::to_string(INT_MAX) + " elements (MPI counts are int)");
  if (o.increment == 0 && o.factor < 2 && o.min_elements != o.max_elements) bad("-f must be >= 2 (or use -i)");
  if (!o.compress.empty()) {
    if (o.dtype != "float") bad("--compress: gradients are float32 (--dtype float)");
    if (o.dist == Dist::Clustered) bad("--compress: --dist uniform or zipf, or --trace");
    if (o.max_elements >= (uint64_t(1) << 32)) bad("--compress: at most 2^32 - 1 elements");
    for (double d : o.densities)
      if (!(d > 0)) bad("--compress: densities must be > 0");
    o.base_allgather = false;  // the compressed call has no allgather counterpart
  }
  if (!o.trace.empty()) {
    if (o.check) bad("--trace: -c is not supported (the other ranks' vectors are in their own files)");
    o.densities = {0.0};  // each layer's, from the trace
  }
  if (o.compress.empty() && std::find(o.algorithms.begin(), o.algorithms.end(), "global") != o.algorithms.end()) {
    bad("-a global: global selection is a mode of the compressed allreduce (--compress)");
  }
  return o;
}

std::vector<uint64_t> sizes_of(const Options& o) {
  std::vector<uint64_t> s;
  for (uint64_t n = o.min_elements; n <= o.max_elements;) {
    s.push_back(n);
    const uint64_t next = o.increment ? n + o.increment : n * o.factor;
    if (next <= n) break;
    n = next;
  }
  return s;
}

const char* dist_name(Dist d) {
  switch (d) {
    case Dist::Zipf:
      return "zipf";
    case Dist::Clustered:
      return "clustered";
    case Dist::Trace:
      return "trace";
    default:
      return "uniform";
  }
}

sparcl_algorithm_t algorithm_of(const std::string& name) {
  for (int k = 0; k < kAlgorithmCount; ++k)
    if (name == kAlgorithms[k]) return static_cast<sparcl_algorithm_t>(k);
  return SPARCL_ALGO_AUTO;
}

sparcl_value_encoding_t encoding_of(const std::string& name) {
  for (size_t e = 0; e < kEncodings.size(); ++e)
    if (name == kEncodings[e]) return static_cast<sparcl_value_encoding_t>(e);
  return SPARCL_VALUES_RAW;
}

sparcl_compress_method_t compress_method_of(const std::string& name) {
  for (const auto& m : kCompressMethods)
    if (name == m.name) return m.method;
  return SPARCL_COMPRESS_TOPK;
}

sparcl_transport_t transport_of(const std::string& name) {
  if (name == "ofi") return SPARCL_TRANSPORT_OFI;
  if (name == "ucx") return SPARCL_TRANSPORT_UCX;
  return SPARCL_TRANSPORT_MPI;
}

// ------------------------------------------------------------------- data --
// Each rank's vector is a deterministic function of (seed, size, density,
// rank), so that -c can rebuild every rank's vector and sum them without MPI.

uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t seed_of(uint64_t seed, uint64_t n, size_t density_index, uint64_t stream) {
  return splitmix(splitmix(splitmix(seed) ^ n) ^ (uint64_t(density_index) << 32) ^ stream);
}

using Rng = std::mt19937_64;

// Uniform integer in [0, n), n >= 1.
uint64_t below(Rng& rng, uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); }

// One index of [0, n) with probability ~ 1/(i+1)^s: inversion of the
// continuous power law on [1, n+1) (a close, O(1) approximation of Zipf).
uint64_t zipf_draw(Rng& rng, uint64_t n, double s) {
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  const double top = double(n) + 1.0;
  double x;
  if (std::fabs(s - 1.0) < 1e-9)
    x = std::pow(top, u);
  else
    x = std::pow((std::pow(top, 1.0 - s) - 1.0) * u + 1.0, 1.0 / (1.0 - s));
  const uint64_t i = x < 1.0 ? 0 : uint64_t(x) - 1;
  return std::min(i, n - 1);
}

// Selects exactly `need` elements of `pool` (sorted) uniformly at random, keeping their order (Knuth's Algorithm S).
std::vector<uint32_t> subsample(const std::vector<uint32_t>& pool, size_t need, Rng& rng) {
  std::vector<uint32_t> out;
  out.reserve(need);
  size_t left = pool.size();
  for (uint32_t x : pool) {
    if (out.size() == need) break;
    if (below(rng, left) < need - out.size()) out.push_back(x);
    --left;
  }
  return out;
}

std::vector<uint32_t> merge_sorted(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b) {
  std::vector<uint32_t> out(a.size() + b.size());
  std::merge(a.begin(), a.end(), b.begin(), b.end(), out.begin());
  return out;
}

// `base` (sorted, unique, within [0, universe)) plus `count` more distinct
// elements of [0, universe) drawn uniformly or Zipf-like; sorted.
std::vector<uint32_t> add_distinct(std::vector<uint32_t> set, uint64_t universe, uint64_t count, bool zipf, double s,
                                   Rng& rng) {
  const uint64_t target = std::min<uint64_t>(universe, set.size() + count);
  double yield = 1.0;
  for (int round = 0; set.size() < target; ++round) {
    const uint64_t need = target - set.size(), free = universe - set.size();
    if ((!zipf && need * 4 > free) || round >= 64) {
      // Dense request (or a Zipf tail that draws too many repeats): choose
      // uniformly among all free elements in one O(universe) pass.
      std::vector<uint32_t> add;
      add.reserve(need);
      uint64_t left_need = need, left_free = free;
      size_t p = 0;
      for (uint64_t i = 0; i < universe && left_need; ++i) {
        if (p < set.size() && set[p] == i) {
          ++p;
          continue;
        }
        if (below(rng, left_free) < left_need) {
          add.push_back(uint32_t(i));
          --left_need;
        }
        --left_free;
      }
      set = merge_sorted(set, add);
      break;
    }
    const uint64_t draws = std::max<uint64_t>(need, uint64_t(std::ceil(double(need) / std::max(yield, 0.02) * 1.05)));
    std::vector<uint32_t> cand;
    cand.reserve(draws);
    for (uint64_t j = 0; j < draws; ++j)
      cand.push_back(uint32_t(zipf ? zipf_draw(rng, universe, s) : below(rng, universe)));
    std::sort(cand.begin(), cand.end());
    cand.erase(std::unique(cand.begin(), cand.end()), cand.end());
    std::vector<uint32_t> fresh;
    fresh.reserve(cand.size());
    std::set_difference(cand.begin(), cand.end(), set.begin(), set.end(), std::back_inserter(fresh));
    yield = double(fresh.size()) / double(draws);
    if (fresh.size() > need) fresh = subsample(fresh, need, rng);
    set = merge_sorted(set, fresh);
  }
  return set;
}

struct Vec {
  std::vector<uint32_t> idx;
  std::vector<double> val;  // integers 1..8, converted to the value type
};

// Rank `rank`'s vector: k = round(density * n) distinct sorted indices.
// --trace: what this rank replays, layer by layer (load_replay()).
struct Replay {
  std::vector<uint64_t> dims;                 // the layers recorded at the replayed step
  std::vector<uint32_t> layer_ids;            // their numbers in the trace
  std::vector<std::vector<uint32_t>> indices;  // this rank's selection in each
  std::vector<double> density;                // mean over the ranks
  size_t current = 0;                         // the layer being run
  uint32_t step = 0;                          // the step replayed (by ranks below the recorded count)
  uint32_t recorded_ranks = 0;
};
Replay g_replay;

Vec generate(const Options& o, uint64_t n, size_t di, int rank) {
  if (o.dist == Dist::Trace) {  // the recorded indices; values as below
    Rng own_rng(seed_of(o.seed, n, g_replay.current, uint64_t(rank) + 1));
    Vec v;
    v.idx = g_replay.indices[g_replay.current];
    std::uniform_int_distribution<int> value(1, 8);
    v.val.resize(v.idx.size());
    for (double& x : v.val) x = value(own_rng);
    return v;
  }
  const uint64_t k = std::min<uint64_t>(n, uint64_t(std::llround(o.densities[di] * double(n))));
  Rng shared_rng(seed_of(o.seed, n, di, 0)), own_rng(seed_of(o.seed, n, di, uint64_t(rank) + 1));
  Vec v;
  uint64_t block = o.dist == Dist::Clustered ? std::max<uint64_t>(1, std::min(o.cluster_len, n)) : 1;
  const uint64_t blocks = n / block;
  uint64_t units = (k + block - 1) / block;  // blocks (clustered) or indices to pick
  if (units > blocks) {                      // too dense for whole blocks: pick single indices
    block = 1;
    units = k;
  }
  const uint64_t universe = n / block;
  const bool zipf = o.dist == Dist::Zipf;
  const uint64_t shared = std::min<uint64_t>(units, uint64_t(std::llround(o.overlap * double(units))));
  std::vector<uint32_t> set = add_distinct({}, universe, shared, zipf, o.zipf_s, shared_rng);
  set = add_distinct(std::move(set), universe, units - shared, zipf, o.zipf_s, own_rng);
  if (block == 1)
    v.idx = std::move(set);
  else {
    v.idx.reserve(set.size() * block);
    for (uint32_t b : set)
      for (uint64_t j = 0; j < block; ++j) v.idx.push_back(uint32_t(uint64_t(b) * block + j));
    // Whole blocks overshoot k by less than a block: drop the excess from the last one.
    if (v.idx.size() > k) v.idx.resize(k);
  }
  std::uniform_int_distribution<int> value(1, 8);  // positive: the sum is nonzero exactly on the union
  v.val.resize(v.idx.size());
  for (double& x : v.val) x = value(own_rng);
  return v;
}

// ------------------------------------------------------------- utilities --

template <class T>
MPI_Datatype mpi_type() {
  return std::is_same<T, float>::value ? MPI_FLOAT : MPI_DOUBLE;
}
template <class T>
sparcl_datatype_t sparcl_type() {
  return std::is_same<T, float>::value ? SPARCL_FLOAT32 : SPARCL_FLOAT64;
}

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// The linked library's version as major.minor.patch (pkg-config and Python say it so too).
std::string version_text() {
  const int v = sparcl_version();
  return fmt("%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\', out += c;
    else if (static_cast<unsigned char>(c) < 0x20)
      out += fmt("\\u%04x", c);
    else
      out += c;
  }
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// ---------------------------------------------------------------- methods --

enum class Kind { DenseAllreduce, AllgatherBaseline, Sparcl, Compressed };

struct Method {
  Kind kind;
  std::string name;       // algorithm column
  std::string transport;  // transport column
  Output output = Output::Dense;
  sparcl_comm_t comm = nullptr;
  std::string encoding = "raw";  // values on the wire
  std::string partition = "equal";
};

// Timed iterations at `n` elements: -n at 1M and above, up to 10x that below.
int iters_at(const Options& o, uint64_t n) {
  if (o.fixed_iters || n >= (1u << 20)) return o.iters;
  const double scale = std::min(10.0, double(1u << 20) / double(n));
  return std::max(o.iters, int(std::lround(o.iters * scale)));
}

struct Row {
  uint64_t elements = 0;
  int iters = 0;
  double density = 0;
  uint64_t nnz_rank = 0, result_nnz = 0;
  std::string algorithm, transport, output, encoding, result_form, wire_source, error;
  double t_avg = 0, t_min = 0, t_max = 0;  // seconds
  double algbw = 0, busbw = 0, wire_bytes = 0, wire_msgs = 0, wirebw = 0;
  double dense_bytes = 0, x_bytes = NAN;  // a dense ring allreduce's bytes per rank, and that / wire_bytes
  double off_host_bytes = 0;              // of wire_bytes, to ranks on other hosts (sparcl_stats_t)
  double rx_avg = NAN, rx_max = NAN, balance = NAN;  // sparcl: bytes received per rank per call, mean and max over ranks
  double x_allreduce = NAN, x_allgather = NAN;
  long long wrong = -1;  // -1: not checked
  std::string chosen;    // sparcl rows: the algorithm(s) that ran (what auto chose), e.g. "ring" or "ring:4,allgather:1"
  int tuning_calls = 0;  // auto: untimed calls while it measured its candidates (before the warm-ups)
};

struct Run {
  Options opt;
  int rank = 0, ranks = 1;
  MPI_Comm world = MPI_COMM_NULL;
  std::vector<Method> methods;
  std::vector<Row> rows;
  FILE* csv = nullptr;
  std::string command;
  bool failed = false;
};

std::string opt_cell(double x, const char* f) { return std::isnan(x) ? std::string() : fmt(f, x); }

const char* kCsvHeader =
    "ranks,transport,encoding,dtype,dist,overlap,elements,bytes,density,nnz_rank,result_nnz,algorithm,output,"
    "result_form,iters,time_avg_us,time_min_us,time_max_us,algbw_GBps,busbw_GBps,wire_bytes,wire_msgs,wire_source,"
    "wirebw_GBps,speedup_vs_allreduce,speedup_vs_allgather,wrong,error,dense_ring_bytes,x_bytes,chosen,tuning_calls,off_host_bytes,"
    "collective,rx_bytes_avg,rx_bytes_max,balance";

std::string csv_row(const Run& r, const Row& w, size_t value_bytes) {
  std::string s =
      fmt("%d,%s,%s,%s,%s,%g,%llu,%llu,%g,%llu,%llu,%s,%s,%s,%d,", r.ranks, w.transport.c_str(), w.encoding.c_str(),
          r.opt.dtype.c_str(), dist_name(r.opt.dist), r.opt.overlap, (unsigned long long)w.elements,
          (unsigned long long)(w.elements * value_bytes), w.density, (unsigned long long)w.nnz_rank,
          (unsigned long long)w.result_nnz, w.algorithm.c_str(), w.output.c_str(), w.result_form.c_str(), w.iters);
  s += fmt("%.3f,%.3f,%.3f,%.4f,%.4f,%.0f,%.2f,%s,%.4f,", w.t_avg * 1e6, w.t_min * 1e6, w.t_max * 1e6, w.algbw, w.busbw,
           w.wire_bytes, w.wire_msgs, w.wire_source.c_str(), w.wirebw);
  s += opt_cell(w.x_allreduce, "%.4f") + "," + opt_cell(w.x_allgather, "%.4f") + "," +
       (w.wrong < 0 ? std::string() : std::to_string(w.wrong)) + "," + csv_field(w.error) + "," +
       fmt("%.0f", w.dense_bytes) + "," + opt_cell(w.x_bytes, "%.2f") + "," + csv_field(w.chosen) +
       "," + std::to_string(w.tuning_calls) + "," + fmt("%.0f", w.off_host_bytes) + "," +
       (r.opt.reduce_scatter ? "reduce_scatter" : "allreduce") + "," + opt_cell(w.rx_avg, "%.0f") + "," +
       opt_cell(w.rx_max, "%.0f") + "," + opt_cell(w.balance, "%.3f");
  return s;
}

std::string json_num(double x, const char* f = "%.6g") { return std::isnan(x) ? "null" : fmt(f, x); }

void write_json(const Run& r, size_t value_bytes, const std::string& started) {
  if (r.opt.json.empty() || r.rank != 0) return;
  const std::string tmp = r.opt.json + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return;
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  std::string d, encodings;
  for (size_t i = 0; i < r.opt.densities.size(); ++i) d += (i ? "," : "") + fmt("%g", r.opt.densities[i]);
  for (size_t i = 0; i < r.opt.encodings.size(); ++i) encodings += (i ? ", \"" : "\"") + r.opt.encodings[i] + "\"";
  std::fprintf(f,
               "{\n  \"tool\": \"sparcl-bench\",\n  \"sparcl_version\": \"%s\",\n  \"command\": \"%s\",\n"
               "  \"started\": \"%s\",\n  \"host\": \"%s\",\n  \"ranks\": %d,\n  \"dtype\": \"%s\",\n"
               "  \"encodings\": [%s],\n  \"compress\": \"%s\",\n  \"dist\": \"%s\",\n  \"overlap\": %g,\n"
               "  \"zipf_s\": %g,\n"
               "  \"cluster_len\": %llu,\n  \"densities\": [%s],\n  \"iters\": %d,\n  \"warmups\": %d,\n"
               "  \"time_statistic\": \"%s\",\n  \"check\": %s,\n  \"seed\": %llu,\n  \"rows\": [",
               version_text().c_str(), json_escape(r.command).c_str(), started.c_str(), json_escape(host).c_str(), r.ranks,
               r.opt.dtype.c_str(), encodings.c_str(), r.opt.compress.c_str(), dist_name(r.opt.dist), r.opt.overlap,
               r.opt.zipf_s,
               (unsigned long long)r.opt.cluster_len, d.c_str(), r.opt.iters, r.opt.warmups,
               r.opt.median ? "median" : "mean", r.opt.check ? "true" : "false", (unsigned long long)r.opt.seed);
  for (size_t i = 0; i < r.rows.size(); ++i) {
    const Row& w = r.rows[i];
    std::fprintf(
        f,
        "%s\n    {\"elements\": %llu, \"bytes\": %llu, \"density\": %g, \"nnz_rank\": %llu, "
        "\"result_nnz\": %llu, \"iters\": %d, \"algorithm\": \"%s\", \"transport\": \"%s\", \"output\": \"%s\", "
        "\"encoding\": \"%s\", "
        "\"result_form\": \"%s\", \"time_avg_us\": %s, \"time_min_us\": %s, \"time_max_us\": %s, "
        "\"algbw_GBps\": %s, \"busbw_GBps\": %s, \"wire_bytes\": %.0f, \"wire_msgs\": %.2f, "
        "\"wire_source\": \"%s\", \"wirebw_GBps\": %s, \"speedup_vs_allreduce\": %s, "
        "\"speedup_vs_allgather\": %s, \"wrong\": %s, \"error\": \"%s\", \"dense_ring_bytes\": %.0f, "
        "\"x_bytes\": %s, \"chosen\": \"%s\", \"tuning_calls\": %d, \"off_host_bytes\": %.0f}",
        i ? "," : "", (unsigned long long)w.elements, (unsigned long long)(w.elements * value_bytes), w.density,
        (unsigned long long)w.nnz_rank, (unsigned long long)w.result_nnz, w.iters, w.algorithm.c_str(),
        w.transport.c_str(), w.output.c_str(), w.encoding.c_str(), w.result_form.c_str(),
        json_num(w.t_avg * 1e6, "%.3f").c_str(),
        json_num(w.t_min * 1e6, "%.3f").c_str(), json_num(w.t_max * 1e6, "%.3f").c_str(), json_num(w.algbw).c_str(),
        json_num(w.busbw).c_str(), w.wire_bytes, w.wire_msgs, w.wire_source.c_str(), json_num(w.wirebw).c_str(),
        json_num(w.x_allreduce).c_str(), json_num(w.x_allgather).c_str(),
        w.wrong < 0 ? "null" : std::to_string(w.wrong).c_str(), json_escape(w.error).c_str(), w.dense_bytes,
        json_num(w.x_bytes, "%.4g").c_str(), json_escape(w.chosen).c_str(), w.tuning_calls, w.off_host_bytes);
  }
  std::fprintf(f, "\n  ]\n}\n");
  std::fclose(f);
  std::rename(tmp.c_str(), r.opt.json.c_str());
}

// Sums every rank's vector locally (for -c): independent of MPI and sparcl.
template <class T>
std::vector<T> expected_sum(const Run& r, uint64_t n, size_t di) {
  std::vector<T> sum(static_cast<size_t>(n), T(0));
  for (int p = 0; p < r.ranks; ++p) {
    const Vec v = generate(r.opt, n, di, p);
    for (size_t j = 0; j < v.idx.size(); ++j) sum[v.idx[j]] += T(v.val[j]);
  }
  return sum;
}

// How far a result may be from the exact sum (-c). Raw values: not at all.
// A lossy encoding rounds a value at most H = max(P, 2 ceil(log2 P) + 2)
// times on its way (the most of any algorithm: the ring's P - 1 hops and
// its allgather, halving-doubling's two phases and fold), each time by at
// most u |partial sum| <= u |sum| (fp16: u = 2^-11, bf16: 2^-8; the values
// are positive) or, for QSGD with s levels, by less than one level,
// scale / s <= largest sum / s.
struct Tolerance {
  double rel = 0, abs = 0;
  bool ok(double got, double want) const { return std::fabs(got - want) <= rel * std::fabs(want) + abs; }
};

Tolerance tolerance_of(const std::string& encoding, int ranks, double largest) {
  int log2p = 0;
  while ((1 << log2p) < ranks) ++log2p;
  const double h = ranks > 1 ? std::max(ranks, 2 * log2p + 2) : 0;
  Tolerance t;
  if (encoding == "fp16") t.rel = h * std::ldexp(1.0, -11) + std::ldexp(1.0, -20);
  if (encoding == "bf16") t.rel = h * std::ldexp(1.0, -8) + std::ldexp(1.0, -20);
  const int levels = encoding == "qsgd8" ? 127 : encoding == "qsgd4" ? 7 : encoding == "qsgd2" ? 1 : 0;
  if (levels) t.abs = h * largest / levels * (1 + 1e-6);
  return t;
}

template <class T>
long long count_wrong_dense(const T* out, const std::vector<T>& expect, const Tolerance& tol) {
  long long wrong = 0;
  for (size_t i = 0; i < expect.size(); ++i) wrong += !tol.ok(double(out[i]), double(expect[i]));
  return wrong;
}

// A result object against the expected sum: values, and the shape of a sparse
// result (sorted unique indices; explicit zeros are allowed where the sum is 0).
template <class T>
long long count_wrong_result(sparcl_result_t res, const std::vector<T>& expect, const Tolerance& tol) {
  const uint64_t n = expect.size();
  if (!res || sparcl_result_dim(res) != n || sparcl_result_value_type(res) != sparcl_type<T>()) return (long long)n;
  const T* val = static_cast<const T*>(sparcl_result_values(res));
  const size_t nnz = sparcl_result_nnz(res);
  if (sparcl_result_is_dense(res)) return nnz == n ? count_wrong_dense(val, expect, tol) : (long long)n;
  if (sparcl_result_index_type(res) != SPARCL_INDEX_U32) return (long long)n;
  const uint32_t* idx = static_cast<const uint32_t*>(sparcl_result_indices(res));
  long long wrong = 0;
  size_t p = 0;
  for (uint64_t i = 0; i < n; ++i) {
    T got = 0;
    if (p < nnz && idx[p] == i) got = val[p++];
    wrong += !tol.ok(double(got), double(expect[i]));
  }
  wrong += (long long)(nnz - p);  // unsorted, repeated or out-of-range indices
  return wrong;
}

// A reduce-scatter's dense output: `length` values of the range starting at index `first`.
template <class T>
long long count_wrong_range(const T* out, const std::vector<T>& expect, uint64_t first, uint64_t length,
                            const Tolerance& tol) {
  long long wrong = 0;
  for (uint64_t i = 0; i < length; ++i) wrong += !tol.ok(double(out[i]), double(expect[first + i]));
  return wrong;
}

// A reduce-scatter's result: its entries, and every index of its range that
// it does not hold must be 0 in the sum (ranges of the hashed partition
// cover all of [0, n): only the entries are checked there).
template <class T>
long long count_wrong_part(sparcl_result_t res, const std::vector<T>& expect, const Tolerance& tol) {
  const uint64_t n = expect.size();
  uint64_t begin = 0, end = 0;
  if (!res || sparcl_result_range(res, &begin, &end) != SPARCL_SUCCESS || end > n) return (long long)n;
  const T* val = static_cast<const T*>(sparcl_result_values(res));
  const size_t nnz = sparcl_result_nnz(res);
  long long wrong = 0;
  if (sparcl_result_is_dense(res)) {
    for (uint64_t i = begin; i < end; ++i) wrong += !tol.ok(double(val[i - begin]), double(expect[i]));
    return wrong;
  }
  const uint32_t* idx = static_cast<const uint32_t*>(sparcl_result_indices(res));
  const bool whole = begin == 0 && end == n;  // hashed (or one rank)
  size_t p = 0;
  for (uint64_t i = begin; i < end && p <= nnz; ++i) {
    if (p < nnz && idx[p] == i) {
      wrong += !tol.ok(double(val[p++]), double(expect[i]));
    } else if (!whole) {
      wrong += !tol.ok(0.0, double(expect[i]));
    }
  }
  wrong += (long long)(nnz - p);
  return wrong;
}

template <class T>
uint64_t nonzeros(const T* x, uint64_t n) {
  uint64_t c = 0;
  for (uint64_t i = 0; i < n; ++i) c += x[i] != T(0);
  return c;
}

double stat_of(std::vector<double> t, bool median) {
  if (t.empty()) return NAN;
  if (median) {
    std::sort(t.begin(), t.end());
    const size_t m = t.size() / 2;
    return t.size() % 2 ? t[m] : 0.5 * (t[m - 1] + t[m]);
  }
  double s = 0;
  for (double x : t) s += x;
  return s / double(t.size());
}

// What one point measured on this rank, per method (in r.methods' order).
struct PointData {
  uint64_t n = 0, k = 0, result_nnz = 0;
  double density = 0;
  int iters = 0;
  size_t value_bytes = 4;
  std::vector<std::vector<double>> times;  // seconds per timed call
  std::vector<sparcl_stats_t> stats;       // sparcl's counters over the timed calls
  std::vector<std::string> errors;
  std::vector<long long> wrong;            // over all ranks; -1: not checked
  std::vector<std::string> result_form;
  std::vector<std::vector<int>> chosen;    // sparcl methods: timed calls per algorithm that ran
  std::vector<int> tuning_calls;           // auto: calls before the warm-ups while it measured its candidates

  explicit PointData(size_t methods)
      : times(methods), stats(methods), errors(methods), wrong(methods, -1), result_form(methods, "dense"),
        chosen(methods, std::vector<int>(kAlgorithmCount, 0)), tuning_calls(methods, 0) {}
};

// "ring", or "ring:4,allgather:1" where the calls did not all run the same algorithm.
std::string chosen_text(const std::vector<int>& counts) {
  std::string one, all;
  int kinds = 0;
  for (int a = 0; a < kAlgorithmCount; ++a) {
    if (!counts[size_t(a)]) continue;
    ++kinds;
    one = kAlgorithms[a];
    all += (all.empty() ? "" : ",") + one + ":" + std::to_string(counts[size_t(a)]);
  }
  return kinds == 1 ? one : all;
}

// Gathers every rank's figures on rank 0, which prints the rows and keeps
// them for the summary.
void report_point(Run& r, const PointData& d) {
  const Options& o = r.opt;
  const size_t nm = r.methods.size();
  const double P = r.ranks;
  const double S = double(d.n) * double(d.value_bytes);  // dense-equivalent size
  std::vector<Row> rows(nm);
  for (size_t mi = 0; mi < nm; ++mi) {
    const Method& m = r.methods[mi];
    const bool counted = m.kind == Kind::Sparcl || m.kind == Kind::Compressed;
    double mine[5] = {stat_of(d.times[mi], o.median), 0, 0, 0, 0};
    if (counted && d.stats[mi].collectives) {
      mine[1] = double(d.stats[mi].bytes_sent) / double(d.stats[mi].collectives);
      mine[2] = double(d.stats[mi].messages_sent) / double(d.stats[mi].collectives);
      mine[3] = double(d.stats[mi].bytes_sent_off_host) / double(d.stats[mi].collectives);
      mine[4] = double(d.stats[mi].bytes_received) / double(d.stats[mi].collectives);
    }
    std::vector<double> all(size_t(5 * r.ranks));
    MPI_Gather(mine, 5, MPI_DOUBLE, all.data(), 5, MPI_DOUBLE, 0, r.world);
    Row& w = rows[mi];
    w.elements = d.n;
    w.iters = d.iters;
    w.density = d.density;
    w.nnz_rank = d.k;
    w.result_nnz = d.result_nnz;
    w.algorithm = m.kind == Kind::Compressed ? o.compress + "/" + m.name : m.name;
    if (m.partition != "equal") w.algorithm += "/" + m.partition;
    w.transport = m.transport;
    w.output = m.output == Output::Sparse ? "sparse" : "dense";
    w.encoding = m.encoding;
    w.error = d.errors[mi];
    w.wrong = d.wrong[mi];
    w.result_form = d.result_form[mi];
    if (counted) w.chosen = chosen_text(d.chosen[mi]);
    w.tuning_calls = d.tuning_calls[mi];
    if (r.rank != 0) continue;
    double sum = 0, mn = INFINITY, mx = 0, bytes = 0, msgs = 0, off_host = 0, rx = 0, rx_max = 0;
    for (int p = 0; p < r.ranks; ++p) {
      const double t = all[size_t(5 * p)];
      sum += t, mn = std::min(mn, t), mx = std::max(mx, t);
      bytes += all[size_t(5 * p + 1)], msgs += all[size_t(5 * p + 2)], off_host += all[size_t(5 * p + 3)];
      rx += all[size_t(5 * p + 4)], rx_max = std::max(rx_max, all[size_t(5 * p + 4)]);
    }
    w.off_host_bytes = off_host / P;
    if (counted && rx > 0) w.rx_avg = rx / P, w.rx_max = rx_max, w.balance = rx_max / (rx / P);
    if (!d.errors[mi].empty()) sum = mn = mx = NAN;
    w.t_avg = sum / P, w.t_min = mn, w.t_max = mx;
    // nccl-tests' allreduce formulas on the dense-equivalent size.
    w.algbw = S / w.t_avg / 1e9;
    w.busbw = w.algbw * 2.0 * (P - 1) / P;  // 0 at one rank, as in nccl-tests: nothing crosses a link
    // What a bandwidth-optimal dense allreduce (ring, Rabenseifner) sends per rank; its
    // reduce-scatter half for --collective reduce_scatter.
    w.dense_bytes = P > 1 ? (o.reduce_scatter ? 1.0 : 2.0) * (P - 1) / P * S : 0.0;
    if (counted) {
      w.wire_bytes = bytes / P, w.wire_msgs = msgs / P, w.wire_source = "stats";
    } else if (m.kind == Kind::DenseAllreduce) {
      w.wire_bytes = w.dense_bytes, w.wire_msgs = (o.reduce_scatter ? 1.0 : 2.0) * (P - 1), w.wire_source = "model";
    } else {
      // Counts, then every other rank's indices and values reach each rank.
      w.wire_bytes = (P - 1) * (4.0 + double(d.k) * double(sizeof(uint32_t) + d.value_bytes));
      w.wire_msgs = 3.0 * (P - 1), w.wire_source = "model";
    }
    w.wirebw = w.wire_bytes / w.t_avg / 1e9;
    if (w.wire_bytes > 0) w.x_bytes = w.dense_bytes / w.wire_bytes;
  }

  if (r.rank == 0) {
    double t_dense = NAN, t_ag = NAN;
    for (size_t mi = 0; mi < nm; ++mi) {
      if (r.methods[mi].kind == Kind::DenseAllreduce) t_dense = rows[mi].t_avg;
      if (r.methods[mi].kind == Kind::AllgatherBaseline) t_ag = rows[mi].t_avg;
    }
    for (Row& w : rows) {
      w.x_allreduce = t_dense / w.t_avg;
      w.x_allgather = t_ag / w.t_avg;
    }
    for (const Row& w : rows) {
      std::printf(
          "%12llu %12llu %8.4g %10llu %10llu  %-24s %-3s %-6s %-5s %11.1f %11.1f %11.1f %8.3f %8.3f %12.0f %8.2f "
          "%8.2f %8.2f %8s %12s %7s%s\n",
          (unsigned long long)w.elements, (unsigned long long)(w.elements * d.value_bytes), w.density,
          (unsigned long long)w.nnz_rank, (unsigned long long)w.result_nnz,
          w.algorithm.c_str(), w.transport.c_str(),
          (w.output == "sparse" ? (w.result_form == "dense" ? "s->d" : "sparse") : "dense"), w.encoding.c_str(),
          w.t_avg * 1e6, w.t_min * 1e6, w.t_max * 1e6, w.algbw, w.busbw, w.wire_bytes, w.x_bytes, w.x_allreduce,
          w.x_allgather,
          !w.error.empty() ? "error"
          : w.wrong < 0    ? "-"
                           : std::to_string(w.wrong).c_str(),
          std::isnan(w.rx_max) ? "-" : fmt("%.0f", w.rx_max).c_str(),
          std::isnan(w.balance) ? "-" : fmt("%.2f", w.balance).c_str(),
          (std::string(w.algorithm == "auto" && !w.chosen.empty()
                           ? "  -> " + w.chosen +
                                 (w.tuning_calls ? " (after " + std::to_string(w.tuning_calls) + " tuning calls)" : "")
                           : "") +
           (w.off_host_bytes > 0 ? fmt("  off-host %.0f B", w.off_host_bytes) : std::string()))
              .c_str());
      if (r.csv) std::fprintf(r.csv, "%s\n", csv_row(r, w, d.value_bytes).c_str());
    }
    std::fflush(stdout);
    if (r.csv) std::fflush(r.csv);
  }
  for (const Row& w : rows) {
    if (!w.error.empty() || w.wrong > 0) r.failed = true;
    if (r.rank == 0) r.rows.push_back(w);
  }
}

// Runs one call of method `mi` (after a barrier) and records its time, or
// its error, which every rank sees alike (sparcl's contract).
template <class Call>
bool timed_call(Run& r, PointData& d, size_t mi, bool timed, Call&& call) {
  Method& m = r.methods[mi];
  MPI_Barrier(r.world);
  const double t0 = MPI_Wtime();
  const sparcl_status_t st = call();
  const double dt = MPI_Wtime() - t0;
  if (st != SPARCL_SUCCESS) {
    d.errors[mi] = std::string(sparcl_strerror(st)) + ": " + sparcl_comm_last_error(m.comm);
    if (r.rank == 0)
      std::fprintf(stderr, "sparcl-bench: %s (%s, %s) at %llu elements, density %g: %s\n", m.name.c_str(),
                   m.transport.c_str(), m.encoding.c_str(), (unsigned long long)d.n, d.density, d.errors[mi].c_str());
    return false;
  }
  if (timed) d.times[mi].push_back(dt);
  sparcl_algorithm_t ran = SPARCL_ALGO_AUTO;
  if (timed && m.comm && sparcl_comm_last_algorithm(m.comm, &ran) == SPARCL_SUCCESS && int(ran) < kAlgorithmCount)
    ++d.chosen[mi][size_t(ran)];
  return true;
}

// Iterations of a point: warm-ups, then timed ones; methods interleaved
// within each, in a new shuffled order each time (the same on every rank),
// so that a change of machine load hits all of them alike (the ratios stay
// meaningful) and no method always follows the same one: a method run right
// after MPI_Allgatherv (whose local sum sweeps a dense output through the
// caches) took 1.3-1.7x its time elsewhere at 1M elements, 0.1%, on shared
// memory. `one(mi, timed, last)` runs a call.
//
// auto first runs alone until it has measured its candidates for the point
// (sparcl_comm_last_choice() no longer SPARCL_CHOSEN_AS_TRIAL), so that the timed calls show its steady state,
// as in a training run that repeats the same shapes.
template <class One>
void iterate(Run& r, PointData& d, One&& one) {
  const size_t nm = r.methods.size();
  constexpr int kMaxTuningCalls = 64;
  for (size_t mi = 0; mi < nm; ++mi) {
    const Method& m = r.methods[mi];
    if (m.kind != Kind::Sparcl || m.name != "auto") continue;
    sparcl_choice_t how = SPARCL_CHOSEN_BY_MODEL;
    for (int calls = 0; calls < kMaxTuningCalls && d.errors[mi].empty(); ++calls) {
      // Two calls at least: the first one's choice comes from the previous
      // point's density (same dim, another density), the second one's from this one's.
      if (calls >= 2 && how != SPARCL_CHOSEN_AS_TRIAL) break;
      if (!one(mi, false, false) || sparcl_comm_last_choice(m.comm, &how) != SPARCL_SUCCESS) break;
      d.tuning_calls[mi] = calls + 1;
    }
  }
  const int total_iters = r.opt.warmups + d.iters;
  std::vector<size_t> order(nm);
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ d.n;
  for (int it = 0; it < total_iters; ++it) {
    for (size_t i = 0; i < nm; ++i) order[i] = i;
    for (size_t i = nm; i > 1; --i) {  // Fisher-Yates with a shared xorshift
      h ^= h << 13, h ^= h >> 7, h ^= h << 17;
      std::swap(order[i - 1], order[size_t(h % i)]);
    }
    for (size_t step = 0; step < nm; ++step) {
      const size_t mi = order[step];
      Method& m = r.methods[mi];
      if (!d.errors[mi].empty()) continue;
      const bool counted = m.kind == Kind::Sparcl || m.kind == Kind::Compressed;
      if (counted && it == r.opt.warmups) sparcl_comm_reset_stats(m.comm);
      const bool last = it == total_iters - 1;
      if (one(mi, it >= r.opt.warmups, last) && last && counted) sparcl_comm_stats(m.comm, &d.stats[mi]);
    }
  }
}

// --------------------------------------------------------------- one point --

template <class T>
void run_point(Run& r, uint64_t n, size_t di) {
  const Options& o = r.opt;
  const Vec v = generate(o, n, di, r.rank);
  const size_t k = v.idx.size();
  std::vector<T> val(k);
  for (size_t j = 0; j < k; ++j) val[j] = T(v.val[j]);
  // --test-corrupt (for the tests of -c): rank 0 gives sparcl, not the baselines, its first value plus one.
  std::vector<T> sparcl_val = val;
  if (o.corrupt && r.rank == 0 && k > 0) sparcl_val[0] += T(1);
  const sparcl_sparse_t in{n, k, SPARCL_INDEX_U32, v.idx.data(), sparcl_type<T>(), sparcl_val.data(), 0};

  const size_t nm = r.methods.size();
  PointData d(nm);
  d.n = n, d.k = k, d.density = o.densities[di], d.iters = iters_at(o, n), d.value_bytes = sizeof(T);
  bool need_dense_in = false, need_ag = false, need_dense_out = false;
  for (const Method& m : r.methods) {
    need_dense_in |= m.kind == Kind::DenseAllreduce;
    need_ag |= m.kind == Kind::AllgatherBaseline;
    need_dense_out |= m.kind == Kind::Sparcl && m.output == Output::Dense;
  }
  std::vector<T> dense_in, dense_out, ag_out, sp_out;
  if (need_dense_in) {
    dense_in.assign(static_cast<size_t>(n), T(0));
    for (size_t j = 0; j < k; ++j) dense_in[v.idx[j]] = val[j];
    dense_out.assign(static_cast<size_t>(n), T(0));
  }
  // Allgather baseline: buffers sized before timing (the counts are exchanged again inside the timed call).
  std::vector<int> counts(static_cast<size_t>(r.ranks)), displs(static_cast<size_t>(r.ranks));
  std::vector<uint32_t> all_idx;
  std::vector<T> all_val;
  bool ag_too_big = false;
  if (need_ag) {
    const int mine = int(k);
    MPI_Allgather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, r.world);
    long long total = 0;
    for (int c : counts) total += c;
    ag_too_big = total > INT_MAX;
    if (!ag_too_big) {
      all_idx.resize(static_cast<size_t>(total));
      all_val.resize(static_cast<size_t>(total));
      ag_out.assign(static_cast<size_t>(n), T(0));
    }
  }
  if (need_dense_out) sp_out.assign(static_cast<size_t>(n), T(0));
  // --collective reduce_scatter: the equal ranges (MPI_Reduce_scatter's counts, a dense output's range).
  std::vector<int> scatter_counts(static_cast<size_t>(r.ranks));
  for (int p = 0; p < r.ranks; ++p)
    scatter_counts[size_t(p)] = int(n / uint64_t(r.ranks) + (uint64_t(p) < n % uint64_t(r.ranks) ? 1 : 0));
  uint64_t scatter_first = 0;
  for (int p = 0; p < r.rank; ++p) scatter_first += uint64_t(scatter_counts[size_t(p)]);
  const uint64_t scatter_length = uint64_t(scatter_counts[size_t(r.rank)]);

  // -c: the expected sum, computed locally from every rank's (regenerated) vector.
  std::vector<T> expect;
  std::vector<Tolerance> tolerance(nm);
  if (o.check) {
    expect = expected_sum<T>(r, n, di);
    const double largest = expect.empty() ? 0.0 : double(*std::max_element(expect.begin(), expect.end()));
    for (size_t mi = 0; mi < nm; ++mi) tolerance[mi] = tolerance_of(r.methods[mi].encoding, r.ranks, largest);
  }
  std::vector<long long> wrong_here(nm, 0);
  std::vector<sparcl_result_t> last(nm, nullptr);

  iterate(r, d, [&](size_t mi, bool timed, bool last_iteration) {
    const Method& m = r.methods[mi];
    if (m.kind == Kind::AllgatherBaseline && ag_too_big) {
      d.errors[mi] = "more than INT_MAX pairs in total: MPI_Allgatherv counts are int";
      return false;
    }
    sparcl_result_t res = nullptr;
    const bool ok = timed_call(r, d, mi, timed, [&]() -> sparcl_status_t {
      switch (m.kind) {
        case Kind::DenseAllreduce:
          if (o.reduce_scatter) {
            MPI_Reduce_scatter(dense_in.data(), dense_out.data(), scatter_counts.data(), mpi_type<T>(), MPI_SUM, r.world);
            return SPARCL_SUCCESS;
          }
          MPI_Allreduce(dense_in.data(), dense_out.data(), int(n), mpi_type<T>(), MPI_SUM, r.world);
          return SPARCL_SUCCESS;
        case Kind::AllgatherBaseline: {
          // What Horovod and PyTorch's gloo backend do with sparse tensors:
          // allgather the counts, allgatherv indices and values, sum locally into a dense vector.
          const int mine = int(k);
          MPI_Allgather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, r.world);
          int off = 0;
          for (int p = 0; p < r.ranks; ++p) displs[size_t(p)] = off, off += counts[size_t(p)];
          MPI_Allgatherv(v.idx.data(), mine, MPI_UINT32_T, all_idx.data(), counts.data(), displs.data(), MPI_UINT32_T,
                         r.world);
          MPI_Allgatherv(val.data(), mine, mpi_type<T>(), all_val.data(), counts.data(), displs.data(), mpi_type<T>(),
                         r.world);
          std::memset(static_cast<void*>(ag_out.data()), 0, ag_out.size() * sizeof(T));
          const size_t tot = size_t(off);
          for (size_t j = 0; j < tot; ++j) ag_out[all_idx[j]] += all_val[j];
          return SPARCL_SUCCESS;
        }
        default:
          if (o.reduce_scatter)
            return m.output == Output::Sparse ? sparcl_reduce_scatter_sparse(&in, nullptr, &res, m.comm)
                                              : sparcl_reduce_scatter_sparse(&in, sp_out.data(), nullptr, m.comm);
          return m.output == Output::Sparse ? sparcl_allreduce_sparse(&in, nullptr, &res, m.comm)
                                            : sparcl_allreduce_sparse(&in, sp_out.data(), nullptr, m.comm);
      }
    });
    if (!ok) return false;
    if (last[mi]) sparcl_result_free(last[mi]);
    last[mi] = res;  // kept for the result's form
    // The last iteration's output, checked before the next method overwrites a shared buffer (untimed).
    if (last_iteration && o.check && o.reduce_scatter) {
      if (m.kind == Kind::DenseAllreduce)
        wrong_here[mi] = count_wrong_range(dense_out.data(), expect, scatter_first, scatter_length, tolerance[mi]);
      else if (m.kind == Kind::AllgatherBaseline)
        wrong_here[mi] = count_wrong_dense(ag_out.data(), expect, tolerance[mi]);
      else if (m.output == Output::Dense)
        wrong_here[mi] = count_wrong_range(sp_out.data(), expect, scatter_first, scatter_length, tolerance[mi]);
      else
        wrong_here[mi] = count_wrong_part(res, expect, tolerance[mi]);
    } else if (last_iteration && o.check) {
      if (m.kind == Kind::DenseAllreduce)
        wrong_here[mi] = count_wrong_dense(dense_out.data(), expect, tolerance[mi]);
      else if (m.kind == Kind::AllgatherBaseline)
        wrong_here[mi] = count_wrong_dense(ag_out.data(), expect, tolerance[mi]);
      else if (m.output == Output::Dense)
        wrong_here[mi] = count_wrong_dense(sp_out.data(), expect, tolerance[mi]);
      else
        wrong_here[mi] = count_wrong_result(res, expect, tolerance[mi]);
    }
    return true;
  });

  bool have_nnz = false;
  if (o.check) {
    MPI_Allreduce(wrong_here.data(), d.wrong.data(), int(nm), MPI_LONG_LONG, MPI_SUM, r.world);
    for (size_t mi = 0; mi < nm; ++mi)
      if (!d.errors[mi].empty()) d.wrong[mi] = -1;
    d.result_nnz = nonzeros(expect.data(), n);
    have_nnz = true;
  }
  // Nonzeros of the sum from the first output at hand (values are positive: no cancellation).
  for (size_t mi = 0; mi < nm && !have_nnz; ++mi) {
    const Method& m = r.methods[mi];
    if (!d.errors[mi].empty()) continue;
    have_nnz = true;
    if (m.kind == Kind::DenseAllreduce)
      d.result_nnz = nonzeros(dense_out.data(), n);
    else if (m.kind == Kind::AllgatherBaseline)
      d.result_nnz = nonzeros(ag_out.data(), n);
    else if (m.output == Output::Dense)
      d.result_nnz = nonzeros(sp_out.data(), n);
    else
      d.result_nnz = nonzeros(static_cast<const T*>(sparcl_result_values(last[mi])), sparcl_result_nnz(last[mi]));
  }
  for (size_t mi = 0; mi < nm; ++mi)
    if (r.methods[mi].output == Output::Sparse && last[mi])
      d.result_form[mi] = sparcl_result_is_dense(last[mi]) ? "dense" : "sparse";
  for (sparcl_result_t res : last)
    if (res) sparcl_result_free(res);
  report_point(r, d);
}

// --compress: every rank's dense N(0, 1) gradient (a function of the seed,
// the size and the rank; with --dist zipf, entry i scaled by (i+1)^(-s/2)),
// compressed and summed by sparcl_allreduce_compressed
// (one compressor per method and point; error feedback on, as in training),
// beside MPI_Allreduce of the dense gradient. Compression is in the time.
void run_compressed_point(Run& r, uint64_t n, size_t di) {
  const Options& o = r.opt;
  const size_t nm = r.methods.size();
  PointData d(nm);
  d.n = n, d.density = o.densities[di], d.iters = iters_at(o, n), d.value_bytes = sizeof(float);
  const sparcl_compress_method_t method = compress_method_of(o.compress);
  d.k = method == SPARCL_COMPRESS_NONE ? n : std::max<uint64_t>(1, uint64_t(std::llround(d.density * double(n))));
  std::vector<float> grad(n), out(n), dense_out(n);
  {
    Rng rng(seed_of(o.seed, n, di, uint64_t(r.rank) + 1));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    if (o.dist == Dist::Trace) {  // N(0,1) at the recorded indices only: top-k selects exactly them
      for (uint32_t i : g_replay.indices[g_replay.current]) {
        const float x = normal(rng);
        grad[i] = x != 0.0f ? x : 1.0f;
      }
    } else {
      for (float& x : grad) x = normal(rng);
    }
    if (o.dist == Dist::Zipf)
      for (uint64_t i = 0; i < n; ++i) grad[i] *= float(std::pow(double(i + 1), -o.zipf_s / 2));
  }
  std::vector<sparcl_compressor_t> compressors(nm, nullptr);
  for (size_t mi = 0; mi < nm; ++mi) {
    if (r.methods[mi].kind != Kind::Compressed) continue;
    sparcl_compressor_config_t cc = SPARCL_COMPRESSOR_CONFIG_INIT;
    cc.method = method;
    cc.density = d.density;
    cc.values = encoding_of(r.methods[mi].encoding);
    cc.seed = o.seed;
    // -a global: global selection (about k entries of the sum); the others select locally.
    cc.selection = r.methods[mi].name == "global" ? SPARCL_SELECTION_GLOBAL : SPARCL_SELECTION_LOCAL;
    const sparcl_status_t st = sparcl_compressor_create(&cc, n, &compressors[mi]);
    if (st != SPARCL_SUCCESS) d.errors[mi] = std::string(sparcl_strerror(st)) + ": " + sparcl_comm_last_error(nullptr);
  }
  iterate(r, d, [&](size_t mi, bool timed, bool last_iteration) {
    const Method& m = r.methods[mi];
    const bool ok = timed_call(r, d, mi, timed, [&]() -> sparcl_status_t {
      if (m.kind == Kind::DenseAllreduce) {
        MPI_Allreduce(grad.data(), dense_out.data(), int(n), MPI_FLOAT, MPI_SUM, r.world);
        return SPARCL_SUCCESS;
      }
      return sparcl_allreduce_compressed(m.comm, compressors[mi], grad.data(), out.data());
    });
    // Nonzeros of the summed selections (the largest over the methods; untimed).
    if (ok && last_iteration && m.kind == Kind::Compressed) d.result_nnz = std::max(d.result_nnz, nonzeros(out.data(), n));
    return ok;
  });
  for (sparcl_compressor_t c : compressors) sparcl_compressor_free(c);
  report_point(r, d);
}

void print_header(const Run& r) {
  const Options& o = r.opt;
  std::string encodings;
  for (const auto& e : o.encodings) encodings += (encodings.empty() ? "" : ",") + e;
  if (o.compress.empty()) {
    std::printf("# sparcl-bench (sparcl %s): %d ranks, dtype %s, values %s, dist %s", version_text().c_str(), r.ranks,
                o.dtype.c_str(), encodings.c_str(), dist_name(o.dist));
    if (o.dist == Dist::Zipf) std::printf(" (s=%g)", o.zipf_s);
    if (o.dist == Dist::Clustered) std::printf(" (runs of %llu)", (unsigned long long)o.cluster_len);
    if (o.dist == Dist::Trace)
      std::printf(" (%s.<rank>: %u ranks recorded, step %u; rank r replays recorded rank r mod %u at step %u - r / %u)",
                  o.trace.c_str(), g_replay.recorded_ranks, g_replay.step, g_replay.recorded_ranks, g_replay.step,
                  g_replay.recorded_ranks);
    std::printf(", overlap %g\n", o.overlap);
  } else {
    char zipf_scale[64];
    std::snprintf(zipf_scale, sizeof zipf_scale, " x (i+1)^(-%g/2)", o.zipf_s);
    std::string gradient = std::string("a dense N(0,1)") + (o.dist == Dist::Zipf ? zipf_scale : "") + " float32 gradient";
    if (o.dist == Dist::Trace)
      gradient = "a float32 gradient N(0,1) at the indices replayed from " + o.trace + ".<rank> (" +
                 std::to_string(g_replay.recorded_ranks) + " ranks recorded, step " + std::to_string(g_replay.step) +
                 "; rank r replays recorded rank r mod R at step S - r / R) and 0 elsewhere";
    std::printf(
        "# sparcl-bench (sparcl %s): %d ranks, sparcl_allreduce_compressed of %s per rank: %s keeping the "
        "density's share of entries, values %s, error feedback on; compression is timed\n",
        version_text().c_str(), r.ranks, gradient.c_str(), o.compress.c_str(), encodings.c_str());
  }
  std::printf(
      "# %d warm-up + %d timed iterations per point%s, methods interleaved; time = %s over iterations per "
      "rank, then avg/min/max over ranks%s\n",
      o.warmups, o.iters, o.fixed_iters ? "" : " (up to 10x below 1M elements)", o.median ? "median" : "mean",
      o.check && o.compress.empty() ? "; results checked (-c)" : "");
  std::printf(
      "# bytes = elements*%zu B (the dense vector); algbw = bytes / time_avg; busbw = algbw*2(P-1)/P "
      "(dense-equivalent, as nccl-tests' allreduce: 0 at one rank); wire = bytes sent per rank per call "
      "(sparcl: counters; baselines: model)\n",
      o.dtype == "float" ? sizeof(float) : sizeof(double));
  std::printf(
      "# x_bytes = the bytes a dense ring allreduce sends per rank, 2(P-1)/P * elements*%zu B, / wire\n",
      o.dtype == "float" ? sizeof(float) : sizeof(double));
  if (o.compress.empty()) {
    std::printf("# out: sparse = result object timed (s->d: it came back dense), dense = dense receive buffer\n");
    std::printf(
        "# MPI_Allgatherv = MPI_Allgather of counts + MPI_Allgatherv of indices and values + local sum into a "
        "dense vector (Horovod, gloo)\n");
  }
  if (o.check && o.compress.empty() && encodings != "raw")
    std::printf("# lossy encodings: #wrong counts values beyond the bound of the encoding's roundings\n");
  std::printf("# rx_max = the most bytes one rank received per call (sparcl: counters); balance = rx_max / mean\n");
  if (o.reduce_scatter)
    std::printf("# reduce_scatter: sparcl_reduce_scatter_sparse; MPI_Allreduce row = MPI_Reduce_scatter of the dense "
                "vectors; x_bytes against a dense ring reduce-scatter, (P-1)/P * elements*%zu B\n",
                o.dtype == "float" ? sizeof(float) : sizeof(double));
  std::printf("#\n#%11s %12s %8s %10s %10s  %-24s %-3s %-6s %-5s %11s %11s %11s %8s %8s %12s %8s %8s %8s %8s %12s %7s\n",
              "elements", "bytes", "density", "nnz/rank", "result_nnz", "algorithm", "tr", "out", "enc", "time(us)", "min(us)",
              "max(us)", "algbw", "busbw", "wire(B)", "x_bytes", "x_allred", "x_allgat", "#wrong", "rx_max(B)", "balance");
  std::printf("#%11s %12s %8s %10s %10s  %-24s %-3s %-6s %-5s %11s %11s %11s %8s %8s %12s %8s %8s %8s %8s %12s %7s\n", "",
              "dense", "", "", "", "", "", "", "", "avg", "over ranks", "", "(GB/s)", "(GB/s)", "per rank", "vs dense", "speedup",
              "speedup", "", "per rank", "max/mean");
  std::fflush(stdout);
}

void print_summary(const Run& r) {
  // Geometric means of the speedups per method, and auto against the best method of each point.
  std::vector<std::string> names;
  for (const Method& m : r.methods) {
    std::string name = m.name;
    if (m.kind == Kind::Sparcl)
      name += "/" + m.transport + (m.output == Output::Sparse ? "/sparse" : "/dense") + "/" + m.encoding +
              (m.partition == "equal" ? "" : "/" + m.partition);
    if (m.kind == Kind::Compressed) name = r.opt.compress + "/" + m.name + "/" + m.transport + "/" + m.encoding;
    names.push_back(name);
  }
  const size_t nm = r.methods.size();
  std::printf("#\n# geometric mean over points (speedup > 1: faster than the baseline)\n");
  std::printf("#   %-36s %10s %10s\n", "method", "x_allred", "x_allgat");
  for (size_t mi = 0; mi < nm; ++mi) {
    double la = 0, lg = 0;
    int na = 0, ng = 0;
    for (size_t i = mi; i < r.rows.size(); i += nm) {
      if (std::isfinite(r.rows[i].x_allreduce) && r.rows[i].x_allreduce > 0)
        la += std::log(r.rows[i].x_allreduce), ++na;
      if (std::isfinite(r.rows[i].x_allgather) && r.rows[i].x_allgather > 0)
        lg += std::log(r.rows[i].x_allgather), ++ng;
    }
    std::printf("#   %-36s %10s %10s\n", names[mi].c_str(), na ? fmt("%.2f", std::exp(la / na)).c_str() : "-",
                ng ? fmt("%.2f", std::exp(lg / ng)).c_str() : "-");
  }
  for (size_t a = 0; a < nm; ++a) {
    if (r.methods[a].kind != Kind::Sparcl || r.methods[a].name != "auto" || r.methods[a].encoding != "raw") continue;
    double worst = 0;
    std::string where;
    int points = 0, within = 0;
    for (size_t base = 0; base + nm <= r.rows.size(); base += nm) {
      double best = INFINITY;
      std::string best_name;
      for (size_t mi = 0; mi < nm; ++mi)
        if (mi != a && std::isfinite(r.rows[base + mi].t_avg) && r.rows[base + mi].t_avg < best)
          best = r.rows[base + mi].t_avg, best_name = names[mi];
      const double ratio = r.rows[base + a].t_avg / best;
      if (!std::isfinite(ratio)) continue;
      ++points;
      within += ratio <= 1.10;
      if (ratio > worst)
        worst = ratio, where = fmt("%llu elements, density %g (best: %s)", (unsigned long long)r.rows[base].elements,
                                   r.rows[base].density, best_name.c_str());
    }
    if (worst > 0) {
      std::printf("# %s: at most %.2fx the time of the best other method of a point, at %s\n", names[a].c_str(),
                  worst, where.c_str());
      std::printf("# %s: within 10%% of the best other method at %d of %d points\n", names[a].c_str(), within, points);
    }
    // One comment line per line of the description (the tuning file's is the second).
    std::string model = sparcl_comm_auto_model(r.methods[a].comm);
    const std::string next_line = "\n# " + names[a] + ": ";
    for (size_t at = model.find('\n'); at != std::string::npos; at = model.find('\n', at + next_line.size()))
      model.replace(at, 1, next_line);
    std::printf("# %s: cost model %s\n", names[a].c_str(), model.c_str());
  }
  long long wrong = 0;
  bool checked = false;
  for (const Row& w : r.rows)
    if (w.wrong >= 0) wrong += w.wrong, checked = true;
  if (checked) std::printf("# wrong values in total: %lld\n", wrong);
}

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace

// --trace PATH: every rank reads PATH.0 (the recorded rank count R and, by
// default, the last step S), then rank r replays recorded rank r mod R at
// step S - r / R (ranks beyond those recorded take earlier steps of the same
// recorded rank). The layers are those PATH.0 recorded at step S. False (on
// every rank, with each rank's reason on stderr) if a file is missing or
// damaged or lacks a record.
bool load_replay(Run& r) {
  const Options& o = r.opt;
  std::string error;
  try {
    const sparcl::train::Trace first = sparcl::train::read_trace(sparcl::train::trace_path_of_rank(o.trace, 0));
    if (first.records.empty()) throw std::runtime_error("trace " + o.trace + ".0 has no records");
    const uint32_t last = first.records.back().step;
    const uint32_t step = o.trace_step >= 0 ? uint32_t(o.trace_step) : last;
    const uint32_t ranks = first.ranks;
    g_replay.recorded_ranks = ranks;
    g_replay.step = step;
    for (const auto& rec : first.records)
      if (rec.step == step) g_replay.layer_ids.push_back(rec.layer), g_replay.dims.push_back(first.dims[rec.layer]);
    if (g_replay.layer_ids.empty()) throw std::runtime_error("trace " + o.trace + ".0 has no records of step " + std::to_string(step));
    const uint32_t mine = uint32_t(r.rank) % ranks, back = uint32_t(r.rank) / ranks;
    if (back > step)
      throw std::runtime_error("rank " + std::to_string(r.rank) + " would replay step " + std::to_string(int64_t(step) - back) +
                               ": choose a later --trace-step or fewer ranks");
    const sparcl::train::Trace own =
        mine == 0 ? first : sparcl::train::read_trace(sparcl::train::trace_path_of_rank(o.trace, int(mine)));
    if (own.dims != first.dims) throw std::runtime_error("trace " + o.trace + "." + std::to_string(mine) + ": other layers than in .0");
    for (uint32_t layer : g_replay.layer_ids) {
      const sparcl::train::TraceRecord* found = nullptr;
      for (const auto& rec : own.records)
        if (rec.step == step - back && rec.layer == layer) found = &rec;
      if (!found)
        throw std::runtime_error("trace " + o.trace + "." + std::to_string(mine) + " has no record of step " +
                                 std::to_string(step - back) + ", layer " + std::to_string(layer));
      g_replay.indices.push_back(found->indices);
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  int ok = error.empty() ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, r.world);
  if (!ok) {
    if (!error.empty()) std::fprintf(stderr, "sparcl-bench: rank %d: %s\n", r.rank, error.c_str());
    return false;
  }
  for (size_t l = 0; l < g_replay.dims.size(); ++l) {
    double nnz = double(g_replay.indices[l].size());
    MPI_Allreduce(MPI_IN_PLACE, &nnz, 1, MPI_DOUBLE, MPI_SUM, r.world);
    g_replay.density.push_back(nnz / double(r.ranks) / double(g_replay.dims[l]));
  }
  return true;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Run r;
  MPI_Comm_dup(MPI_COMM_WORLD, &r.world);
  MPI_Comm_rank(r.world, &r.rank);
  MPI_Comm_size(r.world, &r.ranks);
  auto finish = [&](int code) {
    MPI_Comm_free(&r.world);
    MPI_Finalize();
    return code;
  };

  bool help = false, list = false;
  try {
    r.opt = parse(argc, argv, help, list);
  } catch (const UsageError& e) {
    if (r.rank == 0) std::fprintf(stderr, "sparcl-bench: %s\n", e.what.c_str());
    return finish(2);
  }
  if (help) {
    if (r.rank == 0) usage(stdout);
    return finish(0);
  }
  if (list) {
    if (r.rank == 0) list_algorithms(stdout);
    return finish(0);
  }
  const Options& o = r.opt;
  for (int i = 0; i < argc; ++i) r.command += (i ? " " : "") + std::string(argv[i]);

  // -a and -t choose the configuration: environment overrides would silently
  // turn every communicator into the same one.
  for (const char* var : {"SPARCL_ALGORITHM", "SPARCL_TRANSPORT", "SPARCL_ENCODING"})
    if (std::getenv(var)) {
      if (r.rank == 0) std::fprintf(stderr, "sparcl-bench: ignoring %s (use -a, -t and -v)\n", var);
      unsetenv(var);
    }

  int files_ok = 1;
  if (r.rank == 0) {
    if (!o.csv.empty()) {
      r.csv = std::fopen(o.csv.c_str(), "w");
      if (!r.csv)
        std::fprintf(stderr, "sparcl-bench: cannot write %s: %s\n", o.csv.c_str(), std::strerror(errno));
      else
        std::fprintf(r.csv, "%s\n", kCsvHeader);
      files_ok = r.csv != nullptr;
    }
    if (files_ok && !o.json.empty()) {
      FILE* f = std::fopen(o.json.c_str(), "w");
      if (!f)
        std::fprintf(stderr, "sparcl-bench: cannot write %s: %s\n", o.json.c_str(), std::strerror(errno));
      else
        std::fclose(f);
      files_ok = f != nullptr;
    }
  }
  MPI_Bcast(&files_ok, 1, MPI_INT, 0, r.world);
  if (!files_ok) return finish(2);

  // Methods: the baselines, then one sparcl communicator per (transport, algorithm, output, encoding); with
  // --compress, per (transport, algorithm, compressor encoding).
  if (o.base_allreduce)
    r.methods.push_back({Kind::DenseAllreduce, o.reduce_scatter ? "MPI_Reduce_scatter" : "MPI_Allreduce", "mpi",
                         Output::Dense, nullptr, "raw"});
  if (o.base_allgather)
    r.methods.push_back({Kind::AllgatherBaseline, "MPI_Allgatherv", "mpi", Output::Dense, nullptr, "raw"});
  int unsupported = 0, created = 0;
  std::vector<sparcl_comm_t> comms;
  for (const std::string& tr : o.transports) {
    bool transport_ok = true;
    const bool compress = !o.compress.empty();
    const std::vector<Output> outputs = compress ? std::vector<Output>{Output::Dense} : o.outputs;
    const size_t per_enc = o.partitions.size();
    const size_t per_alg = outputs.size() * o.encodings.size() * per_enc;
    for (size_t ai = 0; ai < o.algorithms.size() * per_alg && transport_ok; ++ai) {
      const std::string& alg = o.algorithms[ai / per_alg];
      const Output out = outputs[ai % per_alg / (o.encodings.size() * per_enc)];
      const std::string& enc = o.encodings[ai / per_enc % o.encodings.size()];
      const std::string& part = o.partitions[ai % per_enc];
      sparcl_config_t cfg = SPARCL_CONFIG_INIT;
      cfg.algorithm = algorithm_of(alg);
      cfg.partition = part == "balanced" ? SPARCL_PARTITION_BALANCED
                      : part == "hashed" ? SPARCL_PARTITION_HASHED
                                         : SPARCL_PARTITION_EQUAL;
      cfg.transport = transport_of(tr);
      // With --compress the compressor's encoding travels; the communicator's is for other calls.
      cfg.encoding = compress ? SPARCL_VALUES_RAW : encoding_of(enc);
      sparcl_comm_t comm = nullptr;
      const sparcl_status_t st = sparcl_comm_create_mpi(r.world, &cfg, &comm);
      if (st == SPARCL_ERR_UNSUPPORTED) {  // the same on every rank: creation agrees on its outcome
        if (r.rank == 0)
          std::fprintf(stderr, "sparcl-bench: transport %s: %s: %s; skipping it\n", tr.c_str(), sparcl_strerror(st),
                       sparcl_comm_last_error(nullptr));
        ++unsupported;
        transport_ok = false;
        continue;
      }
      if (st != SPARCL_SUCCESS) {
        if (r.rank == 0)
          std::fprintf(stderr, "sparcl-bench: sparcl_comm_create_mpi (%s, %s): %s: %s\n", tr.c_str(), alg.c_str(),
                       sparcl_strerror(st), sparcl_comm_last_error(nullptr));
        for (sparcl_comm_t c : comms) sparcl_comm_free(c);
        if (r.csv) std::fclose(r.csv);
        return finish(1);
      }
      ++created;
      comms.push_back(comm);  // one per method: its traffic counters are its own
      r.methods.push_back({compress ? Kind::Compressed : Kind::Sparcl, alg, tr, out, comm, enc, part});
    }
  }
  if (created == 0 && unsupported > 0) {
    if (r.rank == 0) std::fprintf(stderr, "sparcl-bench: none of the transports asked for is in this build\n");
    if (r.csv) std::fclose(r.csv);
    return finish(3);
  }

  std::vector<uint64_t> sizes = sizes_of(o);
  if (!o.trace.empty()) {
    if (!load_replay(r)) {
      for (sparcl_comm_t c : comms) sparcl_comm_free(c);
      if (r.csv) std::fclose(r.csv);
      return finish(2);
    }
    sizes = g_replay.dims;
  }
  const size_t points = sizes.size() * o.densities.size();
  double weight_total = 0, weight_done = 0;
  for (uint64_t n : sizes) weight_total += double(n + 4096) * double(o.densities.size());
  if (r.rank == 0 && r.ranks == 1)
    std::fprintf(stderr,
                 "sparcl-bench: warning: 1 rank: nothing is communicated, so times are local work only and busbw "
                 "is 0; run under mpirun -np P with P >= 2\n");
  if (r.rank == 0) print_header(r);
  const std::string started = now_utc();
  const double t_start = MPI_Wtime();
  size_t point = 0;
  for (size_t si = 0; si < sizes.size(); ++si) {
    const uint64_t n = sizes[si];
    if (!o.trace.empty()) {  // one point per recorded layer, at its density
      g_replay.current = si;
      r.opt.densities = {g_replay.density[si]};
    }
    for (size_t di = 0; di < o.densities.size(); ++di) {
      const double t0 = MPI_Wtime();
      if (!o.compress.empty())
        run_compressed_point(r, n, di);
      else if (o.dtype == "float")
        run_point<float>(r, n, di);
      else
        run_point<double>(r, n, di);
      ++point;
      weight_done += double(n + 4096);
      if (r.rank == 0) {
        write_json(r, o.dtype == "float" ? sizeof(float) : sizeof(double), started);
        if (!o.quiet) {
          const double now = MPI_Wtime();
          std::fprintf(stderr,
                       "sparcl-bench: [%zu/%zu] %llu elements, density %g: %.1f s (elapsed %.0f s, ~%.0f s left)\n",
                       point, points, (unsigned long long)n, o.densities[di], now - t0, now - t_start,
                       (now - t_start) * (weight_total - weight_done) / weight_done);
        }
      }
    }
  }
  if (r.rank == 0) {
    print_summary(r);
    if (r.csv) std::fclose(r.csv);
  }
  for (sparcl_comm_t c : comms) sparcl_comm_free(c);
  int failed = r.failed ? 1 : 0, any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, r.world);
  return finish(any ? 1 : 0);
}
