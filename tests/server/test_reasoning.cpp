// ReasoningSplitter on text: every way of cutting a scripted model output into stream pieces gives the same
// reasoning and content as the whole text at once.
#include <gtest/gtest.h>

#include "server/reasoning.h"

namespace hlwq::server {
namespace {

ReasoningSplitter::Out whole(std::string_view text, bool start_in) {
  ReasoningSplitter s(start_in);
  auto a = s.push(text);
  auto b = s.flush();
  return {a.reasoning + b.reasoning, a.content + b.content};
}

TEST(Reasoning, OpenedByTemplate) {
  auto o = whole("The user wants a sum.\n</think>\n\nThe sum is 4.", true);
  EXPECT_EQ(o.reasoning, "The user wants a sum.\n");
  EXPECT_EQ(o.content, "\n\nThe sum is 4.");
}

TEST(Reasoning, OpenedByModel) {
  auto o = whole("<think>hmm</think>answer", false);
  EXPECT_EQ(o.reasoning, "hmm");
  EXPECT_EQ(o.content, "answer");
}

TEST(Reasoning, NoThinkingIsAllContent) {
  auto o = whole("just an answer with a < and </thin", false);
  EXPECT_EQ(o.reasoning, "");
  EXPECT_EQ(o.content, "just an answer with a < and </thin");
}

TEST(Reasoning, UnclosedThinkingIsAllReasoning) {
  auto o = whole("still thinking </thi", true);
  EXPECT_EQ(o.reasoning, "still thinking </thi");
  EXPECT_EQ(o.content, "");
}

TEST(Reasoning, EveryTwoCutStreamMatchesWhole) {
  const std::string text = "a<b </think>x</thinkY<think>z</think>end";
  for (bool start_in : {false, true}) {
    const auto ref = whole(text, start_in);
    for (size_t i = 0; i <= text.size(); ++i)
      for (size_t j = i; j <= text.size(); ++j) {
        ReasoningSplitter s(start_in);
        std::string r, c;
        for (auto piece : {text.substr(0, i), text.substr(i, j - i), text.substr(j)}) {
          auto o = s.push(piece);
          r += o.reasoning, c += o.content;
        }
        auto o = s.flush();
        r += o.reasoning, c += o.content;
        ASSERT_EQ(r, ref.reasoning) << i << "," << j;
        ASSERT_EQ(c, ref.content) << i << "," << j;
      }
  }
}

}  // namespace
}  // namespace hlwq::server
