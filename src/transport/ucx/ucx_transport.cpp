// SPDX-License-Identifier: BSD-3-Clause
#include "ucx_transport.hpp"

#include <sched.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

namespace sparcl {

namespace {

using Clock = std::chrono::steady_clock;

// connect(): how long to wait for every peer's first message. Endpoints are
// wired up there, so that later small sends complete at once (an abort notice
// must leave even when its sender then stops calling sparcl for a while).
constexpr std::chrono::milliseconds kConnectLimit{30000};
// close(): the barrier that tells that every rank has arrived; then dropped
// requests finishing and a barrier after that; then the graceful closes of
// the endpoints. Each is bounded, so that a rank that never comes costs
// seconds, not a hang.
constexpr std::chrono::milliseconds kBarrierLimit{5000};
constexpr std::chrono::milliseconds kDrainLimit{2000};
constexpr std::chrono::milliseconds kEndpointCloseLimit{2000};
// sparcl_comm_abort: how long endpoints without PEER error handling may flush.
constexpr std::chrono::milliseconds kAbortCloseLimit{500};
// The destructor without close() (a failed connect): dropped requests get a moment.
constexpr std::chrono::milliseconds kOrphanLimit{1000};
// The `round` of a control message (in the seq bits of its tag).
constexpr uint64_t kConnectRound = 1;
constexpr uint64_t kArrivedRound = 2;
constexpr uint64_t kDrainedRound = 3;
// Tag and mask that match every data message and abort notice (kinds 0 and
// 1: the kind's high bit clear), and every control message.
constexpr uint64_t kKindMask = ~(ucx_tag::kSourceMask | ucx_tag::kSeqMask);
constexpr ucp_tag_t kCollectiveTags = 0;
constexpr ucp_tag_t kCollectiveMask = uint64_t(1) << 63;
constexpr ucp_tag_t kControlTags = ucx_tag::make(ucx_tag::kControl, 0, 0);
static_assert((ucx_tag::make(ucx_tag::kAbort, 0, 0) & kCollectiveMask) == 0 && (kControlTags & kCollectiveMask) != 0,
              "kCollectiveMask tells collectives' messages from control messages");

std::string status_text(ucs_status_t status) { return ucs_status_string(status); }

[[noreturn]] void fail_ucx(ucs_status_t status, const std::string& what) {
  fail(SPARCL_ERR_TRANSPORT, "UCX: " + what + " failed: " + status_text(status));
}

// Statuses with which UCX ends requests to a peer that is gone.
bool is_peer_loss(ucs_status_t status) {
  return status == UCS_ERR_CONNECTION_RESET || status == UCS_ERR_ENDPOINT_TIMEOUT || status == UCS_ERR_UNREACHABLE;
}

// True if UCX_TLS lets UCX use its shared-memory transports (unset, "all",
// an exclusion list "^...", or a list naming sm, posix or sysv).
bool may_use_shared_memory() {
  const char* v = std::getenv("UCX_TLS");
  if (!v || !*v || *v == '^') return true;
  const std::string tls = std::string(",") + v + ",";
  for (const char* name : {",all,", ",sm,", ",shm,", ",posix,", ",sysv,"})
    if (tls.find(name) != std::string::npos) return true;
  return false;
}

// SPARCL_UCX_ERROR_HANDLING: "peer" (default) or "none".
bool peer_error_handling() {
  const char* v = std::getenv("SPARCL_UCX_ERROR_HANDLING");
  if (!v || !*v || std::strcmp(v, "peer") == 0) return true;
  if (std::strcmp(v, "none") == 0) return false;
  fail(SPARCL_ERR_INVALID_ARG, std::string("SPARCL_UCX_ERROR_HANDLING: '") + v + "' is not 'peer' or 'none'");
}

// The UCX settings that decide what it can use, for error messages.
std::string ucx_settings() {
  std::string s = std::string("UCX ") + ucp_get_version_string();
  for (const char* name : {"UCX_TLS", "UCX_NET_DEVICES"}) {
    const char* value = std::getenv(name);
    s += std::string(", ") + name + "=" + (value ? value : "(unset)");
  }
  return s;
}

// Every operation's parameters: host memory (saves UCX the lookup), no
// callback (requests are polled with ucp_request_check_status).
ucp_request_param_t host_param() {
  ucp_request_param_t p;
  std::memset(&p, 0, sizeof p);
  p.op_attr_mask = UCP_OP_ATTR_FIELD_MEMORY_TYPE;
  p.memory_type = UCS_MEMORY_TYPE_HOST;
  return p;
}

class UcxSend final : public Request {
 public:
  UcxSend(UcxTransport& t, void* request, SharedBuffer buffer, int peer)
      : t_(t), req_(request), buf_(request ? std::move(buffer) : nullptr), peer_(peer), bytes_(0) {
    if (req_) bytes_ = buf_->size();
  }
  ~UcxSend() override {
    if (req_) t_.adopt({req_, std::move(buf_)});
  }
  bool test() override {
    if (!req_) return true;
    const ucs_status_t status = ucp_request_check_status(req_);
    if (status == UCS_INPROGRESS) return false;
    ucp_request_free(req_);
    req_ = nullptr;
    buf_.reset();
    if (status != UCS_OK) t_.fail_request(peer_, status, "sending " + std::to_string(bytes_) + " bytes to");
    return true;
  }

 private:
  UcxTransport& t_;
  void* req_;
  SharedBuffer buf_;
  int peer_;
  size_t bytes_;
};

class UcxRecv final : public RecvRequest {
 public:
  UcxRecv(UcxTransport& t, int peer, ucp_tag_t tag, ucp_tag_t mask) : t_(t), peer_(peer), tag_(tag), mask_(mask) {
    t_.probe_order().post(key(), this);
  }
  ~UcxRecv() override {
    // Not matched yet: nothing was posted to UCX, so there is nothing to withdraw.
    if (!matched_) t_.probe_order().leave(key(), this);
    if (req_) t_.adopt({req_, std::move(buf_)});
  }
  bool test() override {
    if (done_) return true;
    if (error_) throw *error_;
    if (!matched_) {
      if (!t_.probe_order().may_probe(key(), this)) return false;
      ucp_tag_recv_info_t info;
      std::memset(&info, 0, sizeof info);
      ucp_tag_message_h message = ucp_tag_probe_nb(t_.worker(), tag_, mask_, /*remove=*/1, &info);
      if (!message) {
        // What a dead peer sent before it died is still received; then its receives fail.
        if (peer_ != kAnyPeer) t_.check_alive(peer_, "receiving from");
        return false;
      }
      matched_ = true;
      t_.probe_order().leave(key(), this);
      source_ = ucx_tag::source_of(info.sender_tag);
      bytes_ = info.length;
      try {
        req_ = t_.receive_probed(message, info.length, source_, buf_);
      } catch (const Error& e) {
        error_ = e;
        throw;
      }
      if (!req_) {
        done_ = true;
        return true;
      }
    }
    const ucs_status_t status = ucp_request_check_status(req_);
    if (status == UCS_INPROGRESS) return false;
    ucp_request_free(req_);
    req_ = nullptr;
    if (status != UCS_OK) {
      try {
        t_.fail_request(source_, status, "receiving " + std::to_string(bytes_) + " bytes from");
      } catch (const Error& e) {
        error_ = e;
        throw;
      }
    }
    done_ = true;
    return true;
  }
  Buffer take() override { return std::move(*buf_); }
  int source() const override { return source_; }

 private:
  ProbeOrder::Key key() const { return {peer_, tag_}; }
  UcxTransport& t_;
  int peer_;
  ucp_tag_t tag_, mask_;
  bool matched_ = false, done_ = false;
  int source_ = -1;
  size_t bytes_ = 0;
  void* req_ = nullptr;
  SharedBuffer buf_;
  std::optional<Error> error_;
};

// A worker before it knows its peers.
class UcxEndpoint final : public Endpoint {
 public:
  UcxEndpoint() : peer_errors_(peer_error_handling()) {
    // UCX 1.13 offers its shared-memory transports (posix, sysv) to endpoints
    // with PEER error handling only when these are set, and they can be set
    // only through the environment (ucp_config_modify rejects them). A value
    // the user set is kept. cma has no such support: with PEER error
    // handling, large messages between ranks of one node go through posix or
    // sysv in copies (docs/transport-ucx.md).
    if (peer_errors_ && may_use_shared_memory()) {
      setenv("UCX_POSIX_ERROR_HANDLING", "y", 0);
      setenv("UCX_SYSV_ERROR_HANDLING", "y", 0);
    }
    ucp_config_t* config = nullptr;
    ucs_status_t status = ucp_config_read(nullptr, nullptr, &config);
    if (status != UCS_OK)
      fail(SPARCL_ERR_TRANSPORT, "UCX is not usable: reading its configuration (the UCX_* environment variables) "
                                 "failed: " + status_text(status) + " (" + ucx_settings() + ")");
    ucp_params_t params;
    std::memset(&params, 0, sizeof params);
    params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED | UCP_PARAM_FIELD_NAME;
    params.features = UCP_FEATURE_TAG;
    params.mt_workers_shared = 0;
    params.name = "sparcl";
    status = ucp_init(&params, config, &context_);
    ucp_config_release(config);
    if (status != UCS_OK) {
      context_ = nullptr;
      fail(SPARCL_ERR_TRANSPORT, "UCX is not usable: ucp_init failed: " + status_text(status) + " (" +
                                     ucx_settings() + "; `ucx_info -d` lists the transports and devices)");
    }
    ucp_worker_params_t wparams;
    std::memset(&wparams, 0, sizeof wparams);
    // The caller serializes calls on a communicator, possibly from different threads.
    wparams.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE | UCP_WORKER_PARAM_FIELD_NAME;
    wparams.thread_mode = UCS_THREAD_MODE_SERIALIZED;
    wparams.name = "sparcl";
    status = ucp_worker_create(context_, &wparams, &worker_);
    if (status != UCS_OK) {
      worker_ = nullptr;
      release();
      fail(SPARCL_ERR_TRANSPORT, "UCX is not usable: ucp_worker_create failed: " + status_text(status) + " (" +
                                     ucx_settings() + ")");
    }
    ucp_address_t* address = nullptr;
    size_t length = 0;
    status = ucp_worker_get_address(worker_, &address, &length);
    if (status != UCS_OK) {
      release();
      fail_ucx(status, "ucp_worker_get_address");
    }
    const auto* bytes = reinterpret_cast<const uint8_t*>(address);
    address_.assign(bytes, bytes + length);
    ucp_worker_release_address(worker_, address);
  }
  ~UcxEndpoint() override { release(); }
  UcxEndpoint(const UcxEndpoint&) = delete;
  UcxEndpoint& operator=(const UcxEndpoint&) = delete;

  std::vector<uint8_t> address() const override { return address_; }

  std::unique_ptr<Transport> connect(int rank, int size,
                                     const std::vector<std::vector<uint8_t>>& addresses) override {
    if (!worker_) fail(SPARCL_ERR_INTERNAL, "UCX endpoint connected twice");
    if (size < 1 || rank < 0 || rank >= size || addresses.size() != size_t(size))
      fail(SPARCL_ERR_INTERNAL, "UCX connect: bad rank, size or address list");
    if (size > ucx_tag::kMaxRanks)
      fail(SPARCL_ERR_UNSUPPORTED, "the UCX transport supports at most " + std::to_string(ucx_tag::kMaxRanks) +
                                       " ranks (the sender's rank is part of the tag)");
    // From here the transport owns the worker and the context.
    auto transport = std::make_unique<UcxTransport>(context_, worker_, rank, size, peer_errors_);
    context_ = nullptr;
    worker_ = nullptr;
    transport->connect(addresses);
    return transport;
  }

 private:
  void release() {
    if (worker_) ucp_worker_destroy(worker_);
    if (context_) ucp_cleanup(context_);
    worker_ = nullptr;
    context_ = nullptr;
  }

  bool peer_errors_;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::vector<uint8_t> address_;
};

}  // namespace

std::unique_ptr<Endpoint> open_ucx_endpoint(const Config& /*config*/) { return std::make_unique<UcxEndpoint>(); }

UcxTransport::UcxTransport(ucp_context_h context, ucp_worker_h worker, int rank, int size, bool peer_errors)
    : context_(context),
      worker_(worker),
      rank_(rank),
      size_(size),
      peer_errors_(peer_errors),
      failed_(size_t(size), UCS_OK) {
  links_.reserve(size_t(size));
  for (int peer = 0; peer < size; ++peer) links_.push_back(Link{this, peer});
}

UcxTransport::~UcxTransport() {
  try {
    // Dropped requests still have their endpoints unless close() ran: give them a moment.
    if (!closed_) {
      drain_orphans(kOrphanLimit);
      discard_unexpected(kCollectiveTags, kCollectiveMask);
      close_endpoints(kEndpointCloseLimit, false);
    }
    // Control messages of barriers this rank gave up on.
    discard_unexpected(kControlTags, kKindMask);
    reap_orphans();
    for (auto& o : orphans_) {
      ucp_request_cancel(worker_, o.request);
      ucp_request_free(o.request);  // released by UCX when the worker goes
    }
    // Closes that did not finish in time: the worker's destruction ends them.
    for (void* r : closing_) ucp_request_free(r);
  } catch (...) {
  }
  ucp_worker_destroy(worker_);
  ucp_cleanup(context_);
  // orphans_ (and the buffers UCX may have been using) go after UCX is gone.
}

void UcxTransport::connect(const std::vector<std::vector<uint8_t>>& addresses) {
  eps_.assign(size_t(size_), nullptr);
  for (int peer = 0; peer < size_; ++peer) {
    const auto& address = addresses[size_t(peer)];
    if (address.empty()) fail(SPARCL_ERR_TRANSPORT, "UCX: rank " + std::to_string(peer) + " sent no address");
    ucp_ep_params_t params;
    std::memset(&params, 0, sizeof params);
    // PEER error handling: a dead peer ends the requests to it with an error
    // and calls on_peer_error, instead of UCX aborting this process (which it
    // does with mode NONE when, for one, a cma read from a dead process
    // fails). The own rank cannot fail.
    params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    params.address = reinterpret_cast<const ucp_address_t*>(address.data());
    params.err_mode = UCP_ERR_HANDLING_MODE_NONE;
    if (peer_errors_ && peer != rank_) {
      params.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLER;
      params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
      params.err_handler.cb = on_peer_error;
      params.err_handler.arg = &links_[size_t(peer)];
    }
    const ucs_status_t status = ucp_ep_create(worker_, &params, &eps_[size_t(peer)]);
    if (status != UCS_OK) {
      eps_[size_t(peer)] = nullptr;
      const std::string hint = peer == rank_ ? "UCX_TLS must include a transport that reaches the own process, "
                                               "such as self"
                                             : std::string("every rank's UCX_TLS and UCX_NET_DEVICES must leave a "
                                                           "transport in common") +
                                                   (peer_errors_ ? " that can report a dead peer (not cma alone; or "
                                                                   "SPARCL_UCX_ERROR_HANDLING=none)"
                                                                 : "");
      fail(SPARCL_ERR_TRANSPORT, "UCX cannot reach rank " + std::to_string(peer) + ": ucp_ep_create failed: " +
                                     status_text(status) + " (" + ucx_settings() + "; " + hint + ")");
    }
  }
  const std::vector<int> missing = barrier(kConnectRound, kConnectLimit);
  if (!missing.empty()) {
    std::string who;
    for (size_t i = 0; i < missing.size() && i < 8; ++i) who += (i ? ", " : "") + std::to_string(missing[i]);
    if (missing.size() > 8) who += ", ...";
    fail(SPARCL_ERR_TRANSPORT, "UCX: no contact with rank(s) " + who + " within " +
                                   std::to_string(kConnectLimit.count() / 1000) + " s of connecting (" +
                                   ucx_settings() + ")");
  }
}

ucp_tag_t UcxTransport::tag_for(const Tag& tag, int source) const {
  return ucx_tag::make(tag.abort ? ucx_tag::kAbort : ucx_tag::kData, source, tag.seq);
}

void UcxTransport::on_peer_error(void* arg, ucp_ep_h ep, ucs_status_t status) {
  const Link& link = *static_cast<Link*>(arg);
  UcxTransport& t = *link.transport;
  if (size_t(link.peer) >= t.eps_.size() || t.eps_[size_t(link.peer)] != ep) return;
  t.failed_[size_t(link.peer)] = status == UCS_OK ? UCS_ERR_CONNECTION_RESET : status;
  t.failures_to_close_ = true;  // force-closed in progress(), outside UCX's callback
}

void UcxTransport::close_failed_endpoints() {
  failures_to_close_ = false;
  ucp_request_param_t param;
  std::memset(&param, 0, sizeof param);
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = UCP_EP_CLOSE_FLAG_FORCE;
  for (size_t peer = 0; peer < eps_.size(); ++peer) {
    if (failed_[peer] == UCS_OK || !eps_[peer]) continue;
    ucs_status_ptr_t r = ucp_ep_close_nbx(eps_[peer], &param);
    if (UCS_PTR_IS_PTR(r)) closing_.push_back(r);
    eps_[peer] = nullptr;
  }
}

void UcxTransport::check_alive(int peer, const char* what) const {
  if (peer < 0 || size_t(peer) >= failed_.size() || failed_[size_t(peer)] == UCS_OK) return;
  fail(SPARCL_ERR_PEER_FAILED, std::string("UCX: ") + what + " rank " + std::to_string(peer) +
                                   ": UCX reports it dead (" + status_text(failed_[size_t(peer)]) + ")");
}

void UcxTransport::fail_request(int peer, ucs_status_t status, const std::string& what) const {
  check_alive(peer, what.c_str());
  fail(is_peer_loss(status) ? SPARCL_ERR_PEER_FAILED : SPARCL_ERR_TRANSPORT,
       "UCX: " + what + " rank " + std::to_string(peer) + " failed: " + status_text(status));
}

void UcxTransport::check_peer(int peer, const char* what) const {
  // (A dead peer's endpoint is closed, but what it sent before can still be received.)
  if (peer < 0 || peer >= size_ || eps_.size() != size_t(size_) ||
      (!eps_[size_t(peer)] && failed_[size_t(peer)] == UCS_OK))
    fail(SPARCL_ERR_INTERNAL, std::string("UCX: ") + what + " rank " + std::to_string(peer) + ", which is not connected");
}

std::unique_ptr<Request> UcxTransport::isend(int peer, const Tag& tag, SharedBuffer data) {
  check_alive(peer, "sending to");
  check_peer(peer, "send to");
  if (!data) fail(SPARCL_ERR_INTERNAL, "UCX: send without a buffer");
  const ucp_request_param_t param = host_param();
  ucs_status_ptr_t r = ucp_tag_send_nbx(eps_[size_t(peer)], data->data(), data->size(), tag_for(tag, rank_), &param);
  if (UCS_PTR_IS_ERR(r))
    fail_ucx(UCS_PTR_STATUS(r), "sending " + std::to_string(data->size()) + " bytes to rank " + std::to_string(peer));
  return std::make_unique<UcxSend>(*this, r, std::move(data), peer);
}

std::unique_ptr<RecvRequest> UcxTransport::irecv(int peer, const Tag& tag) {
  if (peer == kAnyPeer) return std::make_unique<UcxRecv>(*this, kAnyPeer, tag_for(tag, 0), ~ucx_tag::kSourceMask);
  check_peer(peer, "receive from");
  return std::make_unique<UcxRecv>(*this, peer, tag_for(tag, peer), ucx_tag::kFullMask);
}

void* UcxTransport::receive_probed(ucp_tag_message_h message, size_t length, int source, SharedBuffer& buffer) {
  const ucp_request_param_t param = host_param();
  SharedBuffer buf;
  try {
    if (source < 0 || source >= size_)
      fail(SPARCL_ERR_CORRUPT, "UCX: message from unknown rank " + std::to_string(source));
    buf = std::make_shared<Buffer>(length);
  } catch (...) {
    // The message is ours now: receive it into nothing (UCX completes it as
    // truncated) so that UCX releases it.
    static uint8_t sink;
    ucs_status_ptr_t r = ucp_tag_msg_recv_nbx(worker_, &sink, 0, message, &param);
    if (UCS_PTR_IS_PTR(r)) adopt({r, nullptr});
    throw;
  }
  ucs_status_ptr_t r = ucp_tag_msg_recv_nbx(worker_, buf->data(), length, message, &param);
  if (UCS_PTR_IS_ERR(r))
    fail_ucx(UCS_PTR_STATUS(r), "receiving " + std::to_string(length) + " bytes from rank " + std::to_string(source));
  buffer = std::move(buf);
  return r;  // nullptr: already complete
}

void UcxTransport::progress() {
  for (int i = 0; i < 64 && ucp_worker_progress(worker_) != 0; ++i) {
  }
  if (failures_to_close_) close_failed_endpoints();
  if (!orphans_.empty()) reap_orphans();
  if (!closing_.empty()) reap_closing();
}

void UcxTransport::reap_orphans() {
  for (size_t i = 0; i < orphans_.size();) {
    if (ucp_request_check_status(orphans_[i].request) != UCS_INPROGRESS) {
      ucp_request_free(orphans_[i].request);
      orphans_[i] = std::move(orphans_.back());
      orphans_.pop_back();
    } else {
      ++i;
    }
  }
}

void UcxTransport::close() {
  if (closed_) return;
  closed_ = true;
  try {
    // 1. Every peer has entered close() once we have its message: all
    //    collectives are over everywhere, and every message a peer sent before
    //    is in our unexpected queue (it travelled ahead of the barrier message).
    const bool all_arrived = barrier(kArrivedRound, kBarrierLimit).empty();
    // 2. The data and abort notices left there belong to failed collectives:
    //    drop them. For a rendezvous message that tells the sender, whose
    //    dropped send completes. (Control messages stay: a faster peer's
    //    message of the next barrier may be there already.) Also when a peer
    //    is missing (dead, most likely): the others' sends wait for this.
    discard_unexpected(kCollectiveTags, kCollectiveMask);
    if (all_arrived) {
      // 3. Let dropped requests finish (they may need a peer's progress, and
      //    every peer progresses until all have passed this point).
      drain_orphans(kDrainLimit);
      barrier(kDrainedRound, kDrainLimit);
    }
    // 4. Nobody needs the endpoints now, or a peer never came: then they are
    //    closed at once (PEER error handling), which ends what is still on
    //    them; UCX must not find a request on an endpoint it destroys.
    close_endpoints(kEndpointCloseLimit, !all_arrived);
    drain_orphans(kAbortCloseLimit);
  } catch (...) {
  }
}

void UcxTransport::adopt(Orphan orphan) {
  orphans_.push_back(std::move(orphan));
  progress();
}

// Sends a small control message to every peer and waits for theirs and for
// its own to leave. Bounded: gives up after `limit` on peers that never come.
std::vector<int> UcxTransport::barrier(uint64_t round, std::chrono::milliseconds limit) {
  std::vector<int> missing;
  if (size_ == 1 || eps_.empty()) return missing;
  const auto deadline = Clock::now() + limit;
  auto note = std::make_shared<Buffer>(sizeof(int32_t));
  const int32_t me = rank_;
  std::memcpy(note->data(), &me, sizeof me);
  const ucp_request_param_t param = host_param();
  std::vector<bool> heard(size_t(size_), false);  // their message arrived
  std::vector<void*> sends(size_t(size_), nullptr);  // ours, until it has left
  heard[size_t(rank_)] = true;
  for (int peer = 0; peer < size_; ++peer) {
    if (peer == rank_ || !eps_[size_t(peer)]) continue;  // a dead peer stays missing
    ucs_status_ptr_t r = ucp_tag_send_nbx(eps_[size_t(peer)], note->data(), note->size(),
                                          ucx_tag::make(ucx_tag::kControl, rank_, round), &param);
    if (UCS_PTR_IS_PTR(r)) sends[size_t(peer)] = r;
  }
  while (true) {
    progress();
    bool done = true;
    for (int peer = 0; peer < size_; ++peer) {
      if (!heard[size_t(peer)]) {
        ucp_tag_recv_info_t info;
        ucp_tag_message_h message =
            ucp_tag_probe_nb(worker_, ucx_tag::make(ucx_tag::kControl, peer, round), ucx_tag::kFullMask, 1, &info);
        if (message) {
          heard[size_t(peer)] = true;
          SharedBuffer got;
          void* r = receive_probed(message, info.length, peer, got);
          if (r) adopt({r, std::move(got)});
        }
      }
      void*& send = sends[size_t(peer)];
      if (send && ucp_request_check_status(send) != UCS_INPROGRESS) {
        ucp_request_free(send);
        send = nullptr;
      }
      done = done && heard[size_t(peer)] && !send;
    }
    if (done || Clock::now() >= deadline) break;
    sched_yield();
  }
  for (int peer = 0; peer < size_; ++peer) {
    if (!heard[size_t(peer)] || sends[size_t(peer)]) missing.push_back(peer);
    // A send still going (a peer that never came) goes on as an orphan, with the note.
    if (sends[size_t(peer)]) adopt({sends[size_t(peer)], note});
  }
  return missing;
}

// Receives and drops the messages in the worker's unexpected queue that
// match `tag`/`mask`, so that UCX does not warn about each when the worker
// goes. Each is received into nothing: UCX completes it as truncated (a
// rendezvous message is not transferred; its sender is told, and its send
// completes).
void UcxTransport::discard_unexpected(ucp_tag_t tag, ucp_tag_t mask) {
  const ucp_request_param_t param = host_param();
  static uint8_t sink;
  ucp_tag_recv_info_t info;
  while (ucp_tag_message_h message = ucp_tag_probe_nb(worker_, tag, mask, 1, &info)) {
    ucs_status_ptr_t r = ucp_tag_msg_recv_nbx(worker_, &sink, 0, message, &param);
    if (UCS_PTR_IS_PTR(r)) adopt({r, nullptr});
  }
}

// Closes every endpoint, gracefully (flushing what is outstanding) or, with
// `force` and for the endpoints of dead peers, at once (only allowed with PEER
// error handling on both sides). Bounded by `limit`.
void UcxTransport::close_endpoints(std::chrono::milliseconds limit, bool force) {
  const auto deadline = Clock::now() + limit;
  for (size_t peer = 0; peer < eps_.size(); ++peer) {
    if (!eps_[peer]) continue;
    ucp_request_param_t param;
    std::memset(&param, 0, sizeof param);
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = (force && peer_errors_) || failed_[peer] != UCS_OK ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    ucs_status_ptr_t r = ucp_ep_close_nbx(eps_[peer], &param);
    if (UCS_PTR_IS_PTR(r)) closing_.push_back(r);
    eps_[peer] = nullptr;
  }
  while (!closing_.empty()) {
    ucp_worker_progress(worker_);
    reap_closing();
    if (closing_.empty() || Clock::now() >= deadline) break;
    sched_yield();
  }
  eps_.clear();
}

void UcxTransport::reap_closing() {
  for (size_t i = 0; i < closing_.size();) {
    if (ucp_request_check_status(closing_[i]) != UCS_INPROGRESS) {
      ucp_request_free(closing_[i]);
      closing_[i] = closing_.back();
      closing_.pop_back();
    } else {
      ++i;
    }
  }
}

void UcxTransport::abort() {
  if (closed_) return;
  closed_ = true;
  // No closing exchange. What peers sent is dropped; with PEER error
  // handling the endpoints are closed at once (which ends the sends still on
  // them), else flushed for a short while; then dropped requests get a
  // moment to end, so that none is left when the worker goes.
  try {
    discard_unexpected(kCollectiveTags, kCollectiveMask);
    discard_unexpected(kControlTags, kKindMask);
    close_endpoints(kAbortCloseLimit, true);
    drain_orphans(kAbortCloseLimit);
  } catch (...) {
  }
}

void UcxTransport::drain_orphans(std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!orphans_.empty() && Clock::now() < deadline) {
    progress();
    sched_yield();
  }
}

}  // namespace sparcl
