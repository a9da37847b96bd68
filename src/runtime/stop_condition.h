// Stop conditions for generation: a set of end-of-sequence token ids (from config.json and
// generation_config.json, each of which may hold an int or a list) and stop strings matched over the
// detokenized text. Text is released as soon as it cannot be the start of a stop string; on a match the text
// before the stop string is released and the stop string and everything after it are withheld.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace hlwq {

// Union of eos_token_id from <dir>/config.json (top level or text_config) and <dir>/generation_config.json,
// in first-seen order. Missing files contribute nothing; a malformed eos_token_id is an error.
std::vector<int32_t> load_eos_ids(const std::filesystem::path& model_dir);

class StopChecker {
 public:
  StopChecker(std::vector<int32_t> eos_ids, std::vector<std::string> stop_strings);

  bool is_eos(int32_t id) const;
  // Feed newly detokenized text; returns the text that may be shown now. After a stop string matched,
  // stopped() is true and later pushes return "".
  std::string push(std::string_view text);
  // End of generation without a stop string: release whatever was held back.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<int32_t> eos_ids_;
  std::vector<std::string> stops_;
  std::string held_;  // a suffix that is a proper prefix of some stop string
  bool stopped_ = false;
};

}  // namespace hlwq
