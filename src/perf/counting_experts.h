// CountingExpertProvider: passes a backend's expert requests through to another provider and counts them, so a
// benchmark knows how many distinct routed experts each step really read (the backend acquires each layer's
// distinct experts once per forward step). Read-only: it changes neither which experts run nor their weights.
#pragma once
#include <cstdint>

#include "moe/expert_provider.h"

namespace hlwq {

class CountingExpertProvider final : public ExpertProvider {
 public:
  // The inner provider is set after the model is loaded (the CPU's MappedExpertProvider needs its weights).
  void set_inner(ExpertProvider* inner) { inner_ = inner; }
  void acquire(int layer, std::span<const int32_t> ids, std::span<const ExpertWeights*> where) override {
    acquired_ += int64_t(ids.size());
    inner_->acquire(layer, ids, where);
  }
  void release(int layer) override { inner_->release(layer); }
  bool wants_hints() const override { return inner_->wants_hints(); }
  void hint(int layer, std::span<const int32_t> ids) override { inner_->hint(layer, ids); }

  int64_t acquired() const { return acquired_; }  // distinct experts summed over layers and steps so far
  void reset() { acquired_ = 0; }

 private:
  ExpertProvider* inner_ = nullptr;
  int64_t acquired_ = 0;
};

}  // namespace hlwq
