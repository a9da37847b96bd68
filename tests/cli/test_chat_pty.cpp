// `hlwq chat` at a terminal (a pseudo-terminal): line editing history, /help and /reset answered without the
// model, Ctrl-C mid-answer stopping only the answer, Ctrl-C at the prompt quitting, the terminal left as found.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "pty_session.h"
#include "test_paths.h"

using hlwq::test::PtySession;

namespace {

std::string demo() { return (hlwq::test::source_dir() / "models/tiny-moe-dev").string(); }

}  // namespace

TEST(ChatPty, HelpHistoryCtrlCAndACleanTerminal) {
  // -n -1: the answer runs until Ctrl-C or the end of the context, so the interrupt always lands mid-answer.
  PtySession s("chat " + demo() + " -n -1 --temp 1 --seed 7 -t 1");
  const termios before = s.terminal();
  ASSERT_TRUE(s.expect("> ", 60)) << s.output();

  s.send("/help\r");
  ASSERT_TRUE(s.expect("/reset", 10)) << s.output();
  ASSERT_TRUE(s.expect("> ", 10)) << s.output();
  EXPECT_EQ(s.output().find("tok/s"), std::string::npos) << "/help must not reach the model: " << s.output();

  s.send("Tell me about lists\r");
  ASSERT_TRUE(s.expect("Tell me about lists", 10)) << s.output();
  // Let the answer stream a little, then interrupt it.
  const size_t start = s.output().size();
  for (int i = 0; i < 300 && s.output().size() < start + 40; ++i) s.expect("\x01never", 0.1);
  ASSERT_GE(s.output().size(), start + 40) << "no answer streamed: " << s.output();
  s.send("\x03");
  ASSERT_TRUE(s.expect("interrupted]", 30)) << s.output();
  EXPECT_NE(s.output().find("\n["), std::string::npos) << "stats start their own line: " << s.output();
  ASSERT_TRUE(s.expect("> ", 10)) << "Ctrl-C mid-answer must return to the prompt: " << s.output();

  // History: up twice recalls /help (the line before the question); enter runs it again.
  s.send("\x1b[A");
  ASSERT_TRUE(s.expect("Tell me about lists", 10)) << s.output();
  s.send("\x1b[A\r");
  ASSERT_TRUE(s.expect("/exit", 10)) << "the recalled /help must print the help again: " << s.since_mark();
  ASSERT_TRUE(s.expect("> ", 10));

  s.send("/reset\r");
  ASSERT_TRUE(s.expect("conversation cleared", 10)) << s.output();
  ASSERT_TRUE(s.expect("> ", 10));

  s.send("\x03");  // Ctrl-C at the prompt quits
  EXPECT_EQ(s.wait_exit(30), 0) << s.output();
  const termios after = s.terminal();
  EXPECT_EQ(after.c_lflag & (ICANON | ECHO | ISIG), before.c_lflag & (ICANON | ECHO | ISIG))
      << "the terminal must be left in the mode it was found in";
}

TEST(ChatPty, CommandsAreNeverSentToTheModel) {
  PtySession s("chat " + demo() + " -n 4 --temp 0 -t 1");
  ASSERT_TRUE(s.expect("> ", 60)) << s.output();
  s.send("/nonsense\r");
  ASSERT_TRUE(s.expect("unknown command /nonsense", 10)) << s.output();
  ASSERT_TRUE(s.expect("> ", 10));
  s.send("\x04");  // Ctrl-D on an empty line: end of input
  EXPECT_EQ(s.wait_exit(30), 0) << s.output();
  EXPECT_EQ(s.output().find("tok/s"), std::string::npos) << s.output();
}

TEST(RunPty, CtrlCEndsTheGenerationWithItsStats) {
  PtySession s("run " + demo() + " -p Once -n -1 --temp 1 --seed 3 -t 1");
  ASSERT_TRUE(s.expect("Once", 60)) << s.output();
  const size_t start = s.output().size();
  for (int i = 0; i < 300 && s.output().size() < start + 40; ++i) s.expect("\x01never", 0.1);
  s.send("\x03");
  EXPECT_EQ(s.wait_exit(30), 130) << s.output();
  EXPECT_NE(s.output().find("finish: interrupted"), std::string::npos) << s.output();
}
