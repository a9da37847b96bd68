// Demo checkpoints of the CUDA model tests (see demo_checkpoints.h).
#include "demo_checkpoints.h"

#include "test_paths.h"

namespace hlwq::test {

std::filesystem::path demo_model() { return source_dir() / "models" / "tiny-moe-dev"; }

std::filesystem::path quantize_demo(const char* name, const std::function<void(QuantizeOptions&)>& set) {
  const std::filesystem::path d = scratch_dir(name) / "ckpt";
  QuantizeOptions o;
  o.src = demo_model().string();
  o.dst = d.string();
  o.progress = false;
  o.force = true;
  set(o);
  quantize_model(o);
  return d;
}

const std::filesystem::path& demo_hlwq4() {
  static const std::filesystem::path dir = quantize_demo("cuda-hlwq4", [](QuantizeOptions& o) {
    o.format = QuantFormat::hlwq;
    o.hlwq_bits = 4;
  });
  return dir;
}

}  // namespace hlwq::test
