#include "runtime/chat_encode.h"

#include <string>

#include "core/error.h"

namespace hlwq {
namespace {

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
  const std::string real = render_chat(tmpl, msgs, add_generation_prompt);
  std::vector<ChatMessage> marked = msgs;
  bool any = false;
  for (size_t i = 0; i < msgs.size(); ++i)
    if (msgs[i].role != "assistant" && spells_special(tok, msgs[i].content)) {
      marked[i].content = marker(i);
      any = true;
    }
  if (!any) return tok.encode(real, true);

  // Put the contents back in place of their markers, noting where each lands; the result must be `real`.
  const std::string with_markers = render_chat(tmpl, marked, add_generation_prompt);
  std::string rebuilt;
  std::vector<ByteRange> literal;
  size_t pos = 0;
  while (true) {
    const size_t m = with_markers.find(kOpen, pos);
    if (m == std::string::npos) break;
    const size_t digits = m + kOpen.size(), close = with_markers.find(kClose, digits);
    HLWQ_CHECK(close != std::string::npos && close > digits && close - digits < 10, "chat: malformed message marker");
    const size_t idx = std::stoul(with_markers.substr(digits, close - digits));
    HLWQ_CHECK(idx < msgs.size() && marked[idx].content != msgs[idx].content, "chat: unexpected message marker");
    rebuilt.append(with_markers, pos, m - pos);
    literal.push_back({rebuilt.size(), rebuilt.size() + msgs[idx].content.size()});
    rebuilt += msgs[idx].content;
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
