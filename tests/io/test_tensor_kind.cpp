#include <gtest/gtest.h>

#include "io/tensor_kind.h"

using namespace hlwq;

TEST(TensorKind, FirstMatchingRuleWins) {
  EXPECT_EQ(tensor_kind_of("model.visual.blocks.0.mlp.linear_fc1.weight"), TensorKind::visual);
  EXPECT_EQ(tensor_kind_of("mtp.layers.0.mlp.experts.3.up_proj.weight"), TensorKind::mtp);  // not an expert
  EXPECT_EQ(tensor_kind_of("model.language_model.layers.1.mlp.experts.gate_up_proj"), TensorKind::routed_expert);
  EXPECT_EQ(tensor_kind_of("model.layers.1.mlp.shared_expert.down_proj.weight"), TensorKind::shared_expert);
  EXPECT_EQ(tensor_kind_of("model.layers.1.mlp.shared_expert_gate.weight"), TensorKind::shared_expert);
  EXPECT_EQ(tensor_kind_of("model.layers.1.mlp.gate.weight"), TensorKind::router);
  EXPECT_EQ(tensor_kind_of("model.layers.3.self_attn.q_norm.weight"), TensorKind::attention);
  EXPECT_EQ(tensor_kind_of("model.layers.0.linear_attn.A_log"), TensorKind::linear_attention);
  EXPECT_EQ(tensor_kind_of("model.embed_tokens.weight"), TensorKind::embeddings);
  EXPECT_EQ(tensor_kind_of("lm_head.weight"), TensorKind::lm_head);
  EXPECT_EQ(tensor_kind_of("model.norm.weight"), TensorKind::norm);
  EXPECT_EQ(tensor_kind_of("model.layers.0.mlp.down_proj.weight"), TensorKind::dense_mlp);
  EXPECT_FALSE(tensor_kind_is_text(TensorKind::mtp));
  EXPECT_TRUE(tensor_kind_is_text(TensorKind::router));
  EXPECT_EQ(tensor_kind_name(TensorKind::routed_expert), "routed experts");
}
