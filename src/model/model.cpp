// Model loading, the sequence pool, and the Qwen3.5-MoE forward schedule (see model.h):
//   h = embed(tokens); per layer: h += mixer(norm₁ h); h += moe(norm₂ h); logits = lm_head(norm h),
// written as calls of the Backend interface with the residual add fused into the next norm.
// Dimension legend: T batch tokens, H hidden, V vocab, L layers.
#include "model/model.h"

#include <algorithm>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda_backend.h"
#include "core/error.h"
#include "model/loader.h"

namespace hlwq {

// Everything behind a Model, at a stable address (sequences point here).
struct ModelCore {
  LoadOptions opt;
  ModelConfig cfg;
  std::unique_ptr<Checkpoint> ckpt;  // owns the mmaps the weights point into
  ModelWeights w;
  std::unique_ptr<ExpertArena> expert_arena;          // with an expert cache
  std::unique_ptr<CachedExpertProvider> expert_cache;
  std::unique_ptr<Backend> be;
  StatePool pool;
  // per-batch bookkeeping, sized at load
  std::vector<int32_t> tokens;  // [max_batch_tokens]
  std::vector<BatchSeq> seqs;   // [max_seqs]
  std::vector<int64_t> rows;    // [max_batch_tokens] rows whose logits are wanted
  std::vector<float> hidden;    // [max_batch_tokens, H] hidden-state capture for hooks

  ModelCore(const LoadOptions& o, ModelConfig c, std::unique_ptr<Checkpoint> ck, ModelWeights mw)
      : opt(o), cfg(std::move(c)), ckpt(std::move(ck)), w(std::move(mw)),
        pool(StatePoolConfig{o.max_seqs, (o.kv_tokens + o.kv_block_tokens - 1) / o.kv_block_tokens,
                             o.kv_block_tokens}) {}
  void run_batch(const Batch& b, std::span<const int64_t> rows, float* logits, const ForwardOptions& opt);
};

const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

Model::Model(std::unique_ptr<ModelCore> core) : core_(std::move(core)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

const ModelConfig& Model::config() const { return core_->cfg; }
const ModelWeights& Model::weights() const { return core_->w; }
const LoadOptions& Model::options() const { return core_->opt; }
Backend& Model::backend() { return *core_->be; }
const StatePool& Model::pool() const { return core_->pool; }
const CachedExpertProvider* Model::expert_cache() const { return core_->expert_cache.get(); }

std::optional<ExpertCacheStats> Model::expert_cache_stats() const {
  if (core_->expert_cache) return core_->expert_cache->stats().cache;
  ExpertCacheStats s;
  if (core_->be->expert_cache_stats(s)) return s;
  return std::nullopt;
}

Model Model::load(const std::string& dir, const LoadOptions& opt) {
  HLWQ_CHECK(opt.max_seqs >= 1, "the model needs at least one sequence slot, got {}", opt.max_seqs);
  HLWQ_CHECK(opt.kv_tokens >= 1 && opt.kv_block_tokens >= 1 && opt.max_batch_tokens >= 1,
             "KV pool of {} tokens in blocks of {}, batches of {} tokens: each must be positive", opt.kv_tokens,
             opt.kv_block_tokens, opt.max_batch_tokens);
  ModelConfig cfg = load_model_config(dir);  // the arch is checked by load_model_weights
  auto ckpt = std::make_unique<Checkpoint>(dir);
  ModelWeights w = load_model_weights(*ckpt, cfg);
  auto core = std::make_unique<ModelCore>(opt, std::move(cfg), std::move(ckpt), std::move(w));
  ModelCore& c = *core;
  const BackendLimits lim{opt.max_batch_tokens, opt.max_seqs, c.pool.config().kv_blocks, opt.kv_block_tokens,
                          opt.kv_dtype};
  ExpertProvider* experts = opt.experts;
  if (opt.moe_expert_cache_size > 0 && opt.device == Device::cpu) {
    HLWQ_CHECK(!opt.experts, "an expert cache and an explicit expert provider exclude each other");
    ExpertCacheConfig ec;
    ec.n_layers = int(c.cfg.n_layers);
    ec.n_experts = int(c.cfg.n_experts);
    ec.n_slots = std::min(opt.moe_expert_cache_size, ec.n_experts);
    // A backend computes all experts of a layer at once, so the experts a batch needs beyond the slots (up to
    // every other expert in a prefill) must fit the staging buffers in one wave.
    ec.n_stream_buffers = std::max(1, ec.n_experts - ec.n_slots);
    ec.bytes_per_expert = CachedExpertProvider::expert_bytes(c.w);
    c.expert_arena = std::make_unique<HostExpertArena>(ec.n_layers, ec.n_slots, ec.n_stream_buffers,
                                                       ec.bytes_per_expert);
    c.expert_cache = std::make_unique<CachedExpertProvider>(c.w, ec, *c.expert_arena,
                                                              opt.moe_prefetch != PrefetchMode::off);
    experts = c.expert_cache.get();
  }
  HLWQ_CHECK(opt.gpu_memory == 0 || opt.device == Device::cuda, "a GPU memory budget needs --device cuda");
  HLWQ_CHECK((opt.cpu_experts == CpuExperts::off && opt.n_cpu_moe == 0) || opt.device == Device::cuda,
             "--cpu-experts and --n-cpu-moe move routed experts from the GPU to the CPU: they need --device cuda");
  if (opt.device == Device::cuda) {
    HLWQ_CHECK(!experts, "the CUDA backend keeps its own expert cache; an explicit expert provider is CPU-only");
    CudaBackendOptions co;
    co.graphs = opt.cuda_graphs;
    co.programmatic_launch = opt.cuda_pdl;
    co.expert_slots = opt.moe_expert_cache_size;
    co.gpu_memory = opt.gpu_memory;
    co.moe_prefetch = opt.moe_prefetch;
    co.moe_stream_min_tokens = opt.moe_stream_min_tokens;
    co.cpu_experts = opt.cpu_experts;
    co.n_cpu_moe = opt.n_cpu_moe;
    co.split_costs = opt.cpu_split_costs;
    c.be = make_cuda_backend(c.cfg, c.w, lim, co);
  } else {
    c.be = std::make_unique<CpuBackend>(c.cfg, c.w, lim, CpuBackendOptions{opt.isa, opt.gdn_mode, experts, opt.cpu_bf16_gemm_inputs});
  }
  c.tokens.resize(size_t(opt.max_batch_tokens));
  c.seqs.resize(size_t(opt.max_seqs));
  c.rows.resize(size_t(opt.max_batch_tokens));
  c.hidden.resize(size_t(opt.max_batch_tokens * c.cfg.hidden_size));
  return Model(std::move(core));
}

// --- sequences ---

Sequence::Sequence(Sequence&& o) noexcept : core_(o.core_), slot_(o.slot_) {
  o.core_ = nullptr;
  o.slot_ = -1;
}

Sequence& Sequence::operator=(Sequence&& o) noexcept {
  if (this != &o) {
    if (core_) core_->pool.close(slot_);
    core_ = o.core_;
    slot_ = o.slot_;
    o.core_ = nullptr;
    o.slot_ = -1;
  }
  return *this;
}

Sequence::~Sequence() {
  if (core_) core_->pool.close(slot_);
}

int64_t Sequence::pos() const {
  HLWQ_CHECK(core_, "empty sequence handle");
  return core_->pool.pos(slot_);
}

int64_t Sequence::max_len() const {
  HLWQ_CHECK(core_, "empty sequence handle");
  return core_->pool.max_len(slot_);
}

void Sequence::reset() {
  HLWQ_CHECK(core_, "empty sequence handle");
  core_->pool.reset(slot_);
  core_->be->reset_slot(slot_);
}

Sequence Model::new_sequence(int64_t max_len) {
  ModelCore& c = *core_;
  HLWQ_CHECK(max_len > 0, "max_len must be positive, got {}", max_len);
  // RoPE past the trained length silently degrades the model: refuse it rather than run it.
  HLWQ_CHECK(c.cfg.max_position_embeddings == 0 || max_len <= c.cfg.max_position_embeddings,
             "context of {} tokens is longer than the model's max_position_embeddings {}", max_len,
             c.cfg.max_position_embeddings);
  const int32_t slot = c.pool.open(max_len);
  c.be->reset_slot(slot);
  return Sequence(core_.get(), slot);
}

Sequence Model::fork(const Sequence& src, int64_t max_len) {
  ModelCore& c = *core_;
  HLWQ_CHECK(src.core_ == core_.get(), "the sequence to fork belongs to another model");
  c.pool.check_usable(src.slot_);
  Sequence dst = new_sequence(max_len);  // closed again if the fork is refused
  c.pool.fork(src.slot_, dst.slot_);
  c.be->copy_slot_state(src.slot_, dst.slot_);
  return dst;
}

// --- forward ---

void ModelCore::run_batch(const Batch& b, std::span<const int64_t> lrows, float* logits, const ForwardOptions& fo) {
  const int L = int(cfg.n_layers);
  const int64_t T = int64_t(b.tokens.size());
  Backend& e = *be;
  auto hook = [&](int slot, Act a) {
    if (!fo.hidden_hook || (fo.hidden_hook_slot >= 0 && fo.hidden_hook_slot != slot)) return;
    e.read(a, hidden.data());
    fo.hidden_hook(slot, 0, hidden.data(), T);
  };
  e.begin_batch(b);
  if (!e.replay_layers()) {
    e.embed(Act::h);
    hook(0, Act::h);
    e.rmsnorm(0, NormKind::input, Act::h, Act::xn);
    for (int l = 0; l < L; ++l) {
      if (cfg.layer_types[size_t(l)] == LayerKind::linear_attention) e.gdn_mixer(l, Act::xn, Act::y);
      else e.attn_mixer(l, Act::xn, Act::y);
      e.add_rmsnorm(Act::h, Act::y, l, NormKind::post_attention, Act::xn);
      e.moe_route(l, Act::xn);
      // the next layer's router on this hidden state predicts its experts: a provider that copies experts (the
      // GPU cache) starts on them while this layer's experts compute
      if (l + 1 < L && e.moe_wants_hint()) e.moe_hint(l + 1, Act::xn);
      if (l + 1 < L) e.moe_experts_add_rmsnorm(l, Act::xn, Act::h, Act::y, l + 1, NormKind::input, Act::xn);
      else e.moe_experts_add_rmsnorm(l, Act::xn, Act::h, Act::y, l, NormKind::final_norm, Act::xn);
      hook(l + 1, Act::h);
    }
  }
  e.end_layers();
  hook(L + 1, Act::xn);
  if (fo.ids && !lrows.empty()) {
    const int64_t V = cfg.vocab_size, n_valid = fo.n_valid_tokens > 0 ? fo.n_valid_tokens : V;
    if (e.lm_head_sample(Act::xn, lrows, n_valid, fo.sample, fo.ids)) {
      for (size_t i = 0; i < lrows.size(); ++i)  // rows past the backend's limits: logits, for the host sampler
        if (fo.ids[i] < 0) e.lm_head(Act::xn, lrows.subspan(i, 1), logits + int64_t(i) * V);
      return;
    }
    std::fill(fo.ids, fo.ids + lrows.size(), -1);
  }
  if (logits && !lrows.empty()) e.lm_head(Act::xn, lrows, logits);
}

void Model::forward_batch(std::span<const SeqInput> in, float* logits, const ForwardOptions& opt) {
  ModelCore& c = *core_;
  const int64_t V = c.cfg.vocab_size;
  HLWQ_CHECK(!in.empty() && int64_t(in.size()) <= c.opt.max_seqs, "a batch needs 1 to {} sequences, got {}",
             c.opt.max_seqs, in.size());
  // everything is checked before any state changes, so a refused batch leaves every sequence as it was
  int64_t T = 0, blocks = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const SeqInput& s = in[i];
    HLWQ_CHECK(s.seq && s.seq->core_ == core_.get(), "batch input {} is not a sequence of this model", i);
    for (size_t j = 0; j < i; ++j)
      HLWQ_CHECK(in[j].seq->slot_ != s.seq->slot_, "batch inputs {} and {} are the same sequence", j, i);
    c.pool.check_usable(s.seq->slot_);
    const int64_t n = int64_t(s.tokens.size()), pos = c.pool.pos(s.seq->slot_);
    HLWQ_CHECK(n > 0, "batch input {} has no tokens", i);
    HLWQ_CHECK(pos + n <= c.pool.max_len(s.seq->slot_), "sequence would reach {} tokens, past its max_len {}",
               pos + n, c.pool.max_len(s.seq->slot_));
    for (int64_t t = 0; t < n; ++t)
      HLWQ_CHECK(s.tokens[size_t(t)] >= 0 && s.tokens[size_t(t)] < V,
                 "token id {} at index {} is outside the vocabulary [0, {})", s.tokens[size_t(t)], t, V);
    T += n;
    blocks += c.pool.blocks_needed(s.seq->slot_, pos + n);
  }
  HLWQ_CHECK(T <= c.opt.max_batch_tokens, "batch of {} tokens is larger than the {} the model was loaded for", T,
             c.opt.max_batch_tokens);
  if (opt.ids) {
    size_t rows = 0;
    for (const SeqInput& s : in)
      rows += s.logits == LogitsWanted::all ? s.tokens.size() : s.logits == LogitsWanted::last ? 1 : 0;
    HLWQ_CHECK(opt.sample.size() == rows && (logits || rows == 0),
               "token choice on the backend needs one sampling entry per logits row ({} given, {} rows) and a logits "
               "buffer for the rows it cannot choose", opt.sample.size(), rows);
    HLWQ_CHECK(opt.n_valid_tokens >= 0 && opt.n_valid_tokens <= V, "n_valid_tokens {} is outside [0, {}]",
               opt.n_valid_tokens, V);
  }
  HLWQ_CHECK(blocks <= c.pool.free_blocks(),
             "KV pool is full: the batch needs {} more blocks of {} tokens, {} of {} are free (load the model with a "
             "larger KV pool, or finish other sequences)",
             blocks, c.opt.kv_block_tokens, c.pool.free_blocks(), c.pool.config().kv_blocks);

  int64_t t0 = 0, n_rows = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const SeqInput& s = in[i];
    const int32_t slot = s.seq->slot_;
    const int64_t n = int64_t(s.tokens.size()), pos = c.pool.pos(slot);
    c.pool.grow(slot, pos + n);
    std::copy(s.tokens.begin(), s.tokens.end(), c.tokens.begin() + t0);
    c.seqs[i] = BatchSeq{slot, pos, t0, n, c.pool.blocks(slot)};
    if (s.logits == LogitsWanted::all)
      for (int64_t t = 0; t < n; ++t) c.rows[size_t(n_rows++)] = t0 + t;
    else if (s.logits == LogitsWanted::last)
      c.rows[size_t(n_rows++)] = t0 + n - 1;
    t0 += n;
  }
  const Batch b{std::span<const int32_t>(c.tokens.data(), size_t(T)),
                std::span<const BatchSeq>(c.seqs.data(), in.size()), !opt.hidden_hook};
  try {
    c.run_batch(b, std::span<const int64_t>(c.rows.data(), size_t(n_rows)), logits, opt);
  } catch (const std::exception& ex) {
    // some layers may have advanced these sequences' state and others not: no later call may trust it
    for (const SeqInput& s : in) c.pool.poison(s.seq->slot_, ex.what());
    throw;
  }
  for (const SeqInput& s : in) c.pool.advance(s.seq->slot_, int64_t(s.tokens.size()));
}

void Model::forward(const int32_t* tokens, int64_t n, Sequence& seq, float* logits, const ForwardOptions& opt) {
  ModelCore& c = *core_;
  const int64_t V = c.cfg.vocab_size, chunk = c.opt.max_batch_tokens;
  HLWQ_CHECK(n > 0, "forward needs at least one token");
  HLWQ_CHECK(seq.core_ == core_.get(), "the sequence belongs to another model");
  HLWQ_CHECK(!opt.ids || !opt.all_logits, "forward: token choice on the backend is for the last token only");
  c.pool.check_usable(seq.slot_);
  HLWQ_CHECK(seq.pos() + n <= seq.max_len(), "sequence would reach {} tokens, past its max_len {}", seq.pos() + n,
             seq.max_len());
  // every id before any batch runs, so a bad id late in a long prompt leaves the state untouched
  for (int64_t t = 0; t < n; ++t)
    HLWQ_CHECK(tokens[t] >= 0 && tokens[t] < V, "token id {} at index {} is outside the vocabulary [0, {})",
               tokens[t], t, V);
  HLWQ_CHECK(c.pool.blocks_needed(seq.slot_, seq.pos() + n) <= c.pool.free_blocks(),
             "KV pool is full: the sequence needs {} more blocks of {} tokens, {} of {} are free (load the model "
             "with a larger KV pool)",
             c.pool.blocks_needed(seq.slot_, seq.pos() + n), c.opt.kv_block_tokens, c.pool.free_blocks(),
             c.pool.config().kv_blocks);
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t len = std::min(chunk, n - t0);
    const bool last = t0 + len == n;
    SeqInput in{&seq, std::span<const int32_t>(tokens + t0, size_t(len)),
                opt.all_logits ? LogitsWanted::all : last ? LogitsWanted::last : LogitsWanted::none};
    ForwardOptions o;
    o.hidden_hook_slot = opt.hidden_hook_slot;
    if (opt.hidden_hook)
      o.hidden_hook = [&](int slot, int64_t, const float* h, int64_t T) { opt.hidden_hook(slot, t0, h, T); };
    if (last && opt.ids) {  // the token choice belongs to the last chunk's row
      o.sample = opt.sample;
      o.ids = opt.ids;
      o.n_valid_tokens = opt.n_valid_tokens;
    }
    float* out = !logits ? nullptr : opt.all_logits ? logits + t0 * V : last ? logits : nullptr;
    forward_batch(std::span<const SeqInput>(&in, 1), out, o);
  }
}

void Model::lm_head(const float* x, int64_t n, float* logits) { core_->be->lm_head_host(x, n, logits); }

}  // namespace hlwq
