#include "quant/hlwq_export.h"

#include <algorithm>

#include "io/hlwq_format.h"

namespace hlwq {
namespace {

void sort_specs(std::vector<TensorSpec>& specs) {
  std::sort(specs.begin(), specs.end(), [](const TensorSpec& a, const TensorSpec& b) { return a.name < b.name; });
}

template <typename QuantizedSpecs>
std::vector<TensorSpec> output_specs(const CtPlan& plan, QuantizedSpecs add) {
  std::vector<TensorSpec> specs;
  for (const auto& it : plan.items) {
    if (it.action == PlanAction::copy) specs.push_back({it.out_name, it.src_dtype, it.out_shape});
    else if (it.action == PlanAction::quantize) add(specs, it.out_name, it.out_shape[0], it.out_shape[1]);
  }
  sort_specs(specs);
  return specs;
}

}  // namespace

std::string seed_q5_key(const std::string& module) {
  std::string k;
  for (const char c : module + ".weight") {
    if (c == '.') k += "__";
    else k += c;
  }
  return k;
}

std::vector<TensorSpec> hlwq_output_specs(const CtPlan& plan, const HlwqFormat& f) {
  return output_specs(plan, [&f](std::vector<TensorSpec>& s, const std::string& m, int64_t out, int64_t in) {
    s.push_back({hlwq_codes_name(m), DType::U8, {out, hlwq_row_bytes(in, hlwq_resolve(f, m).bits)}});
    s.push_back({hlwq_norms_name(m), DType::F16, {out, hlwq_n_blocks(in)}});
    s.push_back({hlwq_shape_name(m), DType::I64, {2}});
  });
}

std::vector<TensorSpec> seed_q5_output_specs(const CtPlan& plan) {
  return output_specs(plan, [](std::vector<TensorSpec>& s, const std::string& m, int64_t out, int64_t in) {
    const std::string k = seed_q5_key(m);
    s.push_back({k + "__packed", DType::U8, {out * hlwq_row_bytes(in, 5)}});
    s.push_back({k + "__norms", DType::F16, {out, hlwq_n_blocks(in)}});
    s.push_back({k + "__meta", DType::I64, {5}});
  });
}

uint64_t write_hlwq_item(CheckpointWriter& w, const std::string& module, const HlwqPacked& q) {
  const int64_t shape[2] = {q.out, q.in};
  w.write(hlwq_codes_name(module), q.codes.data(), q.codes.size());
  w.write(hlwq_norms_name(module), q.norms.data(), q.norms.size() * 2);
  w.write(hlwq_shape_name(module), shape, sizeof shape);
  return q.codes.size() + q.norms.size() * 2 + sizeof shape;
}

uint64_t write_seed_q5_item(CheckpointWriter& w, const std::string& module, const HlwqPacked& q) {
  const std::string k = seed_q5_key(module);
  const int64_t meta[5] = {q.out, q.n_blocks, kHlwqBlock, q.out * q.n_blocks * kHlwqBlock, q.in};
  w.write(k + "__packed", q.codes.data(), q.codes.size());
  w.write(k + "__norms", q.norms.data(), q.norms.size() * 2);
  w.write(k + "__meta", meta, sizeof meta);
  return q.codes.size() + q.norms.size() * 2 + sizeof meta;
}

}  // namespace hlwq
