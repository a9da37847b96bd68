// libFuzzer target: the server's request mapping (server::parse_request), which turns an HTTP body into a
// generation request or a 4xx, with the demo model's tokenizer and chat template behind it. Input: one flag byte
// (bit 0: /v1/completions instead of /v1/chat/completions; bit 1: --reasoning-parser qwen3), then the body.
// The rule: a body is either accepted, with a GenRequest that keeps the promises of server/queue.h, or refused
// with server::ApiError carrying a 4xx status and an error body that is valid JSON. Any other exception reaches
// the HTTP layer as a 500 (or worse) and is a finding, as are crashes, sanitizer reports, leaks and hangs.
#include <cstdlib>
#include <filesystem>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "runtime/chat_template.h"
#include "runtime/tokenizer.h"
#include "server/openai_api.h"

namespace {

struct Model {
  hlwq::Tokenizer tok;
  hlwq::ChatTemplate chat;
};

const Model& model() {
  static const Model m = [] {
    const std::filesystem::path dir = std::filesystem::path(HLWQ_SOURCE_DIR) / "models/tiny-moe-dev";
    return Model{hlwq::Tokenizer::from_file(dir / "tokenizer.json"), hlwq::ChatTemplate::from_model_dir(dir)};
  }();
  return m;
}

// A context short enough that the length checks are reached by small inputs.
constexpr int64_t kMaxModelLen = 256;

}  // namespace

// The tokenizer takes seconds to load under ASan: not part of the first input's time limit.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)model();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  using namespace hlwq::server;
  const Model& m = model();
  const ApiContext ctx{"tiny-moe-dev", kMaxModelLen, hlwq::SamplerConfig{}, &m.tok, &m.chat, (data[0] & 2) != 0};
  const Endpoint ep = (data[0] & 1) ? Endpoint::completions : Endpoint::chat;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const ApiRequest r = parse_request(ep, body, ctx);
    const GenRequest& g = r.gen;
    if (g.prompt.empty() || g.max_tokens < 1 || int64_t(g.prompt.size()) + g.max_tokens > kMaxModelLen)
      std::abort();
    for (int32_t id : g.prompt)
      if (id < 0 || id >= m.tok.vocab_size()) std::abort();
    if (g.top_logprobs < -1 || g.top_logprobs > 20) std::abort();
    if (!(g.sampler.temperature >= 0 && g.sampler.temperature <= 2) || !(g.sampler.top_p > 0 && g.sampler.top_p <= 1))
      std::abort();
    for (const auto& s : g.stop)
      if (s.empty()) std::abort();
  } catch (const ApiError& e) {
    if (e.status < 400 || e.status > 499 || e.message.empty()) std::abort();
    if (!nlohmann::json::accept(error_body(e))) std::abort();
  }
  return 0;
}
