// `hlwq run MODEL -p TEXT`: one prompt (raw, or as a chat turn with --chat), tokens streamed to stdout, then
// prompt and generation speed on stderr.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/sampling_options.h"
#include "core/error.h"

namespace hlwq::cli {

Command add_run(CLI::App& app) {
  auto* sub = app.add_subcommand("run", "generate text from a prompt");
  struct Args {
    std::string model, prompt;
    bool chat = false;
    GenerationArgs gen;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("MODEL", a->model, "model directory")->required();
  sub->add_option("-p,--prompt", a->prompt, "prompt text")->required();
  sub->add_flag("--chat", a->chat, "wrap the prompt as a user turn with the model's chat template");
  add_generation_options(sub, a->gen);
  return {sub, [a] {
            apply_threads(a->gen.threads);
            HLWQ_CHECK(!a->prompt.empty(), "empty prompt: give -p some text");
            LoadedModel m = load_model_dir(a->model, context_load_options(a->gen.ctx));
            const std::string text =
                a->chat ? render_chat(m.chat, std::vector<ChatMessage>{{"user", a->prompt}}, true) : a->prompt;
            const std::vector<int32_t> ids = m.tok.encode(text, /*allow_special=*/a->chat);
            HLWQ_CHECK(!ids.empty(), "empty prompt: the text encodes to no tokens");
            HLWQ_CHECK(int64_t(ids.size()) < a->gen.ctx,
                       "prompt of {} tokens does not fit the context of {} (raise --ctx)", ids.size(), a->gen.ctx);
            Sequence st = m.model.new_sequence(a->gen.ctx);
            if (!a->chat) std::fputs(a->prompt.c_str(), stdout);
            GenerateResult r = generate(m.model, m.tok, st, ids, make_generate_options(a->gen, m),
                                        [](const std::string& s) {
                                          std::fputs(s.c_str(), stdout);
                                          std::fflush(stdout);
                                        });
            std::fputc('\n', stdout);
            std::fprintf(stderr, "prompt: %lld tokens, %.1f tok/s | generation: %zu tokens, %.1f tok/s | finish: %s\n",
                         (long long)r.n_prompt, r.prefill_tok_s(), r.tokens.size(), r.decode_tok_s(),
                         std::string(finish_reason_name(r.finish)).c_str());
            return 0;
          }};
}

}  // namespace hlwq::cli
