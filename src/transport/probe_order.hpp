// SPDX-License-Identifier: BSD-3-Clause
// Post order for receives that find their message by probing (MPI_Improbe,
// ucp_tag_probe_nb) when they are tested. Probing takes the oldest matching
// message; if two receives with the same source and tag probed in the order
// they happen to be tested, a message arriving between the two probes would
// go to the younger receive. So only the oldest unmatched receive of each
// (source, tag) may probe: messages with equal tags from one peer then land
// in the receives in the order both were posted, as transport.hpp promises.
//
// A receive from any peer and one from a given peer with the same tag are
// queued apart (the engine uses any-peer receives only for abort notices,
// whose tags no other receive uses).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <unordered_map>
#include <utility>

namespace sparcl {

class ProbeOrder {
 public:
  struct Key {
    int peer;       // or kAnyPeer
    uint64_t tag;   // the backend's tag
    bool operator==(const Key& o) const { return peer == o.peer && tag == o.tag; }
  };

  // A receive was posted.
  void post(const Key& key, const void* receive) { queues_[key].push_back(receive); }
  // True if `receive` is the oldest unmatched one of its key.
  bool may_probe(const Key& key, const void* receive) const {
    auto it = queues_.find(key);
    return it != queues_.end() && it->second.front() == receive;
  }
  // `receive` matched a message or was withdrawn.
  void leave(const Key& key, const void* receive) {
    auto it = queues_.find(key);
    if (it == queues_.end()) return;
    auto& q = it->second;
    for (auto r = q.begin(); r != q.end(); ++r)
      if (*r == receive) {
        q.erase(r);
        break;
      }
    if (q.empty()) queues_.erase(it);
  }

 private:
  struct Hash {
    size_t operator()(const Key& k) const {
      return std::hash<uint64_t>()(k.tag) ^ (std::hash<int>()(k.peer) * 0x9e3779b97f4a7c15ull);
    }
  };
  std::unordered_map<Key, std::deque<const void*>, Hash> queues_;
};

}  // namespace sparcl
