// `hlwq run MODEL -p TEXT` (or -f FILE): one prompt, raw or as a chat turn with --chat, tokens streamed to
// stdout, then one line on stderr with prompt and generation speed, the finish reason and the seed. Every option
// is checked before anything is loaded or printed. Ctrl-C ends the generation early (exit code 130).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/device_option.h"
#include "cli/interrupt.h"
#include "cli/options.h"
#include "cli/sampling_options.h"
#include "core/error.h"
#include "runtime/chat_encode.h"

namespace hlwq::cli {

Command add_run(CLI::App& app) {
  auto* sub = app.add_subcommand("run", "generate text from a prompt");
  struct Args {
    std::string model, prompt, prompt_file;
    bool chat = false, no_display_prompt = false;
    GenerationArgs gen;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("MODEL,-m,--model", a->model, "model directory")->required();
  auto* p = sub->add_option("-p,--prompt", a->prompt, "prompt text");
  auto* f = sub->add_option("-f,--file", a->prompt_file, "read the prompt from a UTF-8 text file");
  p->excludes(f);
  sub->add_flag("--chat", a->chat, "wrap the prompt as a user turn with the model's chat template");
  sub->add_flag("--no-display-prompt", a->no_display_prompt, "do not echo the prompt before the generated text");
  add_generation_options(sub, a->gen);
  return {sub, [a, p, f] {
            // Everything the command line alone decides, before any work or output.
            if (!*p && !*f) usage_fail("give a prompt with -p TEXT or -f FILE");
            check_generation_args(a->gen);
            check_model_dir(a->model);
            if (*f) a->prompt = read_text_file(a->prompt_file, "-f");
            if (a->prompt.empty()) usage_fail("empty prompt: give -p some text");
            const int64_t ctx = resolve_ctx(a->gen, load_model_config(a->model));
            const LoadOptions lo = context_load_options(ctx, a->gen.device);
            note_gpu_layers(a->gen, lo.device);

            apply_threads(a->gen.threads);
            LoadedModel m = load_model_dir(a->model, lo);
            // The prompt is text someone typed: never control tokens, except the template's own markup.
            const std::vector<int32_t> ids =
                a->chat ? encode_chat(m.tok, m.chat, {{"user", a->prompt}}, true) : m.tok.encode(a->prompt, false);
            HLWQ_CHECK(!ids.empty(), "empty prompt: the text encodes to no tokens");
            const int64_t n = int64_t(ids.size()), limit = m.model.config().max_position_embeddings;
            if (n >= ctx) {
              if (limit > 0 && n >= limit)
                fail("the prompt is {} tokens, but the model's context holds at most {} for prompt and answer "
                     "together: shorten the prompt",
                     n, limit);
              fail("the prompt of {} tokens does not fit the context of {}: use --ctx {} or more (the model allows "
                   "up to {})",
                   n, ctx, n + 1, limit > 0 ? limit : ctx);
            }
            ResolvedGeneration g = resolve_generation(a->gen, m);
            if (g.opt.max_new_tokens < 0) g.opt.max_new_tokens = INT64_MAX;  // -n -1: the full context ends it
            std::fprintf(stderr, "sampling: %s\n", g.summary.c_str());
            Sequence st = m.model.new_sequence(ctx);
            // Ctrl-C stops the generation between tokens; the text so far and the stats are still printed.
            InterruptScope interrupt;
            g.opt.should_stop = [&interrupt] { return interrupt.raised(); };
            if (!a->chat && !a->no_display_prompt) std::fputs(a->prompt.c_str(), stdout);
            std::fflush(stdout);
            GenerateResult r = generate(m.model, m.tok, st, ids, g.opt, [](const std::string& s) {
              std::fputs(s.c_str(), stdout);
              std::fflush(stdout);
            });
            // The text ends its line and is flushed before the stats, so they stay on their own line even when
            // stdout and stderr go to one stream.
            std::fputc('\n', stdout);
            std::fflush(stdout);
            std::fprintf(stderr,
                         "prompt: %lld tokens, %.1f tok/s | generation: %zu tokens, %.1f tok/s | finish: %s | seed %llu\n",
                         (long long)r.n_prompt, r.prefill_tok_s(), r.tokens.size(), r.decode_tok_s(),
                         finish_label(r.finish), (unsigned long long)g.opt.sampler.seed);
            if (const std::string c = expert_cache_summary(m.model); !c.empty()) std::fprintf(stderr, "%s\n", c.c_str());
            return r.finish == FinishReason::cancelled ? kExitInterrupted : kExitOk;
          }};
}

}  // namespace hlwq::cli
