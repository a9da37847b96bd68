// Finiteness of raw tensor bytes, by bit pattern (no conversion): every floating tensor `hlwq quantize` writes,
// quantized or kept as stored (norms, router, embeddings), must be free of NaN and Inf, or the output would
// load and then produce NaN logits far from the cause.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace hlwq {

// Index of the first NaN/Inf among n elements of dtype t at data, or n when all are finite (and for integer
// dtypes, which have neither).
size_t first_non_finite(DType t, const void* data, size_t n);

}  // namespace hlwq
