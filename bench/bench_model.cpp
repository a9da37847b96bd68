// hlwq_bench_model: end-to-end CPU throughput of the Qwen3.5/3.6-MoE forward, measured against ceilings taken
// on the same machine in the same run (DESIGN habits 11–12). It prints
//   - memory ceilings: a STREAM-like copy (GB/s counting read + write) and a read-only sum, 1 thread and all;
//   - a compute ceiling: the GEMM micro-kernel (CpuKernels::gemm_panel) on operands that stay in L1, i.e. what
//     prefill could reach if decoding and packing weights were free;
//   - per model, one markdown row for each of: prefill of a window with logits for every token (as perplexity
//     evaluation runs it), prefill keeping only the last token's logits, and one-token decode after a prompt.
// Decode rows convert tok/s into GB/s of weights read (non-expert weights + n_experts_active experts per MoE
// layer + lm_head + one embedding row, from the loaded dtypes and shapes) and % of the read ceiling; prefill
// rows into GFLOP/s of the linear layers (2 · multiply-adds; attention and delta-rule inner products are not
// counted, so the figure is a lower bound) and % of the micro-kernel ceiling. Every figure is the median of
// --repeats timed runs after --warmup untimed ones; each table names CPU, threads, commit, model, batch and
// context, and each row the 1-minute load average before it ran (the cores may be shared with other work).
// Dimension legend: T window tokens, V vocab, H hidden.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "model/model.h"

namespace hlwq {
namespace {

using Clock = std::chrono::steady_clock;

struct Stats {
  double median = 0, min = 0, max = 0;
};

Stats stats_of(std::vector<double> v) {
  HLWQ_CHECK(!v.empty(), "no timed repeats");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return {med, v.front(), v.back()};
}

// Runs f() warmup times untimed, then repeats times; returns the seconds of each timed run.
template <class F>
std::vector<double> time_runs(int warmup, int repeats, F&& f) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> s;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = Clock::now();
    f();
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return s;
}

using u64x2 = uint64_t __attribute__((vector_size(16)));  // GCC/Clang vector extension: one SSE2 register

// Keeps a computed value alive without printing it (the read loop would otherwise be dead code).
inline void keep(uint64_t v) { asm volatile("" : : "r"(v)); }

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

double load_average_1m() {
  double l = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
  }
  return l;
}

// The checkout's commit at run time (`git describe --always --dirty`), so a stale build directory cannot
// report an old configure-time value.
std::string source_commit() {
  const std::string cmd = fmt::format("git -C '{}' describe --always --dirty 2>/dev/null", HLWQ_SOURCE_DIR);
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[128];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out.empty() ? "unknown" : out;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return buf;
}

// ---- ceilings ----

struct Ceilings {
  Stats copy_1, copy_all;  // GB/s, read + write bytes
  Stats read_1, read_all;  // GB/s
  Stats fma_1, fma_all;    // GFLOP/s of gemm_panel on L1-resident operands
};

// STREAM-like copy and read-only sum over two buffers of `bytes` each (far larger than the last-level cache).
void measure_memory(int64_t bytes, int nth, int warmup, int repeats, Ceilings& c) {
  const int64_t n = bytes / 8;
  std::unique_ptr<uint64_t[]> a(new uint64_t[size_t(n)]), b(new uint64_t[size_t(n)]);  // [n] each
  constexpr int64_t kChunk = int64_t(1) << 17;  // 1 MiB of uint64 per work item
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for num_threads(nth) schedule(static)
  for (int64_t c0 = 0; c0 < n_chunks; ++c0)  // first touch, spread like the timed loops
    for (int64_t i = c0 * kChunk; i < std::min(n, (c0 + 1) * kChunk); ++i) a[size_t(i)] = uint64_t(i), b[size_t(i)] = 0;

  auto copy = [&](int t) {
#pragma omp parallel for num_threads(t) schedule(static)
    for (int64_t c0 = 0; c0 < n_chunks; ++c0) {
      const int64_t i0 = c0 * kChunk, m = std::min(n - i0, kChunk);
      std::memcpy(b.get() + i0, a.get() + i0, size_t(m) * 8);
    }
  };
  auto read = [&](int t) {
    uint64_t total = 0;
#pragma omp parallel for num_threads(t) schedule(static) reduction(+ : total)
    for (int64_t c0 = 0; c0 < n_chunks; ++c0) {
      const uint64_t* p = a.get() + c0 * kChunk;
      const int64_t m = std::min(n - c0 * kChunk, kChunk);
      // 16-byte vector loads (baseline x86-64, no -mavx2 needed) into four independent sums: scalar 8-byte
      // loads top out about 25% below what the memory delivers to one core here.
      u64x2 s0{}, s1{}, s2{}, s3{};
      int64_t i = 0;
      for (; i + 8 <= m; i += 8) {
        u64x2 v0, v1, v2, v3;  // separate values, not an array: GCC would store an array to the stack
        std::memcpy(&v0, p + i, 16), std::memcpy(&v1, p + i + 2, 16);
        std::memcpy(&v2, p + i + 4, 16), std::memcpy(&v3, p + i + 6, 16);
        s0 += v0, s1 += v1, s2 += v2, s3 += v3;
      }
      const u64x2 s = s0 + s1 + s2 + s3;
      total += s[0] + s[1];
      for (; i < m; ++i) total += p[i];
    }
    keep(total);
  };
  auto gbps = [&](std::vector<double> s, double moved) {
    for (double& v : s) v = moved / v / 1e9;
    return stats_of(std::move(s));
  };
  const double nb = double(n) * 8;
  c.copy_1 = gbps(time_runs(warmup, repeats, [&] { copy(1); }), 2 * nb);
  c.copy_all = gbps(time_runs(warmup, repeats, [&] { copy(nth); }), 2 * nb);
  c.read_1 = gbps(time_runs(warmup, repeats, [&] { read(1); }), nb);
  c.read_all = gbps(time_runs(warmup, repeats, [&] { read(nth); }), nb);
}

// The prefill micro-kernel on a [256, 16] panel and 6 tokens that stay in L1, every thread on its own copy.
void measure_fma(const CpuKernels& k, int nth, int warmup, int repeats, Ceilings& c) {
  constexpr int64_t kIn = 256, kCalls = 20000;
  auto run = [&](int t) {
#pragma omp parallel num_threads(t)
    {
      std::vector<float> P(size_t(kIn * kPanelRows), 0.01f), X(size_t(kPanelTokens * kIn), 0.5f);  // [in, 16], [6, in]
      std::vector<float> Y(size_t(kPanelTokens * kPanelRows));                                      // [6, 16]
      for (int64_t i = 0; i < kCalls; ++i) {
        k.gemm_panel(P.data(), X.data(), kIn, kPanelTokens, kIn, Y.data(), kPanelRows, kPanelRows);
        X[0] = Y[0] * 1e-9f;  // a dependency between calls so none can be skipped
      }
    }
  };
  auto gflops = [&](std::vector<double> s, int t) {
    for (double& v : s) v = 2.0 * kPanelTokens * kPanelRows * kIn * kCalls * t / v / 1e9;
    return stats_of(std::move(s));
  };
  c.fma_1 = gflops(time_runs(warmup, repeats, [&] { run(1); }), 1);
  c.fma_all = gflops(time_runs(warmup, repeats, [&] { run(nth); }), nth);
}

// ---- weight traffic of one model ----

struct WeightCost {
  double decode_bytes = 0;  // weight bytes one decode token reads (active experts only, one embedding row)
  double expert_bytes = 0;  // the routed experts' part of decode_bytes
  double all_bytes = 0;     // every linear and vector once (a prefill window touches about all experts)
  double row_bytes = 0;     // one embedding row
  double token_macs = 0;    // multiply-adds of the linears per token, lm_head excluded, active experts only
  double lm_head_macs = 0;  // per token whose logits are computed
  bool int4 = false;        // any linear stored as u4b8_g128
  int hlwq_bits = 0;        // > 0: linears stored as HLWQ codes of that width
};

double linear_bytes(const LinearWeight& w) {
  if (w.format == LinearFormat::hlwq) return double(w.out * (w.hlwq.row_bytes() + w.hlwq.n_blocks() * 2));
  return w.format == LinearFormat::dense ? double(w.weight.nbytes()) : double(w.packed.nbytes() + w.scale.nbytes());
}

WeightCost weight_cost(const Model& m) {
  const ModelConfig& cfg = m.config();
  const ModelWeights& w = m.weights();
  WeightCost c;
  auto lin = [&](const LinearWeight& l, double times_decode, bool expert = false) {
    c.decode_bytes += times_decode * linear_bytes(l);
    if (expert) c.expert_bytes += times_decode * linear_bytes(l);
    c.all_bytes += linear_bytes(l);
    c.token_macs += times_decode * double(l.out) * double(l.in);
    c.int4 = c.int4 || l.format == LinearFormat::u4b8_g128;
    if (l.format == LinearFormat::hlwq) c.hlwq_bits = l.hlwq.bits;
  };
  auto vec = [&](const std::vector<float>& v) {
    c.decode_bytes += double(v.size()) * 4;
    c.all_bytes += double(v.size()) * 4;
  };
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const LayerWeights& lw = w.layers[size_t(l)];
    vec(lw.input_norm);
    vec(lw.post_attention_norm);
    if (cfg.layer_types[size_t(l)] == LayerKind::linear_attention) {
      for (const LinearWeight* x : {&lw.gdn.in_proj_qkv, &lw.gdn.in_proj_z, &lw.gdn.in_proj_b, &lw.gdn.in_proj_a,
                                    &lw.gdn.out_proj})
        lin(*x, 1);
      for (const auto* v : {&lw.gdn.conv1d, &lw.gdn.dt_bias, &lw.gdn.A_log, &lw.gdn.norm}) vec(*v);
    } else {
      for (const LinearWeight* x : {&lw.attn.q_proj, &lw.attn.k_proj, &lw.attn.v_proj, &lw.attn.o_proj}) lin(*x, 1);
      vec(lw.attn.q_norm);
      vec(lw.attn.k_norm);
    }
    const MoeWeights& moe = lw.moe;
    lin(moe.router, 1);
    if (moe.has_shared) {
      for (const LinearWeight* x : {&moe.shared.gate_proj, &moe.shared.up_proj, &moe.shared.down_proj}) lin(*x, 1);
      lin(moe.shared_gate, 1);
    }
    // A token reads n_experts_active experts; all experts of a layer have one shape, so any k of them cost the mean.
    const double share = double(cfg.n_experts_active) / double(moe.experts.size());
    for (const ExpertWeights& e : moe.experts)
      for (const LinearWeight* x : {&e.gate_proj, &e.up_proj, &e.down_proj}) lin(*x, share, true);
  }
  vec(w.final_norm);
  c.decode_bytes += linear_bytes(w.lm_head);
  c.all_bytes += linear_bytes(w.lm_head);
  c.lm_head_macs = double(w.lm_head.out) * double(w.lm_head.in);
  c.row_bytes = double(cfg.hidden_size) * double(dtype_size(w.embed.dtype));
  c.decode_bytes += c.row_bytes;
  return c;
}

// ---- the runs ----

struct Options {
  std::vector<std::string> models;
  int64_t window = 512, prompt = 512, decode_tokens = 32;
  int warmup = 1, repeats = 5, threads = 0;
  int64_t stream_mib = 1024;
  std::string isa = "auto";
  std::string commit;  // empty: git describe of the source directory at run time
};

struct Context {
  std::string cpu, commit;
  int threads = 0;
  Ceilings ceil;
};

void print_row(const Context& cx, const std::string& model, const std::string& weights, const std::string& phase,
               const std::string& context, double load, const Stats& tok_s, double bytes_per_tok,
               double flops_per_tok) {
  const double gbs = bytes_per_tok * tok_s.median / 1e9, gfl = flops_per_tok * tok_s.median / 1e9;
  fmt::print("| {} | {} | {} | 1 | {} | {} | {:.1f} ({:.1f}–{:.1f}) | {:.2f} | {:.2f} | {:.0f}% | {:.1f} | {:.0f}% | {:.2f} |\n",
             model, weights, phase, context, cx.threads, tok_s.median, tok_s.min, tok_s.max, 1e3 / tok_s.median, gbs,
             100 * gbs / cx.ceil.read_all.median, gfl, 100 * gfl / cx.ceil.fma_all.median, load);
  std::fflush(stdout);
}

void bench_one(const Options& o, const Context& cx, const std::string& dir, CpuIsa isa) {
  constexpr int kMaxBatchSeqs = 16;  // aggregate decode at 1, 4 and 16 sequences
  LoadOptions lo;
  lo.isa = isa;
  lo.max_seqs = kMaxBatchSeqs;
  const int64_t total = o.prompt + int64_t(o.warmup + o.repeats) * o.decode_tokens;
  lo.kv_tokens = kMaxBatchSeqs * (std::max(total, o.window) + lo.kv_block_tokens);
  Model m = Model::load(dir, lo);
  const ModelConfig& cfg = m.config();
  const WeightCost wc = weight_cost(m);
  const int64_t V = cfg.vocab_size, T = o.window;
  const std::string name = std::filesystem::path(dir).filename().string();
  const std::string weights = wc.int4        ? "CT INT4 u4b8_g128 (rest bf16)"
                              : wc.hlwq_bits ? fmt::format("HLWQ {}-bit (rest bf16)", wc.hlwq_bits)
                                             : std::string(dtype_name(m.weights().embed.dtype));
  fmt::print("\n**{}** ({}): {} layers, H {}, V {}, {} experts ({} active), kernels {}; one decode token reads "
             "{:.1f} MB of weights ({:.1f} MB lm_head), all weights {:.1f} MB; {:.1f} M linear MACs/token + {:.1f} M "
             "for lm_head\n\n",
             name, dir, cfg.n_layers, cfg.hidden_size, V, cfg.n_experts, cfg.n_experts_active, cpu_kernels(isa).isa,
             wc.decode_bytes / 1e6, linear_bytes(m.weights().lm_head) / 1e6, wc.all_bytes / 1e6, wc.token_macs / 1e6,
             wc.lm_head_macs / 1e6);
  fmt::print("| model | weights | phase | batch | context | threads | tok/s median (min–max) | ms/tok | weight GB/s | "
             "% read ceiling | GFLOP/s | % FMA ceiling | load 1m |\n");
  fmt::print("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");

  std::vector<int32_t> tok(size_t(std::max(T, o.prompt + kMaxBatchSeqs)));  // deterministic ids
  for (size_t i = 0; i < tok.size(); ++i) tok[i] = int32_t((int64_t(i) * 7919 + 13) % V);
  auto rates = [](std::vector<double> s, double n) {
    for (double& v : s) v = n / v;
    return stats_of(std::move(s));
  };

  // Prefill: fresh state per window. A window reads every weight about once (all experts are hit when
  // T · n_experts_active ≫ n_experts), so its bytes per token are all_bytes / T.
  {
    std::vector<float> logits(size_t(T * V));  // [T, V]
    double load = load_average_1m();
    Stats s = rates(time_runs(o.warmup, o.repeats, [&] {
                      Sequence st = m.new_sequence(T);
                      m.forward(tok.data(), T, st, logits.data(), forward_all_logits());
                    }),
                    double(T));
    const double prefill_bytes = (wc.all_bytes + double(T) * wc.row_bytes) / double(T);
    print_row(cx, name, weights, "prefill, all logits", fmt::format("{} (fresh)", T), load, s, prefill_bytes,
              2 * (wc.token_macs + wc.lm_head_macs));
    load = load_average_1m();
    s = rates(time_runs(o.warmup, o.repeats, [&] {
                Sequence st = m.new_sequence(T);
                m.forward(tok.data(), T, st, logits.data());
              }),
              double(T));
    print_row(cx, name, weights, "prefill, last logits", fmt::format("{} (fresh)", T), load, s, prefill_bytes,
              2 * (wc.token_macs + wc.lm_head_macs / double(T)));
  }

  // Decode: B sequences each prefilled with the prompt, then blocks of decode_tokens steps, each step one batch of
  // B one-token inputs (what continuous batching runs). tok/s counts the tokens of all B sequences; B = 1 is plain
  // decode. Weight bytes per token: one step reads the union of the B tokens' experts, at most B × a token's.
  for (int B : {1, 4, kMaxBatchSeqs}) {
    std::vector<Sequence> seqs;
    for (int b = 0; b < B; ++b) {
      seqs.push_back(m.new_sequence(total));
      m.forward(tok.data() + b, o.prompt, seqs.back(), nullptr);
    }
    std::vector<float> logits(size_t(B) * size_t(V));  // [B, V]
    std::vector<int32_t> next_ids(static_cast<size_t>(B));
    std::vector<SeqInput> in(static_cast<size_t>(B));
    const double load = load_average_1m();
    int64_t next = 0;
    const Stats s = rates(time_runs(o.warmup, o.repeats,
                                    [&] {
                                      for (int64_t i = 0; i < o.decode_tokens; ++i, ++next) {
                                        for (int b = 0; b < B; ++b) {
                                          next_ids[size_t(b)] = tok[size_t((next + b) % o.prompt)];
                                          in[size_t(b)] = SeqInput{&seqs[size_t(b)], {&next_ids[size_t(b)], 1}};
                                        }
                                        m.forward_batch(in, logits.data());
                                      }
                                    }),
                          double(o.decode_tokens) * B);
    // weight bytes per token: one step reads the dense part once and the union of its B tokens' experts, whose
    // expected size under uniform routing is E·(1 − (1 − k/E)^B) experts per layer
    const double E = double(cfg.n_experts), k = double(cfg.n_experts_active);
    const double union_experts = E * (1 - std::pow(1 - k / E, double(B)));
    const double step_bytes = (wc.decode_bytes - wc.expert_bytes) + wc.expert_bytes * union_experts / k;
    print_row(cx, name, weights, B == 1 ? std::string("decode") : fmt::format("decode, {} sequences", B),
              fmt::format("{}→{}", o.prompt, total), load, s, step_bytes / B, 2 * (wc.token_macs + wc.lm_head_macs));
  }
}

int run(int argc, char** argv) {
  CLI::App app{"CPU prefill/decode throughput of hlwq's forward against measured memory and FMA ceilings"};
  Options o;
  app.add_option("MODEL", o.models, "model directories (bf16 or compressed-tensors INT4)")->required();
  app.add_option("--window", o.window, "prefill window in tokens (fresh state each)")->capture_default_str();
  app.add_option("--prompt", o.prompt, "prompt tokens before decoding")->capture_default_str();
  app.add_option("--decode-tokens", o.decode_tokens, "one-token steps per timed decode run")->capture_default_str();
  app.add_option("--warmup", o.warmup, "untimed runs before each measurement")->capture_default_str();
  app.add_option("--repeats", o.repeats, "timed runs per measurement (median reported)")->capture_default_str();
  app.add_option("--threads", o.threads, "OpenMP threads (default: all)")->check(CLI::NonNegativeNumber);
  app.add_option("--stream-mib", o.stream_mib, "size of each memory-ceiling buffer in MiB")->capture_default_str();
  app.add_option("--isa", o.isa, "kernel set")->check(CLI::IsMember({"auto", "scalar", "avx2"}))->capture_default_str();
  app.add_option("--commit", o.commit, "commit to report (default: `git describe --always --dirty` of the sources)");
  CLI11_PARSE(app, argc, argv);
  HLWQ_CHECK(o.window > 0 && o.prompt > 0 && o.decode_tokens > 0 && o.repeats > 0 && o.warmup >= 0,
             "window, prompt, decode-tokens and repeats must be positive (got {}, {}, {}, {})", o.window, o.prompt,
             o.decode_tokens, o.repeats);
  if (o.threads > 0) omp_set_num_threads(o.threads);
  const CpuIsa isa = o.isa == "scalar" ? CpuIsa::scalar : o.isa == "avx2" ? CpuIsa::avx2 : CpuIsa::auto_detect;

  Context cx;
  cx.cpu = cpu_model_name();
  cx.commit = o.commit.empty() ? source_commit() : o.commit;
  cx.threads = omp_get_max_threads();
  const CpuKernels& k = cpu_kernels(isa);
  fmt::print("## hlwq_bench_model\n\nCPU: {} ({} logical CPUs online, {} OpenMP threads), kernels {}; commit {}; {}; "
             "load average 1m {:.2f} at start\n\n",
             cx.cpu, std::thread::hardware_concurrency(), cx.threads, k.isa, cx.commit, utc_now(), load_average_1m());
  measure_memory(o.stream_mib << 20, cx.threads, 1, o.repeats, cx.ceil);
  measure_fma(k, cx.threads, 1, o.repeats, cx.ceil);
  const Ceilings& c = cx.ceil;
  fmt::print("| ceiling ({} MiB buffers; median (min–max) of {}) | 1 thread | {} threads |\n|---|---|---|\n",
             o.stream_mib, o.repeats, cx.threads);
  auto cell = [](const Stats& s) { return fmt::format("{:.1f} ({:.1f}–{:.1f})", s.median, s.min, s.max); };
  fmt::print("| copy GB/s (read + write, memcpy) | {} | {} |\n", cell(c.copy_1), cell(c.copy_all));
  fmt::print("| read GB/s (sum of uint64, 16-byte loads) | {} | {} |\n", cell(c.read_1), cell(c.read_all));
  fmt::print("| FMA GFLOP/s (gemm_panel, L1-resident) | {} | {} |\n", cell(c.fma_1), cell(c.fma_all));
  std::fflush(stdout);

  for (const std::string& dir : o.models) bench_one(o, cx, dir, isa);
  fmt::print("\nload average 1m {:.2f} at end\n", load_average_1m());
  return 0;
}

}  // namespace
}  // namespace hlwq

int main(int argc, char** argv) {
  try {
    return hlwq::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hlwq_bench_model: error: %s\n", e.what());
    return 1;
  }
}
