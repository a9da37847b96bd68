#include "io/hlwq_format.h"

#include <cmath>
#include <regex>

#include "core/error.h"
#include "io/json_util.h"

namespace hlwq {
using json = nlohmann::json;

namespace {

constexpr const char* kRotation = "walsh-hadamard-sylvester-128";
constexpr const char* kPacking = "lsb-first";

const json& field(const json& q, const char* k, const std::string& where) {
  HLWQ_CHECK(q.contains(k) && !q[k].is_null(), "{}: missing field '{}'", where, k);
  return q[k];
}

std::string str_field(const json& q, const char* k, const std::string& where) {
  const json& v = field(q, k, where);
  HLWQ_CHECK(v.is_string(), "{}: field '{}' must be a string, got {}", where, k, json_brief(v));
  return v.get<std::string>();
}

int64_t int_field(const json& q, const char* k, const std::string& where) {
  const json& v = field(q, k, where);
  HLWQ_CHECK(v.is_number_integer(), "{}: field '{}' must be an integer, got {}", where, k, json_brief(v));
  return v.get<int64_t>();
}

json codebook_json(const std::string& name, const std::vector<float>& cb) {
  json values = json::array();
  for (const float c : cb) values.push_back(double(c));  // exact: every float is a double
  return {{"name", name}, {"values", values}};
}

// bits and codebook of the top level or an override (w names which).
void parse_width(const json& q, const std::string& w, int& bits_out, std::string& name, std::vector<float>& cb) {
  const int64_t bits = int_field(q, "bits", w);
  HLWQ_CHECK(bits >= kHlwqMinBits && bits <= kHlwqMaxBits, "{}: bits {} must be in [{}, {}]", w, bits, kHlwqMinBits,
             kHlwqMaxBits);
  bits_out = int(bits);
  const json& c = field(q, "codebook", w);
  HLWQ_CHECK(c.is_object(), "{}: codebook must be an object, got {}", w, json_brief(c));
  name = str_field(c, "name", w + ".codebook");
  const json& vals = field(c, "values", w + ".codebook");
  const size_t n = size_t(1) << bits;
  HLWQ_CHECK(vals.is_array() && vals.size() == n, "{}.codebook: values must list 2^{} = {} numbers, got {}", w, bits,
             n, json_brief(vals));
  cb.clear();
  for (size_t i = 0; i < n; ++i) {
    HLWQ_CHECK(vals[i].is_number(), "{}.codebook: value {} is not a number: {}", w, i, json_brief(vals[i]));
    const float v = float(vals[i].get<double>());
    HLWQ_CHECK(std::isfinite(v), "{}.codebook: value {} is not finite", w, i);
    HLWQ_CHECK(i == 0 || cb.back() < v, "{}.codebook: values must be strictly ascending (index {})", w, i);
    cb.push_back(v);
  }
}

}  // namespace

bool hlwq_target_matches(const std::string& target, const std::string& module) {
  if (!target.starts_with("re:")) return target == module;
  // std::regex recurses per character: names come from files, so an absurd one is refused rather than matched.
  HLWQ_CHECK(module.size() <= 4096, "module name of {} characters is too long to match against '{}'", module.size(),
             target);
  try {
    return std::regex_search(module, std::regex(target.substr(3), std::regex::ECMAScript),
                             std::regex_constants::match_continuous);
  } catch (const std::regex_error& e) {
    fail("bad regular expression '{}': {}", target.substr(3), e.what());
  }
}

HlwqWidth hlwq_resolve(const HlwqFormat& f, const std::string& module) {
  for (const HlwqOverride& o : f.overrides)
    for (const std::string& t : o.targets)
      if (hlwq_target_matches(t, module)) return {o.bits, &o.codebook};
  return {f.bits, &f.codebook};
}

json hlwq_quantization_config(const HlwqFormat& f) {
  json q = {{"quant_method", kHlwqQuantMethod},
          {"format", kHlwqFormatName},
          {"version", f.overrides.empty() ? kHlwqFormatVersion : kHlwqFormatVersionOverrides},
          {"bits", f.bits},
          {"block_size", kHlwqBlock},
          {"rotation", kRotation},
          {"packing", kPacking},
          {"norm_dtype", "float16"},
          {"scale_rule", f.scale_rule},
          {"codebook", codebook_json(f.codebook_name, f.codebook)},
          {"ignore", f.ignore}};
  if (!f.overrides.empty()) {
    json list = json::array();
    for (const HlwqOverride& o : f.overrides)
      list.push_back({{"targets", o.targets}, {"bits", o.bits}, {"codebook", codebook_json(o.codebook_name, o.codebook)}});
    q["overrides"] = list;
  }
  return q;
}

HlwqFormat parse_hlwq_quantization_config(const json& q, const std::string& where) {
  const std::string w = where + ": quantization_config";
  HLWQ_CHECK(q.is_object(), "{}: not an object", w);
  HlwqFormat f;
  HLWQ_CHECK(str_field(q, "quant_method", w) == kHlwqQuantMethod, "{}: quant_method must be '{}'", w,
             kHlwqQuantMethod);
  const std::string format = str_field(q, "format", w);
  HLWQ_CHECK(format == kHlwqFormatName, "{}: format '{}' is not supported (hlwq reads {})", w, format, kHlwqFormatName);
  const int64_t version = int_field(q, "version", w);
  HLWQ_CHECK(version == kHlwqFormatVersion || version == kHlwqFormatVersionOverrides,
             "{}: version {} is not supported (hlwq reads {} and {})", w, version, kHlwqFormatVersion,
             kHlwqFormatVersionOverrides);
  parse_width(q, w, f.bits, f.codebook_name, f.codebook);
  const int64_t block = int_field(q, "block_size", w);
  HLWQ_CHECK(block == kHlwqBlock, "{}: block_size {} is not supported (hlwq reads {})", w, block, kHlwqBlock);
  const std::string rot = str_field(q, "rotation", w), pack = str_field(q, "packing", w);
  HLWQ_CHECK(rot == kRotation, "{}: rotation '{}' is not supported (hlwq reads {})", w, rot, kRotation);
  HLWQ_CHECK(pack == kPacking, "{}: packing '{}' is not supported (hlwq reads {})", w, pack, kPacking);
  const std::string norm_dtype = str_field(q, "norm_dtype", w);
  HLWQ_CHECK(norm_dtype == "float16", "{}: norm_dtype '{}' is not supported (hlwq reads float16)", w, norm_dtype);
  f.scale_rule = str_field(q, "scale_rule", w);
  HLWQ_CHECK(f.scale_rule == "l2-norm" || f.scale_rule == "least-squares",
             "{}: scale_rule '{}' must be l2-norm or least-squares", w, f.scale_rule);
  if (q.contains("ignore") && q["ignore"].is_array())
    for (const auto& s : q["ignore"])
      if (s.is_string()) f.ignore.push_back(s.get<std::string>());
  // Version 1 files have one width; overrides change how many bytes a row holds, so they need version 2, which
  // readers without them refuse instead of misreading.
  const bool has_overrides = q.contains("overrides");
  HLWQ_CHECK(has_overrides == (version == kHlwqFormatVersionOverrides),
             "{}: version {} {} an 'overrides' list (version {} files have overrides, version {} files none)", w,
             version, has_overrides ? "must not have" : "needs", kHlwqFormatVersionOverrides, kHlwqFormatVersion);
  if (has_overrides) {
    const json& list = q["overrides"];
    HLWQ_CHECK(list.is_array() && !list.empty(), "{}: overrides must be a non-empty list, got {}", w, json_brief(list));
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string wo = fmt::format("{}.overrides[{}]", w, i);
      const json& o = list[i];
      HLWQ_CHECK(o.is_object(), "{}: not an object: {}", wo, json_brief(o));
      HlwqOverride ov;
      const json& t = field(o, "targets", wo);
      HLWQ_CHECK(t.is_array() && !t.empty(), "{}: targets must be a non-empty list of strings, got {}", wo,
                 json_brief(t));
      for (const json& s : t) {
        HLWQ_CHECK(s.is_string(), "{}: a target is not a string: {}", wo, json_brief(s));
        ov.targets.push_back(s.get<std::string>());
        if (ov.targets.back().starts_with("re:")) {
          try {
            std::regex(ov.targets.back().substr(3), std::regex::ECMAScript);
          } catch (const std::regex_error& e) {
            fail("{}: bad regular expression '{}': {}", wo, ov.targets.back().substr(3), e.what());
          }
        }
      }
      parse_width(o, wo, ov.bits, ov.codebook_name, ov.codebook);
      f.overrides.push_back(std::move(ov));
    }
  }
  return f;
}

}  // namespace hlwq
