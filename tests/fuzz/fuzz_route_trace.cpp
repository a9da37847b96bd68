// libFuzzer target: the routing-trace reader (`hlwq bench --route-trace FILE`, src/moe/route_trace.h) on arbitrary
// file bytes. A trace that reads must keep the reader's promises — every id below n_experts, distinct within its
// top-k row, ids.size() = steps × seqs × layers × top-k — and replay through RouteTraceCursor as a backend would
// (a prefill-sized and a decode-sized batch, wrapping past the end); a broken promise is an abort, a finding.
#include <cstdlib>
#include <memory>
#include <vector>

#include "fuzz_util.h"
#include "moe/route_trace.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = hlwq::fuzz::scratch() / "trace.bin";
  hlwq::fuzz::write_file(path, {reinterpret_cast<const char*>(data), size});
  hlwq::fuzz::expect_only_hlwq_errors([&] {
    auto t = std::make_shared<const hlwq::RouteTrace>(hlwq::read_route_trace(path.string()));
    const hlwq::RouteTraceParams& p = t->params;
    if (int64_t(t->ids.size()) != t->rows() * p.n_layers * p.top_k) std::abort();
    hlwq::RouteTraceCursor cursor(t);
    for (const int64_t T : {int64_t(1), t->rows() + 3}) {  // [n_layers][T][top_k]
      std::vector<int32_t> out(size_t(p.n_layers * T * p.top_k));
      cursor.next(T, out);
      for (size_t i = 0; i < out.size(); ++i) {
        if (out[i] < 0 || out[i] >= p.n_experts) std::abort();
        for (size_t j = i - i % size_t(p.top_k); j < i; ++j)
          if (out[j] == out[i]) std::abort();
      }
    }
  });
  return 0;
}
