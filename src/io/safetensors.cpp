#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_util.h"
#include "io/read_file.h"

namespace hlwq {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Upper bound on the JSON header; real headers of 70 GB models are a few MB. Refusing absurd values keeps a
// hostile length from driving a huge allocation.
constexpr uint64_t kMaxHeaderBytes = 256ull << 20;

// A valid header nests 3 levels (object, entry, shape/offsets array); the cap refuses [[[[...]]]] bombs before
// parsing, so nothing downstream (copies, error messages) can recurse deeply on them.
constexpr size_t kMaxHeaderDepth = 64;

constexpr size_t kMaxTensorNameBytes = 1024;

uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& what) {
  HLWQ_CHECK(b == 0 || a <= std::numeric_limits<uint64_t>::max() / b, "{}: size overflows 64 bits", what);
  return a * b;
}

TensorEntry parse_entry(const std::string& path, const std::string& name, const json& v, uint64_t buf_size) {
  // Real names are under 200 bytes; a bound keeps every later use of a name (messages, maps, matching) cheap.
  HLWQ_CHECK(name.size() <= kMaxTensorNameBytes, "{}: a tensor name of {} bytes is over the {} byte limit ('{}...')",
             path, name.size(), kMaxTensorNameBytes, name.substr(0, 64));
  const std::string where = fmt::format("{}: tensor '{}'", path, name);
  HLWQ_CHECK(v.is_object(), "{}: header entry is not an object", where);
  HLWQ_CHECK(v.contains("dtype") && v["dtype"].is_string(), "{}: missing dtype", where);
  HLWQ_CHECK(v.contains("shape") && v["shape"].is_array(), "{}: missing shape", where);
  HLWQ_CHECK(v.contains("data_offsets") && v["data_offsets"].is_array() && v["data_offsets"].size() == 2,
             "{}: data_offsets must be [begin, end]", where);
  TensorEntry e;
  e.name = name;
  const std::string ds = v["dtype"].get<std::string>();
  HLWQ_CHECK(dtype_parse(ds, &e.dtype), "{}: unknown dtype '{}'", where, ds);
  uint64_t numel = 1;
  for (const auto& d : v["shape"]) {
    HLWQ_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0),
               "{}: shape dimension {} is not a non-negative integer", where, json_brief(d));
    uint64_t x = d.get<uint64_t>();
    HLWQ_CHECK(x <= (1ull << 48), "{}: shape dimension {} is absurd", where, x);
    numel = checked_mul(numel, x, where);
    e.shape.push_back(int64_t(x));
  }
  for (const auto& o : v["data_offsets"])
    HLWQ_CHECK(o.is_number_unsigned() || (o.is_number_integer() && o.get<int64_t>() >= 0),
               "{}: data_offsets entry {} is not a non-negative integer", where, json_brief(o));
  e.begin = v["data_offsets"][0].get<uint64_t>();
  e.end = v["data_offsets"][1].get<uint64_t>();
  HLWQ_CHECK(e.begin <= e.end, "{}: data_offsets [{}, {}] are reversed", where, e.begin, e.end);
  HLWQ_CHECK(e.end <= buf_size, "{}: data_offsets [{}, {}] run past the data buffer of {} bytes (file truncated?)",
             where, e.begin, e.end, buf_size);
  const uint64_t want = checked_mul(numel, dtype_size(e.dtype), where);
  HLWQ_CHECK(e.end - e.begin == want, "{}: shape {} {} needs {} bytes but data_offsets [{}, {}] hold {}", where,
             shape_str(e.shape), ds, want, e.begin, e.end, e.end - e.begin);
  return e;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  const size_t size = file_.size();
  HLWQ_CHECK(size >= 8, "{}: {} bytes is too short for a safetensors file (needs an 8-byte header length)", path,
             size);
  uint64_t n = 0;
  std::memcpy(&n, file_.data(), 8);  // little-endian u64; hlwq targets little-endian hosts only
  HLWQ_CHECK(n <= kMaxHeaderBytes, "{}: header length {} is larger than the {} byte limit", path, n,
             kMaxHeaderBytes);
  HLWQ_CHECK(n <= size - 8, "{}: header length {} runs past the end of the {}-byte file (truncated?)", path, n,
             size);
  json_check_depth(reinterpret_cast<const char*>(file_.data()) + 8,
                   reinterpret_cast<const char*>(file_.data()) + 8 + n, kMaxHeaderDepth, path + ": header");
  json h;
  try {
    h = json::parse(file_.data() + 8, file_.data() + 8 + n);
  } catch (const json::exception& ex) {
    fail("{}: header is not valid JSON: {}", path, ex.what());
  }
  HLWQ_CHECK(h.is_object(), "{}: header is not a JSON object", path);
  buffer_ = file_.data() + 8 + n;
  const uint64_t buf_size = size - 8 - n;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") {
      HLWQ_CHECK(it.value().is_object(), "{}: __metadata__ is not an object", path);
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        HLWQ_CHECK(m.value().is_string(), "{}: __metadata__ value for '{}' is not a string", path, m.key());
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    entries_.push_back(parse_entry(path, it.key(), it.value(), buf_size));
  }
  std::sort(entries_.begin(), entries_.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (const auto& e : entries_) {
    HLWQ_CHECK(e.begin >= pos, "{}: tensor '{}' at [{}, {}] overlaps the previous tensor ending at {}", path,
               e.name, e.begin, e.end, pos);
    HLWQ_CHECK(e.begin == pos, "{}: gap of {} bytes before tensor '{}' at offset {}", path, e.begin - pos, e.name,
               e.begin);
    // Consumers cast the view to uint16_t*/int32_t*/... and vectorise over it, so a tensor whose absolute file
    // offset is not a multiple of its element size would be UB. The mapping is page-aligned, so the absolute
    // offset decides. The safetensors library and CheckpointWriter both lay files out so this holds.
    const uint64_t abs = 8 + n + e.begin;
    const size_t esz = dtype_size(e.dtype);
    HLWQ_CHECK(abs % esz == 0, "{}: tensor '{}' at offset {} is not aligned to its {}-byte dtype {}", path, e.name,
               abs, esz, dtype_name(e.dtype));
    pos = e.end;
  }
  HLWQ_CHECK(pos == buf_size, "{}: tensors cover {} bytes but the data buffer holds {}", path, pos, buf_size);
  for (size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].name] = i;
}

const TensorEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

TensorView SafetensorsFile::view(const TensorEntry& e) const { return {e.dtype, e.shape, buffer_ + e.begin}; }

TensorView SafetensorsFile::view(const std::string& name) const {
  const TensorEntry* e = find(name);
  HLWQ_CHECK(e, "{}: no tensor named '{}'", path(), name);
  return view(*e);
}

void SafetensorsFile::release(const TensorEntry& e, uint64_t offset, uint64_t len) const {
  file_.release(size_t(buffer_ - file_.data()) + e.begin + offset, std::min(len, e.end - e.begin - offset));
}

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  HLWQ_CHECK(fs::is_directory(dir), "{}: not a directory", dir);
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single = fs::path(dir) / "model.safetensors";
  std::map<std::string, std::string> weight_map;
  if (regular_file_exists(index)) {
    const json j = read_json_file(index);
    HLWQ_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
               "{}: missing the weight_map object", index.string());
    HLWQ_CHECK(!j["weight_map"].empty(), "{}: weight_map is empty", index.string());
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      HLWQ_CHECK(it.value().is_string(), "{}: weight_map['{}'] is not a file name", index.string(), it.key());
      const std::string fn = it.value().get<std::string>();
      // Shard names come from the file: refuse paths that would leave the model directory.
      HLWQ_CHECK(fn.find('/') == std::string::npos && fn != ".." && fn != ".",
                 "{}: weight_map['{}'] names '{}', which is not a plain file name", index.string(), it.key(), fn);
      weight_map[it.key()] = fn;
    }
    std::map<std::string, size_t> file_index;
    for (const auto& [name, fn] : weight_map) {
      if (file_index.count(fn)) continue;
      const fs::path p = fs::path(dir) / fn;
      HLWQ_CHECK(fs::exists(p), "{}: shard '{}' named in model.safetensors.index.json is missing", dir, fn);
      file_index[fn] = files_.size();
      files_.push_back(std::make_unique<SafetensorsFile>(p.string()));
    }
    for (const auto& [name, fn] : weight_map) {
      size_t fi = file_index.at(fn);
      const TensorEntry* e = files_[fi]->find(name);
      HLWQ_CHECK(e, "{}: index maps '{}' to {}, which does not hold it", dir, name, fn);
      where_[name] = {fi, e};
    }
    // The other direction: a tensor a shard holds but the index does not list would silently vanish from
    // every consumer (an incomplete or stale index), so it is an error.
    for (const auto& [fn, fi] : file_index)
      for (const TensorEntry& e : files_[fi]->entries()) {
        auto it = weight_map.find(e.name);
        HLWQ_CHECK(it != weight_map.end(), "{}: shard {} holds tensor '{}', which model.safetensors.index.json does "
                   "not list (incomplete index?)", dir, fn, e.name);
        HLWQ_CHECK(it->second == fn, "{}: tensor '{}' is in shard {} and in shard {}, which the index names", dir,
                   e.name, fn, it->second);
      }
  } else {
    HLWQ_CHECK(fs::exists(single), "{}: no model.safetensors.index.json and no model.safetensors", dir);
    files_.push_back(std::make_unique<SafetensorsFile>(single.string()));
    for (const auto& e : files_[0]->entries()) where_[e.name] = {0, &e};
  }
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& kv : where_) out.push_back(kv.first);
  return out;
}

const TensorEntry& Checkpoint::entry(const std::string& name) const {
  auto it = where_.find(name);
  HLWQ_CHECK(it != where_.end(), "{}: checkpoint has no tensor '{}'", dir_, name);
  return *it->second.second;
}

TensorView Checkpoint::view(const std::string& name) const {
  auto it = where_.find(name);
  HLWQ_CHECK(it != where_.end(), "{}: checkpoint has no tensor '{}'", dir_, name);
  return files_[it->second.first]->view(*it->second.second);
}

const std::string& Checkpoint::file_of(const std::string& name) const {
  auto it = where_.find(name);
  HLWQ_CHECK(it != where_.end(), "{}: checkpoint has no tensor '{}'", dir_, name);
  return files_[it->second.first]->path();
}

void Checkpoint::release(const std::string& name) const {
  auto it = where_.find(name);
  if (it != where_.end()) release(name, 0, it->second.second->end - it->second.second->begin);
}

void Checkpoint::release(const std::string& name, uint64_t offset, uint64_t len) const {
  auto it = where_.find(name);
  if (it != where_.end()) files_[it->second.first]->release(*it->second.second, offset, len);
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t n = 0;
  for (const auto& kv : where_) n += kv.second.second->end - kv.second.second->begin;
  return n;
}

}  // namespace hlwq
