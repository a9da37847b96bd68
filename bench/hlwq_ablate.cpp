// Dev tool for the ablations of docs/calibration.md: which quantized matrices carry a model's error. Writes DST =
// the bf16 SRC with the Linears whose module name matches REGEX decoded from QUANTIZED (compressed-tensors INT4 or
// native HLWQ made from SRC) and every other Linear at its bf16 value (quant/partial_decode.h); `hlwq eval kld DST
// --base SRC` then measures the KL of that kind alone.
// usage: hlwq_ablate SRC_BF16_DIR QUANTIZED_DIR DST_DIR REGEX     e.g. REGEX '\.mlp\.experts\.'
#include <cstdio>
#include <exception>

#include "quant/partial_decode.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s SRC_BF16_DIR QUANTIZED_DIR DST_DIR REGEX\n", argv[0]);
    return 2;
  }
  try {
    const hlwq::PartialDecodeReport r = hlwq::write_partial_decode(argv[1], argv[2], argv[3], argv[4]);
    std::printf("%s: %lld Linears decoded from %s, %lld at their bf16 value, %lld other tensors copied\n", argv[3],
                static_cast<long long>(r.decoded), argv[2], static_cast<long long>(r.source),
                static_cast<long long>(r.copied));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hlwq_ablate: %s\n", e.what());
    return 1;
  }
  return 0;
}
