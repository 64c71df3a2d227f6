// SPDX-License-Identifier: BSD-3-Clause
// SPARCL_TUNE_FILE's lines (collectives/tune_file.hpp): a communicator uses
// the lines of its own machine, transport, size and library version, ignores
// and counts the others, and storing a choice replaces the line of the same
// kind of call and keeps every other line.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "collectives/tune_file.hpp"

namespace {

using sparcl::TuneContext;
using sparcl::TuneEntryKey;
using sparcl::TuneFile;

const TuneContext kHere{"node1", "mpi", 8, 4};
const std::string kVersion = std::to_string(SPARCL_VERSION_MAJOR) + "." + std::to_string(SPARCL_VERSION_MINOR) +
                             "." + std::to_string(SPARCL_VERSION_PATCH);

std::string line(const std::string& machine, int ranks, const std::string& version, int density_class,
                 const std::string& algorithm) {
  return "machine=" + machine + " transport=mpi ranks=" + std::to_string(ranks) + " per_host=4 sparcl=" + version +
         " type=float32 encoding=raw bucket=0 dim_class=40 density_class=" + std::to_string(density_class) +
         " algorithm=" + algorithm + "\n";
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(TuneFile, UsesOnlyTheLinesOfItsContext) {
  const std::string text = "sparcl-tune 1\n# a comment\n" + line("node1", 8, kVersion, -13, "ring") +
                           line("node2", 8, kVersion, -13, "allgather") + line("node1", 16, kVersion, -13, "dense") +
                           line("node1", 8, "0.0.1", -12, "dense") + "machine=node1 ranks=8 algorithm=ring\n" +
                           line("node1", 8, kVersion, -12, "no_such_algorithm");
  TuneFile f("/nonexistent/tune", text, kHere, "");
  sparcl_algorithm_t a = SPARCL_ALGO_AUTO;
  EXPECT_TRUE(f.find(TuneEntryKey{"float32", "raw", 0, 40, -13}, a));
  EXPECT_EQ(a, SPARCL_ALGO_RING);
  EXPECT_FALSE(f.find(TuneEntryKey{"float32", "raw", 0, 40, -12}, a));  // other version, or malformed
  EXPECT_FALSE(f.find(TuneEntryKey{"float64", "raw", 0, 40, -13}, a));
  const std::string note = f.note();
  EXPECT_NE(note.find("1 choices"), std::string::npos) << note;
  EXPECT_NE(note.find("3 lines of other machines, sizes or versions ignored"), std::string::npos) << note;
  EXPECT_NE(note.find("2 malformed lines ignored"), std::string::npos) << note;
}

TEST(TuneFile, AForeignFileOrOneTheRanksReadDifferentlyIsNotUsed) {
  sparcl_algorithm_t a;
  TuneFile foreign("/x", "some other file\n" + line("node1", 8, kVersion, -13, "ring"), kHere, "");
  EXPECT_FALSE(foreign.find(TuneEntryKey{"float32", "raw", 0, 40, -13}, a));
  EXPECT_NE(foreign.note().find("not a sparcl tuning file"), std::string::npos) << foreign.note();
  TuneFile differ("/x", "sparcl-tune 1\n" + line("node1", 8, kVersion, -13, "ring"), kHere, "ranks differ");
  EXPECT_FALSE(differ.find(TuneEntryKey{"float32", "raw", 0, 40, -13}, a));
  EXPECT_NE(differ.note().find("ranks differ"), std::string::npos);
}

TEST(TuneFile, StoreReplacesTheSameKindOfCallAndKeepsTheRest) {
  const std::string path = "/tmp/sparcl-unit-" + std::to_string(getpid()) + ".tune";
  {
    std::ofstream out(path);
    out << "sparcl-tune 1\n" << line("node1", 8, kVersion, -13, "ring") << line("node2", 8, kVersion, -13, "dense");
  }
  TuneFile f(path, read(path), kHere, "");
  f.store(TuneEntryKey{"float32", "raw", 0, 40, -13}, SPARCL_ALGO_ALLGATHER);
  f.store(TuneEntryKey{"float32", "raw", 0, 40, -10}, SPARCL_ALGO_SPLIT_DENSE);
  const std::string text = read(path);
  EXPECT_EQ(text, "sparcl-tune 1\n" + line("node2", 8, kVersion, -13, "dense") +
                      line("node1", 8, kVersion, -13, "allgather") + line("node1", 8, kVersion, -10, "split_dense"));
  EXPECT_NE(f.note().find("2 stored"), std::string::npos) << f.note();
  // What the communicator finds stays what the ranks read at creation.
  sparcl_algorithm_t a;
  ASSERT_TRUE(f.find(TuneEntryKey{"float32", "raw", 0, 40, -13}, a));
  EXPECT_EQ(a, SPARCL_ALGO_RING);
  std::remove(path.c_str());
}

TEST(TuneFile, DimClassIsTwiceLog2RoundedDown) {
  EXPECT_EQ(sparcl::dim_class(1), 0);
  EXPECT_EQ(sparcl::dim_class(2), 2);
  EXPECT_EQ(sparcl::dim_class(3), 3);  // 9 >= 8
  EXPECT_EQ(sparcl::dim_class(1u << 20), 40);
  EXPECT_EQ(sparcl::dim_class((1u << 20) + (1u << 19)), 41);
}

}  // namespace
