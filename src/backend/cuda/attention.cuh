// Gated full attention on the device (SPEC §5), over the paged bf16 KV cache (backend seam layout):
//   K and V pages [n_blocks, 16, Hkv, D] bf16; token at position p of a sequence lives in block
//   block_table[p / 16], row p % 16. Keys are stored after k_norm and RoPE.
// Two ops: qk_norm_rope_store (zero-centred q/k RMSNorm, NeoX partial RoPE on the first r dims, K/V written into
// the pages) and attend (causal GQA softmax attention, scale D^-0.5, output gated by sigmoid of the q_proj gate).
// A batch may mix sequences: token t has position pos[t] and its sequence's block table at bt + bt_off[t].
// Dimension legend: T tokens, Hq/Hkv heads, D head_dim, r rotary dims.
#pragma once
#include <cstdint>
#include <vector>

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

// A sequence of a batch: its tokens [t0, t0 + n) of the batch, at positions pos0, pos0 + 1, …
struct AttendSeq {
  int64_t t0 = 0, n = 0, pos0 = 0;
};

// Which kernel serves which tokens of a batch. The tensor-core prefill kernel (attention_prefill.cuh) takes every
// sequence of ≥ 16 tokens, in blocks of consecutive tokens of one sequence: words [2·n_tiles] hold each block's
// (first token, end), the blocks that see the most keys first. The CUDA-core kernel takes the tokens of the other
// sequences: words [2·n_tiles, +n_core). No words: every token of the batch on the CUDA cores, in batch order (a
// decode step, whose recorded graph then reads no plan).
struct AttendPlanHost {
  std::vector<int> words;
  int64_t n_tiles = 0, n_core = 0;
};
// Built on the host from the batch's sequences (t0 increasing, tokens [0, T) covered once); at most
// attend_plan_capacity(T) words. attend_plan asks the device whether the tensor-core kernel serves d;
// attend_plan_blocks is its device-free part, for blocks of block_tokens tokens (0: no tensor-core kernel, no words).
AttendPlanHost attend_plan(const std::vector<AttendSeq>& seqs, const AttnDimsDev& d);
AttendPlanHost attend_plan_blocks(const std::vector<AttendSeq>& seqs, int64_t block_tokens);
inline int64_t attend_plan_capacity(int64_t T) { return 2 * T; }
// The plan's words uploaded to the device (words null: no plan, as above).
struct AttendPlan {
  const int* words = nullptr;
  int64_t n_tiles = 0, n_core = 0;
};

// out fp32 [T, Hq·D] = sigmoid(gate) ⊙ softmax(q Kᵀ / √D) V over positions [0, pos[t]] of the token's sequence.
// Needs D ∈ {64, 128, 256} and Hq / Hkv ≤ 8. With few tokens on the CUDA cores the keys are split over several
// blocks whose partial results go to ws (attend_workspace_floats(T, d, SM count) floats; 0 when no split is needed).
void attend(const float* qg, int64_t ldq, const int* pos, const int* bt_off, const int* bt, const uint16_t* k_pages,
            const uint16_t* v_pages, int64_t T, const AttendPlan& plan, const AttnDimsDev& d, float* out, float* ws,
            int64_t ws_floats, cudaStream_t st);
int64_t attend_splits(int64_t T, const AttnDimsDev& d, int sms);
int64_t attend_workspace_floats(int64_t T, const AttnDimsDev& d, int sms);

}  // namespace hlwq::cuda
