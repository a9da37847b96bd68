// Dev tool for the quality table: writes a native HLWQ checkpoint back out with every HLWQ Linear decoded to a
// dense F32 `P.weight` (exact: the decode is computed in fp32 and stored as fp32), everything else copied, and
// config.json without its quantization_config. Running that with the engine's dense path gives the KL of the
// HLWQ weights before (or beside) the engine's native HLWQ kernels, a cross-check of the fused kernels.
// usage: hlwq_dequantize SRC_HLWQ_DIR DST_DIR
#include <cstdio>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "io/checkpoint_writer.h"
#include "io/hf_config.h"
#include "io/hlwq_format.h"
#include "io/safetensors.h"
#include "quant/hlwq_checkpoint.h"

using namespace hlwq;

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SRC_HLWQ_DIR DST_DIR\n", argv[0]);
    return 2;
  }
  try {
    const std::string src = argv[1], dst = argv[2];
    const nlohmann::json cfg = read_json_file(src + "/config.json");
    HLWQ_CHECK(cfg.contains("quantization_config"), "{}: no quantization_config (not an HLWQ checkpoint)", src);
    const HlwqFormat f = parse_hlwq_quantization_config(cfg["quantization_config"], src + "/config.json");
    Checkpoint ck(src);
    std::vector<TensorSpec> specs;
    std::vector<std::string> modules;
    for (const std::string& n : ck.names()) {
      static constexpr std::string_view kCodes = ".hlwq_codes";
      if (n.size() > kCodes.size() && n.compare(n.size() - kCodes.size(), kCodes.size(), kCodes) == 0) {
        const std::string m = n.substr(0, n.size() - kCodes.size());
        const TensorView s = ck.view(hlwq_shape_name(m));
        HLWQ_CHECK(s.dtype == DType::I64 && s.numel() == 2, "{}: bad {}", src, hlwq_shape_name(m));
        const int64_t* d = static_cast<const int64_t*>(s.data);
        specs.push_back({m + ".weight", DType::F32, {d[0], d[1]}});
        modules.push_back(m);
      } else if (n.find(".hlwq_norms") == std::string::npos && n.find(".weight_shape") == std::string::npos) {
        specs.push_back({n, ck.entry(n).dtype, ck.entry(n).shape});
      }
    }
    StagedDir stage(dst, true, {std::filesystem::path(src)});
    CheckpointWriter w(stage.path(), specs, uint64_t(5) << 30);
    for (const std::string& m : modules) {
      const TensorView s = ck.view(hlwq_shape_name(m));
      const int64_t* d = static_cast<const int64_t*>(s.data);
      const HlwqMatrixView v = hlwq_native_view(ck, m, d[0], d[1], f);
      std::vector<float> out(size_t(d[0] * d[1]));
      for (int64_t r = 0; r < d[0]; ++r) hlwq_decode_row(v, r, out.data() + r * d[1]);
      w.write(m + ".weight", out.data(), out.size() * 4);
    }
    for (const TensorSpec& s : specs)
      if (ck.has(s.name)) {  // a copied tensor (decoded weights are not in the source)
        const TensorView t = ck.view(s.name);
        w.write(s.name, t.data, t.nbytes());
      }
    w.finish();
    nlohmann::json plain = cfg;
    plain.erase("quantization_config");
    write_file(stage.path() / "config.json", plain.dump(2) + "\n");
    for (const char* side : {"generation_config.json", "tokenizer.json", "tokenizer_config.json"})
      if (std::filesystem::exists(std::filesystem::path(src) / side))
        std::filesystem::copy_file(std::filesystem::path(src) / side, stage.path() / side);
    stage.commit();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hlwq_dequantize: %s\n", e.what());
    return 1;
  }
  return 0;
}
