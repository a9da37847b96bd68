// libFuzzer target: the demo model's tokenizer on arbitrary bytes, both ways. Input bytes are encoded (invalid
// UTF-8 must be an hlwq::Error) and, read as little-endian u16 ids, decoded (unknown ids must be an error).
// ASCII text must round-trip exactly (NFC is the identity on ASCII).
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fuzz_util.h"
#include "runtime/tokenizer.h"

namespace {

const hlwq::Tokenizer& tokenizer() {
  static const hlwq::Tokenizer tok =
      hlwq::Tokenizer::from_file(std::filesystem::path(HLWQ_SOURCE_DIR) / "models/tiny-moe-dev/tokenizer.json");
  return tok;
}

}  // namespace

// Loading the 550 KB tokenizer.json takes seconds under ASan: done here, so it does not count against the
// first input's time limit (the first campaign reported it as a timeout).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const hlwq::Tokenizer& tok = tokenizer();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  hlwq::fuzz::expect_only_hlwq_errors([&] {
    const std::vector<int32_t> ids = tok.encode(text);
    bool ascii = true;
    for (unsigned char c : text) ascii &= c < 0x80;
    if (ascii && tok.decode(ids) != text) std::abort();
  });
  hlwq::fuzz::expect_only_hlwq_errors([&] {
    std::vector<int32_t> ids(size / 2);
    for (size_t i = 0; i < ids.size(); ++i) {
      uint16_t v;
      std::memcpy(&v, data + 2 * i, 2);
      ids[i] = v;
    }
    (void)tok.decode(ids);
  });
  return 0;
}
