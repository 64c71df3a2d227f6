// SPDX-License-Identifier: BSD-3-Clause
// Folding P ranks onto the largest power of two P2 <= P, for the algorithms
// that pair ranks by XOR: the first 2*(P - P2) ranks pair up, the even one of
// each pair hands its vector to the odd one and sits out until the result
// comes back (the "unfold"); the others are renumbered 0..P2-1.
#pragma once

namespace sparcl {

struct Fold {
  Fold(int rank, int size) {
    p2 = 1;
    levels = 0;
    while (p2 * 2 <= size) {
      p2 *= 2;
      ++levels;
    }
    rem = size - p2;
    if (rank < 2 * rem) {
      sitter = rank % 2 == 0;
      newrank = sitter ? -1 : rank / 2;
    } else {
      newrank = rank - rem;
    }
  }
  // Rank in the communicator of folded rank n.
  int real(int n) const { return n < rem ? 2 * n + 1 : n + rem; }
  // True for the odd rank of a folded pair (receives the fold, sends the unfold).
  bool hosts_sitter(int rank) const { return rank < 2 * rem && !sitter; }

  int p2;
  int levels;
  int rem;
  bool sitter = false;
  int newrank;
};

}  // namespace sparcl
