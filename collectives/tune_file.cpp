// SPDX-License-Identifier: BSD-3-Clause
// SPARCL_TUNE_FILE (tune_file.hpp): reading, looking up and storing choices.
#include "tune_file.hpp"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

namespace sparcl {

namespace {

constexpr const char* kHeader = "sparcl-tune 1";

std::string library_version() {
  return std::to_string(SPARCL_VERSION_MAJOR) + "." + std::to_string(SPARCL_VERSION_MINOR) + "." +
         std::to_string(SPARCL_VERSION_PATCH);
}

// One line of the file, parsed.
struct Line {
  TuneContext context;
  std::string version;
  TuneEntryKey key;
  sparcl_algorithm_t algorithm = SPARCL_ALGO_AUTO;
};

bool to_int(const std::string& s, long long lo, long long hi, long long& out) {
  if (s.empty()) return false;
  size_t used = 0;
  try {
    out = std::stoll(s, &used);
  } catch (...) {
    return false;
  }
  return used == s.size() && out >= lo && out <= hi;
}

// Parses "name=value ..." into `line`; false if a field is missing or bad.
bool parse_line(const std::string& text, Line& line) {
  std::istringstream in(text);
  std::map<std::string, std::string> f;
  std::string word;
  while (in >> word) {
    const size_t eq = word.find('=');
    if (eq == std::string::npos || eq == 0) return false;
    f[word.substr(0, eq)] = word.substr(eq + 1);
  }
  static const char* kFields[] = {"machine", "transport", "ranks", "per_host", "sparcl", "type",
                                  "encoding", "bucket", "dim_class", "density_class", "algorithm"};
  for (const char* name : kFields)
    if (f.find(name) == f.end()) return false;
  if (f.size() != sizeof kFields / sizeof kFields[0]) return false;
  long long ranks, per_host, bucket, dim_c, density_c;
  if (!to_int(f["ranks"], 1, 1LL << 30, ranks) || !to_int(f["per_host"], 1, 1LL << 30, per_host) ||
      !to_int(f["bucket"], 0, UINT32_MAX, bucket) || !to_int(f["dim_class"], 0, 128, dim_c) ||
      !to_int(f["density_class"], INT32_MIN, 2, density_c))
    return false;
  sparcl_algorithm_t a;
  if (sparcl_algorithm_parse(f["algorithm"].c_str(), &a) != SPARCL_SUCCESS || a == SPARCL_ALGO_AUTO) return false;
  line.context = TuneContext{f["machine"], f["transport"], int(ranks), int(per_host)};
  line.version = f["sparcl"];
  line.key = TuneEntryKey{f["type"], f["encoding"], uint32_t(bucket), int(dim_c), int(density_c)};
  line.algorithm = a;
  return true;
}

bool same_context(const TuneContext& a, const TuneContext& b) {
  return a.machine == b.machine && a.transport == b.transport && a.ranks == b.ranks &&
         a.ranks_per_host == b.ranks_per_host;
}

std::string format_line(const TuneContext& c, const TuneEntryKey& k, sparcl_algorithm_t a) {
  std::ostringstream out;
  out << "machine=" << c.machine << " transport=" << c.transport << " ranks=" << c.ranks
      << " per_host=" << c.ranks_per_host << " sparcl=" << library_version() << " type=" << k.type
      << " encoding=" << k.encoding << " bucket=" << k.bucket << " dim_class=" << k.dim_class
      << " density_class=" << k.density_class << " algorithm=" << sparcl_algorithm_name(a);
  return out.str();
}

// The lines of `text` after its header; false if the header is not ours.
bool body_lines(const std::string& text, std::vector<std::string>& lines) {
  std::istringstream in(text);
  std::string l;
  bool header = false;
  while (std::getline(in, l)) {
    if (l.empty() || l[0] == '#') {
      if (header) lines.push_back(l);
      continue;
    }
    if (!header) {
      if (l != kHeader) return false;
      header = true;
      continue;
    }
    lines.push_back(l);
  }
  return header || text.find_first_not_of(" \t\r\n") == std::string::npos;
}

}  // namespace

int dim_class(uint64_t dim) {
  if (dim == 0) return 0;
  // The largest c with 2^c <= dim^2: 2 floor(log2 dim), plus 1 where dim^2 >= 2^(2f+1).
  int f = 63 - __builtin_clzll(dim);
  __extension__ typedef unsigned __int128 u128;
  const u128 d2 = u128(dim) * dim;
  return 2 * f + (d2 >= (u128(1) << (2 * f + 1)) ? 1 : 0);
}

TuneFile::TuneFile(const std::string& path, const std::string& text, const TuneContext& context,
                   const std::string& creation_note)
    : path_(path), context_(context), problem_(creation_note) {
  if (path_.empty() || !problem_.empty()) return;
  std::vector<std::string> lines;
  if (!body_lines(text, lines)) {
    problem_ = "not a sparcl tuning file (its first line is not '" + std::string(kHeader) + "'); not used";
    return;
  }
  const std::string version = library_version();
  for (const std::string& l : lines) {
    if (l.empty() || l[0] == '#') continue;
    Line line;
    if (!parse_line(l, line)) {
      ++malformed_;
      continue;
    }
    if (!same_context(line.context, context_) || line.version != version) {
      ++foreign_;
      continue;
    }
    entries_[line.key] = line.algorithm;  // the last line of a key wins
  }
}

bool TuneFile::find(const TuneEntryKey& key, sparcl_algorithm_t& algorithm) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return false;
  algorithm = it->second;
  ++used_;
  return true;
}

void TuneFile::store(const TuneEntryKey& key, sparcl_algorithm_t algorithm) {
  if (path_.empty() || !problem_.empty()) return;
  try {
    std::string text;
    {
      std::ifstream in(path_, std::ios::binary);
      if (in) text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    std::vector<std::string> lines;
    if (!body_lines(text, lines)) {
      problem_ = "not a sparcl tuning file any more; not written";
      return;
    }
    std::ostringstream out;
    out << kHeader << "\n";
    for (const std::string& l : lines) {
      Line line;
      if (!l.empty() && l[0] != '#' && parse_line(l, line) && same_context(line.context, context_) &&
          line.version == library_version() && !(line.key < key) && !(key < line.key))
        continue;  // replaced below
      out << l << "\n";
    }
    out << format_line(context_, key, algorithm) << "\n";
    const std::string tmp = path_ + ".tmp." + std::to_string(getpid());
    {
      std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
      f << out.str();
      f.flush();
      if (!f) {
        std::remove(tmp.c_str());
        problem_ = "cannot write " + tmp;
        return;
      }
    }
    if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
      std::remove(tmp.c_str());
      problem_ = "cannot replace " + path_;
      return;
    }
    ++stored_;
  } catch (const std::exception& e) {
    problem_ = std::string("cannot write: ") + e.what();
  }
}

std::string TuneFile::note() const {
  if (path_.empty()) return "";
  std::string s = "tuning file " + path_ + ": " + std::to_string(entries_.size()) + " choices for this machine, " +
                  "transport and size (" + std::to_string(used_) + " used, " + std::to_string(stored_) +
                  " stored by this communicator)";
  if (foreign_) s += ", " + std::to_string(foreign_) + " lines of other machines, sizes or versions ignored";
  if (malformed_) s += ", " + std::to_string(malformed_) + " malformed lines ignored";
  if (!problem_.empty()) s += "; " + problem_;
  return s;
}

}  // namespace sparcl
