// Helpers shared by the model tests: reading golden safetensors files, comparing logits with the tolerance the
// goldens are held to, and writing edited copies of a checkpoint for the negative cases.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "backend/cpu/cpu_ctx.h"
#include "core/tensor.h"
#include "io/checkpoint_writer.h"
#include "model/model.h"

namespace hlwq::test {

std::vector<float> golden_f32(const std::filesystem::path& file, const std::string& name);
std::vector<int32_t> golden_tokens(const std::filesystem::path& file, const std::string& name);

struct LogitsDiff {
  double max_abs_err = 0, max_abs_ref = 0;
  double max_kl = 0;  // largest KL(softmax(ref) ‖ softmax(got)) over the rows, in nats
  // the median over rows of the row's max |err| / max_abs_ref: a wrong op moves every row, a routing near-tie one
  double median_row_rel = 0;
  int64_t argmax_mismatches = 0;
  bool within(double rel_tol) const { return max_abs_err <= rel_tol * max_abs_ref && argmax_mismatches == 0; }
};
// got, ref: [n, V]
LogitsDiff compare_logits(const std::vector<float>& got, const std::vector<float>& ref, int64_t V);

// Runs the golden's tokens_a through m as one window and checks every capture point's hidden state against the
// golden's hidden_a.i within tol × that point's largest magnitude (a gtest failure per point, each recorded as a
// property); returns the worst relative error.
double check_hidden_golden(Model& m, const std::filesystem::path& golden, double tol);

// A CpuCtx for calling CPU ops directly: one scratch arena of `floats` per OpenMP thread.
struct CpuTestCtx {
  explicit CpuTestCtx(const CpuKernels& k, size_t floats = size_t(1) << 22);
  ScratchSet scratch;
  CpuCtx ctx;
};

// A tensor of an edited checkpoint: its spec and bytes.
struct EditedTensor {
  TensorSpec spec;
  std::vector<uint8_t> bytes;
};
// Copies the checkpoint at src (config.json + tensors) to dst, letting edit() change any tensor
// (return false to drop it); extra tensors are appended.
void write_edited_checkpoint(const std::filesystem::path& src, const std::filesystem::path& dst,
                             const std::function<bool(EditedTensor&)>& edit,
                             const std::vector<EditedTensor>& extra = {});

}  // namespace hlwq::test
