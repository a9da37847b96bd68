// MoeLayerStreamer (see moe_stream.cuh).
#include "backend/cuda/moe_stream.cuh"

#include <cuda_runtime.h>

#include <span>

#include "moe/layer_stream.h"

namespace hlwq::cuda {

MoeLayerStreamer::MoeLayerStreamer(const ExpertLayout& lay, int64_t E, int64_t max_tiles, int64_t min_tokens, int S)
    : lay_(lay), E_(E), max_tiles_(max_tiles), min_tokens_(min_tokens), S_(S),
      staging_(size_t(2 * S) * size_t(lay.bytes), "layer streaming staging buffers"),
      plan_(size_t(max_tiles + 2 * E) * sizeof(int), "layer streaming plan") {
  HLWQ_CHECK(S >= 1 && S <= kMaxPointed && min_tokens >= 1 && E >= 1 && max_tiles >= 1,
             "layer streaming: {} staging slots per buffer (1..{}), batches from {} tokens (≥ 1)", S, kMaxPointed,
             min_tokens);
  try {
    HLWQ_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking), "layer streaming copy stream");
    for (int b = 0; b < 2; ++b) {
      HLWQ_CUDA_CHECK(cudaEventCreateWithFlags(&copied_[b], cudaEventDisableTiming), "layer streaming event");
      HLWQ_CUDA_CHECK(cudaEventCreateWithFlags(&free_[b], cudaEventDisableTiming), "layer streaming event");
    }
  } catch (...) {
    release();
    throw;
  }
}

MoeLayerStreamer::~MoeLayerStreamer() { release(); }

void MoeLayerStreamer::release() {
  if (copy_) cudaStreamSynchronize(copy_);  // no copy may still write a buffer that is about to be freed
  for (cudaEvent_t* e : {&copied_[0], &copied_[1], &free_[0], &free_[1]})
    if (*e) cudaEventDestroy(*e), *e = nullptr;
  if (copy_) cudaStreamDestroy(copy_);
  copy_ = nullptr;
}

void MoeLayerStreamer::run(ExpertCacheDev& c, const ExpertTables& t, const int* tile_mat, int64_t tiles,
                           cudaStream_t st, const std::function<void(int64_t, int64_t)>& mlp) {
  HLWQ_CHECK(tiles <= max_tiles_ && c.E == E_ && c.layout.bytes == lay_.bytes, "layer streaming: a plan of {} tiles "
             "over {} experts of {} bytes, set up for {} tiles over {} of {}", tiles, c.E, c.layout.bytes, max_tiles_,
             E_, lay_.bytes);
  int* h_tiles = plan_.as<int>();
  int* h_slot = h_tiles + max_tiles_;
  int* h_slot_expert = h_slot + E_;
  HLWQ_CUDA_CHECK(cudaMemcpyAsync(h_tiles, tile_mat, size_t(tiles) * sizeof(int), cudaMemcpyDeviceToHost, st),
                  "layer streaming: reading the slot plan");
  HLWQ_CUDA_CHECK(cudaMemcpyAsync(h_slot, c.expert_slot.get(), size_t(E_) * sizeof(int), cudaMemcpyDeviceToHost, st),
                  "layer streaming: reading the cache's residency");
  HLWQ_CUDA_CHECK(cudaMemcpyAsync(h_slot_expert, c.slot_expert.get(), size_t(c.n_slots) * sizeof(int),
                                  cudaMemcpyDeviceToHost, st), "layer streaming: reading the cache's slots");
  HLWQ_CUDA_CHECK(cudaStreamSynchronize(st), "layer streaming: the step's routing");
  std::vector<int> empty;  // the cache's empty slots, ascending: staged experts are adopted into them
  for (int64_t s = 0; s < c.n_slots; ++s)
    if (h_slot_expert[s] < 0) empty.push_back(int(s));
  size_t next_empty = 0;
  const std::vector<StreamRound> rounds =
      plan_stream_rounds(std::span<const int>(h_tiles, size_t(tiles)), std::span<const int>(h_slot, size_t(E_)), S_);
  const int64_t B = lay_.bytes;
  ++n_.layers;
  for (const StreamRound& r : rounds) {
    n_.resident += r.resident;
    if (r.staged.empty()) {  // every expert of the range is resident (or a shared part)
      mlp(r.first_tile, r.n_tiles);
      continue;
    }
    const int b = next_;
    next_ ^= 1;
    uint8_t* buf = staging_.get() + int64_t(b) * S_ * B;
    HLWQ_CUDA_CHECK(cudaStreamWaitEvent(copy_, free_[b], 0), "layer streaming: buffer {} free", b);
    for (const StreamCopyRun& cr : r.copies)
      HLWQ_CUDA_CHECK(cudaMemcpyAsync(buf + int64_t(cr.slot) * B, c.host + int64_t(cr.expert) * B,
                                      size_t(cr.count) * size_t(B), cudaMemcpyDefault, copy_),
                      "layer streaming: copying experts {}..{} ({} bytes each)", cr.expert, cr.expert + cr.count - 1,
                      B);
    HLWQ_CUDA_CHECK(cudaEventRecord(copied_[b], copy_), "layer streaming: copies recorded");
    HLWQ_CUDA_CHECK(cudaStreamWaitEvent(st, copied_[b], 0), "layer streaming: waiting for the copies");
    PointedExperts to, back;
    to.n = back.n = int(r.staged.size());
    for (int j = 0; j < to.n; ++j) {
      to.id[j] = back.id[j] = r.staged[size_t(j)];
      to.pos[j] = j;                          // staging slot j of buffer b
      back.pos[j] = r.staged[size_t(j)];      // the expert's own host copy
    }
    expert_tables_point(t, lay_, to, buf, st);
    mlp(r.first_tile, r.n_tiles);
    expert_tables_point(t, lay_, back, c.host, st);
    PointedExperts adopt;  // into empty slots while any are left: staging slot j → cache slot pos
    for (int j = 0; j < to.n && next_empty < empty.size(); ++j) {
      const int s = empty[next_empty++];
      HLWQ_CUDA_CHECK(cudaMemcpyAsync(c.slots.get() + int64_t(s) * B, buf + int64_t(j) * B, size_t(B),
                                      cudaMemcpyDeviceToDevice, st), "layer streaming: adopting expert {}", to.id[j]);
      adopt.id[adopt.n] = to.id[j];
      adopt.pos[adopt.n++] = s;
    }
    expert_cache_adopt(c, t, adopt, st);
    n_.adopted += adopt.n;
    HLWQ_CUDA_CHECK(cudaEventRecord(free_[b], st), "layer streaming: buffer {} used", b);
    ++n_.rounds;
    n_.staged += to.n;
  }
}

}  // namespace hlwq::cuda
