// SPDX-License-Identifier: BSD-3-Clause
#include "mpi_transport.hpp"

#include <sched.h>

#include <chrono>
#include <climits>
#include <cstring>
#include <mutex>
#include <string>

namespace sparcl {

using Clock = std::chrono::steady_clock;

bool wait_until(MPI_Request& request, Clock::time_point deadline) {
  // MPI_Test of MPI_REQUEST_NULL sets done, but SimGrid's SMPI (3.32) leaves it unset.
  if (request == MPI_REQUEST_NULL) return true;
  for (;;) {
    int done = 0;
    if (MPI_Test(&request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) fail(SPARCL_ERR_TRANSPORT, "MPI_Test failed");
    if (done) return true;
    if (Clock::now() > deadline) return false;
    sched_yield();  // ranks may share cores
  }
}

void keep_forever(std::shared_ptr<const void> what) {
  static std::mutex mutex;
  static auto* kept = new std::vector<std::shared_ptr<const void>>;  // never destroyed: MPI may outlive static destructors
  std::lock_guard<std::mutex> lock(mutex);
  kept->push_back(std::move(what));
}

int probe_message(int source, int tag, MPI_Comm comm, int& found, Probed& probed) {
  MPI_Status st;
#if SPARCL_SMPI
  int rc = MPI_Iprobe(source, tag, comm, &found, &st);
  if (rc != MPI_SUCCESS || !found) return rc;
  int bytes = 0;
  rc = MPI_Get_count(&st, MPI_BYTE, &bytes);
#else
  int rc = MPI_Improbe(source, tag, comm, &found, &probed.msg, &st);
  if (rc != MPI_SUCCESS || !found) return rc;
  MPI_Count bytes = 0;
  rc = MPI_Get_elements_x(&st, MPI_BYTE, &bytes);
#endif
  probed.source = st.MPI_SOURCE;
  probed.tag = st.MPI_TAG;
  probed.bytes = size_t(bytes);
  return rc;
}

int receive_message(void* buf, int count, MPI_Datatype type, Probed& probed, MPI_Comm comm, MPI_Request* request) {
#if SPARCL_SMPI
  return MPI_Irecv(buf, count, type, probed.source, probed.tag, comm, request);
#else
  (void)comm;
  return MPI_Imrecv(buf, count, type, &probed.msg, request);
#endif
}

void drop_message(Probed& probed, MPI_Comm comm) {
  // Received into one small buffer, over and over: a datatype of blocks
  // that all start at its address. It is not contiguous, so MPI unpacks
  // block by block (a truncated receive into a small buffer is no way out:
  // Open MPI's single-copy path then reads the whole message into it).
  constexpr size_t kSinkBytes = size_t(64) << 10;
  thread_local uint8_t sink[kSinkBytes];
  const size_t bytes = probed.bytes;
  const size_t blocks = (bytes + kSinkBytes - 1) / kSinkBytes;
  const auto receive = [&](int count, MPI_Datatype type) {
    MPI_Request request;
    if (receive_message(sink, count, type, probed, comm, &request) == MPI_SUCCESS)
      MPI_Wait(&request, MPI_STATUS_IGNORE);
  };
  if (blocks <= 1 || blocks > size_t(INT_MAX)) {
    receive(int(bytes < kSinkBytes ? bytes : kSinkBytes), MPI_BYTE);
    return;
  }
  MPI_Datatype overlay;
  if (MPI_Type_create_hvector(int(blocks), int(kSinkBytes), 0, MPI_BYTE, &overlay) != MPI_SUCCESS ||
      MPI_Type_commit(&overlay) != MPI_SUCCESS) {
    receive(0, MPI_BYTE);  // truncated: the last resort
    return;
  }
  receive(1, overlay);
  MPI_Type_free(&overlay);
}

namespace {


// An MPI datatype covering n bytes with a count that fits in int.
struct ByteSpan {
  MPI_Datatype type = MPI_BYTE;
  int count = 0;
  bool owned = false;
};

ByteSpan byte_span(size_t n) {
  if (n <= size_t(INT_MAX)) return {MPI_BYTE, int(n), false};
  const size_t chunk = size_t(1) << 30;
  MPI_Datatype chunk_type, chunks, span;
  MPI_Type_contiguous(int(chunk), MPI_BYTE, &chunk_type);
  MPI_Type_contiguous(int(n / chunk), chunk_type, &chunks);
  int lengths[2] = {1, int(n % chunk)};
  MPI_Aint displacements[2] = {0, MPI_Aint(n - n % chunk)};
  MPI_Datatype types[2] = {chunks, MPI_BYTE};
  MPI_Type_create_struct(2, lengths, displacements, types, &span);
  MPI_Type_commit(&span);
  MPI_Type_free(&chunks);
  MPI_Type_free(&chunk_type);
  return {span, 1, true};
}

void release(ByteSpan& s) {
  if (s.owned) MPI_Type_free(&s.type);
}

class MpiSend final : public Request {
 public:
  MpiSend(MpiTransport& t, MPI_Request r, SharedBuffer b) : t_(t), req_(r), buf_(std::move(b)) {}
  ~MpiSend() override {
    if (req_ != MPI_REQUEST_NULL) t_.adopt({req_, std::move(buf_)});
  }
  bool test() override {
    if (req_ == MPI_REQUEST_NULL) return true;
    int done = 0;
    t_.check(MPI_Test(&req_, &done, MPI_STATUS_IGNORE), "MPI_Test of a send");
    if (done) buf_.reset();
    return done;
  }

 private:
  MpiTransport& t_;
  MPI_Request req_;
  SharedBuffer buf_;
};

class MpiRecv final : public RecvRequest {
 public:
  MpiRecv(MpiTransport& t, int peer, int tag) : t_(t), peer_(peer), tag_(tag) { t_.probe_order().post(key(), this); }
  ~MpiRecv() override {
    if (!buf_) t_.probe_order().leave(key(), this);
    if (req_ != MPI_REQUEST_NULL) t_.adopt({req_, std::move(buf_)});
  }
  bool test() override {
    if (done_) return true;
    if (!buf_) {
      if (!t_.probe_order().may_probe(key(), this)) return false;
      int found = 0;
      Probed msg;
      t_.check(probe_message(peer_ == kAnyPeer ? MPI_ANY_SOURCE : peer_, tag_, t_.comm(), found, msg),
               "probing (MPI_Improbe)");
      if (!found) return false;
      t_.probe_order().leave(key(), this);
      source_ = msg.source;
      try {
        buf_ = std::make_shared<Buffer>(msg.bytes);
      } catch (...) {
        drop_message(msg, t_.comm());  // matched: it must be received, or its sender waits forever
        throw;
      }
      ByteSpan span = byte_span(msg.bytes);
      const int rc = receive_message(buf_->data(), span.count, span.type, msg, t_.comm(), &req_);
      release(span);
      t_.check(rc, "MPI_Imrecv");
#if SPARCL_SMPI
      // SimGrid 3.32 keeps every communication that MPI_Test completes in
      // its rank's std::list of activities (ActorImpl::activities_) until the
      // rank exits: only a wait takes it out (CommImpl::finish). Each later
      // wait of the rank, and each computation burst that SMPI charges (one
      // before every MPI call with smpi/cpu-threshold:0, polls included),
      // walks that list (std::list::remove), so the simulation grew
      // quadratic in the number of receives (3.34 made the list a std::set).
      // The receive is waited for instead: it cannot deadlock, since the
      // send that the probe found is matched, in flight, and SimGrid
      // completes it whatever the sender does; the rank blocks only for the
      // transfer, which it would otherwise have spent polling. (A send of at
      // least smpi/send-is-detached-thresh bytes, 64 KiB by default, is not
      // detached, and one completed by MPI_Test still stays in the list:
      // waiting for a send could deadlock.)
      t_.check(MPI_Wait(&req_, MPI_STATUS_IGNORE), "MPI_Wait of a receive");
      done_ = true;
      return true;
#endif
    }
    int done = 0;
    t_.check(MPI_Test(&req_, &done, MPI_STATUS_IGNORE), "MPI_Test of a receive");
    done_ = done;
    return done_;
  }
  Buffer take() override { return std::move(*buf_); }
  int source() const override { return source_; }

 private:
  ProbeOrder::Key key() const { return {peer_, uint64_t(tag_)}; }
  MpiTransport& t_;
  int peer_, tag_;
  int source_ = -1;
  bool done_ = false;
  MPI_Request req_ = MPI_REQUEST_NULL;
  SharedBuffer buf_;
};

// MPI_Iallreduce's request.
class MpiCollective final : public Request {
 public:
  MpiCollective(MpiTransport& t, MPI_Request r, std::shared_ptr<const void> keep)
      : t_(t), req_(r), keep_(std::move(keep)) {}
  ~MpiCollective() override {
    if (req_ != MPI_REQUEST_NULL) t_.adopt_collective({req_, std::move(keep_)});
  }
  bool test() override {
    if (req_ == MPI_REQUEST_NULL) return true;
    int done = 0;
    t_.check(MPI_Test(&req_, &done, MPI_STATUS_IGNORE), "MPI_Test of MPI_Iallreduce");
    if (done) keep_.reset();
    return done;
  }

 private:
  MpiTransport& t_;
  MPI_Request req_;
  std::shared_ptr<const void> keep_;
};

}  // namespace

MpiTransport::MpiTransport(std::shared_ptr<OwnedComm> comm, int64_t timeout_ms)
    : owner_(std::move(comm)), comm_(owner_->comm), timeout_ms_(timeout_ms) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  int* tag_ub = nullptr;
  int flag = 0;
  MPI_Comm_get_attr(comm_, MPI_TAG_UB, &tag_ub, &flag);
  const long ub = flag ? *tag_ub : 32767;
  // One bit tells abort notices apart; the rest holds the low bits of seq.
  while (seq_bits_ < 30 && (1L << (seq_bits_ + 2)) - 1 <= ub) ++seq_bits_;
  if (seq_bits_ < 8) fail(SPARCL_ERR_UNSUPPORTED, "MPI_TAG_UB of this MPI is too small for sparcl");
  check(MPI_Comm_dup(comm_, &native_comm_), "MPI_Comm_dup");
  // MPI's errors become sparcl's (SPARCL_ERR_TRANSPORT), never an abort.
  MPI_Comm_set_errhandler(native_comm_, MPI_ERRORS_RETURN);
}

MpiTransport::~MpiTransport() {
  // Give dropped requests a moment to finish (unless aborted: their peer may
  // be dead), then cancel what is left.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(aborted_ ? 0 : 1);
  while (!(orphans_.empty() && collective_orphans_.empty()) && std::chrono::steady_clock::now() < deadline)
    progress();
  for (auto& o : orphans_) {
    MPI_Cancel(&o.request);
    MPI_Request_free(&o.request);
    keep_forever(std::move(o.buffer));  // MPI may still write into it: never free it
  }
  // A collective that a peer never joined cannot be cancelled or freed.
  for (auto& o : collective_orphans_) keep_forever(std::move(o.keep));
  if (native_comm_ != MPI_COMM_NULL) MPI_Comm_free(&native_comm_);
}

int MpiTransport::mpi_tag(const Tag& tag) const {
  const uint64_t seq = tag.seq & ((uint64_t(1) << seq_bits_) - 1);
  return int((seq << 1) | (tag.abort ? 1 : 0));
}

void MpiTransport::check(int mpi_error, const char* what) const {
  if (mpi_error == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(mpi_error, text, &len);
  fail(SPARCL_ERR_TRANSPORT, std::string(what) + " failed: " + std::string(text, size_t(len)));
}

std::unique_ptr<Request> MpiTransport::isend(int peer, const Tag& tag, SharedBuffer data) {
  MPI_Request req;
  ByteSpan span = byte_span(data->size());
  const int rc = MPI_Isend(data->data(), span.count, span.type, peer, mpi_tag(tag), comm_, &req);
  release(span);
  check(rc, "MPI_Isend");
  return std::make_unique<MpiSend>(*this, req, std::move(data));
}

std::unique_ptr<RecvRequest> MpiTransport::irecv(int peer, const Tag& tag) {
  return std::make_unique<MpiRecv>(*this, peer, mpi_tag(tag));
}

void MpiTransport::discard_unexpected() {
  for (;;) {
    int found = 0;
    Probed msg;
    if (probe_message(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, found, msg) != MPI_SUCCESS || !found) return;
    drop_message(msg, comm_);
  }
}

void MpiTransport::close() {
  // Messages of collectives that failed may still be queued here or on the
  // way. Open MPI reuses the context of a freed communicator, so anything
  // left would surface in a later one: receive and drop it all, until every
  // rank's own sends have completed (the barrier), then once more.
  const auto deadline = deadline_after(timeout_ms_);
  while (!orphans_.empty() && Clock::now() < deadline) {
    discard_unexpected();
    progress();
  }
  MPI_Request barrier = MPI_REQUEST_NULL;
  if (MPI_Ibarrier(comm_, &barrier) != MPI_SUCCESS) return;
  int done = 0;
  while (!done && Clock::now() <= deadline) {
    discard_unexpected();
    progress();
    MPI_Test(&barrier, &done, MPI_STATUS_IGNORE);
    if (!done) sched_yield();
  }
  if (!done) {
    keep_forever(owner_);  // the barrier stays pending on comm_
    fail(SPARCL_ERR_TIMEOUT, "sparcl_comm_free: not every rank freed the communicator within " +
                                 std::to_string(timeout_ms_) + " ms (SPARCL_TIMEOUT_MS)");
  }
  discard_unexpected();
}

namespace {
// Tests every request of `orphans` and drops those that completed.
template <class T>
void test_orphans(std::vector<T>& orphans) {
  for (size_t i = 0; i < orphans.size();) {
    int done = 0;
    MPI_Test(&orphans[i].request, &done, MPI_STATUS_IGNORE);
    if (done) {
      orphans[i] = std::move(orphans.back());
      orphans.pop_back();
    } else {
      ++i;
    }
  }
}
}  // namespace

void MpiTransport::progress() {
  test_orphans(orphans_);
  test_orphans(collective_orphans_);
}

bool MpiTransport::has_native_iallreduce(uint64_t count) const {
#if SPARCL_SMPI
  // SimGrid's SMPI (3.32) runs MPI_Iallreduce as a linear exchange (every
  // rank sends its whole vector to every other): 30x slower than its
  // MPI_Allreduce at 16 ranks, and too slow to simulate at 64. The dense
  // algorithm runs sparcl's own dense ring there instead.
  (void)count;
  return false;
#else
  return count <= uint64_t(INT_MAX);
#endif
}

std::unique_ptr<Request> MpiTransport::native_iallreduce(const void* send, void* recv, size_t count,
                                                         sparcl_datatype_t type, sparcl_op_t op,
                                                         std::shared_ptr<const void> keep) {
  if (!has_native_iallreduce(count)) fail(SPARCL_ERR_UNSUPPORTED, "count too large for MPI_Iallreduce");
  MPI_Datatype t;
  switch (type) {
    case SPARCL_FLOAT32: t = MPI_FLOAT; break;
    case SPARCL_FLOAT64: t = MPI_DOUBLE; break;
    case SPARCL_INT32: t = MPI_INT32_T; break;
    case SPARCL_INT64: t = MPI_INT64_T; break;
    default: fail(SPARCL_ERR_INVALID_ARG, "unknown datatype");
  }
  MPI_Op o;
  switch (op) {
    case SPARCL_SUM: o = MPI_SUM; break;
    case SPARCL_PROD: o = MPI_PROD; break;
    case SPARCL_MAX: o = MPI_MAX; break;
    case SPARCL_MIN: o = MPI_MIN; break;
    default: fail(SPARCL_ERR_INVALID_ARG, "unknown reduction op");
  }
  MPI_Request req;
  check(MPI_Iallreduce(send, recv, int(count), t, o, native_comm_, &req), "MPI_Iallreduce");
  return std::make_unique<MpiCollective>(*this, req, std::move(keep));
}

}  // namespace sparcl
