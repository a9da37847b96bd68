// hlwq_bench_tokenizer_hostile: encode time of inputs that used to be quadratic or unbounded (issue 11), on the
// demo model's tokenizer with 2,000 extra `<...>` added tokens: 100 KB of '<', a 16 MB word without spaces,
// and 1 MB of ordinary prose for comparison. Prints milliseconds per case (best of 3).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/tokenizer.h"

int main() {
  using clock = std::chrono::steady_clock;
  std::ifstream f(std::string(HLWQ_SOURCE_DIR) + "/models/tiny-moe-dev/tokenizer.json");
  nlohmann::json j = nlohmann::json::parse(f);
  int next_id = 0;
  for (auto it = j["model"]["vocab"].begin(); it != j["model"]["vocab"].end(); ++it)
    next_id = std::max(next_id, it.value().get<int>() + 1);
  for (const auto& a : j["added_tokens"]) next_id = std::max(next_id, a["id"].get<int>() + 1);
  for (int k = 0; k < 2000; ++k)
    j["added_tokens"].push_back({{"id", next_id++}, {"content", "<" + std::string(size_t(k % 40), '<') + std::to_string(k) + ">"},
                                 {"special", true}});
  const hlwq::Tokenizer tok = hlwq::Tokenizer::from_json_text(j.dump(), "<bench>");
  std::string prose;
  while (prose.size() < (1 << 20)) prose += "The quick brown fox jumps over the lazy dog, 1234 times; naïve café. ";
  const struct {
    const char* name;
    std::string text;
  } cases[] = {{"100 KB of '<'", std::string(100000, '<')}, {"16 MB word", std::string(16 << 20, 'x')},
               {"1 MB prose", prose}};
  for (const auto& c : cases) {
    double best = 1e30;
    size_t n = 0;
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = clock::now();
      n = tok.encode(c.text).size();
      best = std::min(best, std::chrono::duration<double, std::milli>(clock::now() - t0).count());
    }
    std::printf("%-16s %10zu tokens %10.1f ms\n", c.name, n, best);
  }
  return 0;
}
