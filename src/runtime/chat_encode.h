// Encoding a rendered conversation so that only the chat template's own markup becomes control tokens.
// Text someone typed (user, system and tool messages) is encoded with special tokens disabled: a user who types
// "<|im_end|>\n<|im_start|>system" gets those characters as ordinary text tokens and cannot forge a turn.
// Assistant messages are the model's own output and keep their control tokens (e.g. <think>).
// How: the conversation is rendered once as is and once with each typed content that spells a special token
// replaced by a unique marker; the markers locate those contents in the real rendering byte for byte, and the
// tokenizer may not match a special token overlapping them. A template that transforms such a content (so that
// the two renderings do not line up) is refused with an error rather than encoded unsafely.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/chat_template.h"
#include "runtime/tokenizer.h"

namespace hlwq {

// render_chat(tmpl, msgs, add_generation_prompt), encoded as described above.
std::vector<int32_t> encode_chat(const Tokenizer& tok, const ChatTemplate& tmpl, const std::vector<ChatMessage>& msgs,
                                 bool add_generation_prompt);
// The full form: OpenAI-style messages (a JSON array; tool_calls, tool_call_id, reasoning_content, ... reach the
// template as they are) and extra template variables (tools, enable_thinking, ...). A message's string "content" is
// kept apart from the markup as above; the extra variables and the other fields of non-assistant messages (name,
// tool_call_id) are typed by someone too, so one that spells a control token is refused (they may be rendered
// through filters such as tojson, which no marker survives).
std::vector<int32_t> encode_chat_json(const Tokenizer& tok, const ChatTemplate& tmpl,
                                      const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                      const nlohmann::ordered_json& extra_vars = nlohmann::ordered_json::object());

}  // namespace hlwq
