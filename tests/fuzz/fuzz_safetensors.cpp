// libFuzzer target: the safetensors reader on arbitrary file bytes. A file that opens must describe only
// tensors inside the mapping; every byte of every tensor is read, so an out-of-bounds view is an ASan report.
#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = hlwq::fuzz::scratch() / "x.safetensors";
  hlwq::fuzz::write_file(path, {reinterpret_cast<const char*>(data), size});
  hlwq::fuzz::expect_only_hlwq_errors([&] {
    hlwq::SafetensorsFile f(path.string());
    unsigned sum = 0;
    for (const auto& e : f.entries()) {
      const hlwq::TensorView v = f.view(e);
      const auto* p = static_cast<const uint8_t*>(v.data);
      for (size_t i = 0; i < v.nbytes(); ++i) sum += p[i];
    }
    (void)sum;
  });
  return 0;
}
