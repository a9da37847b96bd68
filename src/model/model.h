// Model: a loaded Qwen3.5/3.6-MoE text model (bf16 or compressed-tensors INT4) and its CPU forward.
// The Model is immutable after load and holds no per-sequence data: every forward call takes the
// SequenceState it advances, so any number of sequences can share one Model (one call per state at a time).
//
//   Model m = Model::load("models/tiny-moe-dev");
//   SequenceState st = m.new_state(4096);
//   std::vector<float> logits(n * m.config().vocab_size);
//   m.forward(tokens, n, st, logits.data(), forward_all_logits());    // prefill
//   m.forward(&next, 1, st, logits.data());                          // decode: logits of the last token
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/cpu/attention.h"
#include "model/cpu/gdn.h"
#include "model/cpu/kernels.h"
#include "model/state.h"
#include "model/weights.h"

namespace hlwq {

// Called with hidden states h [n, H] (fp32, the n tokens of this call) at capture slot `slot`:
// 0 = embeddings, l + 1 = after layer l (l < n_layers), n_layers + 1 = after the final norm.
// transformers' output_hidden_states (n_layers + 1 entries) is slots 0 .. n_layers − 1 followed by slot
// n_layers + 1 (its last entry is after the final norm): see hf_hidden_state_slot().
using HiddenHook = std::function<void(int slot, const float* h, int64_t n)>;

inline int hf_hidden_state_slot(int hf_index, int n_layers) { return hf_index < n_layers ? hf_index : n_layers + 1; }

// Longest piece of a prompt one forward pass runs at once when only the last token's logits are wanted.
// Activation scratch grows linearly with the tokens of a pass (MoE expert outputs alone are n·k·H floats:
// 64 MiB per 1024 tokens at H = 2048, k = 8), so a 256k-token prompt in one pass would need tens of GB.
// 1024 tokens still feed every row panel of the prefill GEMM (kPanelTokens) many times over, so chunking
// costs next to no throughput.
constexpr int64_t kDefaultMaxForwardChunk = 1024;

struct ForwardOptions {
  bool all_logits = false;   // logits [n, V] for every token; otherwise [V] for the last token only
  HiddenHook hidden_hook;    // optional
  GdnMode gdn_mode = GdnMode::auto_select;  // tests force one form of the delta rule
  // Without all_logits and hidden_hook, a longer call runs as consecutive passes of at most this many tokens,
  // continuing the state (same result up to summation order). Tests shrink it.
  int64_t max_chunk = kDefaultMaxForwardChunk;
};

// Options for a whole-window run (perplexity, goldens): logits for every token.
inline ForwardOptions forward_all_logits() {
  ForwardOptions o;
  o.all_logits = true;
  return o;
}

struct LoadOptions {
  CpuIsa isa = CpuIsa::auto_detect;
};

class Model {
 public:
  static Model load(const std::string& dir, const LoadOptions& opt = {});

  const ModelConfig& config() const { return cfg_; }
  const ModelWeights& weights() const { return w_; }
  const CpuKernels& kernels() const { return *kern_; }

  // A fresh sequence that may grow to max_ctx tokens.
  SequenceState new_state(int64_t max_ctx) const;

  // Runs tokens [n] from st.pos on, advancing st. logits: [n, V] with all_logits, else [V] (may be null).
  // st must come from this model's new_state(): its shapes are checked before anything runs.
  void forward(const int32_t* tokens, int64_t n, SequenceState& st, float* logits,
               const ForwardOptions& opt = {}) const;

 private:
  Model() = default;
  void check_state(const SequenceState& st) const;
  // One pass over tokens [n] (already validated), advancing st.
  void forward_pass(const int32_t* tokens, int64_t n, SequenceState& st, float* logits,
                    const ForwardOptions& opt) const;
  ModelConfig cfg_;
  std::unique_ptr<Checkpoint> ckpt_;  // owns the mmaps the weights point into
  ModelWeights w_;
  const CpuKernels* kern_ = nullptr;
  GdnDims gdn_dims_{};
  AttentionDims attn_dims_{};
};

}  // namespace hlwq
