// Python module sige._C: the CPU kernels.
#include <torch/extension.h>

#include "cpu_common.h"

// Opaque clamp bounds of the host exp_f (see sige_common.h).
const float sige::kExpArgMin = -87.0f;
const float sige::kExpArgMax = 87.0f;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  SIGE_DEFINE_MODULE(m, sige::cpu, "CPU, OpenMP");
  m.def("num_threads", &at::get_num_threads, "threads the kernels use (torch.get_num_threads())");
}
