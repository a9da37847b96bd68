// EngineCalibration (engine_calibration.h).
#define EIGEN_DONT_PARALLELIZE  // the accumulation runs under a lock per input; results independent of threads
#include "calib/engine_calibration.h"

#include <Eigen/Core>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "core/progress.h"
#include "model/model.h"
#include "runtime/evaluate.h"
#include "runtime/tokenizer.h"

namespace hlwq {

namespace {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Accumulator {
  std::mutex mu;
  std::shared_ptr<LinearInputStats> stats;
};

}  // namespace

struct EngineCalibration::Impl {
  CalibOptions opt;
  std::vector<int32_t> ids;  // [windows · ctx]
  int64_t windows = 0;
  Model model;
  CalibrationSummary sum;
  std::mutex sub_mu;
  std::unordered_map<std::string, LinearWeight*> linears;   // every linear of the model's layers, by name
  std::unordered_map<std::string, std::vector<float>> subs;  // substituted weights [out, in]

  Impl(const CalibOptions& o, std::vector<int32_t> tok_ids, Model m)
      : opt(o), ids(std::move(tok_ids)), model(std::move(m)) {}
  void run_windows();  // the calibration windows through the model, each a fresh sequence
  // The backend sums on its own device (Backend::begin_input_stats): one pass per part of the keys it holds.
  LinearStatsMap collect_on_backend(const std::vector<std::string>& linears);
};

namespace {

LoadOptions calib_load_options(const CalibOptions& opt) {
  LoadOptions lo;
  lo.device = opt.device;
  lo.max_seqs = 1;
  lo.kv_tokens = opt.ctx;
  // CPU: the reference configuration (docs/numerics.md); CUDA keeps its KV cache in bf16
  lo.kv_dtype = opt.device == Device::cpu ? KvDtype::f32 : KvDtype::bf16;
  lo.gpu_memory = opt.gpu_memory;
  lo.cuda_graphs = false;  // windows are prefills
  return lo;
}

std::vector<int32_t> calib_tokens(const CalibOptions& opt) {
  const auto tok_path = std::filesystem::path(opt.model_dir) / "tokenizer.json";
  HLWQ_CHECK(std::filesystem::exists(tok_path), "{}: missing tokenizer.json (needed to tokenize --calib)",
             opt.model_dir);
  HLWQ_CHECK(opt.ctx > 0 && opt.tokens > 0, "--calib-ctx {} and --calib-tokens {} must be positive", opt.ctx,
             opt.tokens);
  const std::vector<int32_t> all = tokenize_corpus(Tokenizer::from_file(tok_path), opt.text);
  const int64_t avail = int64_t(all.size()) / opt.ctx;  // whole windows in the text
  const int64_t windows = std::min(avail, opt.tokens / opt.ctx);
  HLWQ_CHECK(windows > 0, "--calib {}: {} tokens (of at most --calib-tokens {}) do not fill one window of "
             "--calib-ctx {}", opt.text_name, all.size(), opt.tokens, opt.ctx);
  // Windows spread evenly over the text: a text that is several corpora back to back (train.txt: documentation,
  // then Wikipedia) is sampled from all of them, not only from its beginning.
  std::vector<int32_t> ids;
  ids.reserve(size_t(windows * opt.ctx));
  for (int64_t w = 0; w < windows; ++w) {
    const auto at = all.begin() + (w * avail / windows) * opt.ctx;
    ids.insert(ids.end(), at, at + opt.ctx);
  }
  return ids;
}

}  // namespace

EngineCalibration::EngineCalibration(const CalibOptions& opt) {
  std::vector<int32_t> ids = calib_tokens(opt);
  HLWQ_CHECK(opt.gpu_memory >= 0, "--calib-gpu-memory must not be negative");
  auto load = [&] {
    try {
      return Model::load(opt.model_dir, calib_load_options(opt));
    } catch (const Error& e) {
      if (opt.device != Device::cuda) throw;
      fail("{}\n(the calibration statistics were to be collected on the GPU: --calib-device cpu collects them on the "
           "CPU engine, --calib-gpu-memory SIZE keeps the routed experts in host memory)", e.what());
    }
  };
  impl_ = std::make_unique<Impl>(opt, std::move(ids), load());
  impl_->windows = int64_t(impl_->ids.size()) / opt.ctx;
  impl_->sum.text = opt.text_name;
  impl_->sum.engine = impl_->model.backend().name();
  impl_->sum.tokens = int64_t(impl_->ids.size());
  impl_->sum.windows = impl_->windows;
  impl_->sum.ctx = opt.ctx;
}

EngineCalibration::~EngineCalibration() = default;

void EngineCalibration::substitute(const std::string& linear, const float* w, int64_t out, int64_t in) {
  Impl& m = *impl_;
  HLWQ_CHECK(dynamic_cast<CpuBackend*>(&m.model.backend()) != nullptr, "sequential calibration substitutes the "
             "quantized weights into the CPU engine, but the model runs on {} (use --calib-device cpu)",
             m.model.backend().name());
  std::lock_guard<std::mutex> lock(m.sub_mu);
  if (m.linears.empty()) {
    // The model owns its weights (not const); the CPU backend and its expert provider read these views at every
    // forward, so repointing one changes what the next pass computes.
    ModelWeights& mw = const_cast<ModelWeights&>(m.model.weights());
    auto add = [&](LinearWeight& lw) { m.linears[lw.name] = &lw; };
    for (LayerWeights& l : mw.layers) {
      for (LinearWeight* lw : {&l.gdn.in_proj_qkv, &l.gdn.in_proj_z, &l.gdn.in_proj_b, &l.gdn.in_proj_a,
                               &l.gdn.out_proj, &l.attn.q_proj, &l.attn.k_proj, &l.attn.v_proj, &l.attn.o_proj})
        if (!lw->name.empty()) add(*lw);
      for (ExpertWeights* e : {&l.moe.shared}) {
        if (!l.moe.has_shared) break;
        add(e->gate_proj), add(e->up_proj), add(e->down_proj);
      }
      for (ExpertWeights& e : l.moe.experts) add(e.gate_proj), add(e.up_proj), add(e.down_proj);
    }
  }
  const auto it = m.linears.find(linear);
  HLWQ_CHECK(it != m.linears.end(), "calibration: the model has no linear {} to substitute", linear);
  LinearWeight& lw = *it->second;
  HLWQ_CHECK(lw.out == out && lw.in == in, "calibration: {} is [{}, {}], the substitute [{}, {}]", linear, lw.out,
             lw.in, out, in);
  std::vector<float>& buf = m.subs[linear];
  buf.assign(w, w + out * in);
  lw.format = LinearFormat::dense;
  lw.weight = TensorView{DType::F32, {out, in}, buf.data()};
}

CalibrationSummary EngineCalibration::summary() const { return impl_->sum; }

void EngineCalibration::Impl::run_windows() {
  Progress progress("calibrate", "windows", windows, int64_t(ids.size()), opt.progress ? stderr : nullptr,
                    Progress::Amount::tokens);
  Sequence seq = model.new_sequence(opt.ctx);
  for (int64_t w = 0; w < windows; ++w) {
    seq.reset();
    model.forward(ids.data() + w * opt.ctx, opt.ctx, seq, nullptr);
    progress.add(1, opt.ctx);
  }
  progress.finish();
}

LinearStatsMap EngineCalibration::Impl::collect_on_backend(const std::vector<std::string>& linears) {
  std::vector<std::string> keys;  // distinct inputs, in the order asked (the passes split it in that order)
  std::unordered_set<std::string> seen;
  for (const std::string& n : linears)
    if (std::string k = linear_input_key(n); seen.insert(k).second) keys.push_back(std::move(k));
  Backend& be = model.backend();
  LinearStatsMap by_key;
  for (size_t done = 0; done < keys.size();) {
    const std::vector<std::string> rest(keys.begin() + std::ptrdiff_t(done), keys.end());
    const int64_t took = be.begin_input_stats(rest);
    HLWQ_CHECK(took > 0, "calibration: the {} backend keeps no input statistics", be.name());
    try {
      run_windows();
    } catch (...) {
      try {
        be.take_input_stats();  // the sums go with the failed pass; its own error is the one reported
      } catch (...) {
      }
      throw;
    }
    LinearStatsMap part = be.take_input_stats();
    uint64_t bytes = 0;
    for (const auto& [key, st] : part) bytes += st->H.size() * sizeof(double);
    sum.peak_stats_bytes = std::max(sum.peak_stats_bytes, bytes);
    by_key.merge(part);
    sum.passes += 1;
    done += size_t(took);
  }
  LinearStatsMap out;
  for (const std::string& n : linears)
    if (const auto it = by_key.find(linear_input_key(n)); it != by_key.end()) out[n] = it->second;
  return out;
}

LinearStatsMap EngineCalibration::collect(const std::vector<std::string>& linears) {
  Impl& m = *impl_;
  const auto t0 = std::chrono::steady_clock::now();
  if (dynamic_cast<CpuBackend*>(&m.model.backend()) == nullptr) {
    LinearStatsMap out = m.collect_on_backend(linears);
    m.sum.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
  }
  // One accumulator per distinct input; the tap finds it by the engine's linear name (= the plan's module name).
  std::unordered_map<std::string, std::shared_ptr<Accumulator>> by_key, by_name;
  for (const std::string& n : linears) {
    auto& acc = by_key[linear_input_key(n)];
    if (!acc) acc = std::make_shared<Accumulator>();
    by_name[n] = acc;
  }
  auto tap = [&](const LinearWeight& w, const float* x, int64_t ldx, int64_t T) {
    const auto it = by_name.find(w.name);
    if (it == by_name.end() || T <= 0) return;
    Accumulator& a = *it->second;
    const Eigen::Map<const MatF, 0, Eigen::OuterStride<>> X(x, T, w.in, Eigen::OuterStride<>(ldx));  // [T, in]
    const MatD Xd = X.cast<double>();
    std::lock_guard<std::mutex> lock(a.mu);
    if (!a.stats) {
      a.stats = std::make_shared<LinearInputStats>();
      a.stats->in = w.in;
      a.stats->H.assign(size_t(w.in * w.in), 0.0);
    }
    HLWQ_CHECK(a.stats->in == w.in, "calibration: {} has {} inputs, but its input is shared with a linear of {}",
               w.name, w.in, a.stats->in);
    Eigen::Map<MatD>(a.stats->H.data(), w.in, w.in).noalias() += Xd.transpose() * Xd;
    a.stats->n_tokens += T;
  };
  // Linears sharing an input each call the tap with the same rows: only the key's own name accumulates.
  auto tap_keyed = [&](const LinearWeight& w, const float* x, int64_t ldx, int64_t T) {
    if (linear_input_key(w.name) == w.name) tap(w, x, ldx, T);
  };
  auto& be = dynamic_cast<CpuBackend&>(m.model.backend());
  be.set_linear_input_tap(tap_keyed);
  struct TapOff {  // the tap refers to this frame: it goes even when a forward throws
    CpuBackend& be;
    ~TapOff() { be.set_linear_input_tap({}); }
  } tap_off{be};
  m.run_windows();
  LinearStatsMap out;
  uint64_t bytes = 0;
  for (const auto& [key, acc] : by_key)
    if (acc->stats) bytes += acc->stats->H.size() * sizeof(double);
  for (const auto& [name, acc] : by_name)
    if (acc->stats) out[name] = acc->stats;
  m.sum.passes += 1;
  m.sum.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  m.sum.peak_stats_bytes = std::max(m.sum.peak_stats_bytes, bytes);
  return out;
}

}  // namespace hlwq
