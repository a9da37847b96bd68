#include "quant/hlwq_checkpoint.h"

#include <cstring>

#include "core/error.h"
#include "quant/lloyd_max.h"

namespace hlwq {

bool hlwq_has_native(const Checkpoint& ck, const std::string& module) { return ck.has(hlwq_codes_name(module)); }

HlwqMatrixView hlwq_native_view(const Checkpoint& ck, const std::string& module, int64_t out, int64_t in,
                                const HlwqFormat& f) {
  HLWQ_CHECK(f.codebook.size() == (size_t(1) << f.bits), "{}: the HLWQ codebook has {} values for {} bits",
             ck.dir(), f.codebook.size(), f.bits);
  auto get = [&](const std::string& name, DType dtype, const Shape& shape) {
    HLWQ_CHECK(ck.has(name), "{}: missing tensor {}", ck.dir(), name);
    const TensorView t = ck.view(name);
    if (t.dtype != dtype || t.shape != shape)
      fail("expected {} {}, got {} for {} in {}", shape_str(shape), dtype_name(dtype), t.desc(), name,
           ck.file_of(name));
    return t;
  };
  const TensorView codes = get(hlwq_codes_name(module), DType::U8, {out, hlwq_row_bytes(in, f.bits)});
  const TensorView norms = get(hlwq_norms_name(module), DType::F16, {out, hlwq_n_blocks(in)});
  const TensorView shape = get(hlwq_shape_name(module), DType::I64, {2});
  int64_t dims[2];
  std::memcpy(dims, shape.data, sizeof dims);
  HLWQ_CHECK(dims[0] == out && dims[1] == in, "expected weight_shape [{}, {}], got [{}, {}] for {}", out, in, dims[0],
             dims[1], hlwq_shape_name(module));
  HlwqMatrixView v;
  v.out = out;
  v.in = in;
  v.bits = f.bits;
  v.order = HlwqBitOrder::lsb_first;
  v.codes = static_cast<const uint8_t*>(codes.data);
  v.norms = static_cast<const uint16_t*>(norms.data);
  v.codebook = f.codebook.data();
  hlwq_check_view(v, module.c_str());
  return v;
}

HlwqMatrixView seed_q5_view(const SeedQ5Weight& w) {
  HlwqMatrixView v;
  v.out = w.out;
  v.in = w.in;
  v.bits = kSeedQ5Bits;
  v.order = HlwqBitOrder::msb_first;
  v.codes = w.packed;
  v.norms = w.norms;
  v.codebook = seed_q5_table().data();
  return v;
}

}  // namespace hlwq
