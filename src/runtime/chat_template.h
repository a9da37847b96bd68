// Chat templates: the model's own Jinja template (chat_template.jinja, else tokenizer_config.json's
// `chat_template`, a string or a list of {name, template} where "default" is used) rendered by the Jinja
// subset interpreter (jinja_*.h) with the variables transformers provides: messages, add_generation_prompt,
// bos_token, eos_token (plus pad/unk tokens when configured) and any extra variables the caller passes
// (tools, enable_thinking, ...). Without a template the ChatML fallback is used:
//   <|im_start|>{role}\n{content}<|im_end|>\n ... and, with a generation prompt, <|im_start|>assistant\n
// The template is parsed once at load; syntax outside the subset fails there with origin and line/column.
#pragma once
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hlwq {

namespace jinja {
struct Template;
}

struct ChatMessage {
  std::string role;
  std::string content;
};

class ChatTemplate {
 public:
  // Reads <dir>/chat_template.jinja or <dir>/tokenizer_config.json; ChatML when neither has a template.
  static ChatTemplate from_model_dir(const std::filesystem::path& dir);
  static ChatTemplate from_source(std::string source, const std::string& origin, std::string bos_token = "",
                                  std::string eos_token = "");
  static ChatTemplate chatml();

  bool is_fallback() const { return fallback_; }
  const std::string& source() const;
  const std::string& bos_token() const { return bos_; }
  const std::string& eos_token() const { return eos_; }
  // Extra special-token variables (pad_token, unk_token) exposed to the template.
  const nlohmann::ordered_json& token_vars() const { return token_vars_; }
  const jinja::Template& parsed() const { return *tmpl_; }

 private:
  std::shared_ptr<const jinja::Template> tmpl_;
  std::string bos_, eos_;
  nlohmann::ordered_json token_vars_ = nlohmann::ordered_json::object();
  bool fallback_ = false;
};

std::string render_chat(const ChatTemplate& tmpl, const std::vector<ChatMessage>& msgs, bool add_generation_prompt);
// Full form: messages as OpenAI-style JSON (content lists, tool_calls, reasoning_content, ...) and extra
// top-level variables (e.g. {"tools": [...], "enable_thinking": false}).
std::string render_chat(const ChatTemplate& tmpl, const nlohmann::ordered_json& messages, bool add_generation_prompt,
                        const nlohmann::ordered_json& extra_vars = nlohmann::ordered_json::object());

}  // namespace hlwq
