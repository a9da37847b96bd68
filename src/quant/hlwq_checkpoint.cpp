#include "quant/hlwq_checkpoint.h"

#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

#include "core/error.h"
#include "io/checkpoint_writer.h"
#include "io/hf_config.h"
#include "quant/lloyd_max.h"

namespace hlwq {

bool hlwq_has_native(const Checkpoint& ck, const std::string& module) { return ck.has(hlwq_codes_name(module)); }

HlwqMatrixView hlwq_native_view(const Checkpoint& ck, const std::string& module, int64_t out, int64_t in,
                                const HlwqFormat& f) {
  const HlwqWidth wd = hlwq_resolve(f, module);  // the module's own width (an override's, or the top level's)
  HLWQ_CHECK(wd.codebook->size() == (size_t(1) << wd.bits), "{}: the HLWQ codebook of {} has {} values for {} bits",
             ck.dir(), module, wd.codebook->size(), wd.bits);
  auto get = [&](const std::string& name, DType dtype, const Shape& shape) {
    HLWQ_CHECK(ck.has(name), "{}: missing tensor {}", ck.dir(), name);
    const TensorView t = ck.view(name);
    if (t.dtype != dtype || t.shape != shape)
      fail("expected {} {}, got {} for {} in {}", shape_str(shape), dtype_name(dtype), t.desc(), name,
           ck.file_of(name));
    return t;
  };
  // A row of B-bit codes is nb·16·B bytes: a width other than the configured one shows in the row length.
  const std::string codes_name = hlwq_codes_name(module);
  HLWQ_CHECK(ck.has(codes_name), "{}: missing tensor {}", ck.dir(), codes_name);
  const TensorView ct = ck.view(codes_name);
  const int64_t nb16 = hlwq_n_blocks(in) * (kHlwqBlock / 8);
  if (ct.dtype == DType::U8 && ct.shape.size() == 2 && ct.shape[0] == out && ct.shape[1] != nb16 * wd.bits &&
      ct.shape[1] % nb16 == 0)
    fail("{} in {}: quantization_config gives {} {}-bit codes ({} bytes per row), but the tensor holds {}-bit codes "
         "({} bytes per row)",
         codes_name, ck.file_of(codes_name), module, wd.bits, nb16 * wd.bits, ct.shape[1] / nb16, ct.shape[1]);
  const TensorView codes = get(codes_name, DType::U8, {out, hlwq_row_bytes(in, wd.bits)});
  const TensorView norms = get(hlwq_norms_name(module), DType::F16, {out, hlwq_n_blocks(in)});
  const TensorView shape = get(hlwq_shape_name(module), DType::I64, {2});
  int64_t dims[2];
  std::memcpy(dims, shape.data, sizeof dims);
  HLWQ_CHECK(dims[0] == out && dims[1] == in, "expected weight_shape [{}, {}], got [{}, {}] for {}", out, in, dims[0],
             dims[1], hlwq_shape_name(module));
  HlwqMatrixView v;
  v.out = out;
  v.in = in;
  v.bits = wd.bits;
  v.order = HlwqBitOrder::lsb_first;
  v.codes = static_cast<const uint8_t*>(codes.data);
  v.norms = static_cast<const uint16_t*>(norms.data);
  v.codebook = wd.codebook->data();
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

namespace {

constexpr std::string_view kCodesSuffix = ".hlwq_codes";

bool ends_with(const std::string& s, std::string_view p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// A decoded matrix to write: its view and the shape it is written with.
struct Decoded {
  HlwqMatrixView v;
  Shape shape;
  std::vector<std::string> parts;  // source tensors it replaces
};

}  // namespace

void write_hlwq_decoded(const std::string& src, const std::string& dst) {
  namespace fs = std::filesystem;
  const ModelConfig cfg = load_model_config(src);
  Checkpoint ck(src);
  HlwqFormat native;
  const bool is_native = cfg.quant && cfg.quant->quant_method == kHlwqQuantMethod;
  if (is_native) native = parse_hlwq_quantization_config(cfg.raw["quantization_config"], src + "/config.json");
  const bool is_q5 = is_seed_q5_dir(src);
  HLWQ_CHECK(is_native || is_q5, "{}: neither a native HLWQ checkpoint nor the seed's hlwq-q5", src);
  std::map<std::string, Decoded> dec;  // by output name
  if (is_native)
    for (const std::string& n : ck.names()) {
      if (!ends_with(n, kCodesSuffix)) continue;
      const std::string m = n.substr(0, n.size() - kCodesSuffix.size());
      const TensorView s = ck.view(hlwq_shape_name(m));
      HLWQ_CHECK(s.dtype == DType::I64 && s.shape == Shape({2}), "{}: expected [2] I64 for {}, got {}", src,
                 hlwq_shape_name(m), s.desc());
      int64_t d[2];
      std::memcpy(d, s.data, sizeof d);
      dec[m + ".weight"] = {hlwq_native_view(ck, m, d[0], d[1], native), {d[0], d[1]},
                            {n, hlwq_norms_name(m), hlwq_shape_name(m)}};
    }
  if (is_q5)
    for (const auto& [name, w] : seed_q5_weights(ck)) {
      Shape shape = {w.out, w.in};
      const int64_t E = cfg.n_experts, I = cfg.moe_intermediate, H = cfg.hidden_size;
      if (ends_with(name, ".mlp.experts.gate_up_proj") && w.out == E * 2 * I) shape = {E, 2 * I, w.in};
      if (ends_with(name, ".mlp.experts.down_proj") && w.out == E * H) shape = {E, H, w.in};
      dec[name] = {seed_q5_view(w), shape, {w.key + "__packed", w.key + "__norms", w.key + "__meta"}};
    }
  std::map<std::string, bool> replaced;
  for (const auto& [name, d] : dec)
    for (const auto& p : d.parts) replaced[p] = true;
  std::vector<TensorSpec> specs;
  for (const std::string& n : ck.names())
    if (!replaced.count(n)) specs.push_back({n, ck.entry(n).dtype, ck.entry(n).shape});
  for (const auto& [name, d] : dec) specs.push_back({name, DType::F32, d.shape});
  StagedDir stage(dst, true, {fs::path(src)});
  CheckpointWriter wr(stage.path(), specs, uint64_t(5) << 30);
  for (const std::string& n : ck.names())
    if (!replaced.count(n)) {
      const TensorView t = ck.view(n);
      wr.write(n, t.data, t.nbytes());
    }
  for (const auto& [name, d] : dec) {
    hlwq_check_view(d.v, name.c_str());
    std::vector<float> out(size_t(d.v.out * d.v.in));
    for (int64_t r = 0; r < d.v.out; ++r) hlwq_decode_row(d.v, r, out.data() + r * d.v.in);
    wr.write(name, out.data(), out.size() * 4);
  }
  wr.finish();
  nlohmann::json plain = cfg.raw;
  plain.erase("quantization_config");
  write_file(stage.path() / "config.json", plain.dump(2) + "\n");
  for (const char* side : {"generation_config.json", "tokenizer.json", "tokenizer_config.json"})
    if (fs::exists(fs::path(src) / side)) fs::copy_file(fs::path(src) / side, stage.path() / side);
  stage.commit();
}

}  // namespace hlwq
