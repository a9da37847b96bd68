// Dev tool for the quality table: writes an HLWQ checkpoint (native, or the seed's hlwq-q5) back out with every
// HLWQ matrix decoded to a dense F32 weight (exact), everything else copied (write_hlwq_decoded). The engine's
// dense path on that is the cross-check of its native HLWQ path, and stands in for it where it is missing.
// usage: hlwq_dequantize SRC_HLWQ_DIR DST_DIR
#include <cstdio>
#include <exception>

#include "quant/hlwq_checkpoint.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SRC_HLWQ_DIR DST_DIR\n", argv[0]);
    return 2;
  }
  try {
    hlwq::write_hlwq_decoded(argv[1], argv[2]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hlwq_dequantize: %s\n", e.what());
    return 1;
  }
  return 0;
}
