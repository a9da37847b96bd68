// Fragment-order repacking (see weight_pack.h). One pass over the destination; each source scale tensor is
// converted to fp32 once.
#include "backend/cuda/weight_pack.h"

#include <algorithm>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/hlwq_pack.h"

namespace hlwq::cuda {
namespace {

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

struct SrcRow {
  const LinearWeight* w = nullptr;  // null: zero row
  int64_t r = 0;
};

// HLWQ branch of pack_rows: p has its shape set, rows is padded to out_pad.
void pack_hlwq(PackedLinearHost& p, const std::vector<SrcRow>& rows, const char* what) {
  const HlwqMatrixView* ref = nullptr;
  for (const auto& s : rows) {
    if (!s.w) continue;
    const HlwqMatrixView& v = s.w->hlwq;
    if (!ref) {
      ref = &v;
      continue;
    }
    HLWQ_CHECK(v.bits == ref->bits && std::memcmp(v.codebook, ref->codebook, sizeof(float) << v.bits) == 0,
               "pack {}: {} has {}-bit codes or a codebook unlike the {}-bit codes before it (one matrix, one table)",
               what, s.w->name, v.bits, ref->bits);
  }
  const int B = ref->bits, W = 2 * B;  // u32 words per lane per k-unit
  p.bits = B;
  p.codebook.assign(ref->codebook, ref->codebook + (1 << B));
  const int64_t RT = p.out_pad / 16, KU = p.in_pad / 128;
  p.q.assign(size_t(RT * KU * 32 * W), 0u);
  p.scale.assign(size_t(RT * KU * 16), 0.f);
  std::vector<std::vector<uint8_t>> tile(16, std::vector<uint8_t>(size_t(p.in_pad)));  // code per (row, col)
  for (int64_t rt = 0; rt < RT; ++rt) {
    for (int64_t i = 0; i < 16; ++i) {
      auto& t = tile[size_t(i)];
      std::fill(t.begin(), t.end(), uint8_t(0));
      const SrcRow& s = rows[size_t(rt * 16 + i)];
      if (!s.w) continue;
      const HlwqMatrixView& v = s.w->hlwq;
      HLWQ_CHECK(v.in_padded() == p.in_pad, "pack {}: {} has {} padded columns, expected {}", what, s.w->name,
                 v.in_padded(), p.in_pad);
      hlwq_unpack_codes(v.codes + s.r * v.row_bytes(), p.in_pad, B, v.order, t.data());
      for (int64_t b = 0; b < KU; ++b)
        p.scale[size_t(((rt * KU + b) * 8 + i % 8) * 2 + i / 8)] = f16_to_f32(v.norms[s.r * KU + b]) / 128.f;
    }
    for (int64_t ku = 0; ku < KU; ++ku)
      for (int64_t lane = 0; lane < 32; ++lane) {
        const int64_t g = lane / 4, c = lane % 4;
        uint32_t* dst = p.q.data() + ((rt * KU + ku) * 32 + lane) * W;
        for (int64_t st = 0; st < 8; ++st)
          for (int64_t r = 0; r < 4; ++r)
            for (int64_t half = 0; half < 2; ++half) {
              const int64_t row = g + 8 * (r & 1), col = ku * 128 + st * 16 + 2 * c + 8 * (r >> 1) + half;
              const uint32_t code = tile[size_t(row)][size_t(col)];
              const int64_t bit = ((st * 4 + r) * 2 + half) * B, wd = bit / 32, sh = bit % 32;
              dst[wd] |= code << sh;
              if (sh + B > 32) dst[wd + 1] |= code >> (32 - sh);
            }
      }
  }
}

}  // namespace

PackedFormat packed_format_of(const LinearWeight& w) {
  switch (w.format) {
    case LinearFormat::u4b8_g128: return PackedFormat::int4;
    case LinearFormat::dense: return PackedFormat::bf16;
    case LinearFormat::hlwq: return PackedFormat::hlwq;
  }
  fail("{}: unknown linear format {}", w.name, int(w.format));
}

LinearWeight row_slice(const LinearWeight& w, int64_t r0, int64_t n) {
  HLWQ_CHECK(r0 >= 0 && n > 0 && r0 + n <= w.out, "{}: rows [{}, {}) outside its {} rows", w.name, r0, r0 + n, w.out);
  LinearWeight s = w;
  s.name = fmt::format("{}[{}:{}]", w.name, r0, r0 + n);
  s.out = n;
  if (w.format == LinearFormat::hlwq) {
    s.hlwq = w.hlwq.rows(r0, n);
    return s;
  }
  auto rows = [&](TensorView& t) {
    const size_t row_bytes = t.nbytes() / size_t(t.dim(0));
    t.data = static_cast<const uint8_t*>(t.data) + size_t(r0) * row_bytes;
    t.shape[0] = n;
  };
  if (w.format == LinearFormat::dense) rows(s.weight);
  else rows(s.packed), rows(s.scale);
  return s;
}

LinearWeight column_slice(const LinearWeight& w, int64_t c0, int64_t n, std::vector<uint8_t>& storage) {
  HLWQ_CHECK(c0 >= 0 && n > 0 && c0 + n <= w.in, "{}: columns [{}, {}) outside its {} columns", w.name, c0, c0 + n,
             w.in);
  LinearWeight s = w;
  s.name = fmt::format("{}[:, {}:{}]", w.name, c0, c0 + n);
  s.in = n;
  if (w.format == LinearFormat::hlwq) {
    HLWQ_CHECK(c0 % 128 == 0 && (n % 128 == 0 || c0 + n == w.in),
               "{}: HLWQ columns [{}, {}) do not fall on 128-column blocks", w.name, c0, c0 + n);
    const HlwqMatrixView& v = w.hlwq;
    const int64_t b0 = c0 / 128, nb = (n + 127) / 128, cb = nb * 16 * v.bits;  // code bytes per row of the slice
    storage.resize(size_t(w.out * (cb + nb * 2)));
    uint8_t* codes = storage.data();
    auto* norms = reinterpret_cast<uint16_t*>(storage.data() + w.out * cb);  // cb % 16 == 0: aligned
    for (int64_t r = 0; r < w.out; ++r) {
      std::copy_n(v.codes + r * v.row_bytes() + b0 * 16 * v.bits, cb, codes + r * cb);
      std::copy_n(v.norms + r * v.n_blocks() + b0, nb, norms + r * nb);
    }
    s.hlwq.in = n;
    s.hlwq.codes = codes;
    s.hlwq.norms = norms;
    return s;
  }
  // Columns [a, a + m) of each row of t (elements per row: cols) into storage at byte offset `at`; t views them.
  auto cols = [&](TensorView& t, int64_t cols_total, int64_t a, int64_t m, size_t at) {
    const size_t es = dtype_size(t.dtype);
    const auto* src = static_cast<const uint8_t*>(t.data);
    for (int64_t r = 0; r < w.out; ++r)
      std::copy_n(src + (size_t(r * cols_total + a)) * es, size_t(m) * es, storage.data() + at + size_t(r * m) * es);
    t.data = storage.data() + at;
    t.shape[1] = m;
  };
  if (w.format == LinearFormat::dense) {
    storage.resize(size_t(w.out * n) * dtype_size(w.weight.dtype));
    cols(s.weight, w.in, c0, n, 0);
  } else {
    HLWQ_CHECK(c0 % 128 == 0 && n % 128 == 0, "{}: INT4 columns [{}, {}) do not fall on 128-column groups", w.name,
               c0, c0 + n);
    const size_t packed = size_t(w.out * n / 8) * 4;  // I32 words, 8 nibbles each
    storage.resize(packed + size_t(w.out * n / 128) * dtype_size(w.scale.dtype));
    cols(s.packed, w.in / 8, c0 / 8, n / 8, 0);
    cols(s.scale, w.in / 128, c0 / 128, n / 128, packed);
  }
  return s;
}

PackedLinearHost pack_rows(PackedFormat f, const std::vector<RowRange>& ranges, const char* what) {
  HLWQ_CHECK(!ranges.empty(), "pack {}: no rows", what);
  std::vector<SrcRow> rows;
  int64_t in = -1;
  for (const auto& rr : ranges) {
    if (rr.w) {
      const LinearWeight& w = *rr.w;
      HLWQ_CHECK(rr.r0 >= 0 && rr.n >= 0 && rr.r0 + rr.n <= w.out, "pack {}: rows [{}, {}) outside {} rows of {}", what,
                 rr.r0, rr.r0 + rr.n, w.out, w.name);
      HLWQ_CHECK(in < 0 || w.in == in, "pack {}: {} has {} columns, expected {}", what, w.name, w.in, in);
      in = w.in;
      if (f == PackedFormat::int4)
        HLWQ_CHECK(w.format == LinearFormat::u4b8_g128, "pack {}: {} is not INT4 u4b8_g128", what, w.name);
      else if (f == PackedFormat::hlwq)
        HLWQ_CHECK(w.format == LinearFormat::hlwq, "pack {}: {} is not an HLWQ matrix", what, w.name);
      else
        HLWQ_CHECK(w.format == LinearFormat::dense, "pack {}: {} is not a dense matrix", what, w.name);
    }
    for (int64_t i = 0; i < rr.n; ++i) rows.push_back({rr.w, rr.w ? rr.r0 + i : 0});
  }
  HLWQ_CHECK(in > 0, "pack {}: only padding rows", what);

  PackedLinearHost p;
  p.format = f;
  p.out = int64_t(rows.size());
  p.in = in;
  p.out_pad = round_up(p.out, 32);
  p.in_pad = round_up(in, 128);
  rows.resize(size_t(p.out_pad));  // padding rows: w == nullptr
  const int64_t RT = p.out_pad / 16;

  if (f == PackedFormat::hlwq) {
    pack_hlwq(p, rows, what);
    return p;
  }
  if (f == PackedFormat::bf16) {
    // value(row, col) as bf16 bits; dense sources converted one row at a time
    const int64_t KS = p.in_pad / 16;
    p.q.assign(size_t(RT * KS * 32 * 4), 0u);
    std::vector<float> rf(static_cast<size_t>(in));
    std::vector<std::vector<uint16_t>> tile(16, std::vector<uint16_t>(size_t(p.in_pad)));
    for (int64_t rt = 0; rt < RT; ++rt) {
      for (int64_t i = 0; i < 16; ++i) {
        auto& t = tile[size_t(i)];
        std::fill(t.begin(), t.end(), uint16_t(0));
        const SrcRow& s = rows[size_t(rt * 16 + i)];
        if (!s.w) continue;
        const TensorView& wv = s.w->weight;
        if (wv.dtype == DType::BF16) {
          const uint16_t* src = wv.as<uint16_t>() + s.r * in;
          std::copy(src, src + in, t.begin());
        } else {
          convert_to_f32(wv.dtype, static_cast<const uint8_t*>(wv.data) + size_t(s.r * in) * dtype_size(wv.dtype),
                         rf.data(), size_t(in));
          for (int64_t k = 0; k < in; ++k) t[size_t(k)] = f32_to_bf16(rf[size_t(k)]);
        }
      }
      for (int64_t ks = 0; ks < KS; ++ks)
        for (int64_t lane = 0; lane < 32; ++lane) {
          const int64_t g = lane / 4, c = lane % 4, k0 = ks * 16 + 2 * c;
          uint32_t* dst = p.q.data() + ((rt * KS + ks) * 32 + lane) * 4;
          auto pair = [&](int64_t row, int64_t k) {
            return uint32_t(tile[size_t(row)][size_t(k)]) | (uint32_t(tile[size_t(row)][size_t(k + 1)]) << 16);
          };
          dst[0] = pair(g, k0);
          dst[1] = pair(g + 8, k0);
          dst[2] = pair(g, k0 + 8);
          dst[3] = pair(g + 8, k0 + 8);
        }
    }
    return p;
  }

  // INT4
  const int64_t K64 = p.in_pad / 64, G = p.in_pad / 128, Gsrc = in / 128;
  HLWQ_CHECK(in % 128 == 0, "pack {}: INT4 needs in % 128 == 0, got {}", what, in);
  p.q.assign(size_t(RT * K64 * 32 * 4), 0x88888888u);  // u = 8 is q = 0
  p.scale.assign(size_t(RT * G * 16), 0.f);
  std::map<const LinearWeight*, std::vector<float>> scales;  // fp32 copy of each source's scale tensor
  for (const auto& s : rows)
    if (s.w && !scales.count(s.w)) scales.emplace(s.w, tensor_to_f32(s.w->scale));
  std::vector<std::vector<uint8_t>> tile(16, std::vector<uint8_t>(size_t(p.in_pad)));  // u per (row, col)
  for (int64_t rt = 0; rt < RT; ++rt) {
    for (int64_t i = 0; i < 16; ++i) {
      auto& t = tile[size_t(i)];
      std::fill(t.begin(), t.end(), uint8_t(8));
      const SrcRow& s = rows[size_t(rt * 16 + i)];
      if (!s.w) continue;
      const uint32_t* words = s.w->packed.as<uint32_t>() + s.r * (in / 8);
      for (int64_t k = 0; k < in; ++k) t[size_t(k)] = uint8_t((words[k / 8] >> (4 * (k % 8))) & 0xF);
      const float* sc = scales.at(s.w).data() + s.r * Gsrc;
      for (int64_t gr = 0; gr < Gsrc; ++gr) p.scale[size_t(((rt * G + gr) * 8 + i % 8) * 2 + i / 8)] = sc[gr];
    }
    for (int64_t kt = 0; kt < K64; ++kt)
      for (int64_t lane = 0; lane < 32; ++lane) {
        const int64_t g = lane / 4, c = lane % 4;
        uint32_t* dst = p.q.data() + ((rt * K64 + kt) * 32 + lane) * 4;
        for (int64_t j = 0; j < 4; ++j) {
          const int64_t k0 = kt * 64 + j * 16 + 2 * c;
          uint32_t w = 0;
          for (int64_t n = 0; n < 8; ++n) {
            const int64_t s = n & 3, row = g + 8 * (s & 1), col = k0 + (n >= 4 ? 1 : 0) + 8 * (s >> 1);
            w |= uint32_t(tile[size_t(row)][size_t(col)]) << (4 * n);
          }
          dst[j] = w;
        }
      }
  }
  return p;
}

PackedLinearHost pack_gate_up(PackedFormat f, const LinearWeight& gate, const LinearWeight& up) {
  HLWQ_CHECK(gate.out == up.out && gate.in == up.in, "pack {} + {}: shapes [{}, {}] and [{}, {}] differ", gate.name,
             up.name, gate.out, gate.in, up.out, up.in);
  std::vector<RowRange> rr;
  for (int64_t r0 = 0; r0 < gate.out; r0 += 16) {
    const int64_t n = std::min<int64_t>(16, gate.out - r0);
    rr.push_back({&gate, r0, n});
    if (n < 16) rr.push_back({nullptr, 0, 16 - n});
    rr.push_back({&up, r0, n});
    if (n < 16) rr.push_back({nullptr, 0, 16 - n});
  }
  return pack_rows(f, rr, gate.name.c_str());
}

}  // namespace hlwq::cuda
