// Helpers shared by the CUDA kernels: launch configuration (grid-stride loops on the current
// stream), 32/64-bit index dispatch, and the fused affine + activation device function.
//
// Only c10's light CUDA headers are used (c10::cuda::getCurrentCUDAStream is what
// at::cuda::getCurrentCUDAStream forwards to): ATen/cuda/CUDAContext.h pulls in the cuBLAS and
// cuSPARSE headers, which minimal CUDA toolkits do not ship.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <limits>

#include "../sige_ops.h"

namespace sige {
namespace cuda {

SIGE_OP_DECLS

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over `total` elements: enough to fill the GPU a few times over,
// never more than the work needs. Callers skip the launch when total == 0.
inline int64_t sm_count() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices];  // 0 = not queried yet
  const int dev = c10::cuda::current_device();
  const bool cached = dev >= 0 && dev < kMaxDevices;
  if (cached) {
    const int hit = cache[dev].load(std::memory_order_relaxed);
    if (hit > 0) return hit;
  }
  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  if (cached) cache[dev].store(sms, std::memory_order_relaxed);
  return sms;
}

inline int64_t grid_for(int64_t total) {
  const int64_t sms = std::max<int64_t>(1, sm_count());
  const int64_t need = (total + kThreads - 1) / kThreads;
  return std::max<int64_t>(1, std::min<int64_t>(need, sms * 32));
}

// Run f(index_t{}) with 32-bit indices when every flat offset (and the grid-stride increment
// past the end) fits, else with 64-bit indices.
template <typename F>
inline void dispatch_index(int64_t max_elems, int64_t grid, F&& f) {
  const int64_t headroom = grid * kThreads;
  if (max_elems + headroom < static_cast<int64_t>(std::numeric_limits<int32_t>::max())) {
    f(int32_t{});
  } else {
    f(int64_t{});
  }
}

template <typename index_t>
__device__ __forceinline__ index_t floor_div_i(index_t a, index_t b) {
  const index_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// Decomposition of a flat tile-element id into (b, n, c, r, s) and its map position (h, w): the tile of
// block n starts at floor((offset + index_n) / stride) (offset 0, stride 1: the block's own corner).
template <typename index_t>
struct TileElem {
  index_t b, n, c, r, s, h, w;
  __device__ __forceinline__ TileElem(index_t e, const int32_t* idx, index_t C, index_t N, index_t th, index_t tw,
                                      index_t oh, index_t ow, index_t sh, index_t sw) {
    index_t t = e;
    s = t % tw;
    t /= tw;
    r = t % th;
    t /= th;
    c = t % C;
    t /= C;
    n = t % N;
    b = t / N;
    h = floor_div_i<index_t>(oh + idx[2 * n], sh) + r;
    w = floor_div_i<index_t>(ow + idx[2 * n + 1], sw) + s;
  }
  __device__ __forceinline__ bool inside(index_t H, index_t W) const {
    return h >= 0 && h < H && w >= 0 && w < W;
  }
};

template <typename scalar_t>
__device__ __forceinline__ int64_t bcast_off(const Bcast<scalar_t>& t, int64_t b, int64_t c, int64_t h, int64_t w) {
  return b * t.sb + c * t.sc + h * t.sh + w * t.sw;
}

// act(v*scale + shift) or act(v)*scale + shift at map position (b, c, h, w).
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t affine_act(acc_t v, const Bcast<scalar_t>& sc, const Bcast<scalar_t>& sh, int64_t b,
                                            int64_t c, int64_t h, int64_t w, int act, bool act_first) {
  if (act_first) v = activate_rt(act, v);
  if (sc.ptr != nullptr) v = mul_rn(v, static_cast<acc_t>(sc.ptr[bcast_off(sc, b, c, h, w)]));
  if (sh.ptr != nullptr) v = add_rn(v, static_cast<acc_t>(sh.ptr[bcast_off(sh, b, c, h, w)]));
  if (!act_first) v = activate_rt(act, v);
  return v;
}

inline void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), "sige: ", name, " must be a CUDA tensor");
}

// Indices live on the map's device: a kernel handed host indices would read host memory from the
// device (an illegal access that breaks every later CUDA call in the process).
inline void check_indices_on(const at::Tensor& idx, const at::Tensor& map, const char* map_name) {
  TORCH_CHECK(idx.device() == map.device(), "sige: indices are on ", idx.device(), " but ", map_name, " is on ",
              map.device());
}

inline void check_same(const at::Tensor& a, const at::Tensor& b, const char* an, const char* bn) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "sige: ", an, " (", a.scalar_type(), ") and ", bn, " (",
              b.scalar_type(), ") must have the same dtype");
  TORCH_CHECK(a.device() == b.device(), "sige: ", an, " is on ", a.device(), " but ", bn, " is on ", b.device());
}

}  // namespace cuda
}  // namespace sige
