// generate(): ids the tokenizer does not have (the padded tail of the embedding) are never sampled.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.h"
#include "model/model.h"
#include "runtime/generate.h"
#include "runtime/tokenizer.h"
#include "test_paths.h"

namespace hlwq {
namespace {
namespace fs = std::filesystem;

fs::path tiny_moe_dev() { return test::source_dir() / "models" / "tiny-moe-dev"; }

TEST(Generate, NeverSamplesPastNValidTokens) {
  // Hot sampling with every filter off spreads the draws over the whole vocabulary, so an unmasked run lands past
  // the limit within a few tokens.
  constexpr int64_t kNewTokens = 50;
  constexpr float kHotTemperature = 1.5f;
  LoadOptions lo;
  lo.max_seqs = 3;  // three sequences below are open at once
  Model m = Model::load(tiny_moe_dev().string(), lo);
  const Tokenizer tok = Tokenizer::from_file(tiny_moe_dev() / "tokenizer.json");
  const int64_t n_valid = tok.vocab_size() / 2;  // pretend the upper half is embedding padding
  GenerateOptions opt;
  opt.max_new_tokens = kNewTokens;
  opt.sampler.temperature = kHotTemperature;
  opt.sampler.top_k = 0;
  opt.sampler.top_p = 1.0f;
  opt.sampler.seed = 1234;
  opt.n_valid_tokens = n_valid;
  const std::vector<int32_t> prompt = tok.encode("Once upon a time");
  ASSERT_FALSE(prompt.empty());

  Sequence st = m.new_sequence(256);
  const GenerateResult r = generate(m, tok, st, prompt, opt, nullptr);
  ASSERT_EQ(int64_t(r.tokens.size()), kNewTokens);
  for (int32_t id : r.tokens) EXPECT_LT(id, n_valid);

  // The same run with every tokenizer id allowed does draw past n_valid: the check above is not vacuous.
  opt.n_valid_tokens = tok.vocab_size();
  Sequence st2 = m.new_sequence(256);
  const GenerateResult all = generate(m, tok, st2, prompt, opt, nullptr);
  EXPECT_TRUE(std::any_of(all.tokens.begin(), all.tokens.end(), [&](int32_t id) { return id >= n_valid; }));

  opt.n_valid_tokens = m.config().vocab_size + 1;
  Sequence st3 = m.new_sequence(256);
  EXPECT_THROW(generate(m, tok, st3, prompt, opt, nullptr), Error);
}

}  // namespace
}  // namespace hlwq
