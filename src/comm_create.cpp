// SPDX-License-Identifier: BSD-3-Clause
#include "comm_create.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>

#include "algorithm_catalog.hpp"
#include "crc32c.hpp"
#include "src/codec/codec.hpp"
#include "src/codec/common.hpp"

namespace sparcl {

namespace {

// One rank's outcome of a step, as exchanged through the bootstrap.
struct Outcome {
  int32_t status;
  char message[244];
};

// Every rank learns whether any rank failed; all throw the lowest failing rank's error.
void agree(Bootstrap& boot, sparcl_status_t status, const std::string& message) {
  Outcome mine{};
  mine.status = status;
  std::strncpy(mine.message, message.c_str(), sizeof mine.message - 1);
  const std::vector<uint8_t> all = boot.allgather(&mine, sizeof mine);
  for (int i = 0; i < boot.size(); ++i) {
    Outcome theirs;
    std::memcpy(&theirs, all.data() + size_t(i) * sizeof theirs, sizeof theirs);
    theirs.message[sizeof theirs.message - 1] = '\0';
    if (theirs.status == SPARCL_SUCCESS) continue;
    if (i == boot.rank()) throw Error(status, message);
    const bool known = theirs.status < 0 && theirs.status >= SPARCL_ERR_INTERNAL;
    throw Error(known ? sparcl_status_t(theirs.status) : SPARCL_ERR_PEER_FAILED,
                "rank " + std::to_string(i) + ": " + theirs.message);
  }
}

// Runs `step`, then agrees on its outcome with every rank.
template <class F>
void agreed(Bootstrap& boot, F&& step) {
  sparcl_status_t status = SPARCL_SUCCESS;
  std::string message;
  try {
    step();
  } catch (const Error& e) {
    status = e.status();
    message = e.what();
  } catch (const std::bad_alloc&) {
    status = SPARCL_ERR_NO_MEMORY;
    message = "out of memory";
  } catch (const std::exception& e) {
    status = SPARCL_ERR_INTERNAL;
    message = e.what();
  }
  agree(boot, status, message);
}

// The parts of a configuration that all ranks must share.
struct SharedConfig {
  int32_t algorithm;
  int32_t transport;
  uint32_t comm_id_candidate;
  int32_t encoding;
  uint32_t quantization_bucket;
  int32_t checksum;
  int32_t auto_tune;
  int32_t progress_thread;
  int32_t partition;
  uint64_t ordinal_candidate;
  char ofi_provider[52];
  char auto_params[96];
  int32_t ranks_per_host;  // SPARCL_RANKS_PER_HOST (0: by host name)
  uint32_t tune_crc;     // of SPARCL_TUNE_FILE's content as this rank read it
  int32_t tune_state;    // TuneRead
  char host[64];
};

// What a rank found at SPARCL_TUNE_FILE.
enum TuneRead : int32_t { kTuneUnset = 0, kTuneMissing = 1, kTuneRead = 2, kTuneUnreadable = 3 };
constexpr size_t kTuneFileMaxBytes = size_t(1) << 20;

TuneRead read_tune_file(const std::string& path, std::string& text) {
  text.clear();
  if (path.empty()) return kTuneUnset;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return errno == ENOENT ? kTuneMissing : kTuneUnreadable;
  char chunk[4096];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0 && text.size() <= kTuneFileMaxBytes) text.append(chunk, n);
  const bool bad = std::ferror(f) || text.size() > kTuneFileMaxBytes;
  std::fclose(f);
  if (bad) text.clear();
  return bad ? kTuneUnreadable : kTuneRead;
}

// Communicators this process has created: rank 0's count names a new
// communicator's stream of stochastic rounding, so that a program that
// creates its communicators in the same order rounds alike in every run.
std::atomic<uint64_t> communicators_created{0};

sparcl_transport_t default_transport(bool from_mpi) {
  if (from_mpi) return SPARCL_TRANSPORT_MPI;
#if SPARCL_HAVE_UCX
  return SPARCL_TRANSPORT_UCX;
#elif SPARCL_HAVE_OFI
  return SPARCL_TRANSPORT_OFI;
#else
  fail(SPARCL_ERR_UNSUPPORTED,
       "no transport that works without MPI was built (install libucx-dev or libfabric-dev and rebuild)");
#endif
}

// An endpoint shared by the communicators of a process tells them apart by
// an id: every rank claims one on its endpoint, starting from the
// communicator's id, and all move on to the next candidate (the same on every
// rank) until one is free on every rank. Runs before any rank connects, so
// no message carries an id that its receiver has not claimed.
void claim_endpoint_id(Bootstrap& boot, Endpoint& endpoint, uint32_t comm_id) {
  constexpr int kAttempts = 64;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    const uint32_t candidate = attempt == 0 ? comm_id : uint32_t(codec::mix64(uint64_t(comm_id) + uint64_t(attempt)));
    const uint8_t free_here = endpoint.claim_id(candidate) ? 1 : 0;
    const std::vector<uint8_t> all = boot.allgather(&free_here, 1);
    if (std::all_of(all.begin(), all.end(), [](uint8_t f) { return f == 1; })) return;
  }
  fail(SPARCL_ERR_INTERNAL, "no communicator id free on every rank's endpoint after " + std::to_string(kAttempts) +
                                " attempts");
}

}  // namespace

std::unique_ptr<sparcl_comm> create_comm(Bootstrap& boot, const sparcl_config_t* config,
                                         const std::function<std::unique_ptr<Transport>()>& make_mpi) {
  Config cfg;
  agreed(boot, [&] {
    cfg = resolve_config(config);
    if (cfg.transport == SPARCL_TRANSPORT_DEFAULT) cfg.transport = default_transport(bool(make_mpi));
    if (cfg.transport == SPARCL_TRANSPORT_MPI && !make_mpi)
      fail(SPARCL_ERR_UNSUPPORTED, "the MPI transport needs a communicator from sparcl_comm_create_mpi()");
    if (cfg.ofi_provider.size() >= sizeof(SharedConfig::ofi_provider))
      fail(SPARCL_ERR_INVALID_ARG, "OFI provider name is too long");
    if (cfg.auto_params.size() >= sizeof(SharedConfig::auto_params))
      fail(SPARCL_ERR_INVALID_ARG, "SPARCL_AUTO_PARAMS is too long");
  });

  SharedConfig mine{};
  mine.algorithm = cfg.algorithm;
  mine.transport = cfg.transport;
  mine.comm_id_candidate = std::random_device{}();
  mine.encoding = cfg.encoding;
  mine.quantization_bucket = cfg.quantization_bucket;
  mine.checksum = cfg.checksum ? 1 : 0;
  mine.auto_tune = cfg.auto_tune ? 1 : 0;
  mine.progress_thread = cfg.progress_thread ? 1 : 0;
  mine.partition = cfg.partition;
  mine.ordinal_candidate = communicators_created.fetch_add(1);
  std::strncpy(mine.ofi_provider, cfg.ofi_provider.c_str(), sizeof mine.ofi_provider - 1);
  std::strncpy(mine.auto_params, cfg.auto_params.c_str(), sizeof mine.auto_params - 1);
  mine.ranks_per_host = cfg.ranks_per_host;
  Placement placement;
  mine.tune_state = read_tune_file(cfg.tune_file, placement.tune_text);
  mine.tune_crc = crc32c(placement.tune_text.data(), placement.tune_text.size());
  if (gethostname(mine.host, sizeof mine.host - 1) != 0) std::strncpy(mine.host, "unknown", sizeof mine.host - 1);
  const std::vector<uint8_t> all = boot.allgather(&mine, sizeof mine);
  std::map<std::string, int> host_ids;
  std::vector<int> hosts(size_t(boot.size()));
  uint32_t comm_id = 0;
  uint64_t ordinal = 0;
  for (int i = 0; i < boot.size(); ++i) {
    SharedConfig theirs;
    std::memcpy(&theirs, all.data() + size_t(i) * sizeof theirs, sizeof theirs);
    if (i == 0) comm_id = theirs.comm_id_candidate, ordinal = theirs.ordinal_candidate;
    const std::string who = "rank " + std::to_string(i);
    theirs.host[sizeof theirs.host - 1] = '\0';
    hosts[size_t(i)] = cfg.ranks_per_host ? i / cfg.ranks_per_host
                                          : host_ids.emplace(theirs.host, int(host_ids.size())).first->second;
    if (i == 0) placement.first_host = theirs.host;
    if (theirs.ranks_per_host != mine.ranks_per_host)
      fail(SPARCL_ERR_MISMATCH, who + " set SPARCL_RANKS_PER_HOST=" + std::to_string(theirs.ranks_per_host) +
                                    ", this rank " + std::to_string(mine.ranks_per_host) + " (0: unset)");
    // A tuning file that not every rank read alike (another file system, or
    // written while the ranks read it) is not used: ranks must decide alike.
    if ((theirs.tune_state != mine.tune_state || theirs.tune_crc != mine.tune_crc) && placement.tune_note.empty()) {
      placement.tune_note = "SPARCL_TUNE_FILE " + cfg.tune_file + ": " + who +
                            " read other contents than this rank (not on a shared file system, or written "
                            "meanwhile); not used by this communicator";
      placement.tune_text.clear();
    }
    if (theirs.algorithm != mine.algorithm)
      fail(SPARCL_ERR_MISMATCH, who + " configured algorithm " + algorithm_catalog().name(sparcl_algorithm_t(theirs.algorithm)) +
                                    ", this rank " + algorithm_catalog().name(cfg.algorithm) +
                                    " (check SPARCL_ALGORITHM on every rank)");
    if (theirs.transport != mine.transport)
      fail(SPARCL_ERR_MISMATCH, who + " configured transport " + transport_name(sparcl_transport_t(theirs.transport)) +
                                    ", this rank " + transport_name(cfg.transport) +
                                    " (check SPARCL_TRANSPORT on every rank)");
    if (std::strncmp(theirs.ofi_provider, mine.ofi_provider, sizeof mine.ofi_provider) != 0 &&
        cfg.transport == SPARCL_TRANSPORT_OFI)
      fail(SPARCL_ERR_MISMATCH, who + " configured another libfabric provider (check SPARCL_OFI_PROVIDER)");
    if (theirs.encoding != mine.encoding)
      fail(SPARCL_ERR_MISMATCH, who + " configured value encoding " + encoding_name(sparcl_value_encoding_t(theirs.encoding)) +
                                    ", this rank " + encoding_name(cfg.encoding) + " (check SPARCL_ENCODING on every rank)");
    if (theirs.partition != mine.partition)
      fail(SPARCL_ERR_MISMATCH, who + " configured partition " + partition_name(sparcl_partition_t(theirs.partition)) +
                                    ", this rank " + partition_name(cfg.partition) + " (check SPARCL_PARTITION on every rank)");
    if (theirs.quantization_bucket != mine.quantization_bucket && codec::qsgd_bits(codec::ValueCodec(cfg.encoding)))
      fail(SPARCL_ERR_MISMATCH, who + " configured a QSGD bucket of " + std::to_string(theirs.quantization_bucket) +
                                    " values, this rank " + std::to_string(mine.quantization_bucket) +
                                    " (check SPARCL_QSGD_BUCKET on every rank)");
    if (std::strncmp(theirs.auto_params, mine.auto_params, sizeof mine.auto_params) != 0 &&
        cfg.algorithm == SPARCL_ALGO_AUTO)
      fail(SPARCL_ERR_MISMATCH, who + " set other cost model parameters (check SPARCL_AUTO_PARAMS on every rank)");
    if (theirs.auto_tune != mine.auto_tune && cfg.algorithm == SPARCL_ALGO_AUTO)
      fail(SPARCL_ERR_MISMATCH, who + (theirs.auto_tune ? " measures" : " does not measure") +
                                    " auto's candidates, this rank " + (mine.auto_tune ? "does" : "does not") +
                                    " (check SPARCL_AUTO_TUNE on every rank)");
    // Agreed before the transport is made: over MPI, whether it may be made
    // at all depends on it (the thread level), and a rank that refused while
    // the others went on to MPI's collectives would leave them waiting.
    if (theirs.progress_thread != mine.progress_thread)
      fail(SPARCL_ERR_MISMATCH, who + (theirs.progress_thread ? " turned the progress thread on" : " turned the progress thread off") +
                                    ", this rank " + (mine.progress_thread ? "on" : "off") +
                                    " (check progress_thread and SPARCL_PROGRESS_THREAD on every rank)");
    if (theirs.checksum != mine.checksum)
      fail(SPARCL_ERR_MISMATCH, who + (theirs.checksum ? " turned checksums on" : " turned checksums off") +
                                    ", this rank " + (mine.checksum ? "on" : "off") + " (check SPARCL_CHECKSUM on every rank)");
  }

  if (placement.tune_note.empty() && mine.tune_state == kTuneUnreadable)
    placement.tune_note = "SPARCL_TUNE_FILE " + cfg.tune_file + ": cannot be read (or is over 1 MiB); not used";
  {
    std::map<int, int> on_host;
    for (int h : hosts) placement.ranks_per_host = std::max(placement.ranks_per_host, ++on_host[h]);
  }
  auto comm = std::make_unique<sparcl_comm>(cfg, comm_id, codec::mix64(ordinal));
  comm->set_placement(std::move(placement));
  if (cfg.transport == SPARCL_TRANSPORT_MPI) {
    agreed(boot, [&] { comm->set_transport(make_mpi()); });
  } else {
    std::unique_ptr<Endpoint> endpoint;
    agreed(boot, [&] { endpoint = open_endpoint(cfg); });
    if (endpoint->shared()) claim_endpoint_id(boot, *endpoint, comm_id);
    const auto addresses = boot.allgatherv(endpoint->address());
    agreed(boot, [&] { comm->set_transport(endpoint->connect(boot.rank(), boot.size(), addresses)); });
  }
  comm->transport().set_hosts(std::move(hosts));
  if (cfg.progress_thread) comm->start_progress_thread();
  return comm;
}

}  // namespace sparcl
