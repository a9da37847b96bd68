// tokenizer.json loader and the encode/decode pipeline. Encoding: split off added tokens on the raw text,
// then per remaining segment NFC -> pre-tokenizer pieces -> byte-level BPE. BPE works on token ids, not
// strings: each byte starts as the id of its one-character vocab entry and a merge of (left id, right id)
// yields (rank, merged id), so the merge loop never builds strings. Word results are memoised per Tokenizer.
#include "runtime/tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <mutex>
#include <queue>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_util.h"
#include "io/read_file.h"
#include "runtime/byte_level.h"
#include "runtime/pretokenizer.h"
#include "runtime/utf8_stream.h"

namespace hlwq {

using json = nlohmann::json;

namespace {

struct PreStep {
  enum class Kind { Split, ByteLevel } kind;
  std::optional<RegexSplitter> regex;  // Split, or ByteLevel with use_regex
  bool add_prefix_space = false;
};

struct MergeTarget {
  int32_t rank;
  int32_t id;
};

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_word_byte(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

constexpr size_t kWordCacheLimit = 1 << 18;  // entries; the cache is dropped wholesale past this
constexpr size_t kMaxCachedWordBytes = 256;   // longer words are rare and would make the cache's memory unbounded
// BPE needs ~40 bytes of state per byte of a word, so one pre-token is encoded in pieces of at most this many bytes
// (cut at a character boundary). Real words never come close; a 100 MB "word" would otherwise take gigabytes.
constexpr size_t kMaxWordBytes = size_t(64) << 10;
// Added tokens are matched with a byte trie; bounding their length bounds the walk at each text position (real
// added tokens are under 100 bytes).
constexpr size_t kMaxAddedTokenBytes = 1024;

// Token ids index id_bytes, which set_id() grows to the largest id, so an id read from the file must be bounded
// before it is used: ids are dense in practice (vocab then added tokens), so anything beyond their count plus
// some slack for holes is hostile, and no real vocabulary comes near kMaxTokenId.
constexpr int64_t kTokenIdSlack = 1 << 16;
constexpr int64_t kMaxTokenId = 1 << 24;

// No real tokenizer.json nests beyond ~10 levels; the cap keeps recursive json copies/dumps off a hostile file.
constexpr size_t kMaxJsonDepth = 128;

}  // namespace

struct Tokenizer::Impl {
  std::string origin;
  int64_t id_limit = 0;  // ids must be < id_limit (see kTokenIdSlack)
  bool nfc = false;
  std::vector<PreStep> steps;
  std::unordered_map<uint64_t, MergeTarget> merges;
  std::array<int32_t, 256> byte_id{};                  // id of the single-byte token for each byte
  std::vector<std::string> id_bytes;                   // [vocab_size] raw bytes per id
  std::vector<bool> id_present;                        // [vocab_size] ids may have holes
  std::unordered_map<std::string, int32_t> bytes_to_id;
  std::vector<AddedToken> added;
  // Byte trie over added-token contents: node 0 is the root; child (node << 8 | byte) -> node. ends[node] lists
  // the added tokens whose content ends at that node, in file order. Matching walks it once per text position,
  // so the cost is bounded by kMaxAddedTokenBytes per position however many added tokens share a prefix (a
  // per-first-byte list compared every candidate: 100 KB of '<' took over a minute with many `<...>` tokens).
  std::unordered_map<uint64_t, int32_t> trie_child;
  std::vector<std::vector<size_t>> trie_ends{{}};

  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> word_cache;

  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;
};

namespace {

// ---- loading ---------------------------------------------------------------------------------------------

const json& require(const json& obj, const char* key, const std::string& origin, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end()) fail("{}: missing field {}.{}", origin, path, key);
  return *it;
}

std::string type_of(const json& j) { return j.is_null() ? "null" : j.value("type", std::string("<no type>")); }

void load_normalizer(const json& n, Tokenizer::Impl& t) {
  if (n.is_null()) return;
  std::string type = type_of(n);
  if (type == "NFC") {
    t.nfc = true;
  } else if (type == "Sequence") {
    for (const json& sub : require(n, "normalizers", t.origin, "normalizer")) {
      if (type_of(sub) != "NFC")
        fail("{}: normalizer.normalizers[] type '{}' is not supported (supported: NFC)", t.origin, type_of(sub));
      t.nfc = true;
    }
  } else {
    fail("{}: normalizer type '{}' is not supported (supported: null, NFC, Sequence of NFC)", t.origin, type);
  }
}

void load_pre_step(const json& p, const std::string& field, Tokenizer::Impl& t) {
  std::string type = type_of(p);
  PreStep step{};
  if (type == "Split") {
    step.kind = PreStep::Kind::Split;
    const json& pat = require(p, "pattern", t.origin, field);
    std::string behavior = p.value("behavior", std::string("<missing>"));
    if (behavior != "Isolated")
      fail("{}: {}.behavior '{}' is not supported (supported: Isolated)", t.origin, field, behavior);
    if (p.value("invert", false)) fail("{}: {}.invert=true is not supported", t.origin, field);
    if (pat.contains("Regex")) {
      step.regex.emplace(pat["Regex"].get<std::string>(), false, t.origin + ": " + field + ".pattern.Regex");
    } else if (pat.contains("String")) {
      step.regex.emplace(pat["String"].get<std::string>(), true, t.origin + ": " + field + ".pattern.String");
    } else {
      fail("{}: {}.pattern must hold Regex or String, got {}", t.origin, field, json_brief(pat));
    }
  } else if (type == "ByteLevel") {
    step.kind = PreStep::Kind::ByteLevel;
    step.add_prefix_space = p.value("add_prefix_space", false);
    if (p.value("use_regex", true))
      step.regex.emplace(std::string(kGpt2SplitPattern), false, t.origin + ": " + field + " (GPT-2 regex)");
  } else {
    fail("{}: {} type '{}' is not supported (supported: Split, ByteLevel, Sequence of those)", t.origin, field,
         type);
  }
  t.steps.push_back(std::move(step));
}

void load_pre_tokenizer(const json& p, Tokenizer::Impl& t) {
  if (p.is_null()) fail("{}: pre_tokenizer is null; byte-level BPE needs a ByteLevel pre-tokenizer", t.origin);
  if (type_of(p) == "Sequence") {
    const json& list = require(p, "pretokenizers", t.origin, "pre_tokenizer");
    for (size_t i = 0; i < list.size(); ++i)
      load_pre_step(list[i], fmt::format("pre_tokenizer.pretokenizers[{}]", i), t);
  } else {
    load_pre_step(p, "pre_tokenizer", t);
  }
  bool byte_level = false;
  for (const PreStep& s : t.steps) byte_level |= s.kind == PreStep::Kind::ByteLevel;
  if (!byte_level) fail("{}: pre_tokenizer has no ByteLevel step; only byte-level BPE is supported", t.origin);
}

// Reads a token id as int64 (get<int32_t> would silently wrap 2^32+5 to 5) and bounds it by t.id_limit.
int32_t read_id(const json& v, const Tokenizer::Impl& t, const std::string& field, std::string_view token) {
  int64_t id = -1;  // non-integers (floats, strings, arrays) stay -1 and are refused below
  if (v.is_number_unsigned())
    id = int64_t(std::min<uint64_t>(v.get<uint64_t>(), uint64_t(kMaxTokenId)));
  else if (v.is_number_integer())
    id = v.get<int64_t>();
  if (id < 0 || id >= t.id_limit)
    fail("{}: {} (token {}) must be an integer id in [0, {}), got {}", t.origin, field,
         json_brief(json(std::string(token))), t.id_limit, json_brief(v));
  return int32_t(id);
}

void set_id(Tokenizer::Impl& t, int32_t id, std::string bytes) {
  if (size_t(id) >= t.id_bytes.size()) {
    t.id_bytes.resize(size_t(id) + 1);
    t.id_present.resize(size_t(id) + 1, false);
  }
  t.id_bytes[size_t(id)] = std::move(bytes);
  t.id_present[size_t(id)] = true;
}

void load_model(const json& m, Tokenizer::Impl& t) {
  if (m.value("type", std::string("BPE")) != "BPE")
    fail("{}: model.type '{}' is not supported (supported: BPE)", t.origin, m["type"].get<std::string>());
  if (m.contains("dropout") && !m["dropout"].is_null()) fail("{}: model.dropout is not supported", t.origin);
  if (m.value("byte_fallback", false)) fail("{}: model.byte_fallback=true is not supported", t.origin);
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(k) && !m[k].is_null() && !m[k].get<std::string>().empty())
      fail("{}: model.{}='{}' is not supported", t.origin, k, m[k].get<std::string>());

  const json& vocab = require(m, "vocab", t.origin, "model");
  if (!vocab.is_object()) fail("{}: model.vocab must be an object of token -> id", t.origin);
  std::unordered_map<std::string, int32_t> str_to_id;
  str_to_id.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int32_t id = read_id(it.value(), t, "model.vocab entry", it.key());
    str_to_id.emplace(it.key(), id);
    set_id(t, id, byte_level_decode(it.key()));
  }
  for (int b = 0; b < 256; ++b) {
    std::string s;
    utf8_append(s, byte_level_char(uint8_t(b)));
    auto it = str_to_id.find(s);
    if (it == str_to_id.end())
      fail("{}: model.vocab lacks the byte-level token '{}' for byte 0x{:02x}", t.origin, s, b);
    t.byte_id[size_t(b)] = it->second;
  }

  const json& merges = require(m, "merges", t.origin, "model");
  if (!merges.is_array()) fail("{}: model.merges must be an array", t.origin);
  t.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& e = merges[i];
    std::string a, b;
    if (e.is_string()) {  // "a b": byte-level tokens never contain a space, so exactly one separator
      const auto& s = e.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 == s.size() || s.find(' ', sp + 1) != std::string::npos)
        fail("{}: model.merges[{}] = {} is not of the form \"left right\"", t.origin, i, json_brief(e));
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      fail("{}: model.merges[{}] = {} is neither \"left right\" nor [left, right]", t.origin, i, json_brief(e));
    }
    auto ia = str_to_id.find(a), ib = str_to_id.find(b), im = str_to_id.find(a + b);
    if (ia == str_to_id.end() || ib == str_to_id.end() || im == str_to_id.end())
      fail("{}: model.merges[{}] = {}: '{}' is not in model.vocab", t.origin, i, json_brief(e),
           ia == str_to_id.end() ? a : ib == str_to_id.end() ? b : a + b);
    // A repeated pair keeps its first (best) rank, as HF does when it builds its merge map.
    t.merges.emplace(pair_key(ia->second, ib->second), MergeTarget{int32_t(i), im->second});
  }
}

void load_added(const json& list, Tokenizer::Impl& t) {
  if (list.is_null()) return;
  if (!list.is_array()) fail("{}: added_tokens must be an array", t.origin);
  for (size_t i = 0; i < list.size(); ++i) {
    const json& e = list[i];
    std::string field = fmt::format("added_tokens[{}]", i);
    AddedToken a;
    a.content = require(e, "content", t.origin, field).get<std::string>();
    a.id = read_id(require(e, "id", t.origin, field), t, field + ".id", a.content);
    if (a.content.empty() || utf8_first_invalid(a.content) != a.content.size())
      fail("{}: {}.content must be non-empty valid UTF-8", t.origin, field);
    a.special = e.value("special", false);
    a.lstrip = e.value("lstrip", false);
    a.rstrip = e.value("rstrip", false);
    a.single_word = e.value("single_word", false);
    set_id(t, a.id, a.content);
    t.added.push_back(std::move(a));
  }
  for (size_t i = 0; i < t.added.size(); ++i) {
    const std::string& c = t.added[i].content;
    if (c.size() > kMaxAddedTokenBytes)
      fail("{}: added_tokens[{}].content is {} bytes, over the {} byte limit", t.origin, i, c.size(),
           kMaxAddedTokenBytes);
    int32_t node = 0;
    for (unsigned char b : c) {
      auto [it, fresh] = t.trie_child.try_emplace(uint64_t(node) << 8 | b, int32_t(t.trie_ends.size()));
      if (fresh) t.trie_ends.emplace_back();
      node = it->second;
    }
    t.trie_ends[size_t(node)].push_back(i);
  }
}

std::string read_file(const std::filesystem::path& path) { return read_regular_file(path, kMaxTokenizerBytes); }

}  // namespace

Tokenizer Tokenizer::from_file(const std::filesystem::path& path) {
  return from_json_text(read_file(path), path.string());
}

Tokenizer Tokenizer::from_json_text(std::string_view json_text, const std::string& origin) {
  auto t = std::make_shared<Impl>();
  t->origin = origin;
  json_check_depth(json_text.data(), json_text.data() + json_text.size(), kMaxJsonDepth, origin);
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e999 (fuzz_tokenizer_json)
    fail("{}: not valid JSON ({})", origin, e.what());
  }
  try {
    if (!j.is_object()) fail("{}: top level must be a JSON object", origin);
    // Bound ids by what the file declares (vocab entries + added tokens), before any id is used as an index.
    size_t n_ids = 0;
    if (j.contains("model") && j["model"].is_object() && j["model"].contains("vocab"))
      n_ids += j["model"]["vocab"].size();
    if (j.contains("added_tokens") && j["added_tokens"].is_array()) n_ids += j["added_tokens"].size();
    t->id_limit = std::min<int64_t>(int64_t(n_ids) + kTokenIdSlack, kMaxTokenId);
    load_model(require(j, "model", origin, "<root>"), *t);
    load_added(j.value("added_tokens", json()), *t);
    load_normalizer(j.value("normalizer", json()), *t);
    load_pre_tokenizer(j.value("pre_tokenizer", json()), *t);
    const json dec = j.value("decoder", json());
    if (type_of(dec) != "ByteLevel")
      fail("{}: decoder type '{}' is not supported (supported: ByteLevel)", origin, type_of(dec));
  } catch (const json::exception& e) {  // wrong JSON types in a field we read
    fail("{}: unexpected JSON structure: {}", origin, e.what());
  }
  for (size_t id = 0; id < t->id_bytes.size(); ++id)
    if (t->id_present[id]) t->bytes_to_id.emplace(t->id_bytes[id], int32_t(id));
  for (const AddedToken& a : t->added) t->bytes_to_id[a.content] = a.id;  // added tokens win
  return Tokenizer(std::move(t));
}

// ---- encoding --------------------------------------------------------------------------------------------

void Tokenizer::Impl::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() == 1) {
    out.push_back(byte_id[static_cast<unsigned char>(word[0])]);
    return;
  }
  {
    std::lock_guard lock(cache_mu);
    auto it = word_cache.find(std::string(word));
    if (it != word_cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  // Doubly linked symbols; a merged-away symbol keeps len 0 so stale heap entries can be recognised.
  struct Sym {
    int32_t id, prev, next, len;
  };
  struct Cand {
    int32_t rank, pos, id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Sym> sym(word.size());
  for (size_t i = 0; i < word.size(); ++i)
    sym[i] = {byte_id[static_cast<unsigned char>(word[i])], int32_t(i) - 1,
              i + 1 < word.size() ? int32_t(i + 1) : -1, 1};
  std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
  auto push_pair = [&](int32_t left) {
    if (left < 0) return;
    int32_t right = sym[size_t(left)].next;
    if (right < 0) return;
    auto it = merges.find(pair_key(sym[size_t(left)].id, sym[size_t(right)].id));
    if (it != merges.end()) heap.push({it->second.rank, left, it->second.id});
  };
  for (int32_t i = 0; i + 1 < int32_t(word.size()); ++i) push_pair(i);
  // Lowest rank first, leftmost on ties: the same order HF's BPE::merge_word uses.
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    Sym& l = sym[size_t(c.pos)];
    if (l.len == 0 || l.next < 0) continue;
    Sym& r = sym[size_t(l.next)];
    auto it = merges.find(pair_key(l.id, r.id));
    if (it == merges.end() || it->second.id != c.id) continue;  // stale: a neighbour changed since push
    l.id = c.id;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (l.next >= 0) sym[size_t(l.next)].prev = c.pos;
    push_pair(l.prev);
    push_pair(c.pos);
  }
  std::vector<int32_t> ids;
  for (int32_t i = 0; i >= 0; i = sym[size_t(i)].next) ids.push_back(sym[size_t(i)].id);
  out.insert(out.end(), ids.begin(), ids.end());
  if (word.size() > kMaxCachedWordBytes) return;
  std::lock_guard lock(cache_mu);
  if (word_cache.size() >= kWordCacheLimit) word_cache.clear();
  word_cache.emplace(std::string(word), std::move(ids));
}

void Tokenizer::Impl::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  std::string norm = nfc ? normalize_nfc(text) : std::string(text);
  // Pieces own their bytes because ByteLevel(add_prefix_space) may rewrite them.
  std::vector<std::string> pieces{std::move(norm)};
  std::vector<std::string_view> views;
  for (const PreStep& step : steps) {
    std::vector<std::string> next;
    for (std::string& p : pieces) {
      if (step.add_prefix_space && (p.empty() || p[0] != ' ')) p.insert(p.begin(), ' ');
      if (!step.regex) {
        next.push_back(std::move(p));
        continue;
      }
      views.clear();
      step.regex->split_isolated(p, views);
      for (std::string_view v : views) next.emplace_back(v);
    }
    pieces = std::move(next);
  }
  for (const std::string& p : pieces) {
    std::string_view rest = p;
    while (rest.size() > kMaxWordBytes) {
      size_t cut = kMaxWordBytes;
      while (cut > 0 && (static_cast<unsigned char>(rest[cut]) & 0xC0) == 0x80) --cut;  // not inside a character
      bpe_word(rest.substr(0, cut), out);
      rest.remove_prefix(cut);
    }
    if (!rest.empty()) bpe_word(rest, out);
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  return allow_special ? encode(text, std::span<const ByteRange>{}) : encode_impl(text, false, {});
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, std::span<const ByteRange> literal) const {
  return encode_impl(text, true, literal);
}

std::vector<int32_t> Tokenizer::encode_impl(std::string_view text, bool allow_special,
                                            std::span<const ByteRange> literal) const {
  const Impl& t = *impl_;
  auto in_literal = [&](size_t b, size_t e) {
    for (const ByteRange& r : literal)
      if (b < r.end && r.begin < e) return true;
    return false;
  };
  size_t bad = utf8_first_invalid(text);
  HLWQ_CHECK(bad == text.size(), "{}: encode: input is not valid UTF-8 at byte {}", t.origin, bad);
  std::vector<int32_t> out;
  std::vector<int32_t> ends_on_path;  // trie nodes where added tokens end, along the current match
  size_t n = text.size(), last = 0, i = 0;
  while (i < n) {
    const AddedToken* hit = nullptr;
    // Walk the trie as far as the text matches, remembering every node where added tokens end; the longest
    // acceptable one wins (leftmost-longest, file order among equal contents).
    ends_on_path.clear();
    for (int32_t node = 0, j = 0; i + size_t(j) < n; ++j) {
      auto it = t.trie_child.find(uint64_t(node) << 8 | static_cast<unsigned char>(text[i + size_t(j)]));
      if (it == t.trie_child.end()) break;
      node = it->second;
      if (!t.trie_ends[size_t(node)].empty()) ends_on_path.push_back(node);
    }
    for (auto node = ends_on_path.rbegin(); node != ends_on_path.rend() && !hit; ++node)
      for (size_t k : t.trie_ends[size_t(*node)]) {
        const AddedToken& a = t.added[k];
        if (a.special && !allow_special) continue;
        size_t e = i + a.content.size();
        if (a.special && in_literal(i, e)) continue;
        if (a.single_word && ((i > 0 && is_word_byte(static_cast<unsigned char>(text[i - 1]))) ||
                              (e < n && is_word_byte(static_cast<unsigned char>(text[e])))))
          continue;
        hit = &a;
        break;
      }
    if (!hit) {
      ++i;
      continue;
    }
    size_t s = i, e = i + hit->content.size();
    if (hit->lstrip)
      while (s > last && is_space(static_cast<unsigned char>(text[s - 1]))) --s;
    if (hit->rstrip)
      while (e < n && is_space(static_cast<unsigned char>(text[e]))) ++e;
    if (s > last) t.encode_plain(text.substr(last, s - last), out);
    out.push_back(hit->id);
    last = i = e;
  }
  if (last < n) t.encode_plain(text.substr(last), out);
  return out;
}

// ---- decoding --------------------------------------------------------------------------------------------

const std::string& Tokenizer::token_text(int32_t id) const {
  const Impl& t = *impl_;
  HLWQ_CHECK(id >= 0 && size_t(id) < t.id_bytes.size() && t.id_present[size_t(id)],
             "{}: token id {} is not in the vocabulary (size {})", t.origin, id, t.id_bytes.size());
  return t.id_bytes[size_t(id)];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  for (int32_t id : ids) bytes += token_text(id);
  return utf8_lossy(bytes);
}

std::optional<int32_t> Tokenizer::token_id(std::string_view text) const {
  auto it = impl_->bytes_to_id.find(std::string(text));
  if (it == impl_->bytes_to_id.end()) return std::nullopt;
  return it->second;
}

int32_t Tokenizer::vocab_size() const { return int32_t(impl_->id_bytes.size()); }

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }

}  // namespace hlwq
