// TensorView: a non-owning, row-major, contiguous view of host memory with dtype and shape.
// Checkpoint tensors are views into mmapped files; owned buffers use Tensor (vector-backed).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace hlwq {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[512, 2048]"

struct TensorView {
  DType dtype = DType::F32;
  Shape shape;
  const void* data = nullptr;

  int64_t numel() const { return shape_numel(shape); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  int64_t dim(int i) const { return shape.at(size_t(i < 0 ? int(shape.size()) + i : i)); }
  template <typename T>
  const T* as() const { return static_cast<const T*>(data); }
  std::string desc() const;  // "[512, 2048] BF16"
};

// Owned tensor: bytes in a vector, same metadata as a view.
struct Tensor {
  DType dtype = DType::F32;
  Shape shape;
  std::vector<uint8_t> bytes;

  Tensor() = default;
  Tensor(DType t, Shape s);
  TensorView view() const { return {dtype, shape, bytes.data()}; }
  template <typename T>
  T* as() { return reinterpret_cast<T*>(bytes.data()); }
  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(bytes.data()); }
  int64_t numel() const { return shape_numel(shape); }
};

// fp32 copy of a floating tensor (F32/F16/BF16/F64).
std::vector<float> tensor_to_f32(const TensorView& t);

}  // namespace hlwq
