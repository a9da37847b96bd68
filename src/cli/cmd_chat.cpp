// `hlwq chat MODEL`: an interactive conversation on stdin/stdout, streamed. Each turn renders the whole
// conversation with the model's chat template; when the rendering extends what the sequence state already
// holds, only the new tokens are run (Gated DeltaNet state cannot be rewound, so anything else starts over).
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/sampling_options.h"
#include "core/error.h"

namespace hlwq::cli {

Command add_chat(CLI::App& app) {
  auto* sub = app.add_subcommand("chat", "interactive chat (type /exit or end input to quit, /reset to clear)");
  struct Args {
    std::string model, system;
    GenerationArgs gen;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("MODEL", a->model, "model directory")->required();
  sub->add_option("--system", a->system, "system prompt");
  add_generation_options(sub, a->gen);
  return {sub, [a] {
            apply_threads(a->gen.threads);
            LoadedModel m = load_model_dir(a->model, context_load_options(a->gen.ctx));
            const GenerateOptions gopt = make_generate_options(a->gen, m);
            std::vector<ChatMessage> msgs;
            if (!a->system.empty()) msgs.push_back({"system", a->system});
            Sequence st = m.model.new_sequence(a->gen.ctx);
            std::vector<int32_t> held;  // tokens the state has consumed
            std::string line;
            std::fprintf(stderr, "hlwq chat: %s (/exit to quit, /reset to clear)\n", a->model.c_str());
            while (true) {
              std::fputs("> ", stdout);
              std::fflush(stdout);
              if (!std::getline(std::cin, line) || line == "/exit") break;
              if (line == "/reset") {
                msgs.resize(a->system.empty() ? 0 : 1);
                st.reset();
                held.clear();
                continue;
              }
              if (line.empty()) continue;
              msgs.push_back({"user", line});
              const std::vector<int32_t> all = m.tok.encode(render_chat(m.chat, msgs, true), true);
              if (int64_t(all.size()) >= a->gen.ctx) {
                std::fprintf(stderr, "hlwq: the conversation (%zu tokens) no longer fits --ctx %lld; /reset\n",
                             all.size(), (long long)a->gen.ctx);
                msgs.pop_back();
                continue;
              }
              const bool extends = all.size() > held.size() && std::equal(held.begin(), held.end(), all.begin());
              if (!extends) {
                st.reset();
                held.clear();
              }
              std::vector<int32_t> fresh(all.begin() + int64_t(held.size()), all.end());
              GenerateResult r = generate(m.model, m.tok, st, fresh, gopt, [](const std::string& s) {
                std::fputs(s.c_str(), stdout);
                std::fflush(stdout);
              });
              std::fputc('\n', stdout);
              held = all;
              // the state consumed every generated token except the last one sampled
              held.insert(held.end(), r.tokens.begin(), r.tokens.end() - (r.tokens.empty() ? 0 : 1));
              msgs.push_back({"assistant", r.text});
              std::fprintf(stderr, "[%zu tokens, %.1f tok/s]\n", r.tokens.size(), r.decode_tok_s());
            }
            return 0;
          }};
}

}  // namespace hlwq::cli
