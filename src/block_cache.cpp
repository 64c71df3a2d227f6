// SPDX-License-Identifier: BSD-3-Clause
#include "block_cache.hpp"

#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace sparcl {

namespace {

constexpr size_t kSmallest = size_t(64) << 10;   // below this, plain new/delete
constexpr size_t kCacheLimit = size_t(1) << 30;  // bytes kept at most
constexpr int kClasses = 48;

int size_class(size_t bytes) {
  int c = 0;
  while ((kSmallest << c) < bytes) ++c;
  return c;
}

class Cache {
 public:
  ~Cache() {
    for (auto& list : free_)
      for (void* p : list) std::free(p);
  }
  void* take(int c) {
    std::lock_guard<std::mutex> g(mutex_);
    if (free_[c].empty()) return nullptr;
    void* p = free_[c].back();
    free_[c].pop_back();
    cached_ -= kSmallest << c;
    return p;
  }
  bool keep(void* p, int c) {
    std::lock_guard<std::mutex> g(mutex_);
    if (cached_ + (kSmallest << c) > kCacheLimit) return false;
    free_[c].push_back(p);
    cached_ += kSmallest << c;
    return true;
  }

 private:
  std::mutex mutex_;
  std::vector<void*> free_[kClasses];
  size_t cached_ = 0;
};

Cache& cache() {
  static Cache c;
  return c;
}

}  // namespace

void* allocate_block(size_t bytes) {
  if (bytes < kSmallest) return ::operator new(bytes == 0 ? 1 : bytes);
  const int c = size_class(bytes);
  if (c >= kClasses) throw std::bad_alloc();
  if (void* p = cache().take(c)) return p;
  void* p = std::aligned_alloc(16, kSmallest << c);
  if (!p) throw std::bad_alloc();
  return p;
}

void release_block(void* block, size_t bytes) noexcept {
  if (!block) return;
  if (bytes < kSmallest) {
    ::operator delete(block);
    return;
  }
  const int c = size_class(bytes);
  if (!cache().keep(block, c)) std::free(block);
}

}  // namespace sparcl
