// Tensor-level declarations and argument helpers shared by the CPU (sige._C) and CUDA
// (sige._C_cuda) extensions. Both expose the same six functions with the same signatures; the
// Python wrapper sige/backends/native.py unpacks tuples and maps activation names to ids.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "sige_common.h"

namespace sige {

using OptTensor = std::optional<at::Tensor>;

// Active indices as contiguous int32 [N, 2] on the indices' device (one conversion per call;
// coordinates always fit in 32 bits, all flat offsets are computed in 64 bits).
inline at::Tensor indices_i32(const at::Tensor& indices) {
  TORCH_CHECK(indices.dim() == 2 && indices.size(1) == 2, "sige: active indices must be [N, 2], got ",
              indices.sizes());
  TORCH_CHECK(indices.scalar_type() == at::kInt || indices.scalar_type() == at::kLong,
              "sige: active indices must be int32 or int64, got ", indices.scalar_type());
  return indices.to(at::kInt).contiguous();
}

inline void check_map(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 4, "sige: ", name, " must be 4-D [B, C, H, W], got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16 ||
                  t.scalar_type() == at::kDouble,
              "sige: ", name, " has unsupported dtype ", t.scalar_type());
}

inline void check_contig(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_contiguous(), "sige: ", name, " must be contiguous");
}

// Broadcast strides of an optional [1|B, 1|C, 1|H, 1|W] tensor against a [B, C, H, W] map; the
// tensor must have `like`'s dtype and device (the Python side converts). Any strides are fine.
template <typename scalar_t>
Bcast<scalar_t> make_bcast(const OptTensor& t, const at::Tensor& like, int64_t B, int64_t C, int64_t H, int64_t W,
                           const char* name) {
  Bcast<scalar_t> v;
  if (!t.has_value() || !t->defined()) return v;
  const at::Tensor& u = *t;
  TORCH_CHECK(u.dim() == 4, "sige: ", name, " must be 4-D, got ", u.sizes());
  TORCH_CHECK(u.scalar_type() == like.scalar_type(), "sige: ", name, " has dtype ", u.scalar_type(), " but ",
              like.scalar_type(), " is needed");
  TORCH_CHECK(u.device() == like.device(), "sige: ", name, " is on ", u.device(), " but the map is on ",
              like.device());
  const int64_t full[4] = {B, C, H, W};
  int64_t st[4];
  for (int d = 0; d < 4; ++d) {
    TORCH_CHECK(u.size(d) == 1 || u.size(d) == full[d], "sige: ", name, " of shape ", u.sizes(),
                " does not broadcast against [", B, ", ", C, ", ", H, ", ", W, "]");
    st[d] = (u.size(d) == 1) ? 0 : u.stride(d);
  }
  v.ptr = u.const_data_ptr<scalar_t>();
  v.sb = st[0];
  v.sc = st[1];
  v.sh = st[2];
  v.sw = st[3];
  return v;
}

inline void check_act(int64_t act) {
  TORCH_CHECK(act >= 0 && act < ACT_COUNT, "sige: unknown activation id ", act);
}

// Output tile size of get_scatter_map's geometry.
inline std::pair<int64_t, int64_t> tile_of(int64_t bh, int64_t bw, int64_t kh, int64_t kw, int64_t sh, int64_t sw) {
  TORCH_CHECK(sh > 0 && sw > 0, "sige: strides must be positive");
  const int64_t th = floor_div(bh - kh, sh) + 1, tw = floor_div(bw - kw, sw) + 1;
  TORCH_CHECK(th >= 0 && tw >= 0, "sige: block (", bh, ", ", bw, ") is smaller than the kernel (", kh, ", ", kw, ")");
  return {th, tw};
}

#define SIGE_OP_DECLS                                                                                                \
  at::Tensor gather(const at::Tensor& x, int64_t bh, int64_t bw, const at::Tensor& indices, const OptTensor& scale,  \
                    const OptTensor& shift, int64_t act, bool act_first);                                            \
  at::Tensor scatter_(at::Tensor out, const at::Tensor& tiles, const at::Tensor& indices, int64_t oh, int64_t ow,    \
                      int64_t sh, int64_t sw, const OptTensor& residual);                                            \
  at::Tensor copy_tiles_(at::Tensor dst, const at::Tensor& src, const at::Tensor& indices, int64_t th, int64_t tw,   \
                         int64_t oh, int64_t ow, int64_t sh, int64_t sw);                                            \
  at::Tensor block_residual_(at::Tensor out, const at::Tensor& tiles, const at::Tensor& indices, int64_t oh,         \
                             int64_t ow, int64_t sh, int64_t sw, const at::Tensor& original_residual);               \
  at::Tensor get_scatter_map(int64_t H, int64_t W, int64_t bh, int64_t bw, int64_t kh, int64_t kw, int64_t oh,       \
                             int64_t ow, int64_t sh, int64_t sw, const at::Tensor& indices);                         \
  at::Tensor scatter_gather(const at::Tensor& tiles, const at::Tensor& original, int64_t bh, int64_t bw,             \
                            const at::Tensor& indices, const at::Tensor& scatter_map, const OptTensor& scale,        \
                            const OptTensor& shift, int64_t act, bool act_first);

// pybind11 registration shared by both modules (same names, same argument names); expand it
// only in a translation unit that includes <torch/extension.h>.
#define SIGE_DEFINE_MODULE(m, NS, DEVICE_DOC)                                                                        \
  m.doc() = "SIGE native sparse kernels (" DEVICE_DOC ")";                                                           \
  m.def("gather", &NS::gather, "gather active blocks with fused scale/shift/activation", py::arg("x"),               \
        py::arg("bh"), py::arg("bw"), py::arg("indices"), py::arg("scale"), py::arg("shift"), py::arg("act"),        \
        py::arg("act_first"));                                                                                       \
  m.def("scatter_", &NS::scatter_, "scatter output tiles in place (+ residual)", py::arg("out"), py::arg("tiles"),   \
        py::arg("indices"), py::arg("oh"), py::arg("ow"), py::arg("sh"), py::arg("sw"), py::arg("residual"));        \
  m.def("copy_tiles_", &NS::copy_tiles_, "copy the tile positions of src into dst", py::arg("dst"), py::arg("src"),  \
        py::arg("indices"), py::arg("th"), py::arg("tw"), py::arg("oh"), py::arg("ow"), py::arg("sh"),               \
        py::arg("sw"));                                                                                              \
  m.def("block_residual_", &NS::block_residual_, "out += tile - original_residual at tile positions",               \
        py::arg("out"), py::arg("tiles"), py::arg("indices"), py::arg("oh"), py::arg("ow"), py::arg("sh"),           \
        py::arg("sw"), py::arg("original_residual"));                                                                \
  m.def("get_scatter_map", &NS::get_scatter_map, "int32 [H, W, 3] (block, row, col) map, -1 where no tile",          \
        py::arg("H"), py::arg("W"), py::arg("bh"), py::arg("bw"), py::arg("kh"), py::arg("kw"), py::arg("oh"),       \
        py::arg("ow"), py::arg("sh"), py::arg("sw"), py::arg("indices"));                                            \
  m.def("scatter_gather", &NS::scatter_gather, "fused scatter of tiles + gather of blocks", py::arg("tiles"),        \
        py::arg("original"), py::arg("bh"), py::arg("bw"), py::arg("indices"), py::arg("scatter_map"),               \
        py::arg("scale"), py::arg("shift"), py::arg("act"), py::arg("act_first"))

}  // namespace sige
