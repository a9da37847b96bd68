// Per-sequence inference state: everything one sequence carries between forward calls (position, KV cache of
// each full-attention layer, conv and recurrent state of each Gated DeltaNet layer). Nothing here is shared
// between sequences, so several states can run against one Model.
// Dimension legend: Hkv kv heads, D head_dim, C GDN conv channels, K conv width, Hv/dk/dv GDN heads and dims.
#pragma once
#include <cstdint>
#include <vector>

namespace hlwq {

struct GdnState {
  std::vector<float> conv;  // [K-1, C] the last K-1 pre-conv inputs, oldest first (zeros before the start)
  std::vector<float> S;     // [Hv, dk, dv] recurrent state per value head
};

struct KvCache {
  int64_t row = 0;       // Hkv · D floats per position
  std::vector<float> k;  // [len, Hkv, D] post-norm, post-RoPE keys; grows on demand up to max_ctx
  std::vector<float> v;  // [len, Hkv, D]
};

struct LayerState {
  GdnState gdn;  // linear_attention layers
  KvCache kv;    // full_attention layers
};

struct SequenceState {
  int64_t pos = 0;      // tokens consumed so far (= position of the next token)
  int64_t max_ctx = 0;  // forward refuses to go past this many tokens
  std::vector<LayerState> layers;
};

}  // namespace hlwq
