// MappedExpertProvider: the CPU's expert provider. Every routed expert is already addressable (views into the
// mmapped checkpoint, ModelWeights), so acquire hands those views out and nothing moves; it wants no hints.
#pragma once
#include "moe/expert_provider.h"

namespace hlwq {

class MappedExpertProvider final : public ExpertProvider {
 public:
  explicit MappedExpertProvider(const ModelWeights& w) : w_(w) {}
  void acquire(int layer, std::span<const int32_t> ids, std::span<const ExpertWeights*> where) override {
    const auto& experts = w_.layers[size_t(layer)].moe.experts;
    for (size_t i = 0; i < ids.size(); ++i) where[i] = &experts[size_t(ids[i])];
  }
  void release(int) override {}

 private:
  const ModelWeights& w_;
};

}  // namespace hlwq
