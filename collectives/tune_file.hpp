// SPDX-License-Identifier: BSD-3-Clause
// SPARCL_TUNE_FILE: auto's measured choices kept across runs, so that a job
// does not measure every kind of call again at every start.
//
// A text file, one choice per line (docs/algorithms.md shows an example):
//
//   sparcl-tune 1
//   machine=node17 transport=mpi ranks=8 per_host=8 sparcl=0.1.0 type=float32 encoding=raw bucket=0 dim_class=40 density_class=-13 algorithm=ring
//
// A communicator uses the lines of its own context (rank 0's host, transport,
// ranks, ranks per host, library version): lines of other contexts stay in
// the file for other runs, and are counted in the communicator's note. The
// file is read once, at communicator creation, by every rank; it is used
// only if every rank read the same bytes (src/comm_create.cpp). Rank 0
// writes a line whenever the ranks' vote settles a choice (written to a
// temporary file, then renamed over the old one).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "sparcl/sparcl.h"

namespace sparcl {

// Where a choice was measured.
struct TuneContext {
  std::string machine;    // rank 0's host name
  std::string transport;  // transport name (mpi, ofi, ucx)
  int ranks = 0;
  int ranks_per_host = 0;
};

// The kind of call a choice holds for.
struct TuneEntryKey {
  std::string type;      // float32, float64
  std::string encoding;  // raw, fp16, ...
  uint32_t bucket = 0;
  int dim_class = 0;      // floor(2 log2 dim)
  int density_class = 0;  // density_class() of auto.hpp
  bool operator<(const TuneEntryKey& o) const {
    return std::tie(type, encoding, bucket, dim_class, density_class) <
           std::tie(o.type, o.encoding, o.bucket, o.dim_class, o.density_class);
  }
};

// The choices of one context read from a tuning file.
class TuneFile {
 public:
  TuneFile() = default;
  // Parses `text` (the file as every rank read it at creation) for
  // `context`; `creation_note` non-empty: the ranks read different files,
  // so it is neither used nor written.
  TuneFile(const std::string& path, const std::string& text, const TuneContext& context,
           const std::string& creation_note);

  // The choice stored for `key` at creation, if any.
  bool find(const TuneEntryKey& key, sparcl_algorithm_t& algorithm);

  // Adds (or replaces) the choice for `key` in the file on disk (rank 0).
  // What this communicator finds stays what every rank read at creation.
  // Never throws: a file that cannot be written is told in note().
  void store(const TuneEntryKey& key, sparcl_algorithm_t algorithm);

  bool enabled() const { return !path_.empty(); }
  // What the communicator made of the file, for sparcl_comm_auto_model().
  std::string note() const;

 private:
  std::string path_;
  TuneContext context_;
  std::map<TuneEntryKey, sparcl_algorithm_t> entries_;
  uint64_t used_ = 0, foreign_ = 0, malformed_ = 0, stored_ = 0;
  std::string problem_;  // the last problem met, "" if none
};

// floor(2 log2 dim), in integers; 0 for dim 0.
int dim_class(uint64_t dim);

}  // namespace sparcl
