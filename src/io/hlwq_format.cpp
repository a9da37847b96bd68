#include "io/hlwq_format.h"

#include <cmath>

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

}  // namespace

json hlwq_quantization_config(const HlwqFormat& f) {
  json values = json::array();
  for (const float c : f.codebook) values.push_back(double(c));  // exact: every float is a double
  return {{"quant_method", kHlwqQuantMethod},
          {"format", kHlwqFormatName},
          {"version", kHlwqFormatVersion},
          {"bits", f.bits},
          {"block_size", kHlwqBlock},
          {"rotation", kRotation},
          {"packing", kPacking},
          {"norm_dtype", "float16"},
          {"scale_rule", f.scale_rule},
          {"codebook", {{"name", f.codebook_name}, {"values", values}}},
          {"ignore", f.ignore}};
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
  HLWQ_CHECK(version == kHlwqFormatVersion, "{}: version {} is not supported (hlwq reads {})", w, version,
             kHlwqFormatVersion);
  const int64_t bits = int_field(q, "bits", w);
  HLWQ_CHECK(bits >= kHlwqMinBits && bits <= kHlwqMaxBits, "{}: bits {} must be in [{}, {}]", w, bits, kHlwqMinBits,
             kHlwqMaxBits);
  f.bits = int(bits);
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
  const json& cb = field(q, "codebook", w);
  HLWQ_CHECK(cb.is_object(), "{}: codebook must be an object, got {}", w, json_brief(cb));
  f.codebook_name = str_field(cb, "name", w + ".codebook");
  const json& vals = field(cb, "values", w + ".codebook");
  const size_t n = size_t(1) << f.bits;
  HLWQ_CHECK(vals.is_array() && vals.size() == n, "{}.codebook: values must list 2^{} = {} numbers, got {}", w,
             f.bits, n, json_brief(vals));
  for (size_t i = 0; i < n; ++i) {
    HLWQ_CHECK(vals[i].is_number(), "{}.codebook: value {} is not a number: {}", w, i, json_brief(vals[i]));
    const float c = float(vals[i].get<double>());
    HLWQ_CHECK(std::isfinite(c), "{}.codebook: value {} is not finite", w, i);
    HLWQ_CHECK(i == 0 || f.codebook.back() < c, "{}.codebook: values must be strictly ascending (index {})", w, i);
    f.codebook.push_back(c);
  }
  if (q.contains("ignore") && q["ignore"].is_array())
    for (const auto& s : q["ignore"])
      if (s.is_string()) f.ignore.push_back(s.get<std::string>());
  return f;
}

}  // namespace hlwq
