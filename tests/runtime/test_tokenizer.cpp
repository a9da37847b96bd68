// Tokenizer tests: exact agreement with Hugging Face tokenizers on golden files (ids and decoded text),
// decode(encode(x)) == NFC(x), streaming detokenization of characters split across tokens, and loader
// errors for malformed tokenizer.json files. Goldens for our 8k tokenizer live in testdata/tokenizer;
// the real Qwen3 tokenizer is read from ../shared and skipped loudly when absent.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "runtime/byte_level.h"
#include "runtime/pretokenizer.h"
#include "runtime/tokenizer.h"
#include "runtime/utf8_stream.h"
#include "test_paths.h"

namespace hlwq {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

json read_json(const fs::path& p) {
  std::ifstream f(p);
  EXPECT_TRUE(f.good()) << p;
  return json::parse(f);
}

fs::path ours_dir() { return test::source_dir() / "testdata" / "tokenizer"; }
fs::path qwen3_dir() { return test::shared_dir() / "fixtures" / "qwen3-tokenizer"; }
fs::path golden_dir() { return test::shared_dir() / "fixtures" / "tokenizer-golden"; }

// One golden case: HF ids, HF decode, and our round trip must be NFC(text).
void check_case(const Tokenizer& tok, const std::string& text, const std::vector<int32_t>& want,
                const std::string* decoded, const std::string& label) {
  std::vector<int32_t> got = tok.encode(text);
  EXPECT_EQ(got, want) << label << " text=" << json(text).dump();
  std::string dec = tok.decode(want);
  if (decoded) {
    EXPECT_EQ(dec, *decoded) << label;
  }
  EXPECT_EQ(tok.decode(got), normalize_nfc(text)) << label;
  // The streaming detokenizer must reproduce decode() exactly, one id at a time.
  StreamingDetokenizer sd(tok);
  std::string streamed;
  for (int32_t id : want) streamed += sd.feed(id);
  streamed += sd.flush();
  EXPECT_EQ(streamed, dec) << label;
}

void check_golden_list(const Tokenizer& tok, const fs::path& file) {
  json cases = read_json(file);
  ASSERT_TRUE(cases.is_array());
  ASSERT_GT(cases.size(), 10u);
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string dec = cases[i]["decoded"].get<std::string>();
    check_case(tok, cases[i]["text"].get<std::string>(), cases[i]["ids"].get<std::vector<int32_t>>(), &dec,
               fmt::format("{}[{}]", file.filename().string(), i));
  }
}

void check_golden_long(const Tokenizer& tok, const fs::path& file) {
  json c = read_json(file);
  std::string text = c["text"].get<std::string>();
  ASSERT_GT(text.size(), 10000u);
  check_case(tok, text, c["ids"].get<std::vector<int32_t>>(), nullptr, file.filename().string());
}

TEST(Tokenizer, OursGoldenShort) {
  Tokenizer tok = Tokenizer::from_file(ours_dir() / "tokenizer.json");
  EXPECT_EQ(tok.vocab_size(), 8192);
  check_golden_list(tok, ours_dir() / "tokenizer-golden-ours.json");
}

TEST(Tokenizer, OursGoldenLong) {
  Tokenizer tok = Tokenizer::from_file(ours_dir() / "tokenizer.json");
  check_golden_long(tok, ours_dir() / "tokenizer-golden-ours-long.json");
}

// The 11 MB Qwen3 file takes ~0.7 s to load; share one instance between tests.
const Tokenizer& qwen3() {
  static const Tokenizer tok = Tokenizer::from_file(qwen3_dir() / "tokenizer.json");
  return tok;
}

TEST(Tokenizer, Qwen3GoldenShort) {
  HLWQ_REQUIRE_SHARED("qwen3-tokenizer");
  HLWQ_REQUIRE_SHARED("tokenizer-golden");
  const Tokenizer& tok = qwen3();
  EXPECT_EQ(tok.vocab_size(), 151669);
  check_golden_list(tok, golden_dir() / "tokenizer-golden-qwen3.json");
}

TEST(Tokenizer, Qwen3GoldenLong) {
  HLWQ_REQUIRE_SHARED("qwen3-tokenizer");
  HLWQ_REQUIRE_SHARED("tokenizer-golden");
  check_golden_long(qwen3(), golden_dir() / "tokenizer-golden-qwen3-long.json");
}

TEST(Tokenizer, Qwen3AddedTokens) {
  HLWQ_REQUIRE_SHARED("qwen3-tokenizer");
  const Tokenizer& tok = qwen3();
  // Non-special added tokens (<think>) match even when special tokens are encoded as text.
  EXPECT_EQ(tok.encode("<think>x</think>", false).front(), 151667);
  std::vector<int32_t> as_text = tok.encode("<|im_end|>", false);
  EXPECT_GT(as_text.size(), 1u);
  EXPECT_EQ(tok.decode(as_text), "<|im_end|>");
  EXPECT_EQ(tok.encode("<|im_end|>"), std::vector<int32_t>{151645});
  EXPECT_EQ(tok.token_id("<|im_end|>"), 151645);
  EXPECT_EQ(tok.token_id("<|endoftext|>"), 151643);
  EXPECT_EQ(tok.token_text(151645), "<|im_end|>");
}


TEST(Tokenizer, OursSpecialTokensAndLookup) {
  Tokenizer tok = Tokenizer::from_file(ours_dir() / "tokenizer.json");
  EXPECT_EQ(tok.encode("<|im_start|>"), std::vector<int32_t>{8188});
  EXPECT_GT(tok.encode("<|im_start|>", /*allow_special=*/false).size(), 1u);
  EXPECT_EQ(tok.token_id("<|im_end|>"), 8189);
  EXPECT_EQ(tok.token_id("no such token at all"), std::nullopt);
  EXPECT_EQ(tok.token_text(8190), "<think>");
  EXPECT_THROW(tok.token_text(8192), Error);
  EXPECT_THROW(tok.token_text(-1), Error);
  EXPECT_THROW(tok.encode("bad \xC3\x28 utf8"), Error);
  // Every id's bytes map back to that id unless another id has identical bytes (none do here).
  for (int32_t id = 0; id < tok.vocab_size(); ++id) EXPECT_EQ(tok.token_id(tok.token_text(id)), id) << id;
}

TEST(Utf8Stream, EmojiAndCjkSplitAcrossTokens) {
  Tokenizer tok = Tokenizer::from_file(ours_dir() / "tokenizer.json");
  for (std::string ch : {"\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD", "\xE9\xBE\x98"}) {  // 👍🏽, 龘 (rare CJK)
    std::vector<int32_t> ids = tok.encode(ch);
    ASSERT_GE(ids.size(), 2u) << "test needs a character spread over several byte-level tokens";
    StreamingDetokenizer sd(tok);
    std::string out;
    size_t silent = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      std::string piece = sd.feed(ids[i]);
      EXPECT_EQ(utf8_first_invalid(piece), piece.size());  // only complete, valid UTF-8 is released
      silent += piece.empty();
      out += piece;
    }
    EXPECT_GE(silent, 1u);
    EXPECT_EQ(out, ch);
    EXPECT_EQ(sd.flush(), "");
  }
}

TEST(Utf8Stream, TruncatedTailAndInvalidBytes) {
  Utf8Stream s;
  EXPECT_EQ(s.push("a\xF0\x9F"), "a");
  EXPECT_EQ(s.held_bytes(), 2u);
  EXPECT_EQ(s.push("\x98"), "");
  EXPECT_EQ(s.flush(), "\xEF\xBF\xBD");  // one U+FFFD for the truncated 😀
  EXPECT_EQ(s.push("\xFFx"), "\xEF\xBF\xBDx");
  EXPECT_EQ(s.push("\xE4\xB8"), "");
  EXPECT_EQ(s.push("A"), "\xEF\xBF\xBD" "A");  // broken sequence is replaced as soon as it is known bad
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98\xC3\xA9\xED\xA0\x80"), "\xEF\xBF\xBD\xC3\xA9\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(ByteLevel, AlphabetIsABijection) {
  EXPECT_EQ(byte_level_char(' '), U'\u0120');  // Ġ
  EXPECT_EQ(byte_level_char('\n'), U'\u010A');  // Ċ
  EXPECT_EQ(byte_level_char('A'), U'A');
  EXPECT_EQ(byte_level_char(0xAD), U'\u0143');  // the one gap inside 161..255
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(char(b));
  EXPECT_EQ(byte_level_decode(byte_level_encode(all)), all);
}

// ---- synthetic tokenizers: BPE order, added-token options, loader errors ---------------------------------

void expect_load_error(const std::string& text, const std::string& needle);
void expect_load_error_fwd(const std::string& text, const std::string& needle) { expect_load_error(text, needle); }

// A minimal valid tokenizer.json: the 256-byte alphabet plus `extra` vocab entries and `merges`.
json tiny_tokenizer(const std::vector<std::string>& extra, json merges) {
  json vocab = json::object();
  int id = 0;
  for (int b = 0; b < 256; ++b) vocab[byte_level_encode(std::string(1, char(b)))] = id++;
  for (const std::string& e : extra) vocab[e] = id++;
  json j;
  j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}};
  j["added_tokens"] = json::array();
  j["normalizer"] = {{"type", "NFC"}};
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}};
  return j;
}

std::vector<std::string> pieces(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(tok.token_text(id));
  return out;
}

TEST(TokenizerSynthetic, MergesByRankStringAndArrayForms) {
  // Rank order, not left-to-right: "bc" (rank 0) beats "ab" (rank 1), so "abc" -> a, bc -> abc via rank 2.
  std::vector<std::string> extra{"bc", "ab", "abc"};
  json as_strings = json::array({"b c", "a b", "a bc"});
  json as_arrays = json::array({json::array({"b", "c"}), json::array({"a", "b"}), json::array({"a", "bc"})});
  for (const json& merges : {as_strings, as_arrays}) {
    Tokenizer tok = Tokenizer::from_json_text(tiny_tokenizer(extra, merges).dump(), "<tiny>");
    EXPECT_EQ(pieces(tok, tok.encode("abc abab")), (std::vector<std::string>{"abc", " ", "ab", "ab"}));
  }
  // Without "a bc" the rank-0 merge blocks "ab": a | bc.
  Tokenizer tok = Tokenizer::from_json_text(tiny_tokenizer(extra, json::array({"b c", "a b"})).dump(), "<t>");
  EXPECT_EQ(pieces(tok, tok.encode("abc")), (std::vector<std::string>{"a", "bc"}));
}

TEST(TokenizerSynthetic, AddedTokenStripAndLongestMatch) {
  json j = tiny_tokenizer({}, json::array());
  j["added_tokens"] = json::array({
      {{"id", 300}, {"content", "<x>"}, {"special", true}, {"lstrip", true}, {"rstrip", true}},
      {{"id", 301}, {"content", "<x>>"}, {"special", false}},
      {{"id", 302}, {"content", "w"}, {"special", false}, {"single_word", true}},
  });
  Tokenizer tok = Tokenizer::from_json_text(j.dump(), "<tiny>");
  EXPECT_EQ(tok.vocab_size(), 303);
  EXPECT_EQ(tok.encode("a  <x>  b"), (std::vector<int32_t>{'a', 300, 'b'}));  // ids == bytes here; spaces stripped
  EXPECT_EQ(tok.encode("<x>>"), std::vector<int32_t>{301});                            // longest wins
  EXPECT_EQ(tok.encode("w"), std::vector<int32_t>{302});
  EXPECT_EQ(tok.encode("aw").size(), 2u);  // single_word: inside a word it is plain text
  EXPECT_NE(tok.encode("aw")[1], 302);
}

// Issue 11: added tokens are matched through a trie (a per-first-byte candidate list made 100 KB of '<' with
// many `<...>` tokens take over a minute; its speed is in bench_tokenizer). The match must be the same
// leftmost-longest one, special tokens still skipped when disabled, and a special/non-special pair sharing a
// prefix resolved by length, then file order.
TEST(TokenizerSynthetic, ManyAddedTokensSharingAPrefix) {
  json j = tiny_tokenizer({}, json::array());
  json added = json::array();
  int id = 256;
  for (int k = 1; k <= 300; ++k)  // "<a", "<aa", ..., and "<k>" for many k
    added.push_back({{"id", id++}, {"content", "<" + std::to_string(k) + ">"}, {"special", k % 2 == 0}});
  added.push_back({{"id", id++}, {"content", "<<"}, {"special", false}});
  added.push_back({{"id", id++}, {"content", "<<<"}, {"special", true}});
  j["added_tokens"] = added;
  Tokenizer tok = Tokenizer::from_json_text(j.dump(), "<tiny>");
  const int32_t t7 = 256 + 6, t12 = 256 + 11, lt2 = 256 + 300, lt3 = 256 + 301;
  EXPECT_EQ(tok.encode("<7><12>"), (std::vector<int32_t>{t7, t12}));
  EXPECT_EQ(tok.encode("<<<<<"), (std::vector<int32_t>{lt3, lt2}));  // longest first, then the rest
  EXPECT_EQ(tok.encode("<<<<<", false), (std::vector<int32_t>{lt2, lt2, '<'}));  // "<<<" is special: skipped
  const std::vector<int32_t> no_special = tok.encode("<12>", false);  // special: plain bytes
  EXPECT_EQ(tok.decode(no_special), "<12>");
  EXPECT_EQ(std::count(no_special.begin(), no_special.end(), t12), 0);
  const std::string many(100000, '<');
  const std::vector<int32_t> ids = tok.encode(many);
  EXPECT_EQ(ids.size(), 33334u);  // 33333 x "<<<" then one '<'
  EXPECT_EQ(tok.decode(ids), many);
  j["added_tokens"] = json::array({{{"id", 256}, {"content", std::string(5000, 'x')}}});
  expect_load_error_fwd(j.dump(), "over the 1024 byte limit");
}

// A pre-token of megabytes (no spaces) is encoded in bounded pieces instead of one BPE over the whole word.
TEST(TokenizerSynthetic, HugeWordsAreEncodedInBoundedPieces) {
  Tokenizer tok = Tokenizer::from_json_text(tiny_tokenizer({"ab"}, json::array({"a b"})).dump(), "<tiny>");
  std::string word;
  for (int k = 0; k < 300000; ++k) word += k % 3 == 0 ? "\xc3\xa9" : "ab";  // multi-byte chars across cuts
  const std::vector<int32_t> ids = tok.encode(word);
  EXPECT_EQ(tok.decode(ids), normalize_nfc(word));
}

void expect_load_error(const std::string& text, const std::string& needle) {
  try {
    Tokenizer::from_json_text(text, "bad/tokenizer.json");
    ADD_FAILURE() << "expected hlwq::Error containing '" << needle << "'";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("bad/tokenizer.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  }
}

TEST(TokenizerSynthetic, LoaderErrors) {
  std::vector<std::string> extra{"ab"};
  expect_load_error(tiny_tokenizer(extra, json::array({"a b", "ab"})).dump(), "model.merges[1]");
  expect_load_error(tiny_tokenizer(extra, json::array({json::array({"a"})})).dump(), "model.merges[0]");
  expect_load_error(tiny_tokenizer(extra, json::array({"a z"})).dump(), "'az' is not in model.vocab");
  json j = tiny_tokenizer(extra, json::array());
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", json::array({{{"type", "Whitespace"}}})}};
  expect_load_error(j.dump(), "pre_tokenizer.pretokenizers[0] type 'Whitespace'");
  j = tiny_tokenizer(extra, json::array());
  j["normalizer"] = {{"type", "NFKC"}};
  expect_load_error(j.dump(), "normalizer type 'NFKC'");
  j = tiny_tokenizer(extra, json::array());
  j["decoder"] = {{"type", "WordPiece"}};
  expect_load_error(j.dump(), "decoder type 'WordPiece'");
  j = tiny_tokenizer(extra, json::array());
  j["model"]["vocab"].erase(byte_level_encode("\n"));
  expect_load_error(j.dump(), "byte 0x0a");
  std::string full = tiny_tokenizer(extra, json::array({"a b"})).dump();
  expect_load_error(full.substr(0, full.size() / 2), "not valid JSON");
  EXPECT_THROW(Tokenizer::from_file("/nonexistent/tokenizer.json"), Error);
}

// Found by fuzz_tokenizer_json: a number too large for a double (here a vocab id) made nlohmann's parser throw
// out_of_range, which is not a parse_error and escaped the loader as a foreign exception.
TEST(TokenizerSynthetic, NumberOverflowIsALoadError) {
  std::string text = tiny_tokenizer({"ab"}, json::array()).dump();
  const std::string key = "\"ab\":";
  const size_t at = text.find(key);
  ASSERT_NE(at, std::string::npos);
  const size_t end = text.find_first_of(",}", at);
  text.replace(at + key.size(), end - at - key.size(), "1e999");
  expect_load_error(text, "not valid JSON");
}

// Ids from the file index id_bytes: a negative id used to write out of bounds and a huge one to resize to
// gigabytes. Both must be refused with the file and token named, for vocab and added_tokens alike.
TEST(TokenizerSynthetic, OutOfRangeIdsAreRefused) {
  for (int64_t bad : {int64_t(-1), int64_t(2000000000), int64_t(1) << 32}) {
    json j = tiny_tokenizer({"ab"}, json::array());
    j["model"]["vocab"]["ab"] = bad;
    expect_load_error(j.dump(), "model.vocab entry (token \"ab\") must be an integer id in [0, ");
    j = tiny_tokenizer({}, json::array());
    j["added_tokens"] = json::array({{{"id", bad}, {"content", "<evil>"}, {"special", true}}});
    expect_load_error(j.dump(), "added_tokens[0].id (token \"<evil>\") must be an integer id");
  }
  json j = tiny_tokenizer({}, json::array());
  j["added_tokens"] = json::array({{{"id", 1.5}, {"content", "<f>"}}});
  expect_load_error(j.dump(), "got 1.5");
  // A sparse but sane id (a hole below it) still loads.
  j = tiny_tokenizer({}, json::array());
  j["added_tokens"] = json::array({{{"id", 1000}, {"content", "<far>"}}});
  EXPECT_EQ(Tokenizer::from_json_text(j.dump(), "<t>").vocab_size(), 1001);
}

// Deeply nested values must give a clean error, neither a stack overflow in a recursive dump nor in parsing.
TEST(TokenizerSynthetic, DeepNestingIsRefused) {
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  std::string text = tiny_tokenizer({"ab"}, json::array()).dump();
  text.insert(text.size() - 1, ",\"x\":" + deep);
  expect_load_error(text, "nests deeper than");
  json j = tiny_tokenizer({"ab"}, json::parse("[[[[[[1]]]]]]"));  // merges[0] nests 5 deep
  expect_load_error(j.dump(), "model.merges[0] = [[[[...]]]] is neither");
}

// Without JIT (PCRE2 built without it, forced here) no JIT stack is created and the interpreter gives the same
// pieces; the 100k-space run needs the grown JIT stack on the JIT path. Many threads share one splitter (and
// its pool of match states) without interfering.
TEST(RegexSplitter, InterpreterMatchesJitAndIsThreadSafe) {
  const RegexSplitter jit(std::string(kGpt2SplitPattern), false, "<jit>");
  const RegexSplitter interp(std::string(kGpt2SplitPattern), false, "<interp>", /*use_jit=*/false);
  std::vector<std::string> texts = {"Hello world's 123 tests!!  \n\n  end", "日本語のテキスト, 😀 ok",
                                    "a" + std::string(100000, ' ') + "b", ""};
  for (const std::string& t : texts) {
    std::vector<std::string_view> a, b;
    jit.split_isolated(t, a);
    interp.split_isolated(t, b);
    EXPECT_EQ(a, b) << t.substr(0, 40);
  }
  std::vector<std::string_view> want;
  jit.split_isolated(texts[0], want);
  std::vector<int> ok(64, 0);
#pragma omp parallel for num_threads(8)
  for (int i = 0; i < 64; ++i) {
    std::vector<std::string_view> got;
    (i % 2 ? jit : interp).split_isolated(texts[0], got);
    ok[size_t(i)] = got == want;
  }
  EXPECT_EQ(std::count(ok.begin(), ok.end(), 1), 64);
}

}  // namespace
}  // namespace hlwq
