// Ablation checkpoints (quant/partial_decode.h) on the repository's small random Qwen3.5-MoE: selecting every
// Linear of a native HLWQ checkpoint reproduces hlwq_dequantize's output byte for byte; selecting the routed
// experts decodes exactly those (per expert, also from the fused source tensors) and leaves every other matrix
// the bf16 source's value; an INT4 checkpoint decodes to int4_dequant of its own packed values; a selection of
// nothing, a source that is not bf16 and a checkpoint that is not quantized are refused, and nothing is written.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <regex>

#include "core/dtype.h"
#include "core/error.h"
#include "io/compressed_tensors.h"
#include "io/safetensors.h"
#include "quant/hlwq_checkpoint.h"
#include "quant/int4_pack.h"
#include "quant/partial_decode.h"
#include "quant/quantize_model.h"
#include "test_paths.h"

using namespace hlwq;
namespace fs = std::filesystem;

namespace {

fs::path small_src() { return test::source_dir() / "testdata" / "tiny-random-small-bf16"; }

void quantize(const fs::path& dst, QuantFormat f) {
  QuantizeOptions o;
  o.src = small_src().string();
  o.dst = dst.string();
  o.format = f;
  o.method = Int4Method::rtn;
  o.progress = false;
  quantize_model(o);
}

bool same_bytes(const TensorView& a, const TensorView& b) {
  return a.dtype == b.dtype && a.shape == b.shape && std::memcmp(a.data, b.data, a.nbytes()) == 0;
}

}  // namespace

TEST(PartialDecode, EverythingSelectedEqualsTheFullDecode) {
  const fs::path root = test::scratch_dir("partial_all");
  quantize(root / "q", QuantFormat::hlwq);
  write_hlwq_decoded((root / "q").string(), (root / "dec").string());
  const PartialDecodeReport r =
      write_partial_decode(small_src().string(), (root / "q").string(), (root / "all").string(), ".*");
  EXPECT_GT(r.decoded, 100);
  EXPECT_EQ(r.source, 0);
  Checkpoint dec((root / "dec").string()), all((root / "all").string());
  ASSERT_EQ(dec.names(), all.names());
  for (const std::string& n : dec.names()) EXPECT_TRUE(same_bytes(dec.view(n), all.view(n))) << n;
  EXPECT_FALSE(load_model_config((root / "all").string()).quant.has_value());
}

TEST(PartialDecode, OneKindDecodedTheRestIsTheSource) {
  const fs::path root = test::scratch_dir("partial_experts");
  quantize(root / "q", QuantFormat::hlwq);
  write_hlwq_decoded((root / "q").string(), (root / "dec").string());
  const std::string sel = R"(\.mlp\.experts\.)";
  const PartialDecodeReport r =
      write_partial_decode(small_src().string(), (root / "q").string(), (root / "part").string(), sel);
  Checkpoint dec((root / "dec").string()), part((root / "part").string()), src(small_src().string());
  const std::regex re(sel);
  int64_t n_dec = 0, n_src = 0;
  for (const std::string& n : part.names()) {
    const bool quantized = hlwq_has_native(Checkpoint((root / "q").string()), n.substr(0, n.size() - 7));
    if (quantized && std::regex_search(n, re)) {  // the decode, as hlwq_dequantize writes it
      EXPECT_TRUE(same_bytes(dec.view(n), part.view(n))) << n;
      ++n_dec;
    } else if (quantized) {  // the source's weight in F32, not its decode
      const TensorView s = src.view(n), p = part.view(n);
      ASSERT_EQ(p.dtype, DType::F32) << n;
      std::vector<float> want(size_t(s.numel()));
      convert_to_f32(s.dtype, s.data, want.data(), want.size());
      EXPECT_EQ(std::memcmp(want.data(), p.data, want.size() * 4), 0) << n;
      EXPECT_FALSE(same_bytes(dec.view(n), p)) << n;  // the test can tell the two apart
      ++n_src;
    } else {
      EXPECT_TRUE(same_bytes(dec.view(n), part.view(n))) << n;  // kept tensors: byte copies
    }
  }
  EXPECT_EQ(n_dec, r.decoded);
  EXPECT_EQ(n_src, r.source);
  EXPECT_GT(n_dec, 0);
  EXPECT_GT(n_src, 0);
}

TEST(PartialDecode, Int4DecodesItsOwnValues) {
  const fs::path root = test::scratch_dir("partial_int4");
  quantize(root / "q", QuantFormat::ct_int4);
  const PartialDecodeReport r =
      write_partial_decode(small_src().string(), (root / "q").string(), (root / "all").string(), "");
  EXPECT_EQ(r.source, 0);
  Checkpoint q((root / "q").string()), all((root / "all").string());
  int64_t n = 0;
  for (const std::string& name : q.names()) {
    if (name.size() < 14 || name.substr(name.size() - 14) != ".weight_packed") continue;
    const std::string m = name.substr(0, name.size() - 14);
    const TensorView w = all.view(m + ".weight");
    const int64_t out = w.shape[0], in = w.shape[1];
    std::vector<float> want(size_t(out * in));
    int4_dequant(static_cast<const int32_t*>(q.view(name).data),
                 static_cast<const uint16_t*>(q.view(ct_scale_name(m)).data), out, in, want.data());
    EXPECT_EQ(std::memcmp(want.data(), w.data, want.size() * 4), 0) << m;
    ++n;
  }
  EXPECT_EQ(n, r.decoded);
}

TEST(PartialDecode, BadInputIsRefusedAndNothingIsWritten) {
  const fs::path root = test::scratch_dir("partial_bad");
  quantize(root / "q", QuantFormat::hlwq);
  auto refuses = [&](const fs::path& s, const fs::path& q, const std::string& sel, const char* says) {
    try {
      write_partial_decode(s.string(), q.string(), (root / "out").string(), sel);
      ADD_FAILURE() << "accepted " << sel;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(root / "out"));
  };
  refuses(small_src(), root / "q", "no_such_module", "matches no quantized Linear");
  refuses(small_src(), root / "q", "(", "not a valid regular expression");
  refuses(small_src(), small_src(), ".*", "not a quantized checkpoint");
  refuses(root / "q", root / "q", ".*", "must be the bf16 checkpoint");
}
