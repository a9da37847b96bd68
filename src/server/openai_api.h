// The OpenAI API as data: request bodies (JSON) checked and turned into GenRequests, engine events turned into
// response bodies and server-sent-event chunks, and the error body {"error": {message, type, param, code}}.
// No I/O and no threads here. Every rejected request throws ApiError with its HTTP status and the offending param.
// Chat output goes through two parsers in this order: tool calls (when the request offers tools and lets the model
// call them) out of the raw text, then the reasoning split of the remaining text — so that a call written before
// </think> closes is still a call.
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
#include "server/tool_calls.h"

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
  ToolCallFormat tool_parser = ToolCallFormat::any;  // --tool-call-parser: the forms of tool call recognised
};

enum class Endpoint { chat, completions };

struct ApiRequest {
  Endpoint endpoint = Endpoint::chat;
  GenRequest gen;
  bool stream = false, include_usage = false;
  // Chat with the reasoning parser on: whether generation starts inside <think> (the prompt opened it).
  std::optional<bool> reasoning_starts_open;
  // Chat with tools and tool_choice "auto": the calls in the output are parsed (with these tools' schemas).
  std::optional<ToolCallFormat> tool_format;
  std::vector<ToolSpec> tools;
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
  struct Parsed {
    std::string reasoning, content;
    std::vector<ToolCallDelta> calls;
  };
  void apply(const ToolCallDelta& d);  // into calls_
  Parsed parse(std::string_view text);  // through the tool-call parser, then the reasoning split
  Parsed parse_flush();
  nlohmann::ordered_json chunk_base() const;
  nlohmann::ordered_json chat_delta_chunk(const Parsed& p, const std::vector<TokenLogprob>& lp);
  nlohmann::ordered_json logprobs_json(const std::vector<TokenLogprob>& lp) const;
  std::string finish_reason(const StreamEvent& f) const;
  Endpoint ep_;
  bool include_usage_, want_logprobs_;
  std::string id_, model_;
  int64_t created_;
  std::optional<ReasoningSplitter> reasoning_;
  std::optional<ToolCallParser> tool_parser_;
  std::string text_, reasoning_text_;
  std::vector<ToolCall> calls_;  // every call so far (streamed ones too: their count is the next index)
  std::vector<TokenLogprob> logprobs_;
};

}  // namespace hlwq::server
