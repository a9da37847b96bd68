// `hlwq quantize`: streams a Hugging Face checkpoint tensor by tensor into a compressed-tensors INT4
// checkpoint (SPEC §3). Every output tensor's place is planned first (ct_plan.h), then items are quantized in
// parallel and written straight to their final offsets; the output directory appears only when complete.
// Peak memory is bounded by the largest items in flight (one fp32 copy plus its packed result per thread),
// not by the model size: source pages are released after each tensor is consumed.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "quant/ct_plan.h"
#include "quant/int4_quant.h"

namespace hlwq {

struct QuantizeOptions {
  std::string src, dst;
  Int4Method method = Int4Method::rtn;
  PlanOptions plan;
  int threads = 0;                      // 0: all cores
  bool force = false;                   // replace an existing dst
  uint64_t max_shard_bytes = 5000000000ull;  // HF's default "5GB"
  bool progress = true;
};

struct RoleStats {
  int64_t n_in = 0, n_out = 0;  // source items and output tensors
  uint64_t bytes_in = 0, bytes_out = 0;
  WeightError error;            // quantized items only
};

struct QuantizeReport {
  std::map<TensorRole, RoleStats> roles;
  RoleStats quantized, kept, dropped;  // by action
  WeightError error;                   // all quantized weights together
  int64_t n_dropped_visual = 0, n_dropped_mtp = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
  int n_shards = 0, threads = 0;
  double seconds = 0;
  uint64_t peak_rss_bytes = 0;
};

QuantizeReport quantize_model(const QuantizeOptions& opt);
// The human summary table (tensors per kind, bytes in and out, compression ratio, relative weight MSE).
std::string format_quantize_report(const QuantizeReport& r, const QuantizeOptions& opt);

}  // namespace hlwq
