// The backing store of the GPU expert cache: every routed expert of every MoE layer, packed for the kernels
// (weight_pack.h: gate_up interleaved, then down), in pinned host memory mapped into the device's address space,
// so the grouped kernels can read an expert in place over PCIe and the cache can copy it into a slot at full
// PCIe speed. Per layer one allocation of [E][B] bytes (expert_cache_dev.cuh: ExpertLayout).
#pragma once
#include <cstdint>
#include <vector>

#include "backend/cuda/expert_cache_dev.cuh"
#include "model/weights.h"

namespace hlwq::cuda {

class HostExpertStore {
 public:
  // Packs the routed experts of layers first_layer.. (all of one shape and format: CT INT4, HLWQ of one width, or
  // dense → bf16), in parallel; the layers below first_layer (--n-cpu-moe's, computed on the CPU from the
  // checkpoint) get no pinned copy. Bytes per expert (B): weights + fp32 scales per 128 columns, so ≈ (bits + 0.25)
  // / 8 per weight for INT4 (bits 4) and HLWQ alike, 2 per weight for bf16 (padding aside; the HLWQ codebook is not
  // per expert).
  HostExpertStore(const ModelWeights& w, int64_t first_layer);
  ~HostExpertStore();
  HostExpertStore(const HostExpertStore&) = delete;
  HostExpertStore& operator=(const HostExpertStore&) = delete;

  const ExpertLayout& layout() const { return layout_; }
  int64_t experts_per_layer() const { return E_; }
  const uint8_t* device_view(size_t layer) const;  // [E][B], for kernels; only for layers ≥ first_layer
  int64_t bytes() const { return (int64_t(host_.size()) - first_) * E_ * layout_.bytes; }  // pinned, in all

 private:
  ExpertLayout layout_;
  int64_t E_ = 0, first_ = 0;
  std::vector<void*> host_;             // per layer, pinned (null below first_)
  std::vector<const uint8_t*> device_;  // per layer, the device's view of the same bytes
};

// The layout one expert of w (layer 0) packs to, without packing anything.
ExpertLayout expert_layout(const MoeWeights& w);

// Packs the E routed experts of one layer into dst [E][B] as `layout` (in parallel), refusing a layer of another
// expert count and an expert whose shape or format differs from the layout. `what` names the layout's origin in
// those errors (e.g. "layer 0").
void pack_layer_experts(const MoeWeights& w, const ExpertLayout& layout, int64_t E, uint8_t* dst, const char* what);

}  // namespace hlwq::cuda
