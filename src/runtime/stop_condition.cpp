// Stop-string matching over a text stream with minimal holdback: only the longest suffix that could still
// grow into a stop string is withheld, so ordinary text streams without delay.
#include "runtime/stop_condition.h"

#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/read_file.h"

namespace hlwq {

namespace {

void add_eos(const nlohmann::json& v, const std::filesystem::path& file, std::vector<int32_t>& out) {
  auto add = [&](const nlohmann::json& x) {
    if (!x.is_number_integer()) fail("{}: eos_token_id entries must be integers, got {}", file.string(), x.dump());
    auto id = x.get<int32_t>();
    if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  };
  if (v.is_null()) return;
  if (v.is_array()) {
    for (const auto& x : v) add(x);
  } else {
    add(v);
  }
}

}  // namespace

std::vector<int32_t> load_eos_ids(const std::filesystem::path& model_dir) {
  std::vector<int32_t> out;
  for (const char* name : {"config.json", "generation_config.json"}) {
    std::filesystem::path file = model_dir / name;
    if (!regular_file_exists(file)) continue;
    // Depth- and size-checked like every JSON file hlwq reads (a 100,000-deep file used to crash here).
    const nlohmann::json j = read_json_file(file);
    add_eos(j.value("eos_token_id", nlohmann::json()), file, out);
    // Multimodal Qwen3.5 configs keep the language model's ids under text_config.
    if (j.contains("text_config") && j["text_config"].is_object())
      add_eos(j["text_config"].value("eos_token_id", nlohmann::json()), file, out);
  }
  return out;
}

StopChecker::StopChecker(std::vector<int32_t> eos_ids, std::vector<std::string> stop_strings)
    : eos_ids_(std::move(eos_ids)), stops_(std::move(stop_strings)) {
  for (const std::string& s : stops_) HLWQ_CHECK(!s.empty(), "StopChecker: empty stop string");
}

bool StopChecker::is_eos(int32_t id) const { return std::find(eos_ids_.begin(), eos_ids_.end(), id) != eos_ids_.end(); }

std::string StopChecker::push(std::string_view text) {
  if (stopped_) return "";
  held_.append(text);
  // Earliest match wins; the held prefix never contained a whole stop string, so searching held_ suffices.
  size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  size_t hold = 0;
  for (const std::string& s : stops_)
    for (size_t k = std::min(s.size() - 1, held_.size()); k > hold; --k)
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string StopChecker::flush() {
  std::string out = stopped_ ? std::string() : std::move(held_);
  held_.clear();
  return out;
}

}  // namespace hlwq
