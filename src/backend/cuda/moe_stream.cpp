// MoeLayerStreamer (see moe_stream.cuh).
#include "backend/cuda/moe_stream.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <span>

#include "moe/layer_stream.h"

namespace hlwq::cuda {

MoeLayerStreamer::MoeLayerStreamer(const ExpertLayout& lay, int64_t E, int64_t max_tiles, int64_t min_tokens, int S)
    : lay_(lay), E_(E), max_tiles_(max_tiles), min_tokens_(min_tokens), S_(S),
      staging_(size_t(2 * S) * size_t(lay.bytes), "layer streaming staging buffers"),
      plan_(size_t(max_tiles + 2 * E) * sizeof(int), "layer streaming plan"),
      used_(size_t(E) * sizeof(long long), "layer streaming recency") {
  HLWQ_CHECK(S >= 1 && S <= kMaxPointed && min_tokens >= 1 && E >= 1 && max_tiles >= 1,
             "layer streaming: {} staging slots per buffer (1..{}), batches from {} tokens (≥ 1)", S, kMaxPointed,
             min_tokens);
  try {
    HLWQ_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking), "layer streaming copy stream");
    for (int b = 0; b < 2; ++b)
      HLWQ_CUDA_CHECK(cudaEventCreateWithFlags(&free_[b], cudaEventDisableTiming), "layer streaming event");
  } catch (...) {
    release();
    throw;
  }
}

MoeLayerStreamer::~MoeLayerStreamer() { release(); }

void MoeLayerStreamer::release() {
  if (copy_) cudaStreamSynchronize(copy_);  // no copy may still write a buffer that is about to be freed
  for (cudaEvent_t* e : {&free_[0], &free_[1]})
    if (*e) cudaEventDestroy(*e), *e = nullptr;
  for (RoundEvents& r : rounds_)
    for (cudaEvent_t e : {r.reach, r.start, r.done})
      if (e) cudaEventDestroy(e);
  rounds_.clear();
  if (copy_) cudaStreamDestroy(copy_);
  copy_ = nullptr;
}

MoeLayerStreamer::RoundEvents& MoeLayerStreamer::next_round_events() {
  if (n_recorded_ == rounds_.size()) {
    RoundEvents r;
    try {  // timing events (no DisableTiming flag): their elapsed times are the counters
      for (cudaEvent_t* e : {&r.reach, &r.start, &r.done})
        HLWQ_CUDA_CHECK(cudaEventCreate(e), "layer streaming timing event");
    } catch (...) {
      for (cudaEvent_t e : {r.reach, r.start, r.done})
        if (e) cudaEventDestroy(e);
      throw;
    }
    rounds_.push_back(r);
  }
  return rounds_[n_recorded_++];
}

void MoeLayerStreamer::fold_round_times() {
  for (size_t i = 0; i < n_recorded_; ++i) {
    const RoundEvents& r = rounds_[i];
    float copy_ms = 0, wait_ms = 0;
    HLWQ_CUDA_CHECK(cudaEventElapsedTime(&copy_ms, r.start, r.done), "layer streaming: a round's copy time");
    HLWQ_CUDA_CHECK(cudaEventElapsedTime(&wait_ms, r.reach, r.done), "layer streaming: a round's wait");
    n_.copy_ns += int64_t(double(copy_ms) * 1e6);
    // waited from the later of reaching the round and the copy's start (exposed time never exceeds copy time)
    if (wait_ms > 0) n_.exposed_ns += int64_t(double(std::min(wait_ms, copy_ms)) * 1e6);
  }
  n_recorded_ = 0;
}

const LayerStreamCounters& MoeLayerStreamer::settle() {
  if (n_recorded_ > 0) {
    HLWQ_CUDA_CHECK(cudaEventSynchronize(rounds_[n_recorded_ - 1].done), "layer streaming: the last round's copies");
    // the last round's wait too: its reach event precedes work on the compute stream that may still run
    HLWQ_CUDA_CHECK(cudaEventSynchronize(rounds_[n_recorded_ - 1].reach), "layer streaming: the last round's wait");
    fold_round_times();
  }
  return n_;
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
  long long* h_used = used_.as<long long>();
  HLWQ_CUDA_CHECK(cudaMemcpyAsync(h_used, c.slot_used.get(), size_t(c.n_slots) * sizeof(long long),
                                  cudaMemcpyDeviceToHost, st), "layer streaming: reading the cache's recency");
  HLWQ_CUDA_CHECK(cudaStreamSynchronize(st), "layer streaming: the step's routing");
  fold_round_times();  // every earlier round is complete: st waited for its copies, and has now drained
  const std::span<const int> plan(h_tiles, size_t(tiles)), residency(h_slot, size_t(E_));
  const std::vector<StreamRound> rounds = plan_stream_rounds(plan, residency, S_);
  const StreamAdmission adm =
      plan_stream_admission(plan, residency, std::span<const int>(h_slot_expert, size_t(c.n_slots)),
                            std::span<const long long>(h_used, size_t(c.n_slots)));
  std::vector<int> admit_slot(size_t(E_), -1);  // where each admitted staged expert goes
  for (const auto& [e, s] : adm.admit) admit_slot[size_t(e)] = s;
  // the resident experts used become the most recent (and the layer's clock advances, as the cache's plan does)
  for (size_t i = 0; i == 0 || i < adm.touch.size(); i += kMaxPointed) {
    PointedExperts touch;
    for (size_t j = i; j < adm.touch.size() && touch.n < kMaxPointed; ++j) {
      touch.id[touch.n] = adm.touch[j].first;
      touch.pos[touch.n++] = adm.touch[j].second;
    }
    expert_cache_place(c, t, touch, i == 0, st);
  }
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
    const RoundEvents& ev = next_round_events();
    HLWQ_CUDA_CHECK(cudaEventRecord(ev.start, copy_), "layer streaming: copies start");
    for (const StreamCopyRun& cr : r.copies)
      HLWQ_CUDA_CHECK(cudaMemcpyAsync(buf + int64_t(cr.slot) * B, c.host + int64_t(cr.expert) * B,
                                      size_t(cr.count) * size_t(B), cudaMemcpyDefault, copy_),
                      "layer streaming: copying experts {}..{} ({} bytes each)", cr.expert, cr.expert + cr.count - 1,
                      B);
    HLWQ_CUDA_CHECK(cudaEventRecord(ev.done, copy_), "layer streaming: copies recorded");
    HLWQ_CUDA_CHECK(cudaEventRecord(ev.reach, st), "layer streaming: compute reaches the round");
    HLWQ_CUDA_CHECK(cudaStreamWaitEvent(st, ev.done, 0), "layer streaming: waiting for the copies");
    // after the round, an admitted expert's entries point at its new slot (expert_cache_place), the others back
    // at their host copies
    PointedExperts to, back;
    to.n = int(r.staged.size());
    for (int j = 0; j < to.n; ++j) {
      const int e = r.staged[size_t(j)];
      to.id[j] = e;
      to.pos[j] = j;  // staging slot j of buffer b
      if (admit_slot[size_t(e)] < 0) back.id[back.n] = e, back.pos[back.n++] = e;  // pos = id: base is c.host
    }
    expert_tables_point(t, lay_, to, buf, st);
    mlp(r.first_tile, r.n_tiles);
    expert_tables_point(t, lay_, back, c.host, st);
    PointedExperts admit;  // the round's admitted experts: staging slot j → their cache slot (no PCIe)
    for (int j = 0; j < to.n; ++j) {
      const int s = admit_slot[size_t(to.id[j])];
      if (s < 0) continue;
      HLWQ_CUDA_CHECK(cudaMemcpyAsync(c.slots.get() + int64_t(s) * B, buf + int64_t(j) * B, size_t(B),
                                      cudaMemcpyDeviceToDevice, st), "layer streaming: admitting expert {}", to.id[j]);
      admit.id[admit.n] = to.id[j];
      admit.pos[admit.n++] = s;
    }
    expert_cache_place(c, t, admit, false, st);
    n_.admitted += admit.n;
    HLWQ_CUDA_CHECK(cudaEventRecord(free_[b], st), "layer streaming: buffer {} used", b);
    ++n_.rounds;
    n_.staged += to.n;
  }
}

}  // namespace hlwq::cuda
