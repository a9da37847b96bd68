#include "quant/quantize_model.h"

#include <chrono>
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <map>
#include <optional>

#include "core/error.h"
#include "core/parallel_errors.h"
#include "core/progress.h"
#include "core/thread_count.h"
#include "io/checkpoint_writer.h"
#include "io/compressed_tensors.h"
#include "io/read_file.h"
#include "quant/finite_check.h"
#include "io/hlwq_format.h"
#include "io/seed_q5.h"
#include "quant/gptq.h"
#include "quant/hlwq_export.h"
#include "quant/hlwq_quant.h"
#include "quant/int4_pack.h"
#include "quant/lloyd_max.h"
#include "quant/model_source.h"

namespace hlwq {
namespace fs = std::filesystem;

QuantFormat parse_quant_format(std::string_view name) {
  if (name == "ct-int4") return QuantFormat::ct_int4;
  if (name == "hlwq") return QuantFormat::hlwq;
  if (name == "hlwq-q5") return QuantFormat::hlwq_q5;
  fail("unknown format '{}' (valid: ct-int4, hlwq, hlwq-q5)", name);
}

std::string_view quant_format_name(QuantFormat f) {
  switch (f) {
    case QuantFormat::ct_int4: return "ct-int4";
    case QuantFormat::hlwq: return "hlwq";
    case QuantFormat::hlwq_q5: return "hlwq-q5";
  }
  return "?";
}

namespace {

// Items this large are quantized one at a time with all threads on their rows; smaller ones run many at once
// with one thread each (a 35B MoE has ~30k small expert matrices).
constexpr int64_t kBigItemElems = int64_t(8) << 20;

// Files copied verbatim when present: tokenizer, chat template, generation and preprocessing settings.
constexpr const char* kSideFiles[] = {"generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                      "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
                                      "vocab.json", "merges.txt", "preprocessor_config.json",
                                      "video_preprocessor_config.json", "added_tokens.json"};

uint64_t peak_rss() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return uint64_t(ru.ru_maxrss) * 1024;
}

// The quantization_config of a native HLWQ output: --bits with the converged Lloyd-Max table, and one override per
// --bits-for (REGEX, B) with B's table. Checks each B and REGEX, and that every REGEX matches a quantized module.
HlwqFormat hlwq_output_format(const QuantizeOptions& opt, const CtPlan& plan) {
  HlwqFormat f;
  f.bits = opt.hlwq_bits;
  f.scale_rule = opt.hlwq_scale == HlwqScale::l2_norm ? "l2-norm" : "least-squares";
  f.codebook_name = "lloyd-max-gaussian";
  f.codebook = lloyd_max_table(opt.hlwq_bits);
  for (const auto& [re, bits] : opt.hlwq_bits_for) {
    HLWQ_CHECK(bits >= kHlwqMinBits && bits <= kHlwqMaxBits, "--bits-for {}={}: bits must be in [{}, {}]", re, bits,
               kHlwqMinBits, kHlwqMaxBits);
    HlwqOverride o;
    o.targets = {"re:" + re};
    o.bits = bits;
    o.codebook = lloyd_max_table(bits);
    int64_t n = 0;
    try {
      for (const auto& it : plan.items) n += it.action == PlanAction::quantize && hlwq_target_matches(o.targets[0], it.out_name);
    } catch (const Error& e) {
      fail("--bits-for {}={}: {}", re, bits, e.what());
    }
    HLWQ_CHECK(n > 0, "--bits-for {}={}: the regular expression matches no quantized module of {} (it is matched "
               "from the start of names like model.layers.0.linear_attn.in_proj_qkv)", re, bits, opt.src);
    f.overrides.push_back(std::move(o));
  }
  return f;
}

struct Calibrated {  // how a quantize item was calibrated
  const LinearInputStats* st = nullptr;  // its statistics, if the engine ran it
  bool gptq = false, fallback = false;
};

struct Executor {
  const QuantizeOptions& opt;
  const ModelSource& src;
  const HlwqFormat* hf;  // native HLWQ outputs: which width each module gets
  const std::map<int, HlwqCodebook>* cbs;  // HLWQ outputs: the codebook of each width in use
  CheckpointWriter& writer;
  QuantizeReport& report;
  std::mutex mu;
  Progress* progress = nullptr;  // the current phase's

  // The current calibration pass's statistics (null outside passes), and the GPTQ factor of each input, made
  // once by whichever item needs it first (an expert's gate and up share one).
  const LinearStatsMap* stats = nullptr;
  struct FactorSlot {
    std::once_flag once;
    GptqFactor f;
  };
  std::map<const LinearInputStats*, std::shared_ptr<FactorSlot>> factors;  // guarded by mu

  Calibrated calibration_of(const PlanItem& it, int64_t in) const {
    Calibrated c;
    if (!stats) return c;
    const auto f = stats->find(it.out_name);
    if (f != stats->end() && f->second->in == in) c.st = f->second.get();
    c.gptq = c.st && c.st->n_tokens >= opt.calib_min_tokens;
    c.fallback = !c.gptq;
    return c;
  }

  const GptqFactor& factor_for(const LinearInputStats& st) {
    std::shared_ptr<FactorSlot> slot;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto& s = factors[&st];
      if (!s) s = std::make_shared<FactorSlot>();
      slot = s;
    }
    std::call_once(slot->once, [&] {
      if (opt.format == QuantFormat::hlwq) {
        const std::vector<double> hr = hlwq_rotate_hessian(st.H.data(), st.in);
        slot->f = gptq_factor(hr.data(), (st.in + kHlwqBlock - 1) / kHlwqBlock * kHlwqBlock, opt.gptq);
      } else {
        slot->f = gptq_factor(st.H.data(), st.in, opt.gptq);
      }
    });
    return slot->f;
  }

  void account(const PlanItem& it, uint64_t bytes_out, int n_out, const WeightError& err, const Calibrated& cal = {},
               const WeightError& out_err = {}) {
    std::lock_guard<std::mutex> lock(mu);
    RoleStats& rs = report.roles[it.role];
    RoleStats& as = it.action == PlanAction::quantize ? report.quantized : report.kept;
    for (RoleStats* s : {&rs, &as}) {
      s->n_in += 1;
      s->n_out += n_out;
      s->bytes_in += it.src_bytes;
      s->bytes_out += bytes_out;
      s->error += err;
      s->n_gptq += cal.gptq;
      s->n_fallback += cal.fallback;
      s->out_error += out_err;
    }
    report.error += err;
  }

  // threads: how many threads work inside this item (its wall time times that is the work the ETA learns from).
  void run(const PlanItem& it, int threads) {
    const auto t0 = std::chrono::steady_clock::now();
    if (it.action == PlanAction::copy) {
      src.copy(it, writer);
      account(it, it.src_bytes, 1, {});
    } else {
      const int64_t out = it.out_shape[0], in = it.out_shape[1];
      std::vector<float> w(size_t(out * in));  // [out, in]
      src.read_f32(it, w.data());
      const Calibrated cal = calibration_of(it, in);
      if (opt.format == QuantFormat::ct_int4) {
        Int4Result q;
        WeightError out_err;
        try {
          q = cal.gptq ? gptq_int4(w.data(), out, in, factor_for(*cal.st), opt.gptq)
                       : quantize_int4(opt.method, w.data(), out, in);
          if (cal.st || (stats && opt.calib_sequential)) {
            std::vector<float> deq(w.size());
            int4_dequant(q.packed.data(), q.scale.data(), out, in, deq.data());
            if (cal.st) out_err = output_error(w.data(), deq.data(), out, in, cal.st->H.data());
            if (stats && opt.calib_sequential) opt.calib->substitute(it.out_name, deq.data(), out, in);
          }
        } catch (const Error& e) {  // e.g. a non-finite weight: say which tensor of which file
          fail("{}: tensor {}: {}", src.file_of(it.src_name), it.src_name, e.what());
        }
        const int64_t shape[2] = {out, in};
        writer.write(ct_packed_name(it.out_name), q.packed.data(), q.packed.size() * 4);
        writer.write(ct_scale_name(it.out_name), q.scale.data(), q.scale.size() * 2);
        writer.write(ct_shape_name(it.out_name), shape, sizeof shape);
        account(it, q.packed.size() * 4 + q.scale.size() * 2 + sizeof shape, 3, q.error, cal, out_err);
      } else {
        run_hlwq(it, w.data(), out, in, cal);
      }
      src.release(it);
    }
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const bool copy = it.action == PlanAction::copy;  // one thread copies, even among the big items
    progress->add(1, int64_t(it.src_bytes), copy ? 0 : 1, wall * (copy ? 1 : threads));
  }

  void run_hlwq(const PlanItem& it, const float* w, int64_t out, int64_t in, const Calibrated& cal) {
    const bool q5 = opt.format == QuantFormat::hlwq_q5;
    const HlwqBitOrder order = q5 ? HlwqBitOrder::msb_first : HlwqBitOrder::lsb_first;
    const int bits = q5 ? kSeedQ5Bits : hlwq_resolve(*hf, it.out_name).bits;
    const HlwqCodebook& cb = cbs->at(bits);
    HlwqPacked q;
    WeightError out_err;
    try {
      q = cal.gptq ? gptq_hlwq(w, out, in, factor_for(*cal.st), opt.gptq, cb, bits, opt.hlwq_scale)
                   : hlwq_quantize_matrix(w, out, in, cb, bits, order, q5 ? HlwqScale::l2_norm : opt.hlwq_scale);
      if (cal.st || (stats && opt.calib_sequential)) {
        std::vector<float> deq(size_t(out * in));
        hlwq_dequantize_packed(q, cb, order, deq.data());
        if (cal.st) out_err = output_error(w, deq.data(), out, in, cal.st->H.data());
        if (stats && opt.calib_sequential) opt.calib->substitute(it.out_name, deq.data(), out, in);
      }
    } catch (const Error& e) {
      fail("{}: tensor {}: {}", src.file_of(it.src_name), it.src_name, e.what());
    }
    const uint64_t bytes = q5 ? write_seed_q5_item(writer, it.out_name, q) : write_hlwq_item(writer, it.out_name, q);
    {
      std::lock_guard<std::mutex> lock(mu);
      report.hlwq_weights += out * in;
      report.hlwq_code_bytes += q.codes.size() + q.norms.size() * 2;
    }
    account(it, bytes, 3, q.error, cal, out_err);
  }
};

// Runs items: big ones one at a time with all threads inside, small ones many at once (one thread each).
void run_items(Executor& ex, const std::vector<const PlanItem*>& items, const std::string& label) {
  std::vector<const PlanItem*> big, small;
  uint64_t work_bytes = 0, copy_bytes = 0;
  for (const PlanItem* it : items) {
    work_bytes += it->src_bytes;
    if (it->action == PlanAction::copy) copy_bytes += it->src_bytes;
    (shape_numel(it->out_shape) >= kBigItemElems ? big : small).push_back(it);
  }
  if (items.empty()) return;
  const int threads = ex.report.threads;
  Progress progress(label, "tensors", int64_t(items.size()), int64_t(work_bytes), ex.opt.progress ? stderr : nullptr);
  // Copying and quantizing a byte differ ~100x in cost: the ETA measures each kind on its own.
  progress.expect_kind(0, int64_t(copy_bytes), threads);
  progress.expect_kind(1, int64_t(work_bytes - copy_bytes), threads);
  ex.progress = &progress;
  // all threads inside each item (quantize_int4 parallelizes rows)
  for (const PlanItem* it : big) ex.run(*it, threads);
  // After the first failure ParallelErrors skips the remaining items: the output is discarded anyway.
  ParallelErrors errs;
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t i = 0; i < small.size(); ++i) errs.run([&] { ex.run(*small[i], 1); });
  errs.rethrow();
  progress.finish();
  ex.progress = nullptr;
}

// "model.layers.12.mlp.experts.3.gate_proj" → 12; −1 for a name outside the layers.
int64_t layer_of(const std::string& name) {
  const size_t p = name.find("layers.");
  if (p == std::string::npos || (p > 0 && name[p - 1] != '.')) return -1;
  size_t i = p + 7, j = i;
  while (j < name.size() && name[j] >= '0' && name[j] <= '9') ++j;
  if (j == i || j >= name.size() || name[j] != '.') return -1;
  return std::stoll(name.substr(i, j - i));
}

// Consecutive layers whose statistics (8·in² per distinct input) and GPTQ factors (4·n², n = in padded for HLWQ)
// fit opt.calib_max_bytes together; a layer alone may exceed it (it is the unit of a pass).
std::vector<std::vector<int64_t>> layer_groups(const std::map<int64_t, std::vector<const PlanItem*>>& by_layer,
                                               const QuantizeOptions& opt) {
  std::vector<std::vector<int64_t>> groups;
  uint64_t held = 0;
  for (const auto& [layer, items] : by_layer) {
    std::map<std::string, int64_t> inputs;  // distinct input → in
    for (const PlanItem* it : items) inputs[linear_input_key(it->out_name)] = it->out_shape[1];
    uint64_t bytes = 0;
    for (const auto& [key, in] : inputs) {
      const uint64_t n = opt.format == QuantFormat::hlwq ? uint64_t((in + kHlwqBlock - 1) / kHlwqBlock * kHlwqBlock)
                                                         : uint64_t(in);
      bytes += uint64_t(in) * uint64_t(in) * 8 + n * n * 4;
    }
    if (groups.empty() || held + bytes > opt.calib_max_bytes || opt.calib_sequential) {
      groups.emplace_back();
      held = 0;
    }
    groups.back().push_back(layer);
    held += bytes;
  }
  return groups;
}

}  // namespace

QuantizeReport quantize_model(const QuantizeOptions& opt) {
  const auto t_start = std::chrono::steady_clock::now();
  QuantizeReport report;
  const ModelSource source(opt.src);
  const ModelConfig& cfg = source.config();
  report.from_seed_q5 = source.is_seed_q5();
  if (source.is_seed_q5())
    HLWQ_CHECK(opt.format == QuantFormat::ct_int4 && opt.method != Int4Method::hlwq_cascade &&
                   opt.method != Int4Method::hlwq_cascade_lm5,
               "{}: a seed hlwq-q5 checkpoint converts to --format ct-int4 with --method rtn, rtn-ct or mse (its "
               "codes are decoded to bf16 first, as the seed does; quantizing them again to {} would quantize twice)",
               opt.src, opt.format == QuantFormat::ct_int4 ? int4_method_name(opt.method) : quant_format_name(opt.format));
  HLWQ_CHECK(!opt.calib || (!source.is_seed_q5() && opt.format != QuantFormat::hlwq_q5),
             "{}: calibrated quantization starts from a bf16 checkpoint and writes ct-int4 or hlwq", opt.src);
  if (opt.format == QuantFormat::hlwq)
    HLWQ_CHECK(opt.hlwq_bits >= kHlwqMinBits && opt.hlwq_bits <= kHlwqMaxBits, "--bits {} must be in [{}, {}]",
               opt.hlwq_bits, kHlwqMinBits, kHlwqMaxBits);
  if (!source.is_seed_q5()) {
    HLWQ_CHECK(!cfg.quant.has_value(), "{}: the source is already quantized ({}); quantize a bf16 checkpoint",
               source.dir(), cfg.quant ? cfg.quant->quant_method : "");
    check_complete(cfg, source.checkpoint());
  }
  const CtPlan plan = plan_ct_int4(cfg, source.inputs(), source.dir(), opt.plan);
  report.n_dropped_visual = plan.n_dropped_visual;
  report.n_dropped_mtp = plan.n_dropped_mtp;
  report.n_ignored = plan.n_ignored;
  // Side files are checked now, before anything is written: only regular files are copied (a FIFO would block).
  std::vector<std::string> side_files;
  for (const char* f : kSideFiles)
    if (regular_file_exists(fs::path(opt.src) / f)) side_files.push_back(f);

  // The source is protected: with --force, DST being SRC (or a parent of it) would delete the input.
  StagedDir stage(opt.dst, opt.force, {fs::path(opt.src)});
  HLWQ_CHECK(opt.plan.ignore.empty() || opt.format != QuantFormat::hlwq_q5,
             "--ignore applies to --format ct-int4 and hlwq (the seed's hlwq-q5 layout has no ignore list)");
  HLWQ_CHECK(opt.hlwq_bits_for.empty() || opt.format == QuantFormat::hlwq,
             "--bits-for needs --format hlwq (got --format {})", quant_format_name(opt.format));
  const HlwqFormat hf = opt.format == QuantFormat::hlwq ? hlwq_output_format(opt, plan) : HlwqFormat{};
  const std::vector<TensorSpec> specs = opt.format == QuantFormat::hlwq    ? hlwq_output_specs(plan, hf)
                                        : opt.format == QuantFormat::hlwq_q5 ? seed_q5_output_specs(plan)
                                                                             : ct_output_specs(plan);
  CheckpointWriter writer(stage.path(), specs, opt.max_shard_bytes);

  // Calibrated runs take the quantized linears of the model's layers out of the first phase: they are quantized
  // layer group by layer group, each after a calibration pass for its linears.
  const bool calibrated = opt.calib != nullptr;
  std::map<int64_t, std::vector<const PlanItem*>> by_layer;
  std::vector<const PlanItem*> items;
  for (const auto& it : plan.items) {
    if (it.action == PlanAction::drop) {
      RoleStats& d = report.dropped;
      d.n_in++;
      d.bytes_in += it.src_bytes;
      report.bytes_in += it.src_bytes;
      continue;
    }
    const int64_t layer = it.action == PlanAction::quantize ? layer_of(it.out_name) : -1;
    if (calibrated && layer >= 0) by_layer[layer].push_back(&it);
    else items.push_back(&it);
  }
  report.threads = opt.threads > 0 ? cap_thread_count(opt.threads, stderr) : omp_get_num_procs();
  omp_set_num_threads(report.threads);
  std::map<int, HlwqCodebook> cbs;
  if (opt.format == QuantFormat::hlwq_q5) cbs.emplace(kSeedQ5Bits, HlwqCodebook(seed_q5_table()));
  if (opt.format == QuantFormat::hlwq) {
    cbs.emplace(hf.bits, HlwqCodebook(hf.codebook));
    for (const HlwqOverride& o : hf.overrides) cbs.emplace(o.bits, HlwqCodebook(o.codebook));
  }
  Executor ex{opt, source, &hf, &cbs, writer, report, {}, nullptr, nullptr, {}};
  run_items(ex, items, "quantize");
  for (const auto& group : layer_groups(by_layer, opt)) {
    std::vector<const PlanItem*> todo;
    std::vector<std::string> names;
    for (const int64_t l : group)
      for (const PlanItem* it : by_layer.at(l)) {
        todo.push_back(it);
        names.push_back(it->out_name);
      }
    const LinearStatsMap stats = opt.calib->collect(names);
    ex.stats = &stats;
    run_items(ex, todo,
              group.size() == 1 ? fmt::format("quantize layer {}", group.front())
                                : fmt::format("quantize layers {}-{}", group.front(), group.back()));
    ex.stats = nullptr;
    ex.factors.clear();
  }

  writer.finish();
  report.n_shards = int(writer.n_shards());
  // config.json: the source config plus the quantization_config block vLLM (or hlwq's reader) reads; the seed's
  // layout keeps the plain config and says what it is in polar_config.json.
  nlohmann::json config = cfg.raw;
  nlohmann::json qc = ct_quantization_config(plan.extra_ignore, opt.plan.quantize_lm_head, plan.extra_ignore_patterns);
  if (opt.format == QuantFormat::hlwq) {
    HlwqFormat f = hf;
    f.ignore = qc["ignore"].get<std::vector<std::string>>();
    qc = hlwq_quantization_config(f);
  }
  if (opt.format == QuantFormat::hlwq_q5) {
    config.erase("quantization_config");
    write_file(stage.path() / kSeedQ5ConfigFile,
               nlohmann::json({{"format", kSeedQ5Format}, {"bits", kSeedQ5Bits}, {"block_size", kHlwqBlock}}).dump(2) +
                   "\n");
  } else {
    config["quantization_config"] = qc;
  }
  write_file(stage.path() / "config.json", config.dump(2) + "\n");
  for (const std::string& f : side_files) {
    const fs::path p = fs::path(opt.src) / f;
    std::error_code ec;
    fs::copy_file(p, stage.path() / f, ec);
    HLWQ_CHECK(!ec, "{}: cannot copy to {}: {}", p.string(), stage.path().string(), ec.message());
  }
  stage.commit();

  report.bytes_in += report.quantized.bytes_in + report.kept.bytes_in;
  report.bytes_out = report.quantized.bytes_out + report.kept.bytes_out;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  report.calibrated = calibrated;
  if (calibrated) report.calib = opt.calib->summary();
  report.quantize_seconds = report.seconds - report.calib.seconds;
  report.peak_rss_bytes = peak_rss();
  return report;
}

namespace {

// The calibrated run's part of the summary: the calibration, GPTQ's settings, and per kind how many linears GPTQ
// quantized, how many fell back, and the output error Σ ΔwᵀHΔw / Σ wᵀHw of those with statistics.
std::string format_calibration(const QuantizeReport& r, const QuantizeOptions& opt) {
  const CalibrationSummary& c = r.calib;
  std::string s = fmt::format(
      "calibration: {} tokens ({} windows of {}) of {} on {}, {} pass{}, {} (quantization {}), statistics held at "
      "most {}\n",
      c.tokens, c.windows, c.ctx, c.text, c.engine, c.passes, c.passes == 1 ? "" : "es", format_duration(c.seconds),
      format_duration(r.quantize_seconds), format_bytes(double(c.peak_stats_bytes)));
  s += fmt::format("GPTQ{}: damp {}, act-order {}, group scales {} the feedback ({}{}); fallback below {} tokens: {}\n",
                   opt.calib_sequential ? " (sequential)" : "", opt.gptq.damp, opt.gptq.act_order ? "on" : "off",
                   opt.gptq.act_order || opt.gptq.scales == GptqScales::before ? "before" : "during",
                   opt.gptq.weighted_scales ? "importance-weighted" : "unweighted",
                   opt.gptq.refit ? fmt::format(", re-fit {} round{}", opt.gptq.refit, opt.gptq.refit == 1 ? "" : "s")
                                  : std::string(),
                   opt.calib_min_tokens,
                   opt.format == QuantFormat::ct_int4 ? fmt::format("ct-int4 {}", int4_method_name(opt.method))
                                                      : std::string("the HLWQ codec"));
  s += fmt::format("{:<26} {:>8} {:>9} {:>14}\n", "calibrated kind", "gptq", "fallback", "rel. out err");
  auto row = [&](std::string_view name, const RoleStats& st) {
    s += fmt::format("{:<26} {:>8} {:>9} {:>14}\n", name, st.n_gptq, st.n_fallback,
                     st.out_error.sq_ref > 0 ? fmt::format("{:.6f}", st.out_error.rel()) : std::string("-"));
  };
  for (const auto& [role, st] : r.roles)
    if (st.n_gptq + st.n_fallback > 0) row(tensor_role_name(role), st);
  row("all", r.quantized);
  return s;
}

}  // namespace

std::string format_quantize_report(const QuantizeReport& r, const QuantizeOptions& opt) {
  const std::string what =
      opt.format == QuantFormat::ct_int4 ? fmt::format("ct-int4, method {}", int4_method_name(opt.method))
      : opt.format == QuantFormat::hlwq
          ? fmt::format("hlwq, {} bits{}, {} scale", opt.hlwq_bits,
                        opt.hlwq_bits_for.empty() ? std::string()
                                                  : fmt::format(" ({} override{})", opt.hlwq_bits_for.size(),
                                                                opt.hlwq_bits_for.size() == 1 ? "" : "s"),
                        opt.hlwq_scale == HlwqScale::l2_norm ? "l2-norm" : "least-squares")
          : std::string("hlwq-q5, the seed's layout and table");
  std::string s = fmt::format("quantized {} -> {} ({}, {} thread{}, {} shard{})\n", opt.src, opt.dst, what,
                              r.threads, r.threads == 1 ? "" : "s", r.n_shards, r.n_shards == 1 ? "" : "s");
  if (r.from_seed_q5) s += "source: the seed's hlwq-q5 codes, decoded to bf16; rel. MSE is against that decode\n";
  s += fmt::format("{:<26} {:>8} {:>8} {:>12} {:>12} {:>7} {:>12}\n", "kind", "in", "out", "bytes in",
                   "bytes out", "ratio", "rel. MSE");
  auto row = [&](std::string_view name, const RoleStats& st, bool has_err) {
    s += fmt::format("{:<26} {:>8} {:>8} {:>12} {:>12} {:>6.2f}x {:>12}\n", name, st.n_in, st.n_out,
                     format_bytes(double(st.bytes_in)), format_bytes(double(st.bytes_out)),
                     st.bytes_out ? double(st.bytes_in) / double(st.bytes_out) : 0.0,
                     has_err ? fmt::format("{:.6f}", st.error.rel()) : std::string("-"));
  };
  for (const auto& [role, st] : r.roles) row(tensor_role_name(role), st, st.error.sq_ref > 0);
  row(opt.format == QuantFormat::ct_int4 ? "= quantized to int4"
      : opt.format == QuantFormat::hlwq   ? fmt::format("= quantized to hlwq-{}", opt.hlwq_bits)
                                          : std::string("= quantized to hlwq-q5"),
      r.quantized, true);
  row("= kept as stored", r.kept, false);
  if (r.dropped.n_in) row("= dropped", r.dropped, false);
  RoleStats total = r.quantized;
  total.n_in += r.kept.n_in + r.dropped.n_in;
  total.n_out += r.kept.n_out;
  total.bytes_in = r.bytes_in;
  total.bytes_out = r.bytes_out;
  row("total", total, true);
  if (r.hlwq_weights > 0)
    s += fmt::format("bits/weight of the quantized linears: {:.4f} (codes and block norms, {} weights)\n",
                     8.0 * double(r.hlwq_code_bytes) / double(r.hlwq_weights), r.hlwq_weights);
  if (r.n_ignored)
    s += fmt::format("--ignore kept {} Linear{} in the source dtype (listed in quantization_config.ignore)\n",
                     r.n_ignored, r.n_ignored == 1 ? "" : "s");
  if (r.n_dropped_visual || r.n_dropped_mtp)
    s += fmt::format("--language-model-only dropped {} visual and {} mtp tensors\n", r.n_dropped_visual,
                     r.n_dropped_mtp);
  s += fmt::format("time {} ({:.2f} GB/s of input), peak RSS {}\n", format_duration(r.seconds),
                   r.seconds > 0 ? double(r.bytes_in) / r.seconds / 1e9 : 0.0,
                   format_bytes(double(r.peak_rss_bytes)));
  if (r.calibrated) s += format_calibration(r, opt);
  return s;
}

}  // namespace hlwq
