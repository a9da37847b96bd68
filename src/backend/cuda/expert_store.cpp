// HostExpertStore (see expert_store.h).
#include "backend/cuda/expert_store.h"

#include <cuda_runtime.h>
#include <omp.h>

#include <cstring>

#include <fmt/format.h>

#include "backend/cuda/weight_pack.h"
#include "core/error.h"
#include "core/parallel_errors.h"
#include "core/progress.h"

namespace hlwq::cuda {
namespace {

int64_t align16(int64_t x) { return (x + 15) / 16 * 16; }

struct PackedExpert {
  PackedLinearHost gu, dn;
};

PackedExpert pack_expert(const ExpertWeights& e) {
  const PackedFormat f = packed_format_of(e.gate_proj);
  return {pack_gate_up(f, e.gate_proj, e.up_proj), pack_linear(f, e.down_proj)};
}

}  // namespace

ExpertLayout expert_layout(const MoeWeights& w) {
  HLWQ_CHECK(!w.experts.empty(), "{}: no routed experts", w.router.name);
  const PackedExpert p = pack_expert(w.experts[0]);
  ExpertLayout l;
  l.int4 = p.gu.format != PackedFormat::bf16;
  l.hlwq_bits = p.gu.bits;
  l.gu_out = p.gu.out, l.gu_in = p.gu.in, l.gu_out_pad = p.gu.out_pad, l.gu_in_pad = p.gu.in_pad;
  l.dn_out = p.dn.out, l.dn_in = p.dn.in, l.dn_out_pad = p.dn.out_pad, l.dn_in_pad = p.dn.in_pad;
  int64_t at = 0;
  l.gu_q = at, at += align16(int64_t(p.gu.q.size() * 4));
  l.gu_s = at, at += align16(int64_t(p.gu.scale.size() * 4));
  l.dn_q = at, at += align16(int64_t(p.dn.q.size() * 4));
  l.dn_s = at, at += align16(int64_t(p.dn.scale.size() * 4));
  l.bytes = at;
  return l;
}

void pack_layer_experts(const MoeWeights& m, const ExpertLayout& lay, int64_t E, uint8_t* dst, const char* what) {
  HLWQ_CHECK(int64_t(m.experts.size()) == E, "{}: {} routed experts, {} has {}", m.router.name, m.experts.size(),
             what, E);
  ParallelErrors errors;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t e = 0; e < int64_t(m.experts.size()); ++e) {
    errors.run([&] {
      const PackedExpert p = pack_expert(m.experts[size_t(e)]);
      HLWQ_CHECK(p.gu.out == lay.gu_out && p.gu.in == lay.gu_in && p.dn.out == lay.dn_out && p.dn.in == lay.dn_in &&
                     (p.gu.format != PackedFormat::bf16) == lay.int4 && p.gu.bits == lay.hlwq_bits &&
                     p.dn.bits == lay.hlwq_bits,
                 "{}: expert shape or format differs from {} expert 0 (HLWQ: gate_up {}-bit, down {}-bit, the layout "
                 "{}-bit: the routed experts need one width)", m.experts[size_t(e)].gate_proj.name, what, p.gu.bits,
                 p.dn.bits, lay.hlwq_bits);
      uint8_t* x = dst + e * lay.bytes;
      std::memcpy(x + lay.gu_q, p.gu.q.data(), p.gu.q.size() * 4);
      std::memcpy(x + lay.gu_s, p.gu.scale.data(), p.gu.scale.size() * 4);
      std::memcpy(x + lay.dn_q, p.dn.q.data(), p.dn.q.size() * 4);
      std::memcpy(x + lay.dn_s, p.dn.scale.data(), p.dn.scale.size() * 4);
    });
  }
  errors.rethrow();
}

HostExpertStore::HostExpertStore(const ModelWeights& w, int64_t first_layer) : first_(first_layer) {
  HLWQ_CHECK(first_layer >= 0 && first_layer < int64_t(w.layers.size()), "expert store: first layer {} of {}",
             first_layer, w.layers.size());
  layout_ = expert_layout(w.layers[size_t(first_layer)].moe);
  E_ = int64_t(w.layers[size_t(first_layer)].moe.experts.size());
  const size_t layer_bytes = size_t(E_ * layout_.bytes);
  const size_t NL = w.layers.size(), first = size_t(first_layer);
  host_.assign(first, nullptr);
  device_.assign(first, nullptr);
  Progress progress("pack experts into pinned host memory", "layers", int64_t(NL - first),
                    int64_t((NL - first) * layer_bytes));
  for (size_t l = first; l < NL; ++l) {
    void* h = nullptr;
    HLWQ_CUDA_CHECK(cudaHostAlloc(&h, layer_bytes, cudaHostAllocMapped | cudaHostAllocPortable),
                    "pinned host memory for the experts of layer {} ({} bytes; lower --moe-expert-cache-size does not "
                    "help here: every expert lives in host memory)", l, layer_bytes);
    host_.push_back(h);
    void* d = nullptr;
    HLWQ_CUDA_CHECK(cudaHostGetDevicePointer(&d, h, 0), "device view of the experts of layer {}", l);
    device_.push_back(static_cast<const uint8_t*>(d));
    pack_layer_experts(w.layers[l].moe, layout_, E_, static_cast<uint8_t*>(h), fmt::format("layer {}", first).c_str());
    progress.add(1, int64_t(layer_bytes));
  }
  progress.finish();
}

HostExpertStore::~HostExpertStore() {
  for (void* h : host_)
    if (h) cudaFreeHost(h);
}

const uint8_t* HostExpertStore::device_view(size_t layer) const {
  HLWQ_CHECK(layer < device_.size() && device_[layer], "expert store: layer {} has no pinned experts (layers {}..{})",
             layer, first_, device_.size() - 1);
  return device_[layer];
}

}  // namespace hlwq::cuda
