#include "io/seed_q5.h"

#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "io/hf_config.h"
#include "io/json_util.h"

namespace hlwq {
namespace {

constexpr std::string_view kPacked = "__packed", kNorms = "__norms", kMeta = "__meta";

bool ends_with(const std::string& s, std::string_view p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

std::string restore_dots(const std::string& key) {
  std::string s;
  for (size_t i = 0; i < key.size(); ++i) {
    if (key[i] == '_' && i + 1 < key.size() && key[i + 1] == '_') {
      s += '.';
      ++i;
    } else {
      s += key[i];
    }
  }
  return s;
}

}  // namespace

bool is_seed_q5_dir(const std::string& dir) {
  const std::filesystem::path p = std::filesystem::path(dir) / kSeedQ5ConfigFile;
  if (!std::filesystem::exists(p)) return false;
  const nlohmann::json j = read_json_file(p.string());
  HLWQ_CHECK(j.is_object() && j.contains("format") && j["format"].is_string(), "{}: missing string field 'format'",
             p.string());
  const std::string f = j["format"].get<std::string>();
  HLWQ_CHECK(f == kSeedQ5Format, "{}: format '{}' is not supported (hlwq reads the seed's {})", p.string(), f,
             kSeedQ5Format);
  if (j.contains("block_size"))
    HLWQ_CHECK(j["block_size"] == 128, "{}: block_size {} is not supported (hlwq-q5 uses 128)", p.string(),
               json_brief(j["block_size"]));
  if (j.contains("bits"))
    HLWQ_CHECK(j["bits"] == kSeedQ5Bits, "{}: bits {} is not supported (hlwq-q5 uses 5)", p.string(),
               json_brief(j["bits"]));
  return true;
}

bool seed_q5_is_part(const std::string& key) {
  return ends_with(key, kPacked) || ends_with(key, kNorms) || ends_with(key, kMeta);
}

std::map<std::string, SeedQ5Weight> seed_q5_weights(const Checkpoint& ck) {
  std::map<std::string, SeedQ5Weight> out;
  for (const std::string& name : ck.names()) {
    if (!seed_q5_is_part(name)) continue;
    const std::string_view suffix = ends_with(name, kPacked) ? kPacked : ends_with(name, kNorms) ? kNorms : kMeta;
    const std::string key = name.substr(0, name.size() - suffix.size());
    const std::string pk = key + std::string(kPacked), nk = key + std::string(kNorms), mk = key + std::string(kMeta);
    for (const std::string* part : {&pk, &nk, &mk})
      HLWQ_CHECK(ck.has(*part), "{}: {} has no {} (an hlwq-q5 weight needs __packed, __norms and __meta)",
                 ck.file_of(name), name, *part);
    if (suffix != kPacked) continue;  // each weight once, from its __packed

    const TensorView meta = ck.view(mk);
    HLWQ_CHECK(meta.dtype == DType::I64 && meta.shape.size() == 1 && (meta.shape[0] == 4 || meta.shape[0] == 5),
               "{}: expected [4] or [5] I64, got {} for {}", ck.file_of(mk), meta.desc(), mk);
    std::vector<int64_t> m(size_t(meta.shape[0]));
    std::memcpy(m.data(), meta.data, m.size() * sizeof(int64_t));
    SeedQ5Weight w;
    w.key = key;
    w.name = restore_dots(key);
    w.out = m[0];
    w.n_blocks = m[1];
    w.in = m.size() == 5 ? m[4] : m[1] * 128;
    // Bounds first (every product below stays far from overflow), then the relations between the values.
    const int64_t kMax = int64_t(1) << 40;
    HLWQ_CHECK(w.out > 0 && w.n_blocks > 0 && w.in > 0 && w.n_blocks <= kMax / 128 && w.in <= w.n_blocks * 128 &&
                   w.out <= kMax / (w.n_blocks * 128) && m[2] == 128 && (w.in + 127) / 128 == w.n_blocks &&
                   m[3] == w.out * w.n_blocks * 128,
               "{}: {} = [{}] is not [out, n_blocks, 128, out·n_blocks·128(, in)] with n_blocks = ⌈in/128⌉",
               ck.file_of(mk), mk, fmt::join(m, ", "));
    const TensorView packed = ck.view(pk), norms = ck.view(nk);
    HLWQ_CHECK(packed.dtype == DType::U8 && uint64_t(shape_numel(packed.shape)) == uint64_t(m[3]) / 8 * 5,
               "{}: expected {} U8 bytes (5 per 8 codes) for {}, got {}", ck.file_of(pk), m[3] / 8 * 5, pk,
               packed.desc());
    HLWQ_CHECK(norms.dtype == DType::F16 && norms.shape == Shape({w.out, w.n_blocks}),
               "{}: expected [{}, {}] F16 for {}, got {}", ck.file_of(nk), w.out, w.n_blocks, nk, norms.desc());
    w.packed = static_cast<const uint8_t*>(packed.data);
    w.norms = static_cast<const uint16_t*>(norms.data);
    HLWQ_CHECK(!out.count(w.name), "{}: two hlwq-q5 weights map to {}", ck.file_of(pk), w.name);
    out.emplace(w.name, std::move(w));
  }
  return out;
}

}  // namespace hlwq
