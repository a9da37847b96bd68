// Where `hlwq quantize` reads a model from: a Hugging Face checkpoint (tensors as stored), or the seed's
// hlwq-q5 checkpoint (io/seed_q5.h), whose coded weights are presented to the plan as the bf16 tensors they
// decode to — the seed's own pipeline writes that bf16 before its INT4 pass (SPEC §4) — and everything else as
// stored. Reads are by plan item; pages already consumed are released so memory stays bounded.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "io/checkpoint_writer.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "io/seed_q5.h"
#include "quant/ct_plan.h"

namespace hlwq {

class ModelSource {
 public:
  explicit ModelSource(const std::string& dir);

  const std::string& dir() const { return ck_.dir(); }
  const Checkpoint& checkpoint() const { return ck_; }
  const ModelConfig& config() const { return cfg_; }
  bool is_seed_q5() const { return seed_q5_; }
  const std::vector<PlanInput>& inputs() const { return inputs_; }
  const std::string& file_of(const std::string& name) const;

  // dst [rows, cols] fp32 = the slice of a quantize item (a coded weight decoded and rounded to bf16).
  void read_f32(const PlanItem& it, float* dst) const;
  // Writes a copy item to the writer under it.out_name, in pieces (a coded weight is written as its bf16 decode).
  void copy(const PlanItem& it, CheckpointWriter& w) const;
  // Drops the resident pages behind an item once it is consumed.
  void release(const PlanItem& it) const;

 private:
  // rows [r0, r0 + n) of a coded weight → dst [n, in] bf16-rounded fp32
  void decode_q5_rows(const SeedQ5Weight& w, int64_t r0, int64_t n, float* dst) const;
  Checkpoint ck_;
  ModelConfig cfg_;
  bool seed_q5_ = false;
  std::map<std::string, SeedQ5Weight> q5_;
  std::vector<PlanInput> inputs_;
};

}  // namespace hlwq
