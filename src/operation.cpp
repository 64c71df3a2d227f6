// SPDX-License-Identifier: BSD-3-Clause
#include "operation.hpp"

namespace sparcl {

void send_abort_notices(Transport& transport, const Identity& id, sparcl_status_t status,
                        const std::string& message) {
  // Never throws: it runs where an error is already being reported. Without
  // memory for a notice, the peers learn of the failure through their timeout.
  SharedBuffer notice;
  try {
    notice = encode_abort(id, status, "rank " + std::to_string(transport.rank()) + ": " + message);
  } catch (...) {
    return;
  }
  for (int peer = 0; peer < transport.size(); ++peer) {
    if (peer == transport.rank()) continue;
    try {
      // The request is dropped at once: the transport finishes it on its own.
      transport.isend(peer, Tag{id.comm_id, id.seq, true}, notice);
    } catch (...) {
      // A peer we cannot reach learns of the failure through its own timeout.
    }
  }
}

void Operation::end_with_failure() {
  state_ = State::Failed;
  recvs_.clear();
  awaits_.clear();  // the transport finishes a dropped collective of its own
  failed();
}

void Operation::abort(sparcl_status_t status, const std::string& message) {
  if (done()) return;
  status_ = status;
  message_ = message;
  end_with_failure();
  abort_notice_.reset();
  send_abort_notices(transport_, id_, status, message);
}

bool Operation::advance() {
  bool idled = false;
  while (!done()) {
    bool moved = false;
    try {
      moved = step();
    } catch (const Error& e) {
      abort(e.status(), e.what());
    } catch (const std::bad_alloc&) {
      abort(SPARCL_ERR_NO_MEMORY, "out of memory in a collective");
    } catch (const std::exception& e) {
      abort(SPARCL_ERR_INTERNAL, e.what());
    } catch (...) {
      abort(SPARCL_ERR_INTERNAL, "unknown exception in a collective");
    }
    if (!moved) {
      // Waiting: one piece of idle work, then look at the transfers again.
      if (idled || done() || !idle_work()) break;
      idled = true;
      continue;
    }
    ++moves_;
  }
  return done();
}

bool Operation::check_abort_notice() {
  if (!abort_notice_ || !abort_notice_->test()) return false;
  const int peer = abort_notice_->source();
  Buffer msg = abort_notice_->take();
  abort_notice_.reset();
  if (id_.checksum) verify_checksum(msg, peer);
  WireHeader h = read_header(msg);
  if (!(h.flags & kFlagAbort) || h.comm_id != id_.comm_id || h.seq != id_.seq)
    fail(SPARCL_ERR_CORRUPT, "malformed abort notice from rank " + std::to_string(peer));
  // The peer has already told everyone: end here without another round of notices.
  status_ = h.status < 0 && h.status >= SPARCL_ERR_INTERNAL ? sparcl_status_t(h.status)
                                                             : SPARCL_ERR_PEER_FAILED;
  message_ = abort_text(msg, h);
  end_with_failure();
  return true;
}

int Operation::barrier_rounds() const {
  if (!id_.checksum || size() == 1) return 0;
  int k = 0;
  while ((1 << k) < size()) ++k;
  return k;
}

void Operation::start_round() {
  RoundIO io;
  if (round_ < rounds()) {
    post(round_, io);
  } else {  // dissemination barrier: step k to r + 2^k, from r - 2^k
    const int d = 1 << (round_ - rounds());
    io.send((rank() + d) % size(), encode_ack(id_, uint16_t(round_)));
    io.recv((rank() - d + size()) % size());
  }
  const bool several_hosts = transport_.spans_hosts();
  const std::vector<int>& hosts = transport_.hosts();
  for (auto& s : io.sends) {
    if (traffic_) {
      ++traffic_->messages;
      traffic_->bytes += s.data->size();
      if (several_hosts && hosts[size_t(s.peer)] != hosts[size_t(rank())]) traffic_->off_host_bytes += s.data->size();
    }
    sends_.push_back(transport_.isend(s.peer, tag(false), std::move(s.data)));
  }
  recvs_.clear();
  received_.assign(io.recvs.size(), Received{});
  for (size_t i = 0; i < io.recvs.size(); ++i) {
    received_[i].peer = io.recvs[i];
    recvs_.push_back(transport_.irecv(io.recvs[i], tag(false)));
  }
  awaits_ = std::move(io.awaits);
  if (traffic_) {
    traffic_->messages += io.awaited_messages;
    traffic_->bytes += io.awaited_bytes;
    if (several_hosts) traffic_->off_host_bytes += io.awaited_bytes;  // the transport's own: where to, unknown
    // A transport's own collective receives about what it sends.
    traffic_->messages_received += io.awaited_messages;
    traffic_->bytes_received += io.awaited_bytes;
  }
  pending_recvs_ = io.recvs.size() + awaits_.size();
  round_posted_ = true;
}

bool Operation::step() {
  if (!started_) {
    if (!ready()) return false;
    started_ = true;
    if (size() > 1) abort_notice_ = transport_.irecv(kAnyPeer, tag(true));
    if (rounds() + barrier_rounds() > 0xFFFF) fail(SPARCL_ERR_UNSUPPORTED, "too many steps for one collective");
  }
  if (check_abort_notice()) return true;
  bool moved = false;
  for (auto& s : sends_)
    if (s && s->test()) {
      s.reset();
      moved = true;
    }
  if (round_ < rounds() + barrier_rounds()) {
    if (!round_posted_) {
      start_round();
      moved = true;
    }
    for (size_t i = 0; i < recvs_.size(); ++i) {
      if (!recvs_[i] || !recvs_[i]->test()) continue;
      Received& r = received_[i];
      r.buffer = std::make_shared<Buffer>(recvs_[i]->take());
      recvs_[i].reset();
      if (traffic_) {
        ++traffic_->messages_received;
        traffic_->bytes_received += r.buffer->size();
      }
      --pending_recvs_;
      moved = true;
      // With checksums, corruption is reported as such before any field is trusted.
      if (id_.checksum) verify_checksum(*r.buffer, r.peer);
      r.header = read_header(*r.buffer);
      if (r.header.flags & kFlagAbort)
        fail(SPARCL_ERR_CORRUPT, "abort notice with a data tag from rank " + std::to_string(r.peer));
      check_identity(r.header, round_ < rounds() ? round_identity(round_) : id_, uint16_t(round_), r.peer);
      if (round_ >= rounds()) check_ack(*r.buffer, r.header, r.peer);
    }
    for (auto& a : awaits_) {
      if (!a || !a->test()) continue;
      a.reset();
      --pending_recvs_;
      moved = true;
    }
    if (pending_recvs_ == 0) {
      if (round_ < rounds()) consume(round_, received_);
      received_.clear();
      awaits_.clear();
      ++round_;
      round_posted_ = false;
      moved = true;
    }
    return moved;
  }
  for (auto& s : sends_)
    if (s) return moved;  // wait for our sends before declaring the collective done
  sends_.clear();
  finish();
  state_ = State::Succeeded;
  abort_notice_.reset();
  return true;
}

}  // namespace sparcl
