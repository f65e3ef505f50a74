// Python module sige._C_cuda: the CUDA kernels (launched on the current stream of the tensors'
// device).
#include <torch/extension.h>

#include "../sige_ops.h"

namespace sige {
namespace cuda {
SIGE_OP_DECLS
}  // namespace cuda
}  // namespace sige

// Opaque clamp bounds of the host exp_f (see sige_common.h).
const float sige::kExpArgMin = -87.0f;
const float sige::kExpArgMax = 87.0f;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  SIGE_DEFINE_MODULE(m, sige::cuda, "CUDA");
}
