// Loading chat templates from a model directory and rendering conversations through them.
#include "runtime/chat_template.h"

#include <fstream>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "io/read_file.h"
#include "runtime/jinja_eval.h"
#include "runtime/jinja_parser.h"

namespace hlwq {

namespace {

using ojson = nlohmann::ordered_json;

// The ChatML fallback, written as a template so that it shares the one rendering path.
constexpr const char* kChatMlTemplate =
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

std::string read_text(const std::filesystem::path& p) { return read_regular_file(p, kMaxConfigBytes); }

// tokenizer_config.json stores special tokens as a string, null, or an AddedToken dict with "content".
std::string token_string(const ojson& cfg, const char* key, const std::string& file) {
  if (!cfg.contains(key) || cfg[key].is_null()) return "";
  const ojson& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  // type_name, not dump(): dumping an attacker's deeply nested value would recurse without bound.
  fail("{}: field {} must be a string, null or {{\"content\": ...}}, got {}", file, key, v.type_name());
}

}  // namespace

ChatTemplate ChatTemplate::from_source(std::string source, const std::string& origin, std::string bos_token,
                                       std::string eos_token) {
  ChatTemplate t;
  t.tmpl_ = jinja::parse_template(std::move(source), origin);
  t.bos_ = std::move(bos_token);
  t.eos_ = std::move(eos_token);
  return t;
}

ChatTemplate ChatTemplate::chatml() {
  ChatTemplate t = from_source(kChatMlTemplate, "<ChatML fallback>");
  t.fallback_ = true;
  return t;
}

ChatTemplate ChatTemplate::from_model_dir(const std::filesystem::path& dir) {
  std::filesystem::path cfg_path = dir / "tokenizer_config.json";
  ojson cfg = ojson::object();
  if (regular_file_exists(cfg_path)) cfg = read_ordered_json_file(cfg_path);
  std::string file = cfg_path.string();
  std::string bos = token_string(cfg, "bos_token", file), eos = token_string(cfg, "eos_token", file);

  // transformers prefers a standalone chat_template.jinja over the copy in tokenizer_config.json.
  std::filesystem::path jinja_path = dir / "chat_template.jinja";
  std::optional<std::pair<std::string, std::string>> src;  // (source, origin)
  if (regular_file_exists(jinja_path)) {
    src.emplace(read_text(jinja_path), jinja_path.string());
  } else if (cfg.contains("chat_template") && !cfg["chat_template"].is_null()) {
    const ojson& ct = cfg["chat_template"];
    if (ct.is_string()) {
      src.emplace(ct.get<std::string>(), file + ": chat_template");
    } else if (ct.is_array()) {
      for (const ojson& e : ct) {
        // Checked, not get<>(): a non-string name or template must name the file, not leak a raw nlohmann error.
        if (!e.is_object() || !e.contains("name") || !e["name"].is_string() || e["name"] != "default") continue;
        if (!e.contains("template") || !e["template"].is_string())
          fail("{}: chat_template entry \"default\" must have a string \"template\", got {}", file,
               e.contains("template") ? e["template"].type_name() : "none");
        src.emplace(e["template"].get<std::string>(), file + ": chat_template[default]");
      }
      if (!src) fail("{}: chat_template is a list without a \"default\" entry", file);
    } else {
      fail("{}: chat_template must be a string or a list of {{name, template}}, got {}", file, ct.type_name());
    }
  }
  ChatTemplate t = src ? from_source(std::move(src->first), src->second, bos, eos) : chatml();
  t.bos_ = bos;
  t.eos_ = eos;
  for (const char* k : {"pad_token", "unk_token"}) {
    std::string v = token_string(cfg, k, file);
    if (!v.empty()) t.token_vars_[k] = v;
  }
  return t;
}

const std::string& ChatTemplate::source() const { return tmpl_->source; }

std::string render_chat(const ChatTemplate& tmpl, const std::vector<ChatMessage>& msgs, bool add_generation_prompt) {
  ojson messages = ojson::array();
  for (const ChatMessage& m : msgs) messages.push_back({{"role", m.role}, {"content", m.content}});
  return render_chat(tmpl, messages, add_generation_prompt);
}

std::string render_chat(const ChatTemplate& tmpl, const ojson& messages, bool add_generation_prompt,
                        const ojson& extra_vars) {
  HLWQ_CHECK(messages.is_array(), "render_chat: messages must be a JSON array, got {}", messages.type_name());
  HLWQ_CHECK(extra_vars.is_object(), "render_chat: extra variables must be a JSON object");
  jinja::ValueDict ctx;
  ctx.emplace_back("messages", jinja::Value::from_json(messages));
  ctx.emplace_back("add_generation_prompt", jinja::Value::boolean(add_generation_prompt));
  ctx.emplace_back("bos_token", jinja::Value::string(tmpl.bos_token()));
  ctx.emplace_back("eos_token", jinja::Value::string(tmpl.eos_token()));
  for (auto it = tmpl.token_vars().begin(); it != tmpl.token_vars().end(); ++it)
    ctx.emplace_back(it.key(), jinja::Value::from_json(it.value()));
  for (auto it = extra_vars.begin(); it != extra_vars.end(); ++it)
    ctx.emplace_back(it.key(), jinja::Value::from_json(it.value()));
  return jinja::render(tmpl.parsed(), ctx);
}

}  // namespace hlwq
