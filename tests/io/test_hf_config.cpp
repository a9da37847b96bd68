#include <gtest/gtest.h>

#include "core/error.h"
#include "io/hf_config.h"
#include "test_paths.h"

using namespace hlwq;
using json = nlohmann::json;

namespace {
json demo() { return read_json_file((hlwq::test::source_dir() / "models/tiny-moe-dev/config.json").string()); }

void expect_config_error(const json& j, const std::string& needle) {
  try {
    parse_model_config(j);
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(HfConfig, FlatTextConfig) {
  ModelConfig c = parse_model_config(demo());
  EXPECT_EQ(c.arch, ModelArch::qwen3_5_moe);
  EXPECT_FALSE(c.nested);
  EXPECT_EQ(c.hidden_size, 256);
  EXPECT_EQ(c.n_layers, 6);
  EXPECT_EQ(c.layer_types[2], LayerKind::full_attention);
  EXPECT_EQ(c.n_full_attention_layers(), 2);
  EXPECT_EQ(c.rotary_dim(), 16);
  EXPECT_EQ(c.n_experts, 16);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{8187}));
  EXPECT_FALSE(c.quant.has_value());
}

TEST(HfConfig, NestedConfigAndQuantization) {
  json top = {{"model_type", "qwen3_5_moe"}, {"text_config", demo()}};
  top["text_config"].erase("layer_types");
  top["text_config"]["full_attention_interval"] = 3;
  top["quantization_config"] = json::parse(R"({"quant_method":"compressed-tensors","format":"pack-quantized",
     "config_groups":{"group_0":{"targets":["Linear"],"weights":{"num_bits":4,"type":"int","symmetric":true,
     "strategy":"group","group_size":128,"dynamic":false,"actorder":null},"input_activations":null}},
     "ignore":["lm_head","re:.*mlp\\.gate$"]})");
  ModelConfig c = parse_model_config(top);
  EXPECT_TRUE(c.nested);
  EXPECT_EQ(c.layer_types[2], LayerKind::full_attention);  // (i+1) % 3 == 0
  EXPECT_EQ(c.layer_types[3], LayerKind::linear_attention);
  ASSERT_TRUE(c.quant.has_value());
  EXPECT_EQ(c.quant->ignore.size(), 2u);
}

TEST(HfConfig, UnknownMathFieldsAreErrors) {
  json j = demo();
  j["hidden_act"] = "gelu";
  expect_config_error(j, "hidden_act");
  j = demo();
  j["rope_parameters"]["rope_type"] = "yarn";
  expect_config_error(j, "rope_type 'yarn'");
  j = demo();
  j["layer_types"][0] = "sliding_attention";
  expect_config_error(j, "sliding_attention");
  j = demo();
  j["model_type"] = "llama";
  expect_config_error(j, "model_type 'llama'");
  j = demo();
  j.erase("num_experts");
  expect_config_error(j, "missing required field 'num_experts'");
  j = demo();
  j["hidden_size"] = "256";
  expect_config_error(j, "must be an integer");
  j = demo();
  j["num_experts_per_tok"] = 17;
  expect_config_error(j, "num_experts_per_tok");
}

TEST(HfConfig, QuantConfigOtherThanW4A16Group128IsAnError) {
  json j = demo();
  j["quantization_config"] = json::parse(R"({"quant_method":"compressed-tensors","format":"pack-quantized",
     "config_groups":{"g":{"weights":{"num_bits":8,"group_size":128}}}})");
  expect_config_error(j, "num_bits 8");
  j["quantization_config"]["quant_method"] = "gptq";
  expect_config_error(j, "quant_method 'gptq'");
}
