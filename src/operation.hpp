// SPDX-License-Identifier: BSD-3-Clause
// The progress engine's unit: a collective as a resumable state machine.
//
// An algorithm is a fixed schedule of rounds. In each round it posts sends
// (payloads built from what it holds now) and receives (from known peers);
// when all receives of the round have arrived, it consumes them, and the next
// round starts. The schedule depends only on the rank, the number of ranks
// and the round, never on data, so every rank walks the same rounds.
//
// advance() never blocks: it tests outstanding transfers and runs as many
// rounds as have their messages. With checksums on, the schedule ends with a
// dissemination barrier of empty messages (ceil(log2 P) rounds), so that a
// rank that finds a corrupt message in the last round of the algorithm
// fails every rank: none completes before all have passed their checks. A rank that fails (bad input, a message that
// fails validation, a timeout) sends an abort notice to every other rank; each
// operation listens for notices of its own sequence number, so a failure ends
// the collective on every rank instead of leaving peers waiting.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "transport/transport.hpp"
#include "wire.hpp"

namespace sparcl {

// A message received in a round, its header already checked against the
// collective's identity and step.
struct Received {
  int peer = -1;
  WireHeader header{};
  SharedBuffer buffer;
};

// The sends and receives an algorithm posts for one round, and transfers it
// started itself (a transport's own collective) that the round waits for.
class RoundIO {
 public:
  void send(int peer, SharedBuffer data) { sends.push_back({peer, std::move(data)}); }
  void recv(int peer) { recvs.push_back(peer); }
  // `messages` and `bytes`: what the transport's collective sends from this
  // rank, as far as sparcl can tell, for the traffic counters.
  void await(std::unique_ptr<Request> request, uint64_t messages, uint64_t bytes) {
    awaits.push_back(std::move(request));
    awaited_messages += messages;
    awaited_bytes += bytes;
  }

  struct Send {
    int peer;
    SharedBuffer data;
  };
  std::vector<Send> sends;
  std::vector<int> recvs;
  std::vector<std::unique_ptr<Request>> awaits;
  uint64_t awaited_messages = 0, awaited_bytes = 0;
};

// Traffic counters, kept per communicator.
struct Traffic {
  uint64_t messages = 0;
  uint64_t bytes = 0;
  uint64_t off_host_bytes = 0;  // of `bytes`, to ranks on other hosts (Transport::hosts())
  uint64_t messages_received = 0;
  uint64_t bytes_received = 0;
};

class Operation {
 public:
  Operation(Transport& transport, const Identity& id) : transport_(transport), id_(id) {}

  // Where this operation counts the messages it sends (optional).
  void count_traffic_in(Traffic* traffic) { traffic_ = traffic; }
  virtual ~Operation() = default;
  Operation(const Operation&) = delete;
  Operation& operator=(const Operation&) = delete;

  // Moves the operation forward without blocking. True once it has ended,
  // successfully or not.
  bool advance();

  // Ends the operation with an error and tells the other ranks.
  void abort(sparcl_status_t status, const std::string& message);

  bool done() const { return state_ != State::Running; }
  // How many times advance() found something to do (a message sent or
  // received, a round finished): the progress thread backs off while it stays
  // the same.
  uint64_t moves() const { return moves_; }
  sparcl_status_t status() const { return status_; }
  const std::string& message() const { return message_; }
  const Identity& identity() const { return id_; }

  // The schedule: what an algorithm defines, and what advance() executes.
  // Public so that one operation can run another's rounds inside its own
  // (auto runs the algorithm it chooses after rounds of its own).
  virtual int rounds() const = 0;
  virtual void post(int round, RoundIO& io) = 0;
  // Messages arrive in the order of the round's recv() calls.
  virtual void consume(int round, std::vector<Received>& messages) = 0;
  // Called once after the last round: produce the result.
  virtual void finish() = 0;
  // False while the operation waits for something outside it before its
  // first round (auto's choice waits for an earlier collective's outcome).
  // Nothing is posted until it returns true.
  virtual bool ready() { return true; }
  // Called once if the operation ends without success.
  virtual void failed() noexcept {}
  // Work of the operation's own that can be done while it waits for
  // messages (preparing an output buffer), a small piece per call: true if
  // it did some. advance() calls it at most once per call, when nothing
  // else moved.
  virtual bool idle_work() noexcept { return false; }

 protected:
  // The identity that the messages of `round` carry, checked on receipt:
  // the call's, unless the operation's own rounds travel otherwise (auto's
  // calibration and vote, in raw values whatever the call's encoding).
  virtual Identity round_identity(int round) const {
    (void)round;
    return id_;
  }

  int rank() const { return transport_.rank(); }
  int size() const { return transport_.size(); }

  Transport& transport_;
  Identity id_;

 private:
  enum class State { Running, Succeeded, Failed };
  bool step();  // one attempt to progress; true if anything changed
  void start_round();
  bool check_abort_notice();
  void end_with_failure();
  Tag tag(bool abort) const { return Tag{id_.comm_id, id_.seq, abort}; }
  int barrier_rounds() const;

  State state_ = State::Running;
  sparcl_status_t status_ = SPARCL_SUCCESS;
  std::string message_;
  bool started_ = false;
  int round_ = 0;
  bool round_posted_ = false;
  std::vector<std::unique_ptr<Request>> sends_;
  std::vector<std::unique_ptr<RecvRequest>> recvs_;
  std::vector<std::unique_ptr<Request>> awaits_;
  std::vector<Received> received_;
  size_t pending_recvs_ = 0;
  std::unique_ptr<RecvRequest> abort_notice_;
  Traffic* traffic_ = nullptr;
  uint64_t moves_ = 0;
};

// Tells every other rank that collective `id` failed on this rank. Used when a
// rank fails before it could start the operation (for example on bad input).
void send_abort_notices(Transport& transport, const Identity& id, sparcl_status_t status,
                        const std::string& message);

}  // namespace sparcl
