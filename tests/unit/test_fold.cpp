// SPDX-License-Identifier: BSD-3-Clause
// Folding P ranks onto a power of two (collectives/fold.hpp).
#include <gtest/gtest.h>

#include <vector>

#include "collectives/fold.hpp"

namespace {

TEST(Fold, PowerOfTwoAndRemainder) {
  struct Expect {
    int p, p2, levels, rem;
  };
  for (const Expect& e : {Expect{1, 1, 0, 0}, Expect{2, 2, 1, 0}, Expect{3, 2, 1, 1}, Expect{4, 4, 2, 0},
                          Expect{5, 4, 2, 1}, Expect{7, 4, 2, 3}, Expect{8, 8, 3, 0}, Expect{12, 8, 3, 4},
                          Expect{16, 16, 4, 0}, Expect{17, 16, 4, 1}, Expect{1000, 512, 9, 488}}) {
    for (int r : {0, e.p - 1}) {
      sparcl::Fold f(r, e.p);
      EXPECT_EQ(f.p2, e.p2) << "P=" << e.p;
      EXPECT_EQ(f.levels, e.levels) << "P=" << e.p;
      EXPECT_EQ(f.rem, e.rem) << "P=" << e.p;
    }
  }
}

TEST(Fold, NewRanksArePermutationAndRealInvertsThem) {
  for (int p = 1; p <= 17; ++p) {
    SCOPED_TRACE("P=" + std::to_string(p));
    const sparcl::Fold f0(0, p);
    const int p2 = f0.p2, rem = f0.rem;
    ASSERT_EQ(p2 & (p2 - 1), 0);
    ASSERT_LE(p2, p);
    ASSERT_GT(2 * p2, p);
    std::vector<int> seen(p2, 0);
    int sitters = 0;
    for (int r = 0; r < p; ++r) {
      const sparcl::Fold f(r, p);
      EXPECT_EQ(f.p2, p2);
      EXPECT_EQ(f.rem, rem);
      const bool want_sitter = r < 2 * rem && r % 2 == 0;
      EXPECT_EQ(f.sitter, want_sitter) << "rank " << r;
      if (f.sitter) {
        ++sitters;
        EXPECT_EQ(f.newrank, -1) << "rank " << r;
        EXPECT_FALSE(f.hosts_sitter(r)) << "rank " << r;
        // Its partner is the next (odd) rank, which hosts it.
        const sparcl::Fold partner(r + 1, p);
        EXPECT_FALSE(partner.sitter);
        EXPECT_TRUE(partner.hosts_sitter(r + 1)) << "rank " << r + 1;
        continue;
      }
      ASSERT_GE(f.newrank, 0) << "rank " << r;
      ASSERT_LT(f.newrank, p2) << "rank " << r;
      ++seen[f.newrank];
      EXPECT_EQ(f.real(f.newrank), r) << "rank " << r;
      EXPECT_EQ(f.hosts_sitter(r), r < 2 * rem) << "rank " << r;
    }
    EXPECT_EQ(sitters, rem);
    for (int n = 0; n < p2; ++n) {
      EXPECT_EQ(seen[n], 1) << "newrank " << n;
      // real() maps every folded rank to a non-sitter, the same from any rank.
      const int real = f0.real(n);
      ASSERT_GE(real, 0);
      ASSERT_LT(real, p);
      EXPECT_FALSE(sparcl::Fold(real, p).sitter) << "newrank " << n;
      EXPECT_EQ(sparcl::Fold(real, p).newrank, n);
      EXPECT_EQ(sparcl::Fold(p - 1, p).real(n), real);
    }
  }
}

}  // namespace
