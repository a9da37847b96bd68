// Reading whole small files (configs, indexes, tokenizers, templates, evaluation text) from places hlwq does
// not control. Only regular files are read: a FIFO would block forever and a device such as /dev/zero would
// never end, so both are refused by type before any byte is read (the open itself does not block). Every read
// is capped, so a 100 GB "config.json" is an error naming the limit, not an allocation.
#pragma once
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace hlwq {

inline constexpr size_t kMaxConfigBytes = size_t(64) << 20;      // config/index/generation/tokenizer_config
inline constexpr size_t kMaxTokenizerBytes = size_t(256) << 20;  // tokenizer.json (real ones are ~10 MB)
inline constexpr size_t kMaxJsonNesting = 128;                   // no file hlwq reads nests beyond ~10 levels

// The whole file; throws hlwq::Error naming the path when it cannot be opened, is not a regular file, or holds
// more than max_bytes.
std::string read_regular_file(const std::filesystem::path& path, size_t max_bytes);

// True when path exists (following symlinks) and is a regular file; throws when it exists but is something else
// (a directory, FIFO, socket or device), so callers that treat a file as optional still refuse the odd ones.
bool regular_file_exists(const std::filesystem::path& path);

// read_regular_file + json_check_depth + parse; errors name the path.
nlohmann::json read_json_file(const std::filesystem::path& path, size_t max_bytes = kMaxConfigBytes);
nlohmann::ordered_json read_ordered_json_file(const std::filesystem::path& path, size_t max_bytes = kMaxConfigBytes);

}  // namespace hlwq
