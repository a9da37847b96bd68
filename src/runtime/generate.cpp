#include "runtime/generate.h"

#include <chrono>
#include <span>

#include "core/error.h"
#include "runtime/stop_condition.h"
#include "runtime/utf8_stream.h"

namespace hlwq {

std::string_view finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::length:
    case FinishReason::context: return "length";
    case FinishReason::eos:
    case FinishReason::stop_string: return "stop";
    case FinishReason::cancelled: return "abort";
  }
  return "?";
}

GenerateResult generate(Model& model, const Tokenizer& tok, Sequence& st,
                        const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                        const std::function<void(const std::string&)>& on_text) {
  using clock = std::chrono::steady_clock;
  HLWQ_CHECK(!prompt.empty(), "empty prompt: give at least one token of text");
  HLWQ_CHECK(st.pos() + int64_t(prompt.size()) <= st.max_len(),
             "prompt of {} tokens does not fit the context: {} tokens already used of {}", prompt.size(), st.pos(),
             st.max_len());
  const int64_t V = model.config().vocab_size;
  for (int32_t id : prompt) HLWQ_CHECK(id >= 0 && id < V, "prompt token id {} is outside the vocabulary of {}", id, V);
  HLWQ_CHECK(opt.n_valid_tokens >= 0 && opt.n_valid_tokens <= V, "n_valid_tokens {} is outside [0, vocab size {}]",
             opt.n_valid_tokens, V);
  const int64_t n_valid = opt.n_valid_tokens > 0 ? opt.n_valid_tokens : V;
  GenerateResult res;
  res.n_prompt = int64_t(prompt.size());
  std::vector<float> logits(static_cast<size_t>(V));  // [V] of the last token
  Sampler sampler(opt.sampler);
  // Ids the sampler may penalise: only those it can draw (it sees logits [n_valid] and rejects larger ids).
  std::vector<int32_t> history;
  for (int32_t id : prompt)
    if (id < n_valid) history.push_back(id);
  // Runs tokens [n] and chooses the next one: on the backend when the sampler allows it (a GPU then sends back only
  // the id), else on the host. The sampler sees only logits [0, n_valid): the same as masking the padded ids to
  // -inf, except that a -inf candidate could still come back from the sampler's rounding-slack fallback.
  auto forward_choose = [&](const int32_t* tokens, int64_t n) {
    const std::optional<RowSampling> how = sampler.device_choice();
    int32_t id = -1;
    ForwardOptions fo;
    if (how) {
      fo.sample = std::span<const RowSampling>(&*how, 1);
      fo.ids = &id;
      fo.n_valid_tokens = n_valid;
    }
    model.forward(tokens, n, st, logits.data(), fo);
    if (id >= 0) return id;
    const std::span<const float> lg = std::span<const float>(logits).first(size_t(n_valid));
    return how ? sampler.sample_drawn(lg, history, how->u) : sampler.sample(lg, history);
  };
  auto t0 = clock::now();
  int32_t next = forward_choose(prompt.data(), int64_t(prompt.size()));
  res.prefill_s = std::chrono::duration<double>(clock::now() - t0).count();

  StreamingDetokenizer detok(tok);
  StopChecker stop(opt.eos_ids, opt.stop_strings);
  auto emit = [&](const std::string& s) {
    if (s.empty()) return;
    res.text += s;
    if (on_text) on_text(s);
  };
  auto t1 = clock::now();
  for (int64_t i = 0; i < opt.max_new_tokens; ++i) {
    res.tokens.push_back(next);
    history.push_back(next);
    if (stop.is_eos(next)) {
      res.finish = FinishReason::eos;
      break;
    }
    emit(stop.push(detok.feed(next)));
    if (stop.stopped()) {
      res.finish = FinishReason::stop_string;
      break;
    }
    if (i + 1 == opt.max_new_tokens) break;  // no forward for a token nobody will read
    if (opt.should_stop && opt.should_stop()) {
      res.finish = FinishReason::cancelled;
      break;
    }
    if (st.pos() >= st.max_len()) {
      res.finish = FinishReason::context;
      break;
    }
    next = forward_choose(&next, 1);
  }
  if (!stop.stopped()) emit(stop.push(detok.flush()) + stop.flush());
  res.decode_s = std::chrono::duration<double>(clock::now() - t1).count();
  return res;
}

}  // namespace hlwq
