// SPDX-License-Identifier: BSD-3-Clause
// libsparcl_pmpi.so: sends an unmodified MPI program's large float SUM
// allreduces to sparcl's drop-in dense-buffer allreduce, through the MPI
// profiling interface (docs/pmpi.md).
//
//   mpirun -np 4 -x LD_PRELOAD=/path/to/libsparcl_pmpi.so ./app
//
// Only the public C API is used (sparcl.h, sparcl_mpi.h). What is decided
// here must come out the same on every rank, because the two paths are
// different collectives: it depends only on arguments MPI requires every
// rank to pass alike (op, datatype, count, communicator) and on settings
// mpirun hands to every rank (environment variables).
//
// Recursion: sparcl's MPI transport calls MPI_Allreduce, MPI_Iallreduce,
// MPI_Test and friends itself. Those calls go straight to PMPI_*: a
// thread-local flag is set around every sparcl call made from here, and for
// good on every thread started during one (sparcl's progress thread: see
// pthread_create below). A mark on sparcl's own MPI communicators (the
// attribute's copy callback puts it on every duplicate made while a sparcl
// communicator is being created, and on duplicates of marked ones) keeps
// them off the sparcl path whichever thread calls.
//
// Non-blocking calls: MPI_Iallreduce starts sparcl_iallreduce and returns a
// generalized request (MPI_Grequest_start). MPI itself never progresses
// sparcl, so every intercepted wait and test call (MPI_Wait*, MPI_Test*,
// MPI_Request_get_status), and every sparcl call, moves all pending sparcl
// allreduces forward and completes the generalized request of each one that
// has finished. A rank blocked in another MPI call (MPI_Recv, MPI_Barrier)
// does not progress them: see docs/pmpi.md for the limits and the ways out.
#include <mpi.h>

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "sparcl/sparcl.h"
#include "sparcl/sparcl_mpi.h"

namespace {

// Below this many elements (4 MiB of floats) sparcl's pass over the buffer
// for its nonzeros and its pass writing the whole output cost more than MPI's
// own allreduce saves, even at 1% density (bench/results/pmpi-threshold.txt,
// docs/pmpi.md).
constexpr long kDefaultMinCount = 1048576;

thread_local int t_inside = 0;  // > 0 while this thread runs a sparcl call made from here
struct Inside {
  Inside() { ++t_inside; }
  ~Inside() { --t_inside; }
  Inside(const Inside&) = delete;
  Inside& operator=(const Inside&) = delete;
};

// Attribute value on sparcl's own MPI communicators.
char g_internal_mark;

struct Settings {
  bool enabled = true;
  bool iallreduce = true;
  long min_count = kDefaultMinCount;
  int verbose = 0;
};

long env_long(const char* name, long fallback, long lowest) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  errno = 0;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (errno || *end || value < lowest) {
    std::fprintf(stderr, "sparcl-pmpi: ignoring %s=%s (an integer >= %ld is expected)\n", name, text, lowest);
    return fallback;
  }
  return value;
}

const Settings& settings() {
  static const Settings s = [] {
    Settings r;
    r.enabled = env_long("SPARCL_PMPI", 1, 0) != 0;
    r.iallreduce = env_long("SPARCL_PMPI_IALLREDUCE", 1, 0) != 0;
    r.min_count = env_long("SPARCL_PMPI_MIN_COUNT", kDefaultMinCount, 1);
    r.verbose = int(env_long("SPARCL_PMPI_VERBOSE", 0, 0));
    return r;
  }();
  return s;
}

// Why a call went where it went (the counters SPARCL_PMPI_VERBOSE prints).
enum Route {
  kSparcl,          // blocking, through sparcl_allreduce
  kSparclNonblock,  // through sparcl_iallreduce
  kPassOpType,      // not MPI_SUM on MPI_FLOAT/MPI_DOUBLE
  kPassSmall,       // count below SPARCL_PMPI_MIN_COUNT
  kPassComm,        // inter-communicator, single rank, no sparcl communicator, or disabled
  kRoutes
};
const char* const kRouteNames[kRoutes] = {"sparcl (blocking)", "sparcl (non-blocking)", "MPI: op or datatype",
                                          "MPI: below SPARCL_PMPI_MIN_COUNT", "MPI: communicator or disabled"};
std::atomic<uint64_t> g_calls[kRoutes];
std::atomic<uint64_t> g_bytes[kRoutes];

void tally(Route route, int n, MPI_Datatype type) {
  int size = 0;
  if (n > 0 && type != MPI_DATATYPE_NULL) PMPI_Type_size(type, &size);
  g_calls[route].fetch_add(1, std::memory_order_relaxed);
  g_bytes[route].fetch_add(uint64_t(n > 0 ? n : 0) * uint64_t(size > 0 ? size : 0), std::memory_order_relaxed);
}

// One per MPI communicator that reached the sparcl path once.
struct CommState {
  MPI_Comm comm = MPI_COMM_NULL;  // the application's handle
  sparcl_comm_t sparcl = nullptr; // null: this communicator passes everything to MPI
  std::mutex calls;               // sparcl's calls on one communicator are serialized (sparcl.h)
  std::atomic<bool> creating{false};
  sparcl_stats_t freed_stats{};   // counters of the sparcl communicator, read before freeing it
};

// A pending MPI_Iallreduce: the extra state of its generalized request.
struct Pending {
  CommState* state = nullptr;
  sparcl_request_t request = nullptr;
  MPI_Request mpi_request = MPI_REQUEST_NULL;
  int mpi_error = MPI_SUCCESS;
};

std::mutex g_mu;                       // guards what follows
int g_keyval = MPI_KEYVAL_INVALID;
std::vector<CommState*> g_comms;       // live states, in creation order (the same on every rank)
std::vector<Pending*> g_pending;       // started, not yet completed
std::atomic<int> g_pending_count{0};   // g_pending.size(), read without the lock
int g_error_class = -1;
int g_error_codes[16];                 // by -sparcl_status_t
bool g_error_codes_made[16];
sparcl_stats_t g_released_stats{};     // of sparcl communicators already freed
std::vector<std::string> g_released_lines;  // what each of them did (SPARCL_PMPI_VERBOSE)

int world_rank() {
  int rank = 0;
  PMPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

bool mpi_active() {
  int initialized = 0, finalized = 0;
  PMPI_Initialized(&initialized);
  PMPI_Finalized(&finalized);
  return initialized && !finalized;
}

// The MPI error code of a sparcl status: codes of one error class of ours,
// one per status, whose string is the message of its latest failure.
int error_code(sparcl_status_t status, const std::string& message) {
  std::lock_guard<std::mutex> lock(g_mu);
  const int slot = -int(status);
  if (slot <= 0 || slot >= 16) return MPI_ERR_OTHER;
  if (g_error_class < 0 && PMPI_Add_error_class(&g_error_class) != MPI_SUCCESS) {
    g_error_class = -1;
    return MPI_ERR_OTHER;
  }
  if (!g_error_codes_made[slot]) {
    if (PMPI_Add_error_code(g_error_class, &g_error_codes[slot]) != MPI_SUCCESS) return MPI_ERR_OTHER;
    g_error_codes_made[slot] = true;
  }
  std::string text = message.substr(0, MPI_MAX_ERROR_STRING - 1);
  PMPI_Add_error_string(g_error_codes[slot], text.c_str());
  return g_error_codes[slot];
}

// Called with state.calls held, right after the failed sparcl call, so that
// the communicator's last error is that call's.
std::string failure_text(const char* call, sparcl_status_t status, sparcl_comm_t comm) {
  const char* detail = sparcl_comm_last_error(comm);
  std::string text = std::string("sparcl ") + call + ": " + sparcl_strerror(status);
  if (detail && *detail) text += std::string(": ") + detail;
  return text;
}

// Reports a failure as MPI would: an error code of our class, handed to the
// communicator's error handler (MPI_ERRORS_ARE_FATAL aborts with the text).
int raise_error(MPI_Comm comm, sparcl_status_t status, const std::string& text) {
  std::fprintf(stderr, "sparcl-pmpi: rank %d: %s\n", world_rank(), text.c_str());
  const int code = error_code(status, text);
  PMPI_Comm_call_errhandler(comm, code);
  return code;
}

// Completes the generalized request of a finished allreduce.
void finish(Pending* p, sparcl_status_t status, const std::string& text) {
  if (status != SPARCL_SUCCESS) {
    std::fprintf(stderr, "sparcl-pmpi: rank %d: %s\n", world_rank(), text.c_str());
    p->mpi_error = error_code(status, text);
  }
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_pending.erase(std::remove(g_pending.begin(), g_pending.end(), p), g_pending.end());
    g_pending_count.store(int(g_pending.size()));
  }
  PMPI_Grequest_complete(p->mpi_request);
}

// Tests (block = false) or waits for (block = true) one pending allreduce;
// true when it has completed.
bool advance(Pending* p, bool block) {
  CommState* s = p->state;
  std::unique_lock<std::mutex> lock(s->calls, std::defer_lock);
  if (block) {
    lock.lock();
  } else if (!lock.try_lock()) {
    return false;  // another thread is in a sparcl call on it, which progresses it
  }
  int done = 0;
  sparcl_status_t status;
  {
    Inside inside;
    if (block) {
      status = sparcl_wait(&p->request);
      done = 1;
    } else {
      status = sparcl_test(&p->request, &done);
    }
    if (status != SPARCL_SUCCESS && p->request) {  // an error that left the request behind
      sparcl_request_free(&p->request);
      done = 1;
    }
  }
  if (!done) return false;
  const std::string text = status == SPARCL_SUCCESS ? std::string() : failure_text("MPI_Iallreduce", status, s->sparcl);
  lock.unlock();
  finish(p, status, text);
  return true;
}

// Held by whoever advances pending allreduces. Only its holder finishes an
// entry, after which MPI may free it (free_request) once the application's
// wait returns: so an entry seen in g_pending under this lock stays valid
// until the lock is released.
std::mutex g_progress;

std::vector<Pending*> pending_snapshot(const CommState* only) {
  std::lock_guard<std::mutex> lock(g_mu);
  std::vector<Pending*> out;
  for (Pending* p : g_pending)
    if (!only || p->state == only) out.push_back(p);
  return out;
}

// Moves every pending sparcl allreduce forward once (nothing if another
// thread is doing so).
void progress_all() {
  if (t_inside || g_pending_count.load(std::memory_order_acquire) == 0) return;
  std::unique_lock<std::mutex> progress(g_progress, std::try_to_lock);
  if (!progress.owns_lock()) return;
  for (Pending* p : pending_snapshot(nullptr)) advance(p, false);
}

// Waits for every pending allreduce on `state` (all of them for null):
// before a communicator is freed, and at MPI_Finalize.
void complete_pending(const CommState* state) {
  std::lock_guard<std::mutex> progress(g_progress);
  for (Pending* p : pending_snapshot(state)) advance(p, true);
}

// Frees the sparcl communicator of `state` (collective, like the MPI call
// that leads here: MPI_Comm_free, MPI_Comm_disconnect, MPI_Finalize).
void release(CommState* s) {
  complete_pending(s);
  std::lock_guard<std::mutex> lock(s->calls);
  if (!s->sparcl) return;
  Inside inside;
  sparcl_stats_t stats{};
  sparcl_algorithm_t algorithm = SPARCL_ALGO_AUTO;
  sparcl_choice_t choice = SPARCL_CHOSEN_BY_CONFIG;
  int size = 0;
  if (sparcl_comm_stats(s->sparcl, &stats) == SPARCL_SUCCESS && sparcl_comm_last_algorithm(s->sparcl, &algorithm) == SPARCL_SUCCESS &&
      sparcl_comm_last_choice(s->sparcl, &choice) == SPARCL_SUCCESS && sparcl_comm_size(s->sparcl, &size) == SPARCL_SUCCESS) {
    static const char* const how[] = {"configured", "by the cost model", "as a trial", "by measurement"};
    const char* name = sparcl_algorithm_name(algorithm);
    char line[256];
    std::snprintf(line, sizeof line, "%d ranks, %llu collectives, %llu bytes sent, the last one %s (%s)", size,
                  static_cast<unsigned long long>(stats.collectives), static_cast<unsigned long long>(stats.bytes_sent),
                  name ? name : "?", unsigned(choice) < 4 ? how[choice] : "?");
    std::lock_guard<std::mutex> g(g_mu);
    g_released_stats.collectives += stats.collectives;
    g_released_stats.messages_sent += stats.messages_sent;
    g_released_stats.bytes_sent += stats.bytes_sent;
    if (stats.collectives) g_released_lines.push_back(line);
  }
  const sparcl_status_t status = sparcl_comm_free(s->sparcl);
  if (status != SPARCL_SUCCESS)
    std::fprintf(stderr, "sparcl-pmpi: rank %d: sparcl_comm_free: %s: %s\n", world_rank(), sparcl_strerror(status),
                 sparcl_comm_last_error(nullptr));
  s->sparcl = nullptr;
}

// Attribute callbacks. The copy callback marks the duplicates sparcl makes of
// a communicator while creating its own over it, and duplicates of those; a
// duplicate the application makes gets no attribute (it gets a sparcl
// communicator of its own on first use).
int copy_attr(MPI_Comm, int, void*, void* value_in, void* value_out, int* flag) {
  const bool internal =
      value_in == &g_internal_mark || static_cast<CommState*>(value_in)->creating.load(std::memory_order_acquire);
  *flag = internal ? 1 : 0;
  if (internal) *static_cast<void**>(value_out) = &g_internal_mark;
  return MPI_SUCCESS;
}

int delete_attr(MPI_Comm, int, void* value, void*) {
  if (value == &g_internal_mark) return MPI_SUCCESS;
  auto* s = static_cast<CommState*>(value);
  release(s);  // normally already done by the MPI_Comm_free wrapper, outside MPI's callback
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_comms.erase(std::remove(g_comms.begin(), g_comms.end(), s), g_comms.end());
  }
  delete s;
  return MPI_SUCCESS;
}

int keyval() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_keyval == MPI_KEYVAL_INVALID && PMPI_Comm_create_keyval(copy_attr, delete_attr, &g_keyval, nullptr) != MPI_SUCCESS)
    g_keyval = MPI_KEYVAL_INVALID;
  return g_keyval;
}

// The state of `comm` if it takes the sparcl path, else null. Creates the
// sparcl communicator on first use (collective, as the call that got here).
CommState* state_of(MPI_Comm comm) {
  if (comm == MPI_COMM_NULL) return nullptr;
  const int key = keyval();
  if (key == MPI_KEYVAL_INVALID) return nullptr;
  void* value = nullptr;
  int flag = 0;
  if (PMPI_Comm_get_attr(comm, key, &value, &flag) != MPI_SUCCESS) return nullptr;
  if (flag) {
    if (value == &g_internal_mark) return nullptr;
    auto* s = static_cast<CommState*>(value);
    return s->sparcl ? s : nullptr;
  }
  auto* s = new CommState;
  s->comm = comm;
  int inter = 0, size = 0;
  PMPI_Comm_test_inter(comm, &inter);
  PMPI_Comm_size(comm, &size);
  // Inter-communicators and single ranks keep a state without a sparcl
  // communicator: the decision is made once and remembered.
  if (!inter && size > 1) {
    s->creating.store(true, std::memory_order_release);
    if (PMPI_Comm_set_attr(comm, key, s) != MPI_SUCCESS) {
      delete s;
      return nullptr;
    }
    sparcl_status_t status;
    {
      Inside inside;
      status = sparcl_comm_create_mpi(comm, nullptr, &s->sparcl);
    }
    s->creating.store(false, std::memory_order_release);
    if (status != SPARCL_SUCCESS) {
      // Creation fails on every rank alike (sparcl reports a failure on one
      // rank to all), so every rank passes this communicator's calls to MPI.
      static std::atomic<bool> told{false};
      if (!told.exchange(true))
        std::fprintf(stderr,
                     "sparcl-pmpi: rank %d: no sparcl communicator (%s: %s); the allreduces of such "
                     "communicators go to MPI\n",
                     world_rank(), sparcl_strerror(status), sparcl_comm_last_error(nullptr));
      s->sparcl = nullptr;
    }
  } else if (PMPI_Comm_set_attr(comm, key, s) != MPI_SUCCESS) {
    delete s;
    return nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_comms.push_back(s);
  }
  return s->sparcl ? s : nullptr;
}

// The route of an allreduce, and its sparcl datatype.
Route route_of(const void* sendbuf, int count, MPI_Datatype datatype, MPI_Op op, MPI_Comm comm,
               sparcl_datatype_t* type, CommState** state) {
  *state = nullptr;
  if (!settings().enabled || t_inside) return kPassComm;
  if (op != MPI_SUM || (datatype != MPI_FLOAT && datatype != MPI_DOUBLE)) return kPassOpType;
  if (count < settings().min_count) return kPassSmall;
  if (sendbuf == nullptr || comm == MPI_COMM_NULL || !mpi_active()) return kPassComm;
  *type = datatype == MPI_FLOAT ? SPARCL_FLOAT32 : SPARCL_FLOAT64;
  *state = state_of(comm);
  return *state ? kSparcl : kPassComm;
}

const void* sparcl_send(const void* sendbuf) { return sendbuf == MPI_IN_PLACE ? SPARCL_IN_PLACE : sendbuf; }

// Generalized request callbacks of MPI_Iallreduce.
int query_request(void* extra, MPI_Status* status) {
  auto* p = static_cast<Pending*>(extra);
  PMPI_Status_set_elements(status, MPI_BYTE, 0);
  PMPI_Status_set_cancelled(status, 0);
  status->MPI_SOURCE = MPI_UNDEFINED;
  status->MPI_TAG = MPI_UNDEFINED;
  status->MPI_ERROR = p->mpi_error;
  return p->mpi_error;
}
int free_request(void* extra) {
  delete static_cast<Pending*>(extra);
  return MPI_SUCCESS;
}
int cancel_request(void*, int) { return MPI_SUCCESS; }  // a collective cannot be cancelled

bool is_ours(MPI_Request request, Pending** out) {
  if (g_pending_count.load(std::memory_order_acquire) == 0 || request == MPI_REQUEST_NULL) return false;
  std::lock_guard<std::mutex> lock(g_mu);
  for (Pending* p : g_pending)
    if (p->mpi_request == request) {
      *out = p;
      return true;
    }
  return false;
}

void print_summary() {
  const int verbose = settings().verbose;
  if (verbose <= 0) return;
  const int rank = world_rank();
  if (verbose == 1 && rank != 0) return;
  sparcl_stats_t sent;
  std::vector<std::string> lines;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    sent = g_released_stats;
    lines = g_released_lines;
  }
  std::string out = "sparcl-pmpi: rank " + std::to_string(rank) + ": MPI_Allreduce/MPI_Iallreduce calls by route (SPARCL_PMPI_MIN_COUNT=" +
                    std::to_string(settings().min_count) + ")\n";
  char line[256];
  for (int r = 0; r < kRoutes; ++r) {
    std::snprintf(line, sizeof line, "sparcl-pmpi: rank %d:   %-34s %10llu calls %16llu bytes\n", rank, kRouteNames[r],
                  static_cast<unsigned long long>(g_calls[r].load()),
                  static_cast<unsigned long long>(g_bytes[r].load()));
    out += line;
  }
  std::snprintf(line, sizeof line, "sparcl-pmpi: rank %d:   sparcl sent %llu messages, %llu bytes\n", rank,
                static_cast<unsigned long long>(sent.messages_sent), static_cast<unsigned long long>(sent.bytes_sent));
  out += line;
  for (size_t k = 0; k < lines.size(); ++k)
    out += "sparcl-pmpi: rank " + std::to_string(rank) + ":   sparcl communicator " + std::to_string(k + 1) + ": " +
           lines[k] + "\n";
  std::fputs(out.c_str(), stderr);
}

template <class Tester>
int poll(Tester test) {
  for (;;) {
    progress_all();
    int done = 0;
    const int rc = test(&done);
    if (rc != MPI_SUCCESS || done) return rc;
    if (g_pending_count.load(std::memory_order_acquire) == 0) return -1;  // nothing of ours left: MPI may block
    sched_yield();
  }
}

}  // namespace

extern "C" {

int MPI_Allreduce(const void* sendbuf, void* recvbuf, int count, MPI_Datatype datatype, MPI_Op op, MPI_Comm comm) {
  sparcl_datatype_t type = SPARCL_FLOAT32;
  CommState* state = nullptr;
  const Route route = route_of(sendbuf, count, datatype, op, comm, &type, &state);
  if (!state) {
    if (!t_inside) tally(route, count, datatype);
    return PMPI_Allreduce(sendbuf, recvbuf, count, datatype, op, comm);
  }
  tally(kSparcl, count, datatype);
  std::unique_lock<std::mutex> lock(state->calls);
  sparcl_status_t status;
  {
    Inside inside;
    status = sparcl_allreduce(sparcl_send(sendbuf), recvbuf, size_t(count), type, SPARCL_SUM, state->sparcl);
  }
  if (status == SPARCL_SUCCESS) return MPI_SUCCESS;
  const std::string text = failure_text("MPI_Allreduce", status, state->sparcl);
  lock.unlock();
  return raise_error(comm, status, text);
}

int MPI_Iallreduce(const void* sendbuf, void* recvbuf, int count, MPI_Datatype datatype, MPI_Op op, MPI_Comm comm,
                   MPI_Request* request) {
  sparcl_datatype_t type = SPARCL_FLOAT32;
  CommState* state = nullptr;
  const Route route = settings().iallreduce ? route_of(sendbuf, count, datatype, op, comm, &type, &state) : kPassComm;
  if (!state || request == nullptr) {
    if (!t_inside) tally(route, count, datatype);
    return PMPI_Iallreduce(sendbuf, recvbuf, count, datatype, op, comm, request);
  }
  tally(kSparclNonblock, count, datatype);
  auto* p = new Pending;
  p->state = state;
  std::unique_lock<std::mutex> lock(state->calls);
  sparcl_status_t status;
  {
    Inside inside;
    status = sparcl_iallreduce(sparcl_send(sendbuf), recvbuf, size_t(count), type, SPARCL_SUM, state->sparcl,
                               &p->request);
  }
  if (status != SPARCL_SUCCESS) {
    const std::string text = failure_text("MPI_Iallreduce", status, state->sparcl);
    lock.unlock();
    delete p;
    return raise_error(comm, status, text);
  }
  lock.unlock();
  const int rc = PMPI_Grequest_start(query_request, free_request, cancel_request, p, request);
  if (rc != MPI_SUCCESS) {  // the collective runs on: finish it here, then report
    {
      Inside inside;
      std::lock_guard<std::mutex> g(state->calls);
      sparcl_wait(&p->request);
    }
    delete p;
    return rc;
  }
  p->mpi_request = *request;
  {
    std::lock_guard<std::mutex> g(g_mu);
    g_pending.push_back(p);
    g_pending_count.store(int(g_pending.size()), std::memory_order_release);
  }
  return MPI_SUCCESS;
}

// --- completion: every wait and test call also progresses sparcl ---------

int MPI_Wait(MPI_Request* request, MPI_Status* status) {
  if (t_inside || g_pending_count.load(std::memory_order_acquire) == 0) return PMPI_Wait(request, status);
  const int rc = poll([&](int* done) { return PMPI_Test(request, done, status); });
  return rc == -1 ? PMPI_Wait(request, status) : rc;
}

int MPI_Test(MPI_Request* request, int* flag, MPI_Status* status) {
  progress_all();
  return PMPI_Test(request, flag, status);
}

int MPI_Waitall(int count, MPI_Request requests[], MPI_Status statuses[]) {
  if (t_inside || g_pending_count.load(std::memory_order_acquire) == 0) return PMPI_Waitall(count, requests, statuses);
  const int rc = poll([&](int* done) { return PMPI_Testall(count, requests, done, statuses); });
  return rc == -1 ? PMPI_Waitall(count, requests, statuses) : rc;
}

int MPI_Testall(int count, MPI_Request requests[], int* flag, MPI_Status statuses[]) {
  progress_all();
  return PMPI_Testall(count, requests, flag, statuses);
}

int MPI_Waitany(int count, MPI_Request requests[], int* index, MPI_Status* status) {
  if (t_inside || g_pending_count.load(std::memory_order_acquire) == 0) return PMPI_Waitany(count, requests, index, status);
  const int rc = poll([&](int* done) { return PMPI_Testany(count, requests, index, done, status); });
  return rc == -1 ? PMPI_Waitany(count, requests, index, status) : rc;
}

int MPI_Testany(int count, MPI_Request requests[], int* index, int* flag, MPI_Status* status) {
  progress_all();
  return PMPI_Testany(count, requests, index, flag, status);
}

int MPI_Waitsome(int incount, MPI_Request requests[], int* outcount, int indices[], MPI_Status statuses[]) {
  if (t_inside || g_pending_count.load(std::memory_order_acquire) == 0)
    return PMPI_Waitsome(incount, requests, outcount, indices, statuses);
  const int rc = poll([&](int* done) {
    const int r = PMPI_Testsome(incount, requests, outcount, indices, statuses);
    *done = *outcount != 0;  // MPI_UNDEFINED (no active request) also ends the wait
    return r;
  });
  return rc == -1 ? PMPI_Waitsome(incount, requests, outcount, indices, statuses) : rc;
}

int MPI_Testsome(int incount, MPI_Request requests[], int* outcount, int indices[], MPI_Status statuses[]) {
  progress_all();
  return PMPI_Testsome(incount, requests, outcount, indices, statuses);
}

int MPI_Request_get_status(MPI_Request request, int* flag, MPI_Status* status) {
  progress_all();
  return PMPI_Request_get_status(request, flag, status);
}

// Freeing a pending request of ours: the allreduce goes on in sparcl and
// delivers its sum (as MPI does for a freed request); the generalized
// request completes now.
int MPI_Request_free(MPI_Request* request) {
  Pending* p = nullptr;
  std::unique_lock<std::mutex> progress(g_progress, std::defer_lock);
  if (!t_inside && request && g_pending_count.load(std::memory_order_acquire) != 0) progress.lock();
  if (progress.owns_lock() && is_ours(*request, &p)) {
    {
      std::lock_guard<std::mutex> lock(p->state->calls);
      Inside inside;
      sparcl_request_free(&p->request);
    }
    finish(p, SPARCL_SUCCESS, std::string());
  }
  if (progress.owns_lock()) progress.unlock();
  return PMPI_Request_free(request);
}

// --- lifetime --------------------------------------------------------------

static int free_comm(MPI_Comm* comm, int (*mpi_free)(MPI_Comm*)) {
  if (!t_inside && comm && *comm != MPI_COMM_NULL && g_keyval != MPI_KEYVAL_INVALID && mpi_active()) {
    void* value = nullptr;
    int flag = 0;
    if (PMPI_Comm_get_attr(*comm, g_keyval, &value, &flag) == MPI_SUCCESS && flag && value != &g_internal_mark)
      release(static_cast<CommState*>(value));  // before MPI runs the delete callback
  }
  return mpi_free(comm);
}

int MPI_Comm_free(MPI_Comm* comm) { return free_comm(comm, PMPI_Comm_free); }

int MPI_Comm_disconnect(MPI_Comm* comm) { return free_comm(comm, PMPI_Comm_disconnect); }

int MPI_Finalize(void) {
  if (t_inside || !mpi_active()) return PMPI_Finalize();
  complete_pending(nullptr);  // requests nobody waited for
  std::vector<CommState*> comms;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    comms = g_comms;
  }
  // In creation order, the same on every rank: sparcl_comm_free is collective.
  for (CommState* s : comms) release(s);
  print_summary();
  for (CommState* s : comms) PMPI_Comm_delete_attr(s->comm, g_keyval);  // runs delete_attr
  if (g_keyval != MPI_KEYVAL_INVALID) PMPI_Comm_free_keyval(&g_keyval);
  return PMPI_Finalize();
}

// Threads started inside a sparcl call (its progress thread) are sparcl's:
// their MPI calls must go to MPI directly, and must not progress sparcl's
// requests from here (they already hold sparcl's locks).
namespace {
struct ThreadStart {
  void* (*routine)(void*);
  void* arg;
};
void* sparcl_thread_main(void* start) {
  const ThreadStart s = *static_cast<ThreadStart*>(start);
  delete static_cast<ThreadStart*>(start);
  t_inside = 1;
  return s.routine(s.arg);
}
}  // namespace

__attribute__((visibility("default"))) int pthread_create(pthread_t* thread, const pthread_attr_t* attr, void* (*routine)(void*), void* arg) {
  using Create = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static const Create next = reinterpret_cast<Create>(dlsym(RTLD_NEXT, "pthread_create"));
  if (!next) return EAGAIN;
  if (!t_inside) return next(thread, attr, routine, arg);
  auto* start = new (std::nothrow) ThreadStart{routine, arg};
  if (!start) return EAGAIN;
  const int rc = next(thread, attr, sparcl_thread_main, start);
  if (rc != 0) delete start;
  return rc;
}

}  // extern "C"
