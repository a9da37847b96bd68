// Gated full attention on the device (SPEC §5), over the paged bf16 KV cache (backend seam layout):
//   K and V pages [n_blocks, 16, Hkv, D] bf16; token at position p of a sequence lives in block
//   block_table[p / 16], row p % 16. Keys are stored after k_norm and RoPE.
// Two ops: qk_norm_rope_store (zero-centred q/k RMSNorm, NeoX partial RoPE on the first r dims, K/V written into
// the pages) and attend (causal GQA softmax attention, scale D^-0.5, output gated by sigmoid of the q_proj gate).
// A batch may mix sequences: token t has position pos[t] and its sequence's block table at bt + bt_off[t].
// Dimension legend: T tokens, Hq/Hkv heads, D head_dim, r rotary dims.
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

namespace hlwq::cuda {

constexpr int kAttnPageTokens = 16;  // positions of a K/V page

struct AttnDimsDev {
  int Hq, Hkv, D, r;
  float eps;
};

// qg fp32 [T, Hq, 2D] (row stride ldq) per head [query | gate]: the query part is normalized and rotated in
// place. k, v fp32 rows (k_proj / v_proj outputs) [T, Hkv·D] with row strides ldk, ldv. inv_freq [r/2] fp32.
void qk_norm_rope_store(float* qg, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv, const float* q_norm,
                        const float* k_norm, const float* inv_freq, const int* pos, const int* bt_off, const int* bt,
                        uint16_t* k_pages, uint16_t* v_pages, int64_t T, const AttnDimsDev& d, cudaStream_t st);

// out fp32 [T, Hq·D] = sigmoid(gate) ⊙ softmax(q Kᵀ / √D) V over positions [0, pos[t]] of the token's sequence.
// Needs D ∈ {64, 128, 256} and Hq / Hkv ≤ 8. With few tokens the keys are split over several blocks whose partial
// results go to ws (attend_workspace_floats(T, d, SM count) floats; 0 when no split is needed). n_seq: sequences in
// the batch; one sequence of many tokens (a prefill) runs on the tensor cores (attention_prefill.cuh).
void attend(const float* qg, int64_t ldq, const int* pos, const int* bt_off, const int* bt, const uint16_t* k_pages,
            const uint16_t* v_pages, int64_t T, int n_seq, const AttnDimsDev& d, float* out, float* ws,
            int64_t ws_floats, cudaStream_t st);
int64_t attend_splits(int64_t T, const AttnDimsDev& d, int sms);
int64_t attend_workspace_floats(int64_t T, const AttnDimsDev& d, int sms);

}  // namespace hlwq::cuda
