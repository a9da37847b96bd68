// Prefill throughput of the CPU forward: windows of N tokens (fresh state each, logits for every token, as a
// perplexity evaluation runs them), then one-token decodes continuing the last window. Prints the median tok/s
// of the repeats. Usage:
//   bench_model_prefill [model_dir=models/tiny-moe-dev] [window=512] [repeats=5]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/model.h"
#include "test_paths.h"

int main(int argc, char** argv) {
  using namespace hlwq;
  const std::string dir = argc > 1 ? argv[1] : (test::source_dir() / "models" / "tiny-moe-dev").string();
  const int64_t window = argc > 2 ? std::stoll(argv[2]) : 512;
  const int repeats = argc > 3 ? std::stoi(argv[3]) : 5;
  try {
    const Model m = Model::load(dir);
    const int64_t V = m.config().vocab_size;
    std::vector<int32_t> tok(static_cast<size_t>(window));
    for (int64_t i = 0; i < window; ++i) tok[size_t(i)] = int32_t((i * 7919 + 13) % V);
    std::vector<float> logits(size_t(window * V));
    std::vector<double> rates;
    for (int r = 0; r <= repeats; ++r) {  // r = 0 warms up
      SequenceState st = m.new_state(window);
      const auto t0 = std::chrono::steady_clock::now();
      m.forward(tok.data(), window, st, logits.data(), forward_all_logits());
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (r > 0) rates.push_back(double(window) / s);
    }
    std::sort(rates.begin(), rates.end());
    std::printf("model %s, kernels %s, %d threads, window %lld: prefill median %.0f tok/s (min %.0f, max %.0f)\n",
                dir.c_str(), m.kernels().isa, omp_get_max_threads(), (long long)window, rates[rates.size() / 2],
                rates.front(), rates.back());
    // decode: 64 tokens after a window of `window` tokens
    const int64_t n_dec = 64;
    SequenceState st = m.new_state(window + n_dec);
    m.forward(tok.data(), window, st, nullptr);
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n_dec; ++i) m.forward(&tok[size_t(i % window)], 1, st, logits.data());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("decode after %lld tokens: %.0f tok/s\n", (long long)window, double(n_dec) / s);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
