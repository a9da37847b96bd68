#include "core/tensor.h"

#include "core/error.h"

namespace hlwq {

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

std::string TensorView::desc() const { return shape_str(shape) + " " + std::string(dtype_name(dtype)); }

Tensor::Tensor(DType t, Shape s) : dtype(t), shape(std::move(s)) {
  bytes.resize(size_t(shape_numel(shape)) * dtype_size(t));
}

std::vector<float> tensor_to_f32(const TensorView& t) {
  std::vector<float> out(size_t(t.numel()));
  convert_to_f32(t.dtype, t.data, out.data(), out.size());
  return out;
}

}  // namespace hlwq
