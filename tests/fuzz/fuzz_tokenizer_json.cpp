// libFuzzer target: loading a tokenizer.json from arbitrary bytes (a hostile model directory), then encoding a
// fixed text with whatever loaded.
#include "fuzz_util.h"
#include "runtime/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  hlwq::fuzz::expect_only_hlwq_errors([&] {
    const hlwq::Tokenizer tok =
        hlwq::Tokenizer::from_json_text({reinterpret_cast<const char*>(data), size}, "<fuzz>");
    const auto ids = tok.encode("Hello <|im_start|> world 123 \xc3\xa9\xe4\xb8\xad!");
    (void)tok.decode(ids);
  });
  return 0;
}
