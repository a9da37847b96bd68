#include "server/engine.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <span>

#include "core/error.h"
#include "runtime/stop_condition.h"
#include "runtime/utf8_stream.h"
#include "server/prefix_cache.h"
#include "server/snapshot_store.h"

namespace hlwq::server {
namespace {

struct Running {
  Job job;
  Sequence seq;
  Sampler sampler;
  StreamingDetokenizer detok;
  StopChecker stop;
  std::vector<int32_t> history;  // ids the sampler may penalise (prompt and generated, < n_valid)
  std::vector<int32_t> sampled;  // every generated id (all but the last were fed to the model)
  int64_t prefilled = 0;         // prompt tokens already run
  std::vector<int64_t> snap_at;  // prompt positions, ascending, > prefilled: prefill stops there for a snapshot
  int32_t next = -1;             // the sampled token the next decode step feeds
  int64_t generated = 0;
  Clock::time_point last_token;
  bool done = false;
  bool cacheable = false;  // finished normally: its state is that of prompt + sampled[0, n - 1)

  Running(Job j, Sequence s, const Tokenizer& tok, const std::vector<int32_t>& eos)
      : job(std::move(j)), seq(std::move(s)), sampler(job.req.sampler), detok(tok), stop(eos, job.req.stop) {}
  bool prefilling() const { return prefilled < int64_t(job.req.prompt.size()); }
};

// log-softmax of logits [n] at `id`, and the `k` most likely ids with their logprobs.
TokenLogprob logprobs_of(std::span<const float> logits, int32_t id, int32_t k, const Tokenizer& tok) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  double z = 0;
  for (float v : logits) z += std::exp(double(v - mx));
  const float lse = mx + float(std::log(z));
  TokenLogprob r{tok.token_text(id), logits[size_t(id)] - lse, {}};
  if (k > 0) {
    std::vector<int32_t> idx(logits.size());
    std::iota(idx.begin(), idx.end(), 0);
    const size_t kk = std::min(size_t(k), idx.size());
    std::partial_sort(idx.begin(), idx.begin() + ptrdiff_t(kk), idx.end(), [&](int32_t a, int32_t b) {
      return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
    });
    for (size_t i = 0; i < kk; ++i) r.top.emplace_back(tok.token_text(idx[i]), logits[size_t(idx[i])] - lse);
  }
  return r;
}

}  // namespace

void run_engine(Model& model, const Tokenizer& tok, const EngineConfig& cfg, RequestQueue& queue) {
  const int64_t V = model.config().vocab_size;
  const int64_t n_valid = cfg.n_valid_tokens > 0 ? cfg.n_valid_tokens : V;
  const int64_t budget = model.options().max_batch_tokens;
  const int64_t block = model.options().kv_block_tokens;
  std::vector<std::unique_ptr<Running>> run;
  PrefixCache cache;
  // snapshots live in the state slots beyond the max_seqs that running and cached sequences may use, so a fork
  // always finds one
  const int32_t spare_slots = std::max(0, model.pool().config().max_seqs - cfg.max_seqs);
  SnapshotStore snaps(cfg.prefix_cache ? size_t(std::min(std::max(cfg.snapshots, 0), spare_slots)) : 0);
  std::vector<int32_t> held;  // scratch: KV blocks held by the caches
  // Pool use for /metrics: all KV blocks in use, and those held by cached sequences and snapshots.
  // The expert-cache counters cost a device read on the GPU: published at most every 250 ms while requests run,
  // and whenever the batch is empty (so an idle server shows the final counts).
  Clock::time_point expert_cache_published{};
  auto report = [&] {
    held.clear();
    cache.blocks(model.pool(), held);
    snaps.blocks(model.pool(), held);
    std::sort(held.begin(), held.end());
    const int64_t cached_blocks = std::unique(held.begin(), held.end()) - held.begin();
    queue.set_engine_state(int64_t(run.size()), model.pool().config().kv_blocks - model.pool().free_blocks(),
                           cached_blocks, int64_t(cache.size()), int64_t(snaps.size()));
    const auto now = Clock::now();
    if (run.empty() || now - expert_cache_published >= std::chrono::milliseconds(250)) {
      if (const auto st = model.expert_cache_stats()) queue.set_expert_cache(*st);
      expert_cache_published = now;
    }
  };
  // Done requests leave the batch; those that finished normally leave their sequence to the cache.
  auto retire = [&] {
    for (auto& r : run) {
      if (!r->done || !r->cacheable || !cfg.prefix_cache) continue;
      std::vector<int32_t> fed = r->job.req.prompt;
      fed.insert(fed.end(), r->sampled.begin(), r->sampled.end() - 1);
      if (r->seq.pos() == int64_t(fed.size())) cache.put(std::move(fed), std::move(r->seq));
    }
    std::erase_if(run, [](const auto& r) { return r->done; });
  };
  std::vector<float> logits(size_t(cfg.max_seqs) * size_t(V));  // [rows ≤ max_seqs, V]
  std::vector<RowSampling> how;  // per logits row: the token choice asked of the backend
  std::vector<bool> drawn;       // per logits row: its sampler's draw is in how (device_choice)
  std::vector<int32_t> chosen;   // per logits row: the backend's choice, −1 = logits on the host

  auto finish = [&](Running& r, FinishReason why) {
    if (why != FinishReason::stop_string && why != FinishReason::eos) {
      std::string tail = r.stop.push(r.detok.flush());
      tail += r.stop.flush();
      if (!tail.empty()) {
        StreamEvent ev;
        ev.text = std::move(tail);
        r.job.channel->push(std::move(ev));
      }
    }
    StreamEvent ev;
    ev.kind = StreamEvent::Kind::finish;
    ev.finish = why;
    ev.prompt_tokens = int64_t(r.job.req.prompt.size());
    ev.completion_tokens = r.generated;
    queue.record_finish(ev.prompt_tokens, ev.completion_tokens);
    r.job.channel->push(std::move(ev));
    r.done = true;
    r.cacheable = true;
  };

  for (;;) {
    // Admit: new jobs take free slots; with nothing running, wait for work (or for the end).
    const size_t free_slots = size_t(cfg.max_seqs) - run.size();
    for (Job& j : queue.take(free_slots, run.empty())) {
      try {
        const auto& prompt = j.req.prompt;
        const int64_t max_len = cfg.max_len > 0 ? cfg.max_len : int64_t(prompt.size()) + j.req.max_tokens;
        // the cached sequence or the snapshot that reuses more of the prompt (a tie goes to the sequence: no copy)
        const int64_t cont = cfg.prefix_cache ? cache.longest(prompt) : 0;
        const SnapshotStore::Found snap = snaps.find(prompt);
        const bool from_snap = snap.seq && snap.tokens > cont;
        Sequence s;
        if (cont > 0 && !from_snap) {
          s = std::move(cache.take(prompt)->seq);
        } else {
          if (run.size() + cache.size() >= size_t(cfg.max_seqs)) cache.evict_lru();  // its slot is needed
          s = from_snap ? model.fork(*snap.seq, max_len) : model.new_sequence(max_len);
        }
        const int64_t reused = from_snap ? snap.tokens : cont;
        queue.record_prefix(int64_t(prompt.size()), reused, from_snap ? reused : 0);
        std::vector<int64_t> at;
        if (snaps.capacity() > 0)
          at = snapshot_boundaries(reused, int64_t(prompt.size()), block, cfg.snapshot_interval,
                                   std::max(snaps.common_prefix(prompt), cache.common_prefix(prompt)));
        auto r = std::make_unique<Running>(std::move(j), std::move(s), tok, cfg.eos_ids);
        r->prefilled = reused;
        r->snap_at = std::move(at);
        for (int32_t id : r->job.req.prompt)
          if (id < n_valid) r->history.push_back(id);
        run.push_back(std::move(r));
      } catch (const std::exception& e) {
        StreamEvent ev;
        ev.kind = StreamEvent::Kind::error;
        ev.error = e.what();
        j.channel->push(std::move(ev));
      }
    }
    // Drop requests whose client went away: their sequences go back to the pool now.
    std::erase_if(run, [](const auto& r) { return r->job.channel->cancelled(); });
    if (run.empty()) {
      report();
      if (queue.finished()) return;
      continue;
    }

    // One batch: decode tokens first, then prefill chunks while the token budget lasts.
    std::vector<SeqInput> in;
    std::vector<Running*> who;  // [in.size()]
    int64_t left = budget;
    for (auto& r : run)
      if (!r->prefilling() && left > 0) {
        in.push_back({&r->seq, {&r->next, 1}, LogitsWanted::last});
        who.push_back(r.get());
        --left;
      }
    for (auto& r : run) {
      if (!r->prefilling() || left <= 0) continue;
      const auto& p = r->job.req.prompt;
      const int64_t end = r->snap_at.empty() ? int64_t(p.size()) : r->snap_at.front();  // a chunk ends there
      const int64_t n = std::min<int64_t>(end - r->prefilled, left);
      const bool last = r->prefilled + n == int64_t(p.size());
      in.push_back({&r->seq, std::span<const int32_t>(p).subspan(size_t(r->prefilled), size_t(n)),
                    last ? LogitsWanted::last : LogitsWanted::none});
      who.push_back(r.get());
      left -= n;
    }
    // Snapshots hold KV blocks that no running sequence may need: evict them (then cached sequences) until the
    // batch fits. The pool holds max_seqs sequences of the full length, so with both caches empty it always does.
    int64_t need = 0;
    for (const SeqInput& x : in)
      need += model.pool().blocks_needed(x.seq->slot(), x.seq->pos() + int64_t(x.tokens.size()));
    while (need > model.pool().free_blocks() && (snaps.evict_lru() || cache.evict_lru())) {
    }
    // Token choice on the backend where a row allows it (only ids cross from a GPU): the sampler takes its draw
    // now, as it would on the host. A row that wants logprobs, or whose sampler the backend cannot run, asks for
    // its logits instead (RowSampling with top_k 0 is never chosen on the backend: backend.h).
    how.clear(), drawn.clear();
    for (size_t i = 0; i < in.size(); ++i) {
      if (in[i].logits != LogitsWanted::last) continue;
      Running& r = *who[i];
      std::optional<RowSampling> d;
      if (r.job.req.top_logprobs < 0) d = r.sampler.device_choice();
      drawn.push_back(d.has_value());
      how.push_back(d ? *d : RowSampling{1.f, 0, 1.f, 0.f, 0.0});
    }
    chosen.assign(how.size(), -1);
    ForwardOptions fo;
    fo.sample = how;
    fo.ids = chosen.data();
    fo.n_valid_tokens = n_valid;
    try {
      model.forward_batch(in, logits.data(), fo);
    } catch (const std::exception& e) {
      for (Running* r : who) {
        StreamEvent ev;
        ev.kind = StreamEvent::Kind::error;
        ev.error = e.what();
        r->job.channel->push(std::move(ev));
        r->done = true;  // not cacheable: the failed forward poisoned its sequence
      }
      retire();
      continue;
    }

    size_t row = 0;
    const auto now = Clock::now();
    for (size_t i = 0; i < in.size(); ++i) {
      Running& r = *who[i];
      if (r.prefilling()) {
        r.prefilled += int64_t(in[i].tokens.size());
        if (!r.snap_at.empty() && r.prefilled == r.snap_at.front()) {
          r.snap_at.erase(r.snap_at.begin());
          const std::span<const int32_t> prefix(r.job.req.prompt.data(), size_t(r.prefilled));
          if (!snaps.contains(prefix) && snaps.make_room())
            snaps.put(std::vector<int32_t>(prefix.begin(), prefix.end()), model.fork(r.seq, r.prefilled));
        }
      }
      if (in[i].logits != LogitsWanted::last) continue;
      const size_t k = row++;
      const std::span<const float> lg(logits.data() + k * size_t(V), size_t(n_valid));
      const int32_t id = chosen[k] >= 0 ? chosen[k]
                         : drawn[k]     ? r.sampler.sample_drawn(lg, r.history, how[k].u)
                                        : r.sampler.sample(lg, r.history);
      r.history.push_back(id);
      r.sampled.push_back(id);
      ++r.generated;
      queue.record_token(r.generated == 1,
                         std::chrono::duration<double>(now - (r.generated == 1 ? r.job.arrived : r.last_token)).count());
      r.last_token = now;
      if (r.stop.is_eos(id)) {
        finish(r, FinishReason::eos);
        continue;
      }
      StreamEvent ev;
      ev.text = r.stop.push(r.detok.feed(id));
      if (r.job.req.top_logprobs >= 0) ev.logprobs.push_back(logprobs_of(lg, id, r.job.req.top_logprobs, tok));
      if (!ev.text.empty() || !ev.logprobs.empty()) r.job.channel->push(std::move(ev));
      if (r.stop.stopped()) finish(r, FinishReason::stop_string);
      else if (r.generated >= r.job.req.max_tokens) finish(r, FinishReason::length);
      else r.next = id;
    }
    retire();
    report();
  }
}

}  // namespace hlwq::server
