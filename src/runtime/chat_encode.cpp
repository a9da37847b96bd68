#include "runtime/chat_encode.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace hlwq {
namespace {

using ojson = nlohmann::ordered_json;

// U+E000 and U+E001 (private use) around the message index: never markup, and checked against the real rendering.
constexpr std::string_view kOpen = "\xEE\x80\x80hlwq-message-", kClose = "\xEE\x80\x81";

std::string marker(size_t i) { return std::string(kOpen) + std::to_string(i) + std::string(kClose); }

bool spells_special(const Tokenizer& tok, const std::string& text) {
  for (const AddedToken& a : tok.added_tokens())
    if (a.special && !a.content.empty() && text.find(a.content) != std::string::npos) return true;
  return false;
}

}  // namespace

std::vector<int32_t> encode_chat(const Tokenizer& tok, const ChatTemplate& tmpl, const std::vector<ChatMessage>& msgs,
                                 bool add_generation_prompt) {
  ojson messages = ojson::array();
  for (const ChatMessage& m : msgs) messages.push_back({{"role", m.role}, {"content", m.content}});
  return encode_chat_json(tok, tmpl, messages, add_generation_prompt);
}

std::vector<int32_t> encode_chat_json(const Tokenizer& tok, const ChatTemplate& tmpl, const ojson& msgs,
                                      bool add_generation_prompt, const ojson& extra_vars) {
  HLWQ_CHECK(msgs.is_array(), "chat: messages must be a JSON array, got {}", msgs.type_name());
  HLWQ_CHECK(extra_vars.is_object(), "chat: extra template variables must be a JSON object");
  for (auto it = extra_vars.begin(); it != extra_vars.end(); ++it)
    HLWQ_CHECK(!spells_special(tok, it.value().dump(-1, ' ', false, ojson::error_handler_t::replace)),
               "chat: the template variable '{}' contains the text of a control token (such as <|im_end|>); hlwq "
               "cannot keep it apart from the template's markup",
               it.key());
  auto content_of = [&](const ojson& m) -> const std::string* {
    if (!m.is_object() || !m.contains("content") || !m["content"].is_string()) return nullptr;
    return m["content"].get_ptr<const std::string*>();
  };
  auto role_of = [](const ojson& m) {
    return m.is_object() && m.contains("role") && m["role"].is_string() ? m["role"].get<std::string>() : "";
  };
  // Other typed fields of a message (name, tool_call_id, ...) may be rendered too: they get no marker, so one that
  // spells a control token is refused like the extra variables.
  for (const ojson& m : msgs)
    if (m.is_object() && role_of(m) != "assistant")
      for (auto it = m.begin(); it != m.end(); ++it)
        HLWQ_CHECK(it.key() == "content" || it.key() == "role" ||
                       !spells_special(tok, it.value().dump(-1, ' ', false, ojson::error_handler_t::replace)),
                   "chat: the message field '{}' contains the text of a control token (such as <|im_end|>); hlwq "
                   "cannot keep it apart from the template's markup",
                   it.key());
  const std::string real = render_chat(tmpl, msgs, add_generation_prompt, extra_vars);
  ojson marked = msgs;
  bool any = false;
  for (size_t i = 0; i < msgs.size(); ++i) {
    const std::string* c = content_of(msgs[i]);
    if (c && role_of(msgs[i]) != "assistant" && spells_special(tok, *c)) {
      marked[i]["content"] = marker(i);
      any = true;
    }
  }
  if (!any) return tok.encode(real, true);

  // Put the contents back in place of their markers, noting where each lands; the result must be `real`.
  const std::string with_markers = render_chat(tmpl, marked, add_generation_prompt, extra_vars);
  std::string rebuilt;
  std::vector<ByteRange> literal;
  size_t pos = 0;
  while (true) {
    const size_t m = with_markers.find(kOpen, pos);
    if (m == std::string::npos) break;
    const size_t digits = m + kOpen.size(), close = with_markers.find(kClose, digits);
    HLWQ_CHECK(close != std::string::npos && close > digits && close - digits < 10 &&
                   std::all_of(with_markers.begin() + ptrdiff_t(digits), with_markers.begin() + ptrdiff_t(close),
                               [](char c) { return c >= '0' && c <= '9'; }),
               "chat: malformed message marker");  // a message may spell the marker's text itself
    const size_t idx = std::stoul(with_markers.substr(digits, close - digits));
    HLWQ_CHECK(idx < msgs.size() && marked[idx] != msgs[idx], "chat: unexpected message marker");
    const std::string& content = *content_of(msgs[idx]);
    rebuilt.append(with_markers, pos, m - pos);
    literal.push_back({rebuilt.size(), rebuilt.size() + content.size()});
    rebuilt += content;
    pos = close + kClose.size();
  }
  rebuilt.append(with_markers, pos);
  HLWQ_CHECK(rebuilt == real,
             "chat: a message contains the text of a control token (such as <|im_end|>) and the chat template "
             "rewrites message text, so hlwq cannot keep it apart from the template's markup; remove the "
             "control-token text from the message");
  return tok.encode(real, std::span<const ByteRange>(literal));
}

}  // namespace hlwq
