// The OpenAI API as data: request bodies (JSON) checked and turned into GenRequests, engine events turned into
// response bodies and server-sent-event chunks, and the error body {"error": {message, type, param, code}}.
// No I/O and no threads here. Every rejected request throws ApiError with its HTTP status and the offending param.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/chat_template.h"
#include "runtime/sampler.h"
#include "runtime/tokenizer.h"
#include "server/queue.h"
#include "server/reasoning.h"

namespace hlwq::server {

struct ApiError {
  int status = 400;
  std::string message, type = "invalid_request_error", param, code;
};
std::string error_body(const ApiError& e);

// What request parsing needs to know about the served model.
struct ApiContext {
  std::string model_name;
  int64_t max_model_len = 0;
  SamplerConfig defaults;  // generation_config.json's sampling values (a request's fields override them)
  const Tokenizer* tok = nullptr;
  const ChatTemplate* chat = nullptr;
  bool reasoning_parser = false;  // --reasoning-parser qwen3: <think>…</think> goes to reasoning_content
};

enum class Endpoint { chat, completions };

struct ApiRequest {
  Endpoint endpoint = Endpoint::chat;
  GenRequest gen;
  bool stream = false, include_usage = false;
  // Chat with the reasoning parser on: whether generation starts inside <think> (the prompt opened it).
  std::optional<bool> reasoning_starts_open;
};

ApiRequest parse_request(Endpoint ep, std::string_view body, const ApiContext& ctx);

std::string models_body(const ApiContext& ctx, int64_t created);

// Builds the bodies of one response: the full JSON (non-streaming) or the SSE chunks (streaming).
class ResponseWriter {
 public:
  ResponseWriter(const ApiRequest& req, std::string model, int64_t created);
  // Streaming: "data: {...}\n\n" lines.
  std::string sse_start() const;  // chat: the assistant role delta; completions: ""
  std::string sse_delta(const StreamEvent& ev);  // "" when the event carries nothing to send yet
  std::string sse_finish(const StreamEvent& finish);  // held text, finish_reason chunk, usage chunk, [DONE]
  // Non-streaming: all deltas, then the finish event.
  void add(const StreamEvent& ev);
  std::string full(const StreamEvent& finish);

 private:
  nlohmann::json chunk_base() const;
  nlohmann::json logprobs_json(const std::vector<TokenLogprob>& lp) const;
  Endpoint ep_;
  bool include_usage_, want_logprobs_;
  std::string id_, model_;
  int64_t created_;
  std::optional<ReasoningSplitter> reasoning_;
  std::string text_, reasoning_text_;
  std::vector<TokenLogprob> logprobs_;
};

}  // namespace hlwq::server
