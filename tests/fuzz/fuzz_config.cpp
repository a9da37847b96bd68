// libFuzzer target: config.json on arbitrary bytes, through the same reader `hlwq` uses (size and depth
// limits, then the typed parse with its dimension bounds). A config that parses must have sane dimensions.
#include <cstdlib>

#include "fuzz_util.h"
#include "io/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto dir = hlwq::fuzz::scratch() / "config";
  static const bool made = std::filesystem::create_directories(dir) || true;
  (void)made;
  hlwq::fuzz::write_file(dir / "config.json", {reinterpret_cast<const char*>(data), size});
  hlwq::fuzz::expect_only_hlwq_errors([&] {
    const hlwq::ModelConfig c = hlwq::load_model_config(dir.string());
    // parse_model_config promises bounded, positive dimensions: anything else is a finding.
    if (c.n_layers < 1 || c.n_layers > 1024 || c.hidden_size < 1 || c.n_experts < 1 || c.moe_intermediate < 1 ||
        int64_t(c.layer_types.size()) != c.n_layers)
      std::abort();
  });
  return 0;
}
