#include <gtest/gtest.h>

#include <fstream>

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

TEST(HfConfig, Qwen3NextAndQwen3Moe) {
  // Field values as in the public Qwen3-Next-80B-A3B and Qwen3-30B-A3B configs.
  json next = json::parse(R"({"model_type":"qwen3_next","vocab_size":151936,"hidden_size":2048,
     "num_hidden_layers":48,"num_attention_heads":16,"num_key_value_heads":2,"head_dim":256,
     "linear_num_key_heads":16,"linear_num_value_heads":32,"linear_key_head_dim":128,"linear_value_head_dim":128,
     "linear_conv_kernel_dim":4,"num_experts":512,"num_experts_per_tok":10,"moe_intermediate_size":512,
     "shared_expert_intermediate_size":512,"full_attention_interval":4,"rope_theta":10000000,
     "partial_rotary_factor":0.25,"hidden_act":"silu","norm_topk_prob":true,"eos_token_id":151645})");
  ModelConfig n = parse_model_config(next);
  EXPECT_EQ(n.arch, ModelArch::qwen3_next);
  EXPECT_EQ(n.n_full_attention_layers(), 12);
  EXPECT_EQ(n.layer_types[3], LayerKind::full_attention);
  EXPECT_EQ(n.rotary_dim(), 64);
  EXPECT_EQ(n.n_experts_active, 10);

  json moe = json::parse(R"({"model_type":"qwen3_moe","vocab_size":151936,"hidden_size":2048,
     "num_hidden_layers":48,"num_attention_heads":32,"num_key_value_heads":4,"head_dim":128,"num_experts":128,
     "num_experts_per_tok":8,"moe_intermediate_size":768,"norm_topk_prob":true,"decoder_sparse_step":1,
     "mlp_only_layers":[],"rope_theta":1000000.0,"rope_scaling":null,"hidden_act":"silu","attention_bias":false})");
  ModelConfig m = parse_model_config(moe);
  EXPECT_EQ(m.arch, ModelArch::qwen3_moe);
  EXPECT_EQ(m.n_linear_attention_layers(), 0);
  EXPECT_EQ(m.shared_expert_intermediate, 0);
  EXPECT_TRUE(m.norm_topk_prob);
  moe["mlp_only_layers"] = json::array({0});
  expect_config_error(moe, "mlp_only_layers");
  moe["mlp_only_layers"] = json::array();
  moe["decoder_sparse_step"] = 2;
  expect_config_error(moe, "decoder_sparse_step");
  moe["decoder_sparse_step"] = 1;
  moe["rope_scaling"] = json::parse(R"({"type":"yarn","factor":4})");
  expect_config_error(moe, "rope_scaling");
}

// Wrong-typed values are quoted briefly (bounded depth and length), and a config.json nested absurdly deep is
// refused before parsing: dump() of such a value in an error message would recurse once per level.
TEST(HfConfig, NestedValuesInErrorsAreBounded) {
  json j = demo();
  j["hidden_size"] = json::array({json::array({json::array({json::array({1})})})});
  expect_config_error(j, "field 'hidden_size' must be an integer, got [[[[...]]]]");
  j = demo();
  j["rope_scaling"] = {{"type", std::string(1000, 'y')}};
  expect_config_error(j, "rope_scaling {\"type\": \"yyyy");
  const std::filesystem::path p = hlwq::test::scratch_dir("hf_deep") / "config.json";
  std::ofstream(p) << R"({"model_type": )" << std::string(100000, '[') << std::string(100000, ']') << "}";
  try {
    read_json_file(p.string());
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nests deeper than 128 levels"), std::string::npos) << e.what();
  }
}
