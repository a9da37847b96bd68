// libFuzzer target: model.safetensors.index.json on arbitrary bytes, resolved against a directory holding two
// small valid shards ("a.safetensors" with tensors x, y and "b.safetensors" with z). Whatever the index says,
// the checkpoint either opens with every listed tensor readable or fails with hlwq::Error.
#include "fuzz_util.h"
#include "io/checkpoint_writer.h"
#include "io/safetensors.h"

namespace {

const std::filesystem::path& model_dir() {
  static const std::filesystem::path dir = [] {
    const auto d = hlwq::fuzz::scratch() / "model";
    std::filesystem::create_directories(d / "a");
    std::filesystem::create_directories(d / "b");
    const float v[4] = {1, 2, 3, 4};
    {
      hlwq::CheckpointWriter w(d / "a", {{"x", hlwq::DType::F32, {2}}, {"y", hlwq::DType::F32, {2}}}, 1 << 20);
      w.write("x", v, 8);
      w.write("y", v + 2, 8);
      w.finish();
    }
    {
      hlwq::CheckpointWriter w(d / "b", {{"z", hlwq::DType::F32, {4}}}, 1 << 20);
      w.write("z", v, 16);
      w.finish();
    }
    std::filesystem::rename(d / "a" / "model.safetensors", d / "a.safetensors");
    std::filesystem::rename(d / "b" / "model.safetensors", d / "b.safetensors");
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& dir = model_dir();
  hlwq::fuzz::write_file(dir / "model.safetensors.index.json", {reinterpret_cast<const char*>(data), size});
  hlwq::fuzz::expect_only_hlwq_errors([&] {
    hlwq::Checkpoint ck(dir.string());
    for (const auto& n : ck.names()) {
      const hlwq::TensorView v = ck.view(n);
      volatile uint8_t last = static_cast<const uint8_t*>(v.data)[v.nbytes() - 1];
      (void)last;
    }
  });
  return 0;
}
