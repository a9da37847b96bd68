// `hlwq bench`'s measurements (see model_bench.h). Dimension legend: B decode sequences, P prefill tokens, G decode
// steps, V vocab, E experts per MoE layer, k experts per token.
#include "perf/model_bench.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "backend/cpu/mapped_experts.h"
#include "backend/cuda_ceilings.h"
#include "core/error.h"
#include "core/progress.h"
#include "moe/route_trace.h"
#include "perf/counting_experts.h"
#include "perf/cpu_ceilings.h"
#include "perf/weight_traffic.h"
#include "runtime/sampler.h"

namespace hlwq {
namespace {

using Clock = std::chrono::steady_clock;

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Fills the rate figures of a phase from its timed runs (seconds each), the tokens of one run and its weight bytes.
void finish_phase(PhaseResult& p, std::vector<double> secs, double tokens, double read_gbs) {
  std::sort(secs.begin(), secs.end());
  p.seconds = secs[secs.size() / 2];
  p.tok_s = tokens / p.seconds;
  p.tok_s_min = tokens / secs.back();
  p.tok_s_max = tokens / secs.front();
  p.weight_gbs = p.weight_bytes / p.seconds / 1e9;
  p.speed_of_light_tok_s = tokens / (p.weight_bytes / (read_gbs * 1e9));
  p.fraction = p.tok_s / p.speed_of_light_tok_s;
}

// An expert cache moves pcie_bytes of the run's weights over PCIe instead of device memory: the speed of light is
// the rest at the read ceiling plus those at the pinned host→device ceiling.
void add_pcie(PhaseResult& p, double tokens, double read_gbs, double h2d_gbs) {
  if (p.pcie_bytes <= 0 || h2d_gbs <= 0) return;
  const double t = std::max(0.0, p.weight_bytes - p.pcie_bytes) / (read_gbs * 1e9) + p.pcie_bytes / (h2d_gbs * 1e9);
  p.speed_of_light_tok_s = tokens / t;
  p.fraction = p.tok_s / p.speed_of_light_tok_s;
}

// Expert-cache counters now (zeros without a cache).
ExpertCacheStats cache_now(const Model& m) { return m.expert_cache_stats().value_or(ExpertCacheStats{}); }

// pcie_bytes, hit rate, prefetch counts and CPU experts of `runs` runs from the counters' change d over them (after
// finish_phase).
void set_cache_delta(PhaseResult& p, const ExpertCacheStats& d, int runs) {
  const int64_t look = d.lookups(), all = look + d.cpu_static;
  if (d.cpu_experts > 0 && all > 0) {
    p.cpu_share = double(d.cpu_experts) / double(all);
    p.cpu_bytes = double(d.cpu_bytes) / runs;
    p.cpu_ms = double(d.cpu_ns) / 1e6 / runs;
  }
  if (look <= 0) return;
  p.pcie_bytes = double(d.bytes_copied) / runs;
  p.hit_rate = double(d.hits) / double(look);
  p.h2d_gbs = p.seconds > 0 ? p.pcie_bytes / p.seconds / 1e9 : 0;
  p.prefetched = double(d.prefetched) / runs;
  p.prefetch_hits = double(d.prefetch_hits) / runs;
  p.prefetch_wasted = double(d.prefetch_wasted) / runs;
  const int64_t steps = d.steps_prefetching + d.steps_not_prefetching;
  if (steps > 0) p.prefetching_share = double(d.steps_prefetching) / double(steps);
  p.copy_ms = double(d.copy_ns) / 1e6 / runs;
  p.copy_exposed_ms = double(d.copy_exposed_ns) / 1e6 / runs;
}

}  // namespace

BenchResult run_model_bench(const std::string& model_dir, const BenchOptions& opt) {
  HLWQ_CHECK(opt.batch >= 1 && opt.prompt_len >= 1 && opt.gen_len >= 1 && opt.decode_prompt_len >= 1 &&
                 opt.repeats >= 1 && opt.warmup >= 0,
             "bench: batch {}, prompt length {}, generation length {}, decode prompt {} and repeats {} must be "
             "positive, warm-up {} not negative", opt.batch, opt.prompt_len, opt.gen_len, opt.decode_prompt_len,
             opt.repeats, opt.warmup);
  BenchResult r;
  r.model = model_dir;
  r.opt = opt;
  r.device = device_name(opt.device);
  r.threads = omp_get_max_threads();
  const int64_t B = opt.batch, P = opt.prompt_len, G = opt.gen_len, Pd = opt.decode_prompt_len;
  LoadOptions lo;
  lo.device = opt.device;
  lo.moe_expert_cache_size = opt.moe_expert_cache_size;
  lo.gpu_memory = opt.gpu_memory;
  lo.moe_prefetch = opt.moe_prefetch;
  lo.moe_stream_min_tokens = opt.moe_stream_min_tokens;
  lo.max_batch_tokens = opt.max_batch_tokens;
  lo.cpu_experts = opt.cpu_experts;
  lo.n_cpu_moe = opt.n_cpu_moe;
  lo.max_seqs = int32_t(B);
  const int64_t decode_len = Pd + G;
  int64_t P_max = P;
  for (int64_t Pm : opt.more_prompt_lens) {
    HLWQ_CHECK(Pm >= 1, "bench: prompt length {} must be positive", Pm);
    P_max = std::max(P_max, Pm);
  }
  lo.kv_tokens = std::max(P_max, B * decode_len) + (B + 1) * lo.kv_block_tokens;
  HLWQ_CHECK(B <= lo.max_batch_tokens, "bench: batch {} is larger than the largest batch of {} tokens", B,
             lo.max_batch_tokens);
  CountingExpertProvider counter;
  // counting needs the provider seam, which the CPU expert cache and the CUDA backend occupy themselves
  const bool counted = opt.device == Device::cpu && opt.moe_expert_cache_size == 0;
  if (counted) lo.experts = &counter;
  Model m = Model::load(model_dir, lo);
  const ModelConfig& cfg = m.config();
  HLWQ_CHECK(P_max <= cfg.max_position_embeddings && decode_len <= cfg.max_position_embeddings,
             "bench: prompt length {} and decode prompt + generation {} must fit the model's context of {}", P_max,
             decode_len, cfg.max_position_embeddings);
  r.memory_plan = m.backend().memory_plan();
  std::shared_ptr<const RouteTrace> trace;
  r.routing = "model";
  if (!opt.route_trace.empty()) {
    trace = std::make_shared<const RouteTrace>(read_route_trace(opt.route_trace));
    m.backend().set_route_trace(trace);  // checks the shape against the model now, before any measuring
    r.routing = fmt::format("trace {} ({})", opt.route_trace, trace->describe());
  }
  std::unique_ptr<MappedExpertProvider> mapped;
  if (counted) {
    mapped = std::make_unique<MappedExpertProvider>(m.weights());
    counter.set_inner(mapped.get());
  }
  // Ceilings after the load (a model that cannot load costs no measuring), before any forward.
  if (opt.device == Device::cuda) {
    const CudaCeilings c = measure_cuda_ceilings();
    r.device_name = c.device_name;
    r.read_ceiling_gbs = c.read_gbs, r.copy_ceiling_gbs = c.copy_gbs, r.h2d_pinned_gbs = c.h2d_pinned_gbs;
    r.tc_bf16_tflops = c.tc_bf16_tflops;
    r.ceiling_method = "measure_cuda_ceilings: read and copy kernels over 2 GiB of device memory, mma.sync bf16 for "
                       "the tensor cores";
  } else {
    const CpuCeilings c = measure_cpu_ceilings(opt.ceiling_bytes);
    r.device_name = cpu_model_name();
    r.read_ceiling_gbs = c.read_gbs, r.copy_ceiling_gbs = c.copy_gbs;
    r.ceiling_method = fmt::format("CPU read (sum) and memcpy over {} buffers, {} OpenMP threads",
                                   format_bytes(double(c.buffer_bytes)), c.threads);
  }

  const WeightTraffic wt = weight_traffic(m);
  r.n_layers = cfg.n_layers, r.n_experts = cfg.n_experts, r.n_experts_active = cfg.n_experts_active;
  r.resident_weight_bytes = wt.resident_bytes, r.dense_step_bytes = wt.dense_step_bytes;
  r.expert_bytes = wt.expert_bytes, r.kv_bytes_per_token = wt.kv_bytes_per_token;
  r.gdn_state_bytes_per_sequence = wt.gdn_state_bytes_per_sequence;
  const int64_t V = cfg.vocab_size;
  // Upper bound of the distinct (layer, expert) reads of a step of `tokens` tokens when they cannot be counted.
  auto expert_bound = [&](int64_t tokens) {
    return double(wt.n_moe_layers) * double(std::min(cfg.n_experts, cfg.n_experts_active * tokens));
  };
  std::vector<int32_t> tok(size_t(std::max(P_max, Pd + B + G)));  // fixed pseudo-random ids
  for (size_t i = 0; i < tok.size(); ++i) tok[i] = int32_t((int64_t(i) * 7919 + 13) % V);

  // Prefill: a fresh sequence of P tokens per run (the model runs it in chunks of max_batch_tokens); P is the
  // prompt length, then each of the further lengths (more_prompt_lens) the same way.
  auto prefill = [&](int64_t P, PhaseResult& p) {
    std::vector<float> logits(static_cast<size_t>(V));  // [V] of the last token
    std::vector<double> secs;
    double experts = 0;
    ExpertCacheStats c0;
    if (trace) m.backend().set_route_trace(trace);  // rewind: the phase replays rows from 0
    for (int i = 0; i < opt.warmup + opt.repeats; ++i) {
      if (i == opt.warmup) c0 = cache_now(m);
      Sequence s = m.new_sequence(P);
      counter.reset();
      const auto t0 = Clock::now();
      m.forward(tok.data(), P, s, logits.data());
      const double dt = seconds_since(t0);
      if (i >= opt.warmup) secs.push_back(dt), experts += double(counter.acquired());
    }
    const int64_t chunk = lo.max_batch_tokens, n_chunks = (P + chunk - 1) / chunk;
    double bound = 0;
    for (int64_t c = 0; c < n_chunks; ++c) bound += expert_bound(std::min(chunk, P - c * chunk));
    p.experts_counted = counted;
    p.routed_experts = counted ? experts / opt.repeats : bound;
    p.weight_bytes = double(n_chunks) * wt.dense_step_bytes + double(P) * wt.embed_row_bytes +
                     p.routed_experts * wt.expert_bytes;
    finish_phase(p, secs, double(P), r.read_ceiling_gbs);
    set_cache_delta(p, cache_now(m) - c0, opt.repeats);
    add_pcie(p, double(P), r.read_ceiling_gbs, r.h2d_pinned_gbs);
    p.flops = 2 * (double(P) * (wt.token_macs + double(cfg.n_experts_active) * wt.expert_macs) + wt.lm_head_macs +
                   wt.attn_macs_per_position * double(P) * double(P + 1) / 2);
    if (r.tc_bf16_tflops > 0) {
      p.compute_sol_tok_s = double(P) / (p.flops / (r.tc_bf16_tflops * 1e12));
      p.compute_fraction = p.tok_s / p.compute_sol_tok_s;
    }
  };
  prefill(P, r.prefill);
  for (int64_t Pm : opt.more_prompt_lens) prefill(Pm, r.prefill_more.emplace_back());

  // Decode: B sequences, each after its own short prompt, then G steps of one token each for all B at once.
  {
    std::vector<Sequence> seqs;
    for (int64_t b = 0; b < B; ++b) seqs.push_back(m.new_sequence(decode_len));
    std::vector<float> logits(static_cast<size_t>(B * V));  // [B, V]
    std::vector<int32_t> next(static_cast<size_t>(B));
    std::vector<SeqInput> in(static_cast<size_t>(B));
    // each step ends in a greedy token choice, as generation makes it: on the device when the backend samples
    // (only ids cross to the host), else from the logits on the host
    const std::vector<RowSampling> greedy(static_cast<size_t>(B));
    std::vector<int32_t> chosen(static_cast<size_t>(B));
    ForwardOptions choose;
    choose.sample = greedy;
    choose.ids = chosen.data();
    std::vector<double> secs;
    double experts = 0;
    ExpertCacheStats timed;  // the counters of the timed runs' decode steps
    if (trace) m.backend().set_route_trace(trace);  // rewind (decode rows stay aligned to B: prompts take B·Pd)
    for (int i = 0; i < opt.warmup + opt.repeats; ++i) {
      for (int64_t b = 0; b < B; ++b) {
        seqs[size_t(b)].reset();
        m.forward(tok.data() + b, Pd, seqs[size_t(b)], nullptr);
      }
      counter.reset();
      const ExpertCacheStats before = cache_now(m);  // the decode steps only, not the prompts
      const auto t0 = Clock::now();
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t b = 0; b < B; ++b) {
          next[size_t(b)] = tok[size_t(Pd + b + g) % tok.size()];
          in[size_t(b)] = SeqInput{&seqs[size_t(b)], {&next[size_t(b)], 1}};
        }
        m.forward_batch(in, logits.data(), choose);
        for (int64_t b = 0; b < B; ++b)
          if (chosen[size_t(b)] < 0) chosen[size_t(b)] = sampler_argmax({logits.data() + b * V, size_t(V)});
      }
      const double dt = seconds_since(t0);
      if (i >= opt.warmup) {
        secs.push_back(dt), experts += double(counter.acquired());
        timed += cache_now(m) - before;
      }
    }
    PhaseResult& d = r.decode;
    d.experts_counted = counted;
    d.routed_experts = counted ? experts / opt.repeats : double(G) * expert_bound(B);
    d.weight_bytes = double(G) * (wt.dense_step_bytes + double(B) * wt.embed_row_bytes) +
                     d.routed_experts * wt.expert_bytes;
    finish_phase(d, secs, double(G * B), r.read_ceiling_gbs);
    set_cache_delta(d, timed, opt.repeats);
    add_pcie(d, double(G * B), r.read_ceiling_gbs, r.h2d_pinned_gbs);
    r.decode_weight_bytes_per_token = d.weight_bytes / double(G * B);
  }
  return r;
}

nlohmann::json bench_result_json(const BenchResult& r) {
  auto phase = [](const PhaseResult& p) {
    nlohmann::json j{{"tok_s", p.tok_s},
                          {"tok_s_min", p.tok_s_min},
                          {"tok_s_max", p.tok_s_max},
                          {"seconds_median", p.seconds},
                          {"weight_bytes", p.weight_bytes},
                          {"weight_gbs", p.weight_gbs},
                          {"routed_experts", p.routed_experts},
                          {"routed_experts_counted", p.experts_counted},
                          {"speed_of_light_tok_s", p.speed_of_light_tok_s},
                          {"fraction_of_speed_of_light", p.fraction}};
    if (p.hit_rate >= 0)
      j["expert_cache"] = {{"pcie_bytes", p.pcie_bytes},       {"hit_rate", p.hit_rate},
                           {"h2d_gbs", p.h2d_gbs},             {"prefetched", p.prefetched},
                           {"prefetch_hits", p.prefetch_hits}, {"prefetch_wasted", p.prefetch_wasted},
                           {"copy_ms", p.copy_ms},             {"copy_exposed_ms", p.copy_exposed_ms},
                           {"prefetching_share", p.prefetching_share}};
    if (p.cpu_share >= 0)
      j["cpu_experts"] = {{"share", p.cpu_share}, {"host_bytes", p.cpu_bytes}, {"cpu_ms", p.cpu_ms}};
    return j;
  };
  nlohmann::json pre = phase(r.prefill), dec = phase(r.decode), more = nlohmann::json::array();
  pre["tokens"] = r.opt.prompt_len;
  pre["flops"] = r.prefill.flops;
  if (r.prefill.compute_sol_tok_s > 0) {
    pre["compute_speed_of_light_tok_s"] = r.prefill.compute_sol_tok_s;
    pre["fraction_of_compute_speed_of_light"] = r.prefill.compute_fraction;
  }
  for (size_t i = 0; i < r.prefill_more.size(); ++i) {
    const PhaseResult& pm = r.prefill_more[i];
    nlohmann::json j = phase(pm);
    j["tokens"] = r.opt.more_prompt_lens[i];
    j["flops"] = pm.flops;
    if (pm.compute_sol_tok_s > 0) {
      j["compute_speed_of_light_tok_s"] = pm.compute_sol_tok_s;
      j["fraction_of_compute_speed_of_light"] = pm.compute_fraction;
    }
    more.push_back(j);
  }
  dec["batch"] = r.opt.batch;
  dec["steps"] = r.opt.gen_len;
  dec["prompt_tokens_per_sequence"] = r.opt.decode_prompt_len;
  dec["weight_bytes_per_token"] = r.decode_weight_bytes_per_token;
  dec["step_ms"] = r.decode.seconds / double(r.opt.gen_len) * 1e3;
  nlohmann::json ceil = {{"read_gbs", r.read_ceiling_gbs}, {"copy_gbs", r.copy_ceiling_gbs}, {"method", r.ceiling_method}};
  if (r.h2d_pinned_gbs > 0) ceil["h2d_pinned_gbs"] = r.h2d_pinned_gbs;
  if (r.tc_bf16_tflops > 0) ceil["tc_bf16_tflops"] = r.tc_bf16_tflops;
  return {{"model", r.model},
          {"device", r.device},
          {"device_name", r.device_name},
          {"threads", r.threads},
          {"warmup", r.opt.warmup},
          {"repeats", r.opt.repeats},
          {"layers", r.n_layers},
          {"experts", r.n_experts},
          {"experts_per_token", r.n_experts_active},
          {"resident_weight_bytes", r.resident_weight_bytes},
          {"dense_weight_bytes_per_step", r.dense_step_bytes},
          {"expert_bytes", r.expert_bytes},
          {"kv_bytes_per_token", r.kv_bytes_per_token},
          {"gdn_state_bytes_per_sequence", r.gdn_state_bytes_per_sequence},
          {"ceilings", ceil},
          {"memory_plan", r.memory_plan},
          {"moe_expert_cache_size", r.opt.moe_expert_cache_size},
          {"gpu_memory", r.opt.gpu_memory},
          {"moe_prefetch", prefetch_mode_name(r.opt.moe_prefetch)},
          {"moe_stream_min_tokens", r.opt.moe_stream_min_tokens},
          {"max_num_batched_tokens", r.opt.max_batch_tokens},
          {"routing", r.routing},
          {"cpu_experts", cpu_experts_name(r.opt.cpu_experts)},
          {"n_cpu_moe", r.opt.n_cpu_moe},
          {"prefill", pre},
          {"prefill_more", more},
          {"decode", dec}};
}

std::string format_bench_result(const BenchResult& r) {
  std::string s;
  s += fmt::format("model {} on {} ({}, {} threads)\n", r.model, r.device, r.device_name, r.threads);
  s += fmt::format("ceilings: read {:.1f} GB/s, copy {:.1f} GB/s{}{} ({})\n", r.read_ceiling_gbs,
                   r.copy_ceiling_gbs,
                   r.h2d_pinned_gbs > 0 ? fmt::format(", pinned H2D {:.1f} GB/s", r.h2d_pinned_gbs) : "",
                   r.tc_bf16_tflops > 0 ? fmt::format(", bf16 tensor cores {:.0f} TFLOP/s", r.tc_bf16_tflops) : "",
                   r.ceiling_method);
  s += fmt::format("weights resident {}, read per step {} dense + {} per routed expert; KV {} per token, GDN state {} "
                   "per sequence\n",
                   format_bytes(r.resident_weight_bytes), format_bytes(r.dense_step_bytes),
                   format_bytes(r.expert_bytes), format_bytes(r.kv_bytes_per_token),
                   format_bytes(r.gdn_state_bytes_per_sequence));
  auto row = [&](const char* name, const PhaseResult& p, const std::string& shape, double bytes_per_tok) {
    s += fmt::format("{:<8} {:<22} {:>10.1f} tok/s ({:.1f}–{:.1f})  {:>9} weights/tok  {:>7.2f} GB/s  speed of light "
                     "{:.1f} tok/s  {:.0f}%  experts {} {:.0f}\n",
                     name, shape, p.tok_s, p.tok_s_min, p.tok_s_max, format_bytes(bytes_per_tok), p.weight_gbs,
                     p.speed_of_light_tok_s, 100 * p.fraction, p.experts_counted ? "counted" : "≤", p.routed_experts);
  };
  row("prefill", r.prefill, fmt::format("{} tokens", r.opt.prompt_len),
      r.prefill.weight_bytes / double(r.opt.prompt_len));
  for (size_t i = 0; i < r.prefill_more.size(); ++i)
    row("prefill", r.prefill_more[i], fmt::format("{} tokens", r.opt.more_prompt_lens[i]),
        r.prefill_more[i].weight_bytes / double(r.opt.more_prompt_lens[i]));
  row("decode", r.decode, fmt::format("batch {} × {} steps", r.opt.batch, r.opt.gen_len),
      r.decode_weight_bytes_per_token);
  std::vector<std::tuple<std::string, const PhaseResult*, double>> phases{
      {"prefill", &r.prefill, double(r.opt.prompt_len)}};
  for (size_t i = 0; i < r.prefill_more.size(); ++i)
    phases.emplace_back("prefill", &r.prefill_more[i], double(r.opt.more_prompt_lens[i]));
  phases.emplace_back("decode", &r.decode, double(r.opt.batch * r.opt.gen_len));
  for (const auto& [name, p, tokens] : phases)
    if (p->hit_rate >= 0)
      s += fmt::format("{:<8} expert cache: {:.1f} % hits, {} per token over PCIe ({:.1f} GB/s achieved, pinned "
                       "ceiling {:.1f} GB/s); prefetched {:.0f} per run, {:.0f} used, {:.0f} wasted{}; copies "
                       "{:.3f} ms per token, {:.3f} ms of it not hidden by compute\n", name, 100 * p->hit_rate,
                       format_bytes(p->pcie_bytes / tokens), p->h2d_gbs, r.h2d_pinned_gbs, p->prefetched,
                       p->prefetch_hits, p->prefetch_wasted,
                       p->prefetching_share >= 0
                           ? fmt::format(" (prefetch on in {:.0f} % of steps)", 100 * p->prefetching_share)
                           : std::string(),
                       p->copy_ms / tokens, p->copy_exposed_ms / tokens);
  for (const auto& [name, p, tokens] : {std::tuple{"prefill", &r.prefill, double(r.opt.prompt_len)},
                                        std::tuple{"decode", &r.decode, double(r.opt.batch * r.opt.gen_len)}})
    if (p->cpu_share >= 0)
      s += fmt::format("{:<8} CPU experts: {:.1f} % of the routed experts, {} per token read from host memory, "
                       "{:.2f} ms of CPU per token\n", name, 100 * p->cpu_share, format_bytes(p->cpu_bytes / tokens),
                       p->cpu_ms / tokens);
  s += fmt::format("routing: {}\n", r.routing);
  if (r.prefill.compute_sol_tok_s > 0)
    s += fmt::format("prefill  compute: {:.1f} GFLOP per token, speed of light {:.0f} tok/s at the tensor-core rate, "
                     "{:.0f}% of it\n", r.prefill.flops / double(r.opt.prompt_len) / 1e9, r.prefill.compute_sol_tok_s,
                     100 * r.prefill.compute_fraction);
  if (!r.memory_plan.empty()) s += r.memory_plan + "\n";
  s += fmt::format("median of {} runs after {} warm-up; the speed of light per row counts weight reads only "
                   "(prefill is compute-bound: its compute line, where measured, is the binding one)\n",
                   r.opt.repeats, r.opt.warmup);
  return s;
}

}  // namespace hlwq
