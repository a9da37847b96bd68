// linear_input_key (calib_stats.h).
#include "quant/calib_stats.h"

#include <array>
#include <utility>

namespace hlwq {

std::string linear_input_key(std::string_view linear) {
  // (suffix, replacement): linears computed from the same x in the same place of the layer
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 6> kShared = {{
      {".self_attn.k_proj", ".self_attn.q_proj"},
      {".self_attn.v_proj", ".self_attn.q_proj"},
      {".linear_attn.in_proj_z", ".linear_attn.in_proj_qkv"},
      {".linear_attn.in_proj_b", ".linear_attn.in_proj_qkv"},
      {".linear_attn.in_proj_a", ".linear_attn.in_proj_qkv"},
      {".up_proj", ".gate_proj"},
  }};
  for (const auto& [suffix, repl] : kShared)
    if (linear.size() > suffix.size() && linear.substr(linear.size() - suffix.size()) == suffix)
      return std::string(linear.substr(0, linear.size() - suffix.size())) + std::string(repl);
  return std::string(linear);
}

}  // namespace hlwq
