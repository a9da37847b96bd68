// Calibration statistics on the device (see input_stats.cuh).
#include "backend/cuda/input_stats.cuh"

#include <cuda_bf16.h>

#include <algorithm>

#include "backend/cuda/pdl.cuh"
#include "backend/cuda/xfrag.cuh"

namespace hlwq::cuda {

namespace {

constexpr int kTile = 64;     // H tile of a block: 64×64, 16×16 threads of 4×4 outputs
constexpr int kChunk = 16;    // rows of X staged in shared memory at a time
constexpr int kThreads = 256;
// Device memory calibration leaves free beside its sums (the forward's own allocations are made at load).
constexpr int64_t kReserveBytes = int64_t(256) << 20;

__device__ __forceinline__ float gram_elem(const GramSource& s, int64_t r, int64_t c) {
  int64_t row = s.rows ? s.rows[r] : r, col = c;
  if (s.part_slot) {
    const int64_t p = c / s.part_width;
    col = c - p * s.part_width;
    row = s.part_slot[row * s.part_stride + s.part_off + p];
  }
  if (s.xfrag) return __bfloat162float(static_cast<const __nv_bfloat16*>(s.base)[xfrag_elem(row, col, int(s.ld))]);
  return static_cast<const float*>(s.base)[row * s.ld + col];
}

// Block (x: a tile on or above the diagonal, y: a job). Rows are summed in order: the result does not depend on
// the launch shape or the device.
__global__ void __launch_bounds__(kThreads) gram_kernel(const GramJob* __restrict__ jobs, int64_t n, GramSource src,
                                                        int64_t dense_rows) {
  HLWQ_PDL_PREAMBLE();
  const GramJob job = jobs[blockIdx.y];
  const int64_t rows = job.n_rows < 0 ? dense_rows : job.n_rows, r0 = job.n_rows < 0 ? 0 : job.r0;
  if (rows <= 0) return;
  const int nt = int((n + kTile - 1) / kTile);
  int bi = 0, t = int(blockIdx.x);
  while (t >= nt - bi) t -= nt - bi, ++bi;  // the upper triangle row by row
  const int64_t i0 = int64_t(bi) * kTile, j0 = int64_t(bi + t) * kTile;
  __shared__ float a[kChunk][kTile], b[kChunk][kTile];
  const int tx = int(threadIdx.x) % 16, ty = int(threadIdx.x) / 16;
  float acc[4][4] = {};
  for (int64_t c0 = 0; c0 < rows; c0 += kChunk) {
    for (int e = int(threadIdx.x); e < kChunk * kTile; e += kThreads) {
      const int rr = e / kTile, cc = e % kTile;
      const bool live = c0 + rr < rows;
      a[rr][cc] = live && i0 + cc < n ? gram_elem(src, r0 + c0 + rr, i0 + cc) : 0.f;
      b[rr][cc] = live && j0 + cc < n ? gram_elem(src, r0 + c0 + rr, j0 + cc) : 0.f;
    }
    __syncthreads();
#pragma unroll 4
    for (int rr = 0; rr < kChunk; ++rr) {
      float av[4], bv[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) av[u] = a[rr][ty + 16 * u], bv[u] = b[rr][tx + 16 * u];
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int v = 0; v < 4; ++v) acc[u][v] = fmaf(av[u], bv[v], acc[u][v]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int u = 0; u < 4; ++u)
#pragma unroll
    for (int v = 0; v < 4; ++v) {
      const int64_t i = i0 + ty + 16 * u, j = j0 + tx + 16 * v;
      if (i < n && j < n) job.H[i * n + j] += double(acc[u][v]);
    }
}

// H [n, n]: each entry of a tile below the diagonal from its mirror image (the upper tiles are only read).
__global__ void mirror_kernel(double* __restrict__ H, int64_t n) {
  HLWQ_PDL_PREAMBLE();
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n * n) return;
  const int64_t i = idx / n, j = idx % n;
  if (i / kTile > j / kTile) H[idx] = H[j * n + i];
}

}  // namespace

void gram_accumulate(const GramJob* jobs, int n_jobs, int64_t n, const GramSource& src, int64_t dense_rows,
                     cudaStream_t st) {
  if (n_jobs == 0 || n == 0) return;
  HLWQ_CHECK(n_jobs <= 65535 && (!src.part_slot || src.part_width > 0), "gram_accumulate: {} jobs, part width {}",
             n_jobs, src.part_width);
  const int64_t nt = (n + kTile - 1) / kTile;
  gram_kernel<<<dim3(unsigned(nt * (nt + 1) / 2), unsigned(n_jobs)), kThreads, 0, st>>>(jobs, n, src, dense_rows);
  HLWQ_CUDA_LAUNCH_CHECK("gram_accumulate {} jobs of width {}", n_jobs, n);
}

namespace {
enum Role : int { kMixIn, kMixOut, kSharedGu, kSharedDn, kRoles };
}

InputStatsDev::InputStatsDev(const ModelWeights& w, int64_t max_tiles, int64_t E)
    : E_(E), roles_(w.layers.size(), std::vector<Sum*>(kRoles, nullptr)),
      gu_(w.layers.size(), std::vector<Sum*>(size_t(E), nullptr)), dn_(gu_), routed_(w.layers.size(), false),
      max_tiles_(max_tiles), plan_(size_t(std::max<int64_t>(max_tiles * 9, 1)) * sizeof(int), "calibration plan"),
      jobs_(size_t(std::max<int64_t>(2 * E, 1)) * sizeof(GramJob), "calibration jobs"),
      lists_(size_t(std::max<int64_t>(2 * max_tiles * 8, 1)) * sizeof(int), "calibration row lists"),
      jobs_dev_(size_t(2 * E), "calibration jobs"), lists_dev_(size_t(2 * max_tiles * 8), "calibration row lists") {
  // every input the forward can sum, by its key's module name (the first linear of a shared input names it)
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& L = w.layers[l];
    auto at = [&](const LinearWeight& lw, Sum*& s, bool routed) {
      if (!lw.name.empty()) where_.emplace(lw.name, Where{&s, lw.in, int(l), routed});
    };
    at(L.gdn.in_proj_qkv, roles_[l][kMixIn], false), at(L.attn.q_proj, roles_[l][kMixIn], false);
    at(L.gdn.out_proj, roles_[l][kMixOut], false), at(L.attn.o_proj, roles_[l][kMixOut], false);
    if (L.moe.has_shared)
      at(L.moe.shared.gate_proj, roles_[l][kSharedGu], false), at(L.moe.shared.down_proj, roles_[l][kSharedDn], false);
    for (size_t e = 0; e < L.moe.experts.size() && e < size_t(E); ++e)
      at(L.moe.experts[e].gate_proj, gu_[l][e], true), at(L.moe.experts[e].down_proj, dn_[l][e], true);
  }
}

InputStatsDev::~InputStatsDev() = default;

int64_t InputStatsDev::add(const std::vector<std::string>& keys) {
  int64_t taken = 0;
  for (const std::string& key : keys) {
    const auto it = where_.find(key);
    if (it == where_.end() || *it->second.slot) {  // not a linear of this model (absent from take), or asked twice
      ++taken;
      continue;
    }
    const Where& at = it->second;
    const int64_t n = at.n;
    const int64_t bytes = 8 * n * n;
    size_t free = 0, total = 0;
    HLWQ_CUDA_CHECK(cudaMemGetInfo(&free, &total), "device memory");
    if (int64_t(free) < bytes + kReserveBytes) {
      HLWQ_CHECK(taken > 0, "calibration statistics of {} ({} inputs: {:.1f} MB) do not fit the {:.1f} MB of device "
                 "memory left by the model (use --calib-gpu-memory SIZE to keep routed experts in host memory, or "
                 "--calib-device cpu)", key, n, bytes / 1e6, free / 1e6);
      break;
    }
    auto s = std::make_unique<Sum>();
    s->name = key;
    s->n = n;
    s->H = DeviceBuffer<double>(size_t(n * n), "calibration statistics of " + key);
    HLWQ_CUDA_CHECK(cudaMemset(s->H.get(), 0, s->H.bytes()), "clearing the statistics of {}", key);
    s->job = DeviceBuffer<GramJob>(std::vector<GramJob>{GramJob{s->H.get(), 0, -1}}, "calibration job of " + key);
    *at.slot = s.get();
    if (at.routed) routed_[size_t(at.layer)] = true;
    sums_.push_back(std::move(s));
    ++taken;
  }
  return taken;
}

void InputStatsDev::dense(Sum* s, const GramSource& src, int64_t T, cudaStream_t st) {
  gram_accumulate(s->job.get(), 1, s->n, src, T, st);
  s->tokens += T;
}

void InputStatsDev::mixer(int layer, bool out_side, const float* x, int64_t ld, int64_t T, cudaStream_t st) {
  Sum* s = roles_[size_t(layer)][out_side ? kMixOut : kMixIn];
  if (!s) return;
  GramSource src;
  src.base = x;
  src.ld = ld;
  dense(s, src, T, st);
}

void InputStatsDev::moe(int layer, const MoeLayerDev& L, const MoeWorkspace& ws, const float* xn, int64_t T,
                        cudaStream_t st) {
  const std::vector<Sum*>& r = roles_[size_t(layer)];
  const bool h32 = ws.h32.size() > 0;  // HLWQ experts: h in fp32 before its rotation, else bf16 xfrag
  GramSource h_src;
  h_src.base = h32 ? static_cast<const void*>(ws.h32.get()) : static_cast<const void*>(ws.h.get());
  h_src.ld = h32 ? L.I : L.dn.in_pad;
  h_src.xfrag = !h32;
  if (r[kSharedGu]) {
    GramSource src;
    src.base = xn;
    src.ld = L.H;
    dense(r[kSharedGu], src, T, st);
  }
  if (r[kSharedDn]) {  // row t: the S slices of token t's shared expert, each in its own slot
    GramSource src = h_src;
    src.part_slot = ws.tok_slot.get();
    src.part_stride = L.k + L.n_shared;
    src.part_off = L.k;
    src.part_width = L.I;
    dense(r[kSharedDn], src, T, st);
  }
  if (!routed_[size_t(layer)]) return;
  // the step's slot plan → per expert its tokens (gate/up reads xn rows) and its slots (down reads h rows)
  const int64_t tiles = moe_max_tiles(T, L.k, L.E, L.n_shared);
  int* tile_mat = plan_.as<int>();
  int* slot_tok = tile_mat + max_tiles_;
  HLWQ_CUDA_CHECK(cudaMemcpyAsync(tile_mat, ws.tile_mat.get(), size_t(tiles) * sizeof(int), cudaMemcpyDeviceToHost,
                                  st), "reading the MoE slot plan back");
  HLWQ_CUDA_CHECK(cudaMemcpyAsync(slot_tok, ws.slot_tok.get(), size_t(tiles * 8) * sizeof(int),
                                  cudaMemcpyDeviceToHost, st), "reading the MoE slot plan back");
  HLWQ_CUDA_CHECK(cudaStreamSynchronize(st), "reading the MoE slot plan back");
  // [E] (token, slot) of each routed expert's rows, by token: the router takes slots with atomics, so their order
  // varies from run to run, and summing in token order keeps the sums bit-identical
  std::vector<std::vector<std::pair<int, int>>> rows(static_cast<size_t>(E_));
  for (int64_t i = 0; i < tiles; ++i) {
    const int m = tile_mat[i];
    if (m < 0 || m >= E_) continue;  // unused, or a shared part
    for (int64_t s = i * 8; s < i * 8 + 8; ++s)
      if (slot_tok[s] >= 0) rows[size_t(m)].emplace_back(slot_tok[s], int(s));
  }
  GramJob* jobs = jobs_.as<GramJob>();
  int* lists = lists_.as<int>();
  int n_gu = 0, n_dn = 0, at = 0;
  std::vector<GramJob> dn_jobs;
  for (int64_t e = 0; e < E_; ++e) {
    std::vector<std::pair<int, int>>& r = rows[size_t(e)];
    Sum* gu = gu_[size_t(layer)][size_t(e)];
    Sum* dn = dn_[size_t(layer)][size_t(e)];
    if (r.empty() || (!gu && !dn)) continue;
    std::sort(r.begin(), r.end());
    if (gu) {  // rows: the tokens (xn rows)
      jobs[n_gu++] = GramJob{gu->H.get(), at, int(r.size())};
      for (const auto& [tok, slot] : r) lists[at++] = tok;
      gu->tokens += int64_t(r.size());
    }
    if (dn) {  // rows: the slots (h rows)
      dn_jobs.push_back(GramJob{dn->H.get(), at, int(r.size())});
      for (const auto& [tok, slot] : r) lists[at++] = slot;
      dn->tokens += int64_t(r.size());
    }
  }
  for (const GramJob& j : dn_jobs) jobs[n_gu + n_dn++] = j;
  if (n_gu + n_dn == 0) return;
  // the pinned lists are rewritten only after the next layer's synchronisation, which follows these copies
  HLWQ_CUDA_CHECK(cudaMemcpyAsync(lists_dev_.get(), lists, size_t(at) * sizeof(int), cudaMemcpyHostToDevice, st),
                  "calibration row lists");
  HLWQ_CUDA_CHECK(cudaMemcpyAsync(jobs_dev_.get(), jobs, size_t(n_gu + n_dn) * sizeof(GramJob),
                                  cudaMemcpyHostToDevice, st), "calibration jobs");
  GramSource x_src;
  x_src.base = xn;
  x_src.ld = L.H;
  x_src.rows = lists_dev_.get();
  gram_accumulate(jobs_dev_.get(), n_gu, L.H, x_src, 0, st);
  h_src.rows = lists_dev_.get();
  gram_accumulate(jobs_dev_.get() + n_gu, n_dn, L.I, h_src, 0, st);
}

LinearStatsMap InputStatsDev::take(cudaStream_t st) {
  // the lower tiles on the device (a transposing pass over 9 GB of a Qwen3.6 layer's sums took seconds on the host)
  for (const auto& s : sums_) {
    if (s->tokens == 0) continue;
    const int64_t nn = s->n * s->n;
    mirror_kernel<<<unsigned((nn + kThreads - 1) / kThreads), kThreads, 0, st>>>(s->H.get(), s->n);
    HLWQ_CUDA_LAUNCH_CHECK("mirroring the statistics of {}", s->name);
  }
  HLWQ_CUDA_CHECK(cudaStreamSynchronize(st), "calibration statistics");
  LinearStatsMap out;
  for (const auto& s : sums_) {
    if (s->tokens == 0) continue;
    auto stats = std::make_shared<LinearInputStats>();
    stats->in = s->n;
    stats->n_tokens = s->tokens;
    stats->H = s->H.download();
    out[s->name] = std::move(stats);
  }
  return out;
}

}  // namespace hlwq::cuda
