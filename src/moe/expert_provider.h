// ExpertProvider: where the routed experts of an MoE layer are when a backend computes them. After routing, the
// backend asks for the distinct experts its batch selected in a layer (acquire), computes with the weights it is
// given, and hands them back (release); between the two the provider must keep them where it said (the GPU expert
// cache pins its slots, SPEC §7: an expert in use is never evicted). Before a layer's experts run, a provider that
// wants it gets a hint of the next MoE layer's likely experts: that layer's router applied to the current hidden
// state (the Mixtral-offloading predictor), so it can start copying them while this layer computes.
//
// CPU: MappedExpertProvider (backend/cpu) returns views into the mmapped checkpoint. CUDA: the expert cache returns
// ExpertWeights whose views point at device slots or staging buffers. Calls for one layer come in the order
// [hint(l + 1)] acquire(l) release(l); the provider is used by one forward at a time.
#pragma once
#include <cstdint>
#include <span>

#include "model/weights.h"

namespace hlwq {

class ExpertProvider {
 public:
  virtual ~ExpertProvider() = default;
  // where[i] = the weights of expert ids[i] of MoE layer `layer` (ids distinct, ascending), valid until release.
  virtual void acquire(int layer, std::span<const int32_t> ids, std::span<const ExpertWeights*> where) = 0;
  virtual void release(int layer) = 0;
  // Whether hint() is worth its cost (a router matmul per layer); the CPU provider says no.
  virtual bool wants_hints() const { return false; }
  // ids: the k most likely experts of MoE layer `layer` for each token of the batch (may repeat across tokens).
  virtual void hint(int layer, std::span<const int32_t> ids) {}
};

}  // namespace hlwq
