#include "cli/line_reader.h"

#include <histedit.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <iostream>

#include "core/error.h"

namespace hlwq::cli {

struct LineReader::Editor {
  EditLine* el = nullptr;
  History* hist = nullptr;
  std::string prompt;
  ~Editor() {
    if (el) el_end(el);  // restores the terminal's settings
    if (hist) history_end(hist);
  }
};

namespace {

// libedit asks for the prompt through a callback that sees only the EditLine; EL_CLIENTDATA carries the Editor.
char* prompt_of(EditLine* el) {
  void* data = nullptr;
  el_get(el, EL_CLIENTDATA, &data);
  return const_cast<char*>(static_cast<LineReader::Editor*>(data)->prompt.c_str());
}

}  // namespace

LineReader::LineReader(std::string prompt) : prompt_(std::move(prompt)) {
  if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) return;
  auto e = std::make_unique<Editor>();
  e->prompt = prompt_;
  e->hist = history_init();
  HLWQ_CHECK(e->hist != nullptr, "libedit: cannot start the history");
  HistEvent ev;
  history(e->hist, &ev, H_SETSIZE, 1000);
  history(e->hist, &ev, H_SETUNIQUE, 1);
  e->el = el_init("hlwq", stdin, stdout, stderr);
  HLWQ_CHECK(e->el != nullptr, "libedit: cannot start line editing on this terminal");
  el_set(e->el, EL_CLIENTDATA, e.get());
  el_set(e->el, EL_PROMPT, &prompt_of);
  el_set(e->el, EL_EDITOR, "emacs");
  el_set(e->el, EL_HIST, history, e->hist);
  el_set(e->el, EL_SIGNAL, 0);  // our SIGINT handler, not libedit's, decides what Ctrl-C does
  edit_ = std::move(e);
}

LineReader::~LineReader() = default;

LineReader::Status LineReader::read(std::string& line) {
  if (!edit_) {
    std::fputs(prompt_.c_str(), stdout);
    std::fflush(stdout);
    if (std::getline(std::cin, line)) return Status::line;
    if (errno == EINTR) {
      std::cin.clear();
      return Status::interrupted;
    }
    return Status::end_of_input;
  }
  int count = 0;
  errno = 0;
  const char* s = el_gets(edit_->el, &count);
  if (s == nullptr) {
    if (count < 0 && errno == EINTR) return Status::interrupted;
    return Status::end_of_input;
  }
  line.assign(s, size_t(count));
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return Status::line;
}

void LineReader::remember(const std::string& line) {
  if (!edit_ || line.empty()) return;
  HistEvent ev;
  history(edit_->hist, &ev, H_ENTER, line.c_str());
}

}  // namespace hlwq::cli
