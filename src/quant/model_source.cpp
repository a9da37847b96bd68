#include "quant/model_source.h"

#include <algorithm>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/finite_check.h"
#include "quant/hlwq_checkpoint.h"

namespace hlwq {
namespace {

constexpr uint64_t kCopyChunkBytes = uint64_t(64) << 20;

bool ends_with(const std::string& s, std::string_view p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// The shape a coded weight decodes to: 3-D for the fused expert tensors when the config agrees, else [out, in].
Shape logical_shape(const ModelConfig& cfg, const SeedQ5Weight& w) {
  const int64_t E = cfg.n_experts, I = cfg.moe_intermediate, H = cfg.hidden_size;
  if (ends_with(w.name, ".mlp.experts.gate_up_proj") && w.out == E * 2 * I && w.in == H) return {E, 2 * I, H};
  if (ends_with(w.name, ".mlp.experts.down_proj") && w.out == E * H && w.in == I) return {E, H, I};
  return {w.out, w.in};
}

}  // namespace

ModelSource::ModelSource(const std::string& dir) : ck_(dir), cfg_(load_model_config(dir)) {
  seed_q5_ = is_seed_q5_dir(dir);
  if (seed_q5_) q5_ = seed_q5_weights(ck_);
  for (const std::string& name : ck_.names()) {
    if (seed_q5_ && seed_q5_is_part(name)) continue;
    const TensorEntry& e = ck_.entry(name);
    inputs_.push_back({name, e.dtype, e.shape, e.end - e.begin, ck_.file_of(name)});
  }
  for (const auto& [name, w] : q5_) {
    HLWQ_CHECK(!ck_.has(name), "{}: {} is stored both plainly and as hlwq-q5 codes ({}__packed)", dir, name, w.key);
    const Shape s = logical_shape(cfg_, w);
    inputs_.push_back({name, DType::BF16, s, uint64_t(shape_numel(s)) * 2, ck_.file_of(w.key + "__packed")});
  }
  std::sort(inputs_.begin(), inputs_.end(), [](const PlanInput& a, const PlanInput& b) { return a.name < b.name; });
}

const std::string& ModelSource::file_of(const std::string& name) const {
  const auto it = q5_.find(name);
  return it != q5_.end() ? ck_.file_of(it->second.key + "__packed") : ck_.file_of(name);
}

void ModelSource::decode_q5_rows(const SeedQ5Weight& w, int64_t r0, int64_t n, float* dst) const {
  const HlwqMatrixView v = seed_q5_view(w);
  // Nothing below allocates or throws (decode_row works on stack buffers), so the region is safe.
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    float* row = dst + r * w.in;
    hlwq_decode_row(v, r0 + r, row);
    for (int64_t k = 0; k < w.in; ++k) row[k] = bf16_to_f32(f32_to_bf16(row[k]));
  }
}

void ModelSource::read_f32(const PlanItem& it, float* dst) const {
  const auto q = q5_.find(it.src_name);
  if (q == q5_.end()) {
    const TensorView src = ck_.view(it.src_name);
    convert_to_f32(it.src_dtype, static_cast<const uint8_t*>(src.data) + it.src_offset, dst,
                   size_t(shape_numel(it.out_shape)));
    return;
  }
  const SeedQ5Weight& w = q->second;
  // The plan slices the logical bf16 tensor by byte offset; every slice is whole rows of the coded matrix.
  const int64_t e0 = int64_t(it.src_offset / 2), n = int64_t(it.src_bytes / 2);
  HLWQ_CHECK(it.src_offset % 2 == 0 && e0 % w.in == 0 && n % w.in == 0,
             "{}: slice of {} at element {} is not whole rows of [{}, {}]", file_of(it.src_name), it.src_name, e0,
             w.out, w.in);
  decode_q5_rows(w, e0 / w.in, n / w.in, dst);
}

void ModelSource::copy(const PlanItem& it, CheckpointWriter& out) const {
  const auto q = q5_.find(it.src_name);
  if (q == q5_.end()) {
    // In pieces, releasing each: a 1 GB embedding must not sit in the resident set.
    const uint8_t* base = static_cast<const uint8_t*>(ck_.view(it.src_name).data) + it.src_offset;
    const uint64_t esz = dtype_size(it.src_dtype);
    for (uint64_t off = 0; off < it.src_bytes; off += kCopyChunkBytes) {
      const uint64_t n = std::min(kCopyChunkBytes, it.src_bytes - off);
      // Kept tensors are checked like quantized ones: a NaN norm or router would pass through silently.
      const size_t bad = first_non_finite(it.src_dtype, base + off, n / esz);
      HLWQ_CHECK(bad == n / esz, "{}: tensor {}: non-finite value (NaN or Inf) at element {}; refusing to write it",
                 ck_.file_of(it.src_name), it.src_name, (off / esz) + bad);
      out.write_part(it.out_name, off, base + off, n);
      ck_.release(it.src_name, it.src_offset + off, n);
    }
    return;
  }
  // A coded weight the plan keeps (keep-list or shape rule): written as the bf16 it decodes to.
  const SeedQ5Weight& w = q->second;
  const int64_t rows_per_chunk = std::max<int64_t>(1, int64_t(kCopyChunkBytes / 2) / w.in);
  std::vector<float> f;
  std::vector<uint16_t> h;
  for (int64_t r0 = 0; r0 < w.out; r0 += rows_per_chunk) {
    const int64_t n = std::min(rows_per_chunk, w.out - r0);
    f.resize(size_t(n * w.in));
    h.resize(f.size());
    decode_q5_rows(w, r0, n, f.data());
    for (size_t i = 0; i < f.size(); ++i) h[i] = f32_to_bf16(f[i]);  // exact: f is already bf16-rounded
    out.write_part(it.out_name, uint64_t(r0 * w.in) * 2, h.data(), h.size() * 2);
  }
  release(it);
}

void ModelSource::release(const PlanItem& it) const {
  const auto q = q5_.find(it.src_name);
  if (q == q5_.end()) return ck_.release(it.src_name, it.src_offset, it.src_bytes);
  const SeedQ5Weight& w = q->second;
  const uint64_t row_bytes = uint64_t(w.n_blocks) * 80, r0 = it.src_offset / 2 / uint64_t(w.in);
  const uint64_t n = it.src_bytes / 2 / uint64_t(w.in);
  ck_.release(w.key + "__packed", r0 * row_bytes, n * row_bytes);
}

}  // namespace hlwq
