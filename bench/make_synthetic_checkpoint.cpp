// hlwq_make_synthetic: writes a bf16 checkpoint with Qwen3.6-35B-A3B's exact tensor names and shapes (flat
// text-only `model.` layout, per-expert keys, config.json with model_type qwen3_5_moe_text) but only the first
// --layers layers, filled with deterministic pseudo-Gaussian values. It is the input of the quantization
// throughput benchmark (bench/bench_quantize.sh), which needs real shapes without a 70 GB download.
// Invariants: the bytes depend only on --seed and the tensor names (never on the thread count); the shapes are
// derived from the config constants below and checked against the sizes SPEC §5 states for the reference
// target (one CT-INT4 expert, KV bytes per token, GDN state per layer); memory stays at one 64 MB chunk.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/checkpoint_writer.h"

namespace hlwq {
namespace {

// Qwen3.6-35B-A3B text model (SPEC §1, §5).
constexpr int64_t kHidden = 2048, kVocab = 248320, kFullLayers = 40;
constexpr int64_t kExperts = 256, kExpertsActive = 8, kMoeInter = 512, kSharedInter = 512;
constexpr int64_t kLinKeyHeads = 16, kLinValueHeads = 32, kLinKeyDim = 128, kLinValueDim = 128, kConvK = 4;
constexpr int64_t kHeads = 16, kKvHeads = 2, kHeadDim = 256;
constexpr uint64_t kChunkBytes = uint64_t(64) << 20;

enum class Pattern { mixed, qwen };

std::vector<bool> full_attention_layers(int64_t n, Pattern p) {
  std::vector<bool> full(static_cast<size_t>(n));
  // mixed: linear, full, linear, full, ... so two layers already hold one of each kind.
  for (int64_t i = 0; i < n; ++i) full[size_t(i)] = p == Pattern::mixed ? i % 2 == 1 : (i + 1) % 4 == 0;
  return full;
}

// All tensors, in the order they are written (embeddings, then layer by layer, then final norm and lm_head).
std::vector<TensorSpec> model_specs(const std::vector<bool>& full) {
  std::vector<TensorSpec> s;
  auto add = [&](std::string name, Shape shape) { s.push_back({std::move(name), DType::BF16, std::move(shape)}); };
  const int64_t key_dim = kLinKeyHeads * kLinKeyDim, value_dim = kLinValueHeads * kLinValueDim;
  const int64_t conv_dim = 2 * key_dim + value_dim;  // q, k, v channels
  add("model.embed_tokens.weight", {kVocab, kHidden});
  for (size_t l = 0; l < full.size(); ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    add(p + "input_layernorm.weight", {kHidden});
    if (full[l]) {
      add(p + "self_attn.q_proj.weight", {kHeads * 2 * kHeadDim, kHidden});  // [query | gate] per head
      add(p + "self_attn.k_proj.weight", {kKvHeads * kHeadDim, kHidden});
      add(p + "self_attn.v_proj.weight", {kKvHeads * kHeadDim, kHidden});
      add(p + "self_attn.o_proj.weight", {kHidden, kHeads * kHeadDim});
      add(p + "self_attn.q_norm.weight", {kHeadDim});
      add(p + "self_attn.k_norm.weight", {kHeadDim});
    } else {
      add(p + "linear_attn.A_log", {kLinValueHeads});
      add(p + "linear_attn.conv1d.weight", {conv_dim, 1, kConvK});
      add(p + "linear_attn.dt_bias", {kLinValueHeads});
      add(p + "linear_attn.in_proj_a.weight", {kLinValueHeads, kHidden});
      add(p + "linear_attn.in_proj_b.weight", {kLinValueHeads, kHidden});
      add(p + "linear_attn.in_proj_qkv.weight", {conv_dim, kHidden});
      add(p + "linear_attn.in_proj_z.weight", {value_dim, kHidden});
      add(p + "linear_attn.norm.weight", {kLinValueDim});
      add(p + "linear_attn.out_proj.weight", {kHidden, value_dim});
    }
    for (int64_t e = 0; e < kExperts; ++e) {
      const std::string ep = fmt::format("{}mlp.experts.{}.", p, e);
      add(ep + "down_proj.weight", {kHidden, kMoeInter});
      add(ep + "gate_proj.weight", {kMoeInter, kHidden});
      add(ep + "up_proj.weight", {kMoeInter, kHidden});
    }
    add(p + "mlp.gate.weight", {kExperts, kHidden});
    add(p + "mlp.shared_expert.down_proj.weight", {kHidden, kSharedInter});
    add(p + "mlp.shared_expert.gate_proj.weight", {kSharedInter, kHidden});
    add(p + "mlp.shared_expert.up_proj.weight", {kSharedInter, kHidden});
    add(p + "mlp.shared_expert_gate.weight", {1, kHidden});
    add(p + "post_attention_layernorm.weight", {kHidden});
  }
  add("model.norm.weight", {kHidden});
  add("lm_head.weight", {kVocab, kHidden});
  return s;
}

uint64_t total_bytes(const std::vector<TensorSpec>& specs) {
  uint64_t n = 0;
  for (const auto& t : specs) n += t.nbytes();
  return n;
}

// Bytes of the tensors SPEC §3 quantizes: 2-D `.weight`s outside the keep-list that pass Marlin's shape rule
// (out % 64 == 0, in % 128 == 0). The benchmark splits its time model into these and the copied rest.
uint64_t quantizable_bytes(const std::vector<TensorSpec>& specs) {
  uint64_t n = 0;
  for (const auto& t : specs) {
    if (t.shape.size() != 2 || !t.name.ends_with(".weight") || t.shape[0] % 64 || t.shape[1] % 128) continue;
    bool keep = false;
    for (std::string_view k : {"embed_tokens.weight", "lm_head.weight", "mlp.gate.weight", "shared_expert_gate.weight",
                               "in_proj_a.weight", "in_proj_b.weight"})
      keep = keep || t.name.ends_with(k);
    if (!keep) n += t.nbytes();
  }
  return n;
}

// The sizes SPEC §5 states for the reference target, recomputed from the constants above: if a shape
// constant is wrong, these disagree and nothing is written.
void check_against_spec() {
  auto ct_bytes = [](int64_t out, int64_t in) { return out * in / 2 + out * (in / 128) * 2; };  // packed + scale
  const int64_t expert = 2 * ct_bytes(kMoeInter, kHidden) + ct_bytes(kHidden, kMoeInter);
  HLWQ_CHECK(expert == 1622016, "one CT-INT4 expert is {} bytes, SPEC §5 says 1,622,016", expert);
  const int64_t n_full = kFullLayers / 4;
  const int64_t kv_per_token = n_full * 2 * kKvHeads * kHeadDim * 2;  // K and V, bf16
  HLWQ_CHECK(kv_per_token == 20 * 1024, "KV cache is {} bytes/token, SPEC §5 says 20 KiB", kv_per_token);
  const int64_t gdn_state = kLinValueHeads * kLinKeyDim * kLinValueDim * 4;  // fp32 S per value head
  HLWQ_CHECK(gdn_state == 2 << 20, "GDN state is {} bytes/layer, SPEC §5 says 2 MiB", gdn_state);
  fmt::print("shapes agree with SPEC §5: CT expert {} bytes, KV {} bytes/token, GDN state {} bytes/layer\n",
             expert, kv_per_token, gdn_state);
}

nlohmann::json model_config(const std::vector<bool>& full) {
  std::vector<std::string> types;
  for (bool f : full) types.push_back(f ? "full_attention" : "linear_attention");
  const double partial_rotary = 0.25;
  return {
      {"architectures", {"Qwen3_5MoeForCausalLM"}},
      {"model_type", "qwen3_5_moe_text"},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"dtype", "bfloat16"},
      {"eos_token_id", 248046},
      {"full_attention_interval", 4},
      {"head_dim", kHeadDim},
      {"hidden_act", "silu"},
      {"hidden_size", kHidden},
      {"initializer_range", 0.02},
      {"layer_types", types},
      {"linear_conv_kernel_dim", kConvK},
      {"linear_key_head_dim", kLinKeyDim},
      {"linear_num_key_heads", kLinKeyHeads},
      {"linear_num_value_heads", kLinValueHeads},
      {"linear_value_head_dim", kLinValueDim},
      {"max_position_embeddings", 262144},
      {"moe_intermediate_size", kMoeInter},
      {"num_attention_heads", kHeads},
      {"num_experts", kExperts},
      {"num_experts_per_tok", kExpertsActive},
      {"num_hidden_layers", int64_t(full.size())},
      {"num_key_value_heads", kKvHeads},
      {"output_router_logits", false},
      {"partial_rotary_factor", partial_rotary},
      {"rms_norm_eps", 1e-6},
      // mrope sections sum to rotary_dim / 2 = 256 * 0.25 / 2 = 32.
      {"rope_parameters",
       {{"mrope_interleaved", true},
        {"mrope_section", {11, 11, 10}},
        {"partial_rotary_factor", partial_rotary},
        {"rope_theta", 10000000.0},
        {"rope_type", "default"}}},
      {"router_aux_loss_coef", 0.001},
      {"shared_expert_intermediate_size", kSharedInter},
      {"tie_word_embeddings", false},
      {"use_cache", true},
      {"vocab_size", kVocab},
  };
}

// FNV-1a: a name hash that is the same on every platform (std::hash is not specified).
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Fills dst with elements [first, first + n) of a tensor's value stream. Each block of kBlock elements is
// seeded from (tensor seed, block index), so values do not depend on chunking or on the thread count.
// A value is a sum of four 16-bit uniforms from one xorshift64 draw, centred and scaled to std `std`.
void fill_bf16(uint16_t* dst, uint64_t first, uint64_t n, uint64_t tensor_seed, float std) {
  constexpr uint64_t kBlock = 4096;
  // Sum of 4 U[0, 65536) has mean 131070 and variance 4 * (65536² − 1)/12.
  const float mean = 4 * 65535.0f / 2, scale = std / std::sqrt(4.0f * (65536.0f * 65536.0f - 1) / 12.0f);
  HLWQ_CHECK(first % kBlock == 0, "fill chunk must start on a block boundary, got element {}", first);
  const int64_t n_blocks = int64_t((n + kBlock - 1) / kBlock);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < n_blocks; ++b) {
    uint64_t x = splitmix64(tensor_seed ^ splitmix64(first / kBlock + uint64_t(b))) | 1;
    const uint64_t lo = uint64_t(b) * kBlock, hi = std::min(n, lo + kBlock);
    for (uint64_t i = lo; i < hi; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      const float sum = float(x & 0xffff) + float((x >> 16) & 0xffff) + float((x >> 32) & 0xffff) + float(x >> 48);
      dst[i] = f32_to_bf16((sum - mean) * scale);
    }
  }
}

int run(int argc, char** argv) {
  CLI::App app{"write a synthetic bf16 checkpoint with Qwen3.6-35B-A3B's tensor shapes"};
  std::string out;
  int64_t layers = 2;
  std::string pattern = "mixed";
  uint64_t shard = 5000000000ull;  // HF's "5GB"
  uint64_t seed = 1;
  int threads = 0;
  bool force = false, sizes_only = false;
  app.add_option("DST", out, "output model directory (written atomically)")->required();
  app.add_option("--layers", layers, "number of layers (the real model has 40)")
      ->check(CLI::Range(int64_t(1), kFullLayers))
      ->capture_default_str();
  app.add_option("--pattern", pattern,
                 "layer kinds: mixed (linear, full, linear, ...: 2 layers hold one of each) or qwen "
                 "(full iff (i+1) % 4 == 0, as the real model)")
      ->check(CLI::IsMember({"mixed", "qwen"}))
      ->capture_default_str();
  app.add_option("--seed", seed, "value seed")->capture_default_str();
  app.add_option("--max-shard-bytes", shard, "largest shard in bytes")->capture_default_str();
  app.add_option("--threads", threads, "fill threads (default: all cores)")->check(CLI::NonNegativeNumber);
  app.add_flag("--force", force, "replace DST if it exists");
  app.add_flag("--sizes-only", sizes_only, "print the sizes and write nothing");
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) omp_set_num_threads(threads);

  check_against_spec();
  const Pattern pat = pattern == "qwen" ? Pattern::qwen : Pattern::mixed;
  const std::vector<bool> full = full_attention_layers(layers, pat);
  const std::vector<TensorSpec> specs = model_specs(full);
  const uint64_t bytes = total_bytes(specs);
  const std::vector<TensorSpec> full_specs = model_specs(full_attention_layers(kFullLayers, Pattern::qwen));
  int64_t n_full = 0;
  for (bool f : full) n_full += f;
  // Machine-readable lines: bench/bench_quantize.sh parses the first four numbers.
  fmt::print("full_model_bytes {} quantizable {} ({} tensors, 40 layers: 30 linear_attention + 10 full_attention)\n",
             total_bytes(full_specs), quantizable_bytes(full_specs), full_specs.size());
  fmt::print("checkpoint_bytes {} quantizable {} ({} tensors, {} layers: {} linear_attention + {} full_attention)\n",
             bytes, quantizable_bytes(specs), specs.size(), layers, layers - n_full, n_full);
  std::fflush(stdout);
  if (sizes_only) return 0;

  StagedDir stage(out, force);
  CheckpointWriter writer(stage.path(), specs, shard,
                          {{"format", "pt"}, {"hlwq_synthetic", fmt::format("seed={}", seed)}});
  Progress progress("synthesize", "tensors", int64_t(specs.size()), int64_t(bytes), stderr);
  std::vector<uint16_t> buf(kChunkBytes / 2);
  for (const TensorSpec& t : specs) {
    const uint64_t numel = uint64_t(shape_numel(t.shape));
    const uint64_t tensor_seed = splitmix64(seed ^ fnv1a(t.name));
    for (uint64_t first = 0; first < numel; first += buf.size()) {
      const uint64_t n = std::min<uint64_t>(buf.size(), numel - first);
      fill_bf16(buf.data(), first, n, tensor_seed, 0.02f);
      writer.write_part(t.name, first * 2, buf.data(), n * 2);
    }
    progress.add(1, int64_t(t.nbytes()));
  }
  progress.finish();
  const std::vector<std::string> shards = writer.finish();
  write_file(stage.path() / "config.json", model_config(full).dump(2) + "\n");
  stage.commit();
  const double s = progress.elapsed_s();
  fmt::print("wrote {} ({}, {} shard{}, {} tensors) in {} ({:.2f} GB/s)\n", out, format_bytes(double(bytes)),
             shards.size(), shards.size() == 1 ? "" : "s", specs.size(), format_duration(s),
             double(bytes) / s / 1e9);
  return 0;
}

}  // namespace
}  // namespace hlwq

int main(int argc, char** argv) {
  try {
    return hlwq::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hlwq_make_synthetic: error: %s\n", e.what());
    return 1;
  }
}
