// Calibration statistics on the device (issue 13: hlwq quantize --calib with CUDA): H += Σ_r x_r x_rᵀ for the
// inputs of the linears calibration asks for, accumulated where the forward computes them, so no activation
// crosses PCIe (the 35B model's statistics are ~300 TFLOP per 65,536 tokens: hours on a CPU, seconds here).
//
// gram_accumulate is the kernel: each block sums one 64×64 tile on or above the diagonal of one job's H over the
// job's rows, in fp32 (a window of at most a few thousand rows), then adds the tile into H in fp64. The rows X are
// read where the forward left them (GramSource): fp32 rows of an activation buffer, optionally gathered through a
// row list (a routed expert's tokens), or bf16 elements of an xfrag buffer (gemm.cuh; the experts' SiLU(gate)·up,
// which exists only in that form), optionally a row of the shared expert assembled from its S slices' slots.
// Only the upper tiles are summed; InputStatsDev::take mirrors them on the device before the sums cross PCIe.
//
// InputStatsDev holds one fp64 sum per distinct input (quant/calib_stats.h, linear_input_key) of the linears asked
// for — while calibration runs, never in inference — and knows where each of them is computed: a layer's mixer
// input (GDN in_proj_*, attention q/k/v_proj), its mixer output (out_proj, o_proj), the shared expert's two inputs,
// and each routed expert's two inputs over only the tokens routed to it. For the routed experts it reads the
// step's slot plan back (one stream synchronisation per MoE layer and batch: calibration only) and uploads the
// per-expert row lists, each in token order (the router fills an expert's slots in a varying order).
// Numerics: the mixer and gate/up inputs are the fp32 activations (as the CPU engine's tap sees them); down's input
// is bf16 (the form the gate_up kernel writes it in, and the one the GEMM multiplies). Products and the per-launch
// sums are fp32, the running sums fp64.
// Dimension legend: T tokens, n the input width of a linear (H of its [n, n]), E experts, k active, S shared parts,
// A = k + S slots per token, I expert width.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <cuda_runtime_api.h>

#include "backend/cuda/device_buffer.h"
#include "backend/cuda/moe.cuh"
#include "model/weights.h"
#include "quant/calib_stats.h"

namespace hlwq::cuda {

// Where element (r, c) of the rows X [rows, n] of a Gram update lives on the device.
struct GramSource {
  const void* base = nullptr;  // fp32 rows, or an xfrag buffer (bf16)
  int64_t ld = 0;              // fp32: row stride; xfrag: its in_pad
  bool xfrag = false;
  const int* rows = nullptr;   // [Σ jobs' rows] the buffer row (token or slot) of X's row r; null: row r itself
  // Shared expert's down input: X row t, column c is column c % part_width of buffer row
  // part_slot[t · part_stride + part_off + c / part_width] (its slice's slot). Null: not assembled.
  const int* part_slot = nullptr;
  int64_t part_stride = 0, part_off = 0, part_width = 0;
};

// H [n, n] (fp64, upper tiles) += Σ X's rows [r0, r0 + n_rows) outer products; n_rows < 0: rows [0, dense_rows).
struct GramJob {
  double* H = nullptr;
  int32_t r0 = 0, n_rows = 0;
};

// The jobs (device array [n_jobs], all of width n) over one source, on st.
void gram_accumulate(const GramJob* jobs, int n_jobs, int64_t n, const GramSource& src, int64_t dense_rows,
                     cudaStream_t st);

class InputStatsDev {
 public:
  // w: the model's weights (names and shapes); max_tiles: the MoE workspace's slot plan size
  // (moe_max_tiles); E experts.
  InputStatsDev(const ModelWeights& w, int64_t max_tiles, int64_t E);
  ~InputStatsDev();
  InputStatsDev(const InputStatsDev&) = delete;
  InputStatsDev& operator=(const InputStatsDev&) = delete;

  // Takes keys (module names, each its input's own key) from the front while their sums (8·n² bytes each) fit the
  // device's free memory less 256 MB; returns how many it took (a name the model has no linear for counts as
  // taken, and stays absent from take()). Throws when not even the first fits.
  int64_t add(const std::vector<std::string>& keys);
  // Mixer input (in_proj_* / q,k,v_proj: out_side false) or output (out_proj / o_proj: true) of layer l, x fp32
  // [T, ld]; nothing when that input is not asked for.
  void mixer(int layer, bool out_side, const float* x, int64_t ld, int64_t T, cudaStream_t st);
  // The MoE block of layer l just ran moe_forward(L, ws, xn [T, H]) on st: its shared and routed experts' inputs.
  void moe(int layer, const MoeLayerDev& L, const MoeWorkspace& ws, const float* xn, int64_t T, cudaStream_t st);
  // Waits for st, then returns every sum that saw a token, by key (symmetric, fp64, on the host).
  LinearStatsMap take(cudaStream_t st);

 private:
  struct Sum {
    std::string name;
    int64_t n = 0, tokens = 0;
    DeviceBuffer<double> H;  // [n, n], upper tiles
    DeviceBuffer<GramJob> job;  // the one dense job over it (mixers, shared expert)
  };
  void dense(Sum* s, const GramSource& src, int64_t T, cudaStream_t st);

  // Where the forward computes an input: the entry of roles_, gu_ or dn_ that holds its sum, its width, its layer.
  struct Where {
    Sum** slot;
    int64_t n;
    int layer;
    bool routed;
  };
  int64_t E_;
  std::vector<std::unique_ptr<Sum>> sums_;
  std::vector<std::vector<Sum*>> roles_;           // [layer][mixer in, mixer out, shared gate/up, shared down]
  std::vector<std::vector<Sum*>> gu_, dn_;         // [layer][E] routed experts' gate/up and down inputs
  std::vector<bool> routed_;                       // [layer] some routed expert's input is asked for
  int64_t max_tiles_;
  PinnedBuffer plan_;   // [max_tiles] tile_mat | [max_tiles·8] slot_tok, read back per MoE layer
  PinnedBuffer jobs_;   // GramJob [2E] and
  PinnedBuffer lists_;  // ints [2 · max_tiles · 8]: the routed experts' jobs and row lists of a step, uploaded
  DeviceBuffer<GramJob> jobs_dev_;
  DeviceBuffer<int> lists_dev_;
  std::unordered_map<std::string, Where> where_;  // by module name (the vectors above are never resized)
};

}  // namespace hlwq::cuda
