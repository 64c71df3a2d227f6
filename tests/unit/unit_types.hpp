// SPDX-License-Identifier: BSD-3-Clause
// Shared helpers of the unit tests: the (value, index) type pairs the typed
// tests run over, and small constructors of streams.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "error.hpp"
#include "sparse.hpp"

namespace sparcl_unit {

template <class V_, class I_>
struct Types {
  using V = V_;
  using I = I_;
};

using AllTypes = ::testing::Types<Types<float, uint32_t>, Types<float, uint64_t>,
                                  Types<double, uint32_t>, Types<double, uint64_t>>;

// Owned sparse stream over r with the given (index, value) pairs.
template <class V, class I>
sparcl::Stream<V, I> sparse(sparcl::Range r, std::vector<uint64_t> idx, std::vector<double> val) {
  sparcl::Stream<V, I> s;
  s.range = r;
  s.dense = false;
  for (uint64_t i : idx) s.idx.push_back(I(i));
  for (double v : val) s.val.push_back(V(v));
  return s;
}

// Owned dense stream over r.
template <class V, class I>
sparcl::Stream<V, I> dense(sparcl::Range r, std::vector<double> val) {
  sparcl::Stream<V, I> s;
  s.range = r;
  s.dense = true;
  for (double v : val) s.val.push_back(V(v));
  return s;
}

// A stream's storage (sparcl::Array, a vector with its own allocator) as a
// std::vector, for comparisons.
template <class C>
std::vector<typename C::value_type> vec(const C& c) {
  return std::vector<typename C::value_type>(c.begin(), c.end());
}

// The dense values of a stream.
template <class V, class I>
std::vector<V> densify(const sparcl::Stream<V, I>& s) {
  std::vector<V> out(s.range.size());
  sparcl::write_dense(s.view(), out.data());
  return out;
}

// Smallest entry count for which SparCML's rule prefers dense on `length`.
template <class V, class I>
uint64_t dense_threshold(uint64_t length) {
  const uint64_t num = length * sizeof(V), den = sizeof(I) + sizeof(V);
  return (num + den - 1) / den;
}

// Runs f, expecting sparcl::Error with `status`; returns the message.
template <class F>
std::string expect_error(F&& f, sparcl_status_t status) {
  try {
    f();
  } catch (const sparcl::Error& e) {
    EXPECT_EQ(e.status(), status) << e.what();
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected sparcl::Error, got std::exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected sparcl::Error with status " << int(status) << ", nothing was thrown";
  return "";
}

}  // namespace sparcl_unit
