// Text generation for one sequence: prefill the prompt, then sample token by token, streaming complete UTF-8
// text to a callback, until max_new_tokens, an eos id or a stop string. Reports prefill and decode speed.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"
#include "runtime/tokenizer.h"

namespace hlwq {

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplerConfig sampler;
  std::vector<int32_t> eos_ids;
  std::vector<std::string> stop_strings;
  // Ids [n_valid_tokens, vocab_size) are never sampled: checkpoints pad the embedding past the tokenizer's last id
  // (Qwen rounds it up), and a padded id has no text. 0: every id of the model's vocabulary may be drawn.
  int64_t n_valid_tokens = 0;
};

enum class FinishReason { length, eos, stop_string, context };
std::string_view finish_reason_name(FinishReason r);  // OpenAI's words: "length", "stop"

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (eos included when it ended the run)
  std::string text;             // everything streamed
  FinishReason finish = FinishReason::length;
  int64_t n_prompt = 0;
  double prefill_s = 0, decode_s = 0;
  double prefill_tok_s() const { return prefill_s > 0 ? double(n_prompt) / prefill_s : 0; }
  double decode_tok_s() const { return decode_s > 0 ? double(tokens.size()) / decode_s : 0; }
};

// Runs prompt [n] from seq.pos() on (seq may already hold earlier turns), then generates. on_text receives each
// piece of text as soon as it is complete UTF-8 and cannot be the start of a stop string.
GenerateResult generate(Model& model, const Tokenizer& tok, Sequence& st,
                        const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                        const std::function<void(const std::string&)>& on_text);

}  // namespace hlwq
