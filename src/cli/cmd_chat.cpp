// `hlwq chat MODEL`: an interactive conversation, streamed. Input comes through cli/line_reader (libedit on a
// terminal: editing, history). Each turn renders the whole conversation with the model's chat template (user
// and system text encoded as text, see runtime/chat_encode.h); when the rendering extends what the sequence
// state already holds, only the new tokens are run (Gated DeltaNet state cannot be rewound, so anything else
// starts over). Ctrl-C during an answer stops it and keeps the conversation; Ctrl-C at the prompt quits.
// Lines starting with '/' are commands and never reach the model ("//" sends a literal '/').
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/device_option.h"
#include "cli/interrupt.h"
#include "cli/line_reader.h"
#include "cli/options.h"
#include "cli/sampling_options.h"
#include "core/error.h"
#include "runtime/chat_encode.h"

namespace hlwq::cli {
namespace {

constexpr const char* kHelp =
    "commands:\n"
    "  /help    this list\n"
    "  /reset   forget the conversation (the system prompt stays)\n"
    "  /exit    quit (also Ctrl-D, or Ctrl-C at the prompt)\n"
    "Ctrl-C during an answer stops it; the conversation is kept. Up/down arrows recall earlier lines.\n"
    "A line starting with '//' is sent with one '/' removed.\n";

}  // namespace

Command add_chat(CLI::App& app) {
  auto* sub = app.add_subcommand("chat", "interactive chat (/help lists the commands)");
  struct Args {
    std::string model, system;
    GenerationArgs gen;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("MODEL,-m,--model", a->model, "model directory")->required();
  sub->add_option("--system", a->system, "system prompt");
  add_generation_options(sub, a->gen);
  return {sub, [a] {
            check_generation_args(a->gen);
            check_model_dir(a->model);
            const int64_t ctx = resolve_ctx(a->gen, load_model_config(a->model));
            const LoadOptions lo = context_load_options(ctx, a->gen.device);
            note_gpu_layers(a->gen, lo.device);

            apply_threads(a->gen.threads);
            LoadedModel m = load_model_dir(a->model, lo);
            ResolvedGeneration g = resolve_generation(a->gen, m);
            const size_t n_fixed = a->system.empty() ? 0 : 1;
            std::vector<ChatMessage> msgs;
            if (n_fixed) msgs.push_back({"system", a->system});
            Sequence st = m.model.new_sequence(ctx);
            std::vector<int32_t> held;  // tokens the state has consumed
            InterruptScope interrupt;
            g.opt.should_stop = [&interrupt] { return interrupt.raised(); };
            LineReader reader("> ");
            std::fprintf(stderr, "hlwq chat: %s, context %lld tokens\nsampling: %s\n/help lists the commands\n",
                         a->model.c_str(), (long long)ctx, g.summary.c_str());
            std::string line;
            while (true) {
              interrupt.clear();
              const LineReader::Status status = reader.read(line);
              if (status == LineReader::Status::interrupted) {
                std::fputc('\n', stdout);
                break;
              }
              if (status == LineReader::Status::end_of_input) {
                if (reader.interactive()) std::fputc('\n', stdout);
                break;
              }
              if (line.empty()) continue;
              reader.remember(line);
              if (line[0] == '/' && line.rfind("//", 0) != 0) {
                if (line == "/exit" || line == "/quit") break;
                if (line == "/help") {
                  std::fputs(kHelp, stdout);
                } else if (line == "/reset") {
                  msgs.resize(n_fixed);
                  st.reset();
                  held.clear();
                  std::fputs(n_fixed ? "conversation cleared (system prompt kept)\n" : "conversation cleared\n",
                             stdout);
                } else {
                  std::fprintf(stdout, "unknown command %s: /help lists the commands\n", line.c_str());
                }
                std::fflush(stdout);
                continue;
              }
              msgs.push_back({"user", line[0] == '/' ? line.substr(1) : line});
              const std::vector<int32_t> all = encode_chat(m.tok, m.chat, msgs, true);
              if (int64_t(all.size()) >= ctx) {
                std::fflush(stdout);
                const int64_t limit = m.model.config().max_position_embeddings;
                if (limit > ctx)
                  std::fprintf(stderr,
                               "hlwq: the conversation (%zu tokens) no longer fits the context of %lld: /reset, or "
                               "start again with a larger --ctx (the model allows up to %lld)\n",
                               all.size(), (long long)ctx, (long long)limit);
                else
                  std::fprintf(stderr, "hlwq: the conversation (%zu tokens) no longer fits the context of %lld: /reset\n",
                               all.size(), (long long)ctx);
                msgs.pop_back();
                continue;
              }
              const bool extends = all.size() > held.size() && std::equal(held.begin(), held.end(), all.begin());
              if (!extends) {
                st.reset();
                held.clear();
              }
              std::vector<int32_t> fresh(all.begin() + int64_t(held.size()), all.end());
              GenerateOptions opt = g.opt;
              if (opt.max_new_tokens < 0) opt.max_new_tokens = INT64_MAX;  // -n -1: the full context ends it
              GenerateResult r = generate(m.model, m.tok, st, fresh, opt, [](const std::string& s) {
                std::fputs(s.c_str(), stdout);
                std::fflush(stdout);
              });
              std::fputc('\n', stdout);
              std::fflush(stdout);  // the answer ends its line before the stats start theirs
              held = all;
              // the state consumed every generated token except the last one sampled
              held.insert(held.end(), r.tokens.begin(), r.tokens.end() - (r.tokens.empty() ? 0 : 1));
              msgs.push_back({"assistant", r.text});
              std::fprintf(stderr, "[%zu tokens, %.1f tok/s, %s]\n", r.tokens.size(), r.decode_tok_s(),
                           finish_label(r.finish));
              if (r.finish == FinishReason::context)
                std::fprintf(stderr, "hlwq: the context of %lld tokens is full: /reset to go on\n", (long long)ctx);
            }
            return 0;
          }};
}

}  // namespace hlwq::cli
