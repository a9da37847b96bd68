// Model: a loaded Qwen3.5/3.6-MoE text model (bf16 or compressed-tensors INT4), the backend that computes it, and
// the pool of per-sequence state it runs sequences in. The forward schedule (model.cpp) knows no kernels: it calls
// the Backend interface (backend/backend.h) layer by layer. Everything a forward computes in — workspace, paged KV
// cache, GDN states — is allocated at load for LoadOptions' limits; a forward allocates nothing.
//
//   LoadOptions lo; lo.max_seqs = 4; lo.kv_tokens = 4 * 4096;
//   Model m = Model::load("models/tiny-moe-dev", lo);
//   Sequence a = m.new_sequence(4096), b = m.new_sequence(4096);
//   m.forward(prompt.data(), n, a, logits.data());                     // one sequence, any length (chunked)
//   SeqInput in[] = {{&a, {&next_a, 1}}, {&b, prompt_b}};               // decode a while b prefills
//   m.forward_batch(in, logits.data());                                 // logits [2, V]: last token of each
//
// One forward at a time per Model (it computes in the model's workspace); sequences are handles into its pool.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "moe/cpu_split.h"
#include "model/state_pool.h"
#include "model/weights.h"
#include "moe/cached_expert_provider.h"
#include "moe/expert_provider.h"
#include "moe/layer_stream.h"
#include "moe/prefetch_arbiter.h"

namespace hlwq {

// Called with hidden states h [T, H] (fp32, the T tokens of one batch) at capture slot `slot`:
// 0 = embeddings, l + 1 = after layer l (l < n_layers), n_layers + 1 = after the final norm.
// transformers' output_hidden_states (n_layers + 1 entries) is slots 0 .. n_layers − 1 followed by slot
// n_layers + 1 (its last entry is after the final norm): see hf_hidden_state_slot(). A long single-sequence
// forward runs as several batches: the hook is called per batch, with row0 = the batch's first token index.
using HiddenHook = std::function<void(int slot, int64_t row0, const float* h, int64_t T)>;

inline int hf_hidden_state_slot(int hf_index, int n_layers) { return hf_index < n_layers ? hf_index : n_layers + 1; }

// Largest batch of the default workspace. Activation scratch grows linearly with the tokens of a batch (MoE expert
// outputs alone are T·(k+1)·H floats: 72 MiB per 1024 tokens at H = 2048, k = 8); 1024 tokens still feed every
// row panel of the prefill GEMM many times over, so longer prompts run as consecutive batches at no real cost.
constexpr int64_t kDefaultMaxBatchTokens = 1024;

// Where a model computes: the CPU backend (the reference, always built) or the CUDA backend (all weights on the GPU).
enum class Device : uint8_t { cpu, cuda };
const char* device_name(Device d);

struct LoadOptions {
  Device device = Device::cpu;
  CpuIsa isa = CpuIsa::auto_detect;          // CPU backend: kernel set
  GdnMode gdn_mode = GdnMode::auto_select;   // tests force one form of the delta rule
  bool cpu_bf16_gemm_inputs = false;         // CPU backend, tests: every linear's input rounded to bf16 as the CUDA
                                             // backend's GEMMs round it (its numerics on the CPU, cpu_ctx.h)
  int32_t max_seqs = 1;                      // sequences open at once (GDN state slots)
  int64_t kv_tokens = 4096;                  // KV positions shared by all sequences (rounded up to whole blocks)
  int64_t kv_block_tokens = 16;              // positions per KV page
  int64_t max_batch_tokens = kDefaultMaxBatchTokens;  // tokens of the largest batch (workspace size)
  KvDtype kv_dtype = KvDtype::bf16;
  ExpertProvider* experts = nullptr;  // where routed experts come from (null: the backend's own); must outlive the model
  // Expert cache: N slots per MoE layer hold routed experts, the rest are copied in on demand (SPEC §7); 0: every
  // expert is used where it lives. On the CPU the slots are host memory: same results bit for bit, and the
  // counters show what the policy would copy over PCIe. On CUDA every routed expert lives in pinned host memory
  // and N slots per layer on the GPU.
  int moe_expert_cache_size = 0;
  int64_t gpu_memory = 0;  // CUDA: device memory budget in bytes (0: none); what is left after the rest → slots
  // CUDA: routed experts on the CPU (moe/cpu_split.h): which cache misses (--cpu-experts), and every routed expert
  // of the first n_cpu_moe MoE layers (--n-cpu-moe, llama.cpp's meaning), which then take no device memory.
  CpuExperts cpu_experts = CpuExperts::off;
  int64_t n_cpu_moe = 0;
  CpuSplitCosts cpu_split_costs{};  // --cpu-experts auto: all zero = measured at load; tests pin them to force a split
  // with a cache: prefetch the next layer's predicted experts (CUDA auto: timed both ways, moe/prefetch_arbiter.h;
  // the CPU provider's hints run under on and auto)
  PrefetchMode moe_prefetch = PrefetchMode::automatic;
  // CUDA, with a cache: batches of at least this many tokens stream each layer's missing experts (0: never)
  int64_t moe_stream_min_tokens = kDefaultStreamMinTokens;
  bool cuda_graphs = true;   // CUDA: record each decode batch size's layer schedule once and replay it
  bool cuda_pdl = true;      // CUDA: programmatic dependent launch inside those recordings (Hopper and later)
};

struct ForwardOptions {
  bool all_logits = false;  // logits [n, V] for every token; otherwise [V] for the last token only
  HiddenHook hidden_hook;   // optional
  int hidden_hook_slot = -1;  // call the hook for this capture slot only (−1: every slot)
  // Token choice on the backend (forward_batch only): with `ids` set, one RowSampling per logits row, and each
  // row's chosen id among [0, n_valid_tokens) (0: the whole vocabulary) is written to ids — only ids cross to the
  // host. A row the backend did not choose for (a backend without sampling, or its limits: backend.h) gets −1,
  // and its logits are written to the logits buffer (which must then be given) at that row, as without ids.
  std::span<const RowSampling> sample;
  int32_t* ids = nullptr;
  int64_t n_valid_tokens = 0;
};

// Options for a whole-window run (perplexity, goldens): logits for every token.
inline ForwardOptions forward_all_logits() {
  ForwardOptions o;
  o.all_logits = true;
  return o;
}

struct ModelCore;

// A sequence: a handle to one slot of its model's state pool, released when the handle is destroyed. The model
// must outlive its sequences.
class Sequence {
 public:
  Sequence() = default;
  Sequence(Sequence&& o) noexcept;
  Sequence& operator=(Sequence&& o) noexcept;
  ~Sequence();

  explicit operator bool() const { return core_ != nullptr; }
  int64_t pos() const;      // tokens consumed so far (= position of the next token)
  int64_t max_len() const;  // forward refuses to go past this many tokens
  int32_t slot() const { return slot_; }
  // Back to position 0 with zero state; also makes a sequence poisoned by a failed forward usable again.
  void reset();

 private:
  friend class Model;
  Sequence(ModelCore* core, int32_t slot) : core_(core), slot_(slot) {}
  ModelCore* core_ = nullptr;
  int32_t slot_ = -1;
};

// Which logits a sequence of a batch wants.
enum class LogitsWanted : uint8_t { none, last, all };

struct SeqInput {
  Sequence* seq = nullptr;
  std::span<const int32_t> tokens;  // appended at seq->pos()
  LogitsWanted logits = LogitsWanted::last;
};

class Model {
 public:
  static Model load(const std::string& dir, const LoadOptions& opt = {});
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const ModelConfig& config() const;
  const ModelWeights& weights() const;
  const LoadOptions& options() const;
  Backend& backend();
  const StatePool& pool() const;

  // A fresh sequence that may grow to max_len tokens (≤ the model's max_position_embeddings); throws when every
  // slot of the pool is open.
  Sequence new_sequence(int64_t max_len);
  // A new sequence (another slot, length cap max_len) whose state is src's: it shares src's KV blocks and gets a
  // copy of its GDN state. src must sit at a block boundary (pos a multiple of kv_block_tokens); both then go on
  // independently. Prefix caching keeps such forks as snapshots and resumes requests from them.
  Sequence fork(const Sequence& src, int64_t max_len);

  // One batch: Σ tokens ≤ max_batch_tokens, distinct sequences of this model. logits [rows, V]: for each input in
  // order, all of its tokens' rows (LogitsWanted::all), its last token's (last) or none. Everything is checked
  // before anything runs (ids, lengths, pool space): a refused batch changes no state. A failure while computing
  // poisons the batch's sequences (see Sequence::reset).
  void forward_batch(std::span<const SeqInput> in, float* logits, const ForwardOptions& opt = {});

  // Runs tokens [n] of one sequence from seq.pos() on, as consecutive batches of at most max_batch_tokens.
  // logits: [n, V] with all_logits, else [V] for the last token (may be null).
  void forward(const int32_t* tokens, int64_t n, Sequence& seq, float* logits, const ForwardOptions& opt = {});

  // Counters of the CPU expert cache (null without one).
  const CachedExpertProvider* expert_cache() const;
  // Counters of whichever expert cache the model runs with (CPU provider or the GPU's own); none without one.
  std::optional<ExpertCacheStats> expert_cache_stats() const;

  // logits [n, V] = lm_head(x [n, H]) for hidden states after the final norm (hook slot n_layers + 1): lets
  // evaluation keep [n, H] and produce logits a few rows at a time.
  void lm_head(const float* x, int64_t n, float* logits);

 private:
  explicit Model(std::unique_ptr<ModelCore> core);
  std::unique_ptr<ModelCore> core_;
};

}  // namespace hlwq
