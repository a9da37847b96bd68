// `hlwq serve MODEL`: the OpenAI-compatible HTTP server (src/server), with vLLM's command line: the options hlwq
// has mean what they mean in vLLM, vLLM's options that do not apply are accepted and named once as ignored, and
// anything else is an error. Start-up loads the model for --max-num-seqs sequences of up to --max-model-len
// tokens, prints what was loaded, the memory plan and the URL, then serves until SIGINT/SIGTERM, which stop
// accepting requests, let the running ones finish and exit.
#include <pthread.h>
#include <signal.h>

#include <array>
#include <cstdio>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "cli/device_option.h"
#include "cli/options.h"
#include "cli/sampling_options.h"
#include "core/error.h"
#include "server/engine.h"
#include "server/http_server.h"

namespace hlwq::cli {

namespace {

// vLLM options that have no meaning for hlwq: accepted so that a vLLM command line works unchanged.
constexpr const char* kIgnoredFlags[] = {"--enforce-eager", "--language-model-only", "--trust-remote-code",
                                         "--disable-log-requests", "--disable-log-stats",
                                         "--enable-auto-tool-choice", "--enable-chunked-prefill"};
constexpr const char* kIgnoredValues[] = {"--dtype", "--tensor-parallel-size", "--pipeline-parallel-size",
                                          "--gpu-memory-utilization",
                                          "--kv-cache-dtype", "--swap-space", "--download-dir",
                                          "--uvicorn-log-level", "--generation-config", "--tokenizer-mode"};

double mib(double bytes) { return bytes / double(1 << 20); }

}  // namespace

Command add_serve(CLI::App& app) {
  auto* sub = app.add_subcommand("serve", "serve the OpenAI API (chat and text completions) over HTTP");
  struct Args {
    std::string model, host = "127.0.0.1", name, api_key, reasoning_parser, tool_parser = "auto";
    DeviceArgs device;
    int port = 8000, threads = 0;
    bool prefix_cache = true;
    int32_t max_seqs = 16;
    int32_t snapshots = 8;
    int64_t snapshot_interval = 512;
    std::optional<int64_t> max_len;
    int64_t max_waiting = 64, batch_tokens = kDefaultMaxBatchTokens;
    std::array<int, std::size(kIgnoredFlags)> ignored_flags{};
    std::array<std::string, std::size(kIgnoredValues)> ignored_values;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("MODEL,--model", a->model, "model directory")->required();
  sub->add_option("--host", a->host, "address to listen on (default 127.0.0.1: this machine only)");
  sub->add_option("--port", a->port, "TCP port (default 8000; 0 picks a free one)")->check(whole_in(0, 65535));
  sub->add_option("--served-model-name", a->name, "the model's name in the API (default: MODEL as given)");
  sub->add_option("--api-key", a->api_key, "require 'Authorization: Bearer KEY' on /v1 requests");
  sub->add_option("--max-num-seqs", a->max_seqs, "requests generated at once (default 16)")->check(whole_in(1, 1024));
  sub->add_option("--max-model-len", a->max_len, "tokens of prompt and answer per request (default: min(4096, the "
                                                 "model's limit))")
      ->check(whole_in(2, int64_t(1) << 24));
  sub->add_option("--max-num-batched-tokens", a->batch_tokens, "tokens of one forward batch (default 1024)")
      ->check(whole_in(16, 1 << 16));
  sub->add_option("--max-waiting-requests", a->max_waiting,
                  "requests that may wait for a free sequence; more get 503 (default 64)")
      ->check(whole_in(0, 1 << 20));
  add_device_options(sub, a->device);
  sub->add_option("--reasoning-parser", a->reasoning_parser,
                  "qwen3: the model's <think>...</think> goes to reasoning_content")
      ->check(CLI::IsMember({"qwen3"}));
  sub->add_option("--tool-call-parser", a->tool_parser,
                  "tool calls the model writes become tool_calls: hermes (JSON in <tool_call>), qwen3_xml (or "
                  "qwen3_coder: <tool_call><function=...>), auto (default: both)")
      ->check(CLI::IsMember({"auto", "hermes", "qwen3_xml", "qwen3_coder"}));
  sub->add_flag("--enable-prefix-caching,!--no-enable-prefix-caching", a->prefix_cache,
                "keep finished sequences so that a chat's next turn continues them instead of prefilling the whole "
                "conversation again (default on, as in vLLM)");
  sub->add_option("--prefix-snapshots", a->snapshots,
                  "prefix snapshots kept: Gated DeltaNet state at a KV block boundary, KV blocks shared, so that any "
                  "request sharing that prefix resumes there; each costs the model's recurrent state of one sequence "
                  "(~60 MB on Qwen3.6; default 8, 0: none)")
      ->check(whole_in(0, 4096));
  sub->add_option("--prefix-snapshot-interval", a->snapshot_interval,
                  "a prefill also takes a snapshot every this many tokens, so that a long shared prefix (system prompt, "
                  "tools) is reused from its second user on (rounded down to whole KV blocks; default 512, 0: only at "
                  "the prompt's end and where it branches off a cached prefix)")
      ->check(whole_in(0, int64_t(1) << 24));
  sub->add_option("-t,--threads", a->threads, "CPU threads (default: all cores)")->check(whole_in(0, 4096));
  for (size_t i = 0; i < std::size(kIgnoredFlags); ++i)
    sub->add_flag(kIgnoredFlags[i], a->ignored_flags[i], "vLLM option, ignored by hlwq")->group("");
  for (size_t i = 0; i < std::size(kIgnoredValues); ++i)
    sub->add_option(kIgnoredValues[i], a->ignored_values[i], "vLLM option, ignored by hlwq")->group("");

  return {sub, [a] {
            LoadOptions lo;
            apply_device_args(a->device, lo);  // a malformed size or an unusable device fails before anything loads
            check_model_dir(a->model);
            const ModelConfig mc = load_model_config(a->model);
            const int64_t limit = mc.max_position_embeddings > 0 ? mc.max_position_embeddings : 4096;
            const int64_t L = a->max_len.value_or(std::min<int64_t>(4096, limit));
            if (L > limit) usage_fail("--max-model-len {} is more than the model's limit of {} tokens", L, limit);
            std::string ignored;
            auto note = [&](const char* name) { ignored += (ignored.empty() ? "" : ", ") + std::string(name); };
            for (size_t i = 0; i < std::size(kIgnoredFlags); ++i)
              if (a->ignored_flags[i] > 0) note(kIgnoredFlags[i]);
            for (size_t i = 0; i < std::size(kIgnoredValues); ++i)
              if (!a->ignored_values[i].empty()) note(kIgnoredValues[i]);
            if (!ignored.empty()) std::fprintf(stderr, "hlwq serve: ignoring vLLM options that do not apply: %s\n", ignored.c_str());

            // SIGINT/SIGTERM are taken by one thread with sigwait: blocked here, before any thread (OpenMP's,
            // httplib's) exists, so that every thread inherits the mask and none is killed by them.
            sigset_t sigs;
            sigemptyset(&sigs);
            sigaddset(&sigs, SIGINT);
            sigaddset(&sigs, SIGTERM);
            pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

            apply_threads(a->threads);
            const int32_t snapshots = a->prefix_cache ? a->snapshots : 0;
            lo.max_seqs = a->max_seqs + snapshots;  // snapshots live in state-pool slots of their own
            lo.kv_tokens = int64_t(a->max_seqs) * L;
            lo.max_batch_tokens = a->batch_tokens;
            LoadedModel m = load_model_dir(a->model, lo);
            const ResolvedGeneration g = resolve_generation(GenerationArgs{}, m);
            const std::string name = a->name.empty() ? a->model : a->name;

            const int64_t kv_blocks = m.model.pool().config().kv_blocks;
            const double kv_bytes = double(kv_blocks * lo.kv_block_tokens) * double(mc.n_full_attention_layers()) *
                                    2.0 * double(mc.n_kv_heads * mc.head_dim) * 2.0;  // K and V, bf16
            const double gdn_seq_bytes = double(mc.n_linear_attention_layers()) * 4.0 *
                                     double(mc.linear_n_value_heads * mc.linear_key_head_dim * mc.linear_value_head_dim +
                                            (2 * mc.linear_n_key_heads * mc.linear_key_head_dim +
                                             mc.linear_n_value_heads * mc.linear_value_head_dim) *
                                                mc.linear_conv_kernel);
            const double gdn_bytes = double(a->max_seqs) * gdn_seq_bytes;
            std::fprintf(stderr,
                         "hlwq serve: loaded %s (%s, %lld layers, %lld experts, vocab %lld) as '%s'\n"
                         "hlwq serve: memory plan: %d sequences x %lld tokens; KV pool %lld blocks of %lld tokens "
                         "(%.1f MiB), recurrent state %.1f MiB, batches of up to %lld tokens\n"
                         "hlwq serve: prefix cache: %s; %d snapshots (%.1f MiB of recurrent state), every %lld "
                         "tokens and at each prompt's last full block\n"
                         "hlwq serve: sampling defaults: %s\n",
                         a->model.c_str(), mc.model_type.c_str(), (long long)mc.n_layers, (long long)mc.n_experts,
                         (long long)mc.vocab_size, name.c_str(), a->max_seqs, (long long)L, (long long)kv_blocks,
                         (long long)lo.kv_block_tokens, mib(kv_bytes), mib(gdn_bytes), (long long)lo.max_batch_tokens,
                         a->prefix_cache ? "on" : "off", snapshots, mib(double(snapshots) * gdn_seq_bytes),
                         (long long)(a->snapshot_interval / lo.kv_block_tokens * lo.kv_block_tokens),
                         g.summary.substr(0, g.summary.rfind(", seed")).c_str());  // seeds are per request

            server::RequestQueue queue(size_t(a->max_waiting), kv_blocks);
            server::ApiContext api{name, L, g.opt.sampler, &m.tok, &m.chat, a->reasoning_parser == "qwen3",
                                   a->tool_parser == "hermes"  ? server::ToolCallFormat::hermes
                                   : a->tool_parser == "auto" ? server::ToolCallFormat::any
                                                              : server::ToolCallFormat::qwen3_xml};
            server::HttpConfig hc;
            hc.host = a->host;
            hc.port = a->port;
            hc.api_key = a->api_key;
            hc.threads = int(a->max_seqs + a->max_waiting) + 8;  // every streaming client holds a thread
            server::HttpServer http(hc, api, queue);
            const int port = http.bind();

            server::EngineConfig ec{a->max_seqs, g.opt.eos_ids, g.opt.n_valid_tokens, L, a->prefix_cache, snapshots,
                                    a->snapshot_interval};
            std::thread engine([&] {
              apply_threads(a->threads);  // OpenMP's thread count is per calling thread
              try {
                server::run_engine(m.model, m.tok, ec, queue);
              } catch (const std::exception& e) {
                std::fprintf(stderr, "hlwq: error: engine stopped: %s\n", e.what());
                std::fflush(stderr);
                std::abort();  // requests would hang without the engine: fail loudly
              }
            });
            std::thread stopper([&] {
              int sig = 0;
              sigwait(&sigs, &sig);
              std::fprintf(stderr, "hlwq serve: %s: finishing running requests, then exiting\n",
                           sig == SIGINT ? "interrupted" : "terminated");
              queue.drain();
              queue.wait_idle();
              http.stop();
            });
            std::fprintf(stderr, "hlwq serve: listening on http://%s:%d/v1 (Ctrl-C to stop)\n", a->host.c_str(), port);
            std::fflush(stderr);
            const bool served = http.serve();
            if (!served) pthread_kill(stopper.native_handle(), SIGTERM);  // wake it: nothing more to serve
            stopper.join();
            queue.drain();
            engine.join();
            if (!served) fail("the HTTP server on {}:{} stopped with an error", a->host, port);
            std::fprintf(stderr, "hlwq serve: stopped\n");
            return kExitOk;
          }};
}

}  // namespace hlwq::cli
