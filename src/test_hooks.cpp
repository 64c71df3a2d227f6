// SPDX-License-Identifier: BSD-3-Clause
#include "test_hooks.hpp"

#include <cstring>
#include <memory>
#include <utility>

#include "comm.hpp"
#include "wire.hpp"

namespace sparcl {
namespace testing {

namespace {

// A transport that passes everything on to another one, except that it
// flips one bit of one outgoing data message.
class CorruptingTransport final : public Transport {
 public:
  explicit CorruptingTransport(std::unique_ptr<Transport> inner) : inner_(std::move(inner)) {}
  void arm() { armed_ = true; }

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  const char* name() const override { return inner_->name(); }
  std::unique_ptr<Request> isend(int peer, const Tag& tag, SharedBuffer data) override {
    const size_t trailer = data->size() >= sizeof(WireHeader) &&
                                   (data->data()[offsetof(WireHeader, flags)] & kFlagChecksum)
                               ? kChecksumBytes
                               : 0;
    if (armed_ && !tag.abort && data->size() > sizeof(WireHeader) + trailer) {
      armed_ = false;
      auto copy = std::make_shared<Buffer>(data->size());
      std::memcpy(copy->data(), data->data(), data->size());
      copy->data()[copy->size() - trailer - 1] ^= 0x01;
      data = std::move(copy);
    }
    return inner_->isend(peer, tag, std::move(data));
  }
  std::unique_ptr<RecvRequest> irecv(int peer, const Tag& tag) override { return inner_->irecv(peer, tag); }
  void progress() override { inner_->progress(); }
  bool has_native_iallreduce(uint64_t count) const override { return inner_->has_native_iallreduce(count); }
  std::unique_ptr<Request> native_iallreduce(const void* send, void* recv, size_t count, sparcl_datatype_t type,
                                             sparcl_op_t op, std::shared_ptr<const void> keep) override {
    return inner_->native_iallreduce(send, recv, count, type, op, std::move(keep));
  }
  void close() override { inner_->close(); }
  void abort() override { inner_->abort(); }

 private:
  std::unique_ptr<Transport> inner_;
  bool armed_ = false;
};

}  // namespace

void corrupt_next_message(sparcl_comm_t comm) {
  auto lock = comm->lock();
  auto* corrupting = dynamic_cast<CorruptingTransport*>(&comm->transport());
  if (!corrupting) {
    auto wrapper = std::make_unique<CorruptingTransport>(comm->take_transport());
    corrupting = wrapper.get();
    comm->set_transport(std::move(wrapper));
  }
  corrupting->arm();
}

}  // namespace testing
}  // namespace sparcl
