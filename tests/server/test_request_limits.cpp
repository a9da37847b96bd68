// parse_request on hostile bodies (regressions of fuzz_server_request's findings): each is refused with a 400
// naming the cause, never a crash; a plain body next to them is accepted, so the refusals are not blanket ones.
#include <gtest/gtest.h>

#include <string>

#include "runtime/chat_template.h"
#include "runtime/tokenizer.h"
#include "server/openai_api.h"
#include "test_paths.h"

namespace hlwq::server {
namespace {

struct Demo {
  Tokenizer tok = Tokenizer::from_file(test::source_dir() / "models/tiny-moe-dev/tokenizer.json");
  ChatTemplate chat = ChatTemplate::from_model_dir(test::source_dir() / "models/tiny-moe-dev");
  ApiContext ctx() const { return {"tiny-moe-dev", 256, SamplerConfig{}, &tok, &chat, false}; }
};

const Demo& demo() {
  static const Demo d;
  return d;
}

std::string nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

std::string chat_with_content(const std::string& content) {
  return R"({"messages": [{"role": "user", "content": )" + content + "}]}";
}

ApiError refusal(Endpoint ep, const std::string& body) {
  try {
    parse_request(ep, body, demo().ctx());
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body.substr(0, 200);
  return {};
}

TEST(RequestLimits, PlainBodyIsAccepted) {
  const ApiRequest r = parse_request(Endpoint::chat, chat_with_content(R"("Hi")"), demo().ctx());
  EXPECT_FALSE(r.gen.prompt.empty());
}

// Found by fuzz_server_request: 30,000 levels of [ in a message's content overflowed the stack when the value
// was copied (a crash of the whole server from one 60 KB request). Now the depth is checked before parsing.
TEST(RequestLimits, DeeplyNestedContentIsA400NotACrash) {
  for (size_t depth : {size_t(129), size_t(30000), size_t(1) << 20}) {
    const ApiError e = refusal(Endpoint::chat, chat_with_content(nested(depth)));
    EXPECT_EQ(e.status, 400) << depth;
    EXPECT_NE(e.message.find("nests deeper than 128 levels"), std::string::npos) << e.message;
  }
  const ApiError e = refusal(Endpoint::completions, R"({"prompt": "x", "stop": )" + nested(100000) + "}");
  EXPECT_NE(e.message.find("nests deeper than 128 levels"), std::string::npos) << e.message;
}

TEST(RequestLimits, NestingWithinTheCapIsAnOrdinaryContentError) {
  // 125 levels of content inside the body's 3 (object, messages, message): the content check answers.
  const ApiError e = refusal(Endpoint::chat, chat_with_content(nested(125)));
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "messages[0].content");
}

TEST(RequestLimits, BracketsInsideStringsDoNotCount) {
  const ApiRequest r =
      parse_request(Endpoint::chat, chat_with_content("\"" + std::string(150, '[') + "\""), demo().ctx());
  EXPECT_FALSE(r.gen.prompt.empty());
}

}  // namespace
}  // namespace hlwq::server
