// Builds ModelWeights from a checkpoint by walking the name tables (tensor_names.h). Every tensor is checked
// for presence, dtype and shape before use; a mismatch throws
//   "expected [512, 2048] BF16, got [2048, 512] BF16 for model.layers.3.mlp.gate.weight"
// and a tensor that no table names (other than model.visual.* and mtp.*) is an error too, since a weight hlwq
// does not apply (a bias, an extra norm) would silently change the math.
#pragma once
#include <string>

#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/weights.h"

namespace hlwq {

// The returned views point into ckpt's mmapped files: ckpt must outlive the weights.
ModelWeights load_model_weights(const Checkpoint& ckpt, const ModelConfig& cfg);

// "model.language_model." or "model." depending on where embed_tokens lives; throws when neither exists.
std::string detect_text_prefix(const Checkpoint& ckpt);

}  // namespace hlwq
