// Streaming writer of synthetic checkpoints (see synth_writer.h). Dimension legend: a piece is a run of elements
// [first, first + n) of one tensor placed at byte offset buf_off of a chunk buffer.
#include "synth/synth_writer.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <map>
#include <memory>

#include <fmt/format.h>

#include "core/error.h"
#include "core/parallel_errors.h"
#include "core/progress.h"
#include "io/checkpoint_writer.h"
#include "io/read_file.h"
#include "synth/synth_config.h"

namespace hlwq {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Piece {
  size_t tensor;
  uint64_t first, n;  // elements
  uint64_t buf_off;   // bytes
};

struct Chunk {
  std::unique_ptr<uint8_t[]> buf;
  std::vector<Piece> pieces;
  std::future<void> written;  // the pwrite of this chunk's pieces, in flight on another thread
};

// Plain progress lines for logs (Progress draws only on a terminal): at most one every 5 s, and a last one.
class LogLines {
 public:
  LogLines(FILE* out, size_t n_tensors, uint64_t bytes) : out_(out), n_(n_tensors), bytes_(bytes) {}
  void update(size_t tensors, uint64_t bytes, bool last) {
    if (!out_) return;
    const double s = std::chrono::duration<double>(Clock::now() - start_).count();
    if (!last && s - printed_ < 5) return;
    printed_ = s;
    const double rate = s > 0 ? double(bytes) / s : 0;
    fmt::print(out_, "synth: {}/{} tensors, {:.2f}/{:.2f} GB, {:.2f} GB/s, {}\n", tensors, n_, double(bytes) / 1e9,
               double(bytes_) / 1e9, rate / 1e9,
               last ? "done" : rate > 0 ? "ETA " + format_duration(double(bytes_ - bytes) / rate) : "ETA --");
    std::fflush(out_);
  }

 private:
  FILE* out_;
  size_t n_;
  uint64_t bytes_;
  Clock::time_point start_ = Clock::now();
  double printed_ = 0;
};

// Fills a chunk's pieces with all threads, in blocks of kBlock elements (pieces are often small: one expert's
// scale tensor is 16 KB, so parallelising inside each piece would leave threads idle).
void fill_chunk(const std::vector<SynthTensor>& tensors, const std::vector<uint64_t>& seeds, Chunk& c) {
  constexpr uint64_t kBlock = 1 << 15;
  struct Task {
    const Piece* p;
    uint64_t lo, hi;  // elements of the piece
  };
  std::vector<Task> tasks;
  for (const Piece& p : c.pieces)
    for (uint64_t lo = 0; lo < p.n; lo += kBlock) tasks.push_back({&p, lo, std::min(p.n, lo + kBlock)});
  ParallelErrors errs;
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t i = 0; i < int64_t(tasks.size()); ++i)
    errs.run([&] {
      const Task& t = tasks[size_t(i)];
      const SynthTensor& st = tensors[t.p->tensor];
      const uint64_t esize = dtype_size(st.spec.dtype);
      synth_fill(st, seeds[t.p->tensor], t.p->first + t.lo, t.hi - t.lo, c.buf.get() + t.p->buf_off + t.lo * esize);
    });
  errs.rethrow();
}

}  // namespace

int64_t tokenizer_max_id(const fs::path& tokenizer_json) {
  const nlohmann::json j = read_json_file(tokenizer_json, kMaxTokenizerBytes);
  int64_t max_id = -1;
  auto take = [&](const nlohmann::json& v) {
    HLWQ_CHECK(v.is_number_integer(), "{}: a token id is not an integer", tokenizer_json.string());
    max_id = std::max(max_id, v.get<int64_t>());
  };
  if (j.contains("model") && j["model"].contains("vocab") && j["model"]["vocab"].is_object())
    for (const auto& [tok, id] : j["model"]["vocab"].items()) take(id);
  if (j.contains("added_tokens") && j["added_tokens"].is_array())
    for (const auto& a : j["added_tokens"])
      if (a.contains("id")) take(a["id"]);
  HLWQ_CHECK(max_id >= 0, "{}: no token ids (model.vocab and added_tokens are empty)", tokenizer_json.string());
  return max_id;
}

std::optional<fs::path> synth_pick_tokenizer(const std::vector<fs::path>& candidates, int64_t vocab_size) {
  for (const fs::path& d : candidates)
    if (regular_file_exists(d / "tokenizer.json") && tokenizer_max_id(d / "tokenizer.json") < vocab_size) return d;
  return std::nullopt;
}

SynthResult synth_write(const nlohmann::json& config_in, const SynthOptions& opt) {
  HLWQ_CHECK(opt.chunk_bytes >= 4096 && opt.chunk_bytes % 8 == 0, "synth: chunk of {} bytes must be a multiple of 8 "
             "and at least 4096", opt.chunk_bytes);
  nlohmann::json config = config_in;
  synth_strip_quantization(config);
  const ModelConfig cfg = parse_model_config(config, "synthetic config");
  const SynthPlan plan = synth_plan(cfg, opt.format);
  if (!plan.quantization_config.is_null()) config["quantization_config"] = plan.quantization_config;  // top level, SPEC §3
  if (opt.tokenizer_dir) {
    const int64_t max_id = tokenizer_max_id(*opt.tokenizer_dir / "tokenizer.json");
    HLWQ_CHECK(max_id < cfg.vocab_size, "{}: token id {} does not fit the model's vocabulary of {}",
               (*opt.tokenizer_dir / "tokenizer.json").string(), max_id, cfg.vocab_size);
  }

  const auto t0 = Clock::now();
  StagedDir stage(opt.dst, opt.force);
  std::vector<TensorSpec> specs;
  std::map<std::string, size_t> index;
  std::vector<uint64_t> seeds;
  uint64_t total = 0;
  for (const SynthTensor& t : plan.tensors) {
    index[t.spec.name] = specs.size();
    specs.push_back(t.spec);
    seeds.push_back(synth_tensor_seed(opt.seed, t.spec.name));
    total += t.spec.nbytes();
  }
  CheckpointWriter writer(stage.path(), specs, opt.max_shard_bytes,
                          {{"format", "pt"},
                           {"hlwq_synthetic", fmt::format("seed={} format={}", opt.seed, synth_format_name(opt.format))}});

  Progress progress("synth", "tensors", int64_t(specs.size()), int64_t(total), opt.log);
  LogLines lines(progress.drawing() ? nullptr : opt.log, specs.size(), total);
  size_t done_tensors = 0;
  uint64_t done_bytes = 0;
  Chunk chunks[2];
  for (Chunk& c : chunks) c.buf.reset(new uint8_t[opt.chunk_bytes]);
  int cur = 0;
  // Generates chunk c while the other chunk is being written, then writes c on another thread once the other's
  // write is done (one write in flight at a time: sequential on disk, and the counters have one writer).
  auto submit = [&](Chunk& c) {
    fill_chunk(plan.tensors, seeds, c);
    Chunk& other = chunks[cur ^ 1];
    if (other.written.valid()) other.written.get();
    other.pieces.clear();
    c.written = std::async(std::launch::async, [&writer, &specs, &progress, &lines, &done_tensors, &done_bytes, &c] {
      uint64_t bytes = 0;
      int64_t finished = 0;
      for (const Piece& p : c.pieces) {
        const TensorSpec& s = specs[p.tensor];
        const uint64_t esize = dtype_size(s.dtype);
        writer.write_part(s.name, p.first * esize, c.buf.get() + p.buf_off, p.n * esize);
        bytes += p.n * esize;
        finished += (p.first + p.n) * esize == s.nbytes();
      }
      progress.add(finished, int64_t(bytes));
      done_tensors += size_t(finished);
      done_bytes += bytes;
      lines.update(done_tensors, done_bytes, false);
    });
    cur ^= 1;  // fill the other buffer next: its write has finished
  };
  uint64_t used = 0;
  for (const std::string& name : writer.names_in_file_order()) {
    const size_t ti = index.at(name);
    const uint64_t esize = dtype_size(specs[ti].dtype), numel = specs[ti].nbytes() / esize;
    for (uint64_t first = 0; first < numel;) {
      used = (used + 7) / 8 * 8;  // every piece 8-byte aligned in the buffer
      if (used + esize > opt.chunk_bytes) {
        submit(chunks[cur]);
        used = 0;
      }
      const uint64_t n = std::min(numel - first, (opt.chunk_bytes - used) / esize);
      chunks[cur].pieces.push_back({ti, first, n, used});
      used += n * esize;
      first += n;
    }
  }
  if (!chunks[cur].pieces.empty()) submit(chunks[cur]);
  for (Chunk& c : chunks)
    if (c.written.valid()) c.written.get();
  const std::vector<std::string> shards = writer.finish();
  progress.finish();
  lines.update(done_tensors, done_bytes, true);

  write_file(stage.path() / "config.json", config.dump(2) + "\n");
  if (opt.tokenizer_dir)
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      if (regular_file_exists(*opt.tokenizer_dir / f)) fs::copy_file(*opt.tokenizer_dir / f, stage.path() / f);
  stage.commit();
  SynthResult r;
  r.bytes = total;
  r.n_tensors = specs.size();
  r.n_shards = shards.size();
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

}  // namespace hlwq
