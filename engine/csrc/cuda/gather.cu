// CUDA gather and scatter_gather: one thread per output element of [B*N, C, bh, bw] in a
// grid-stride loop, fused scale/shift/activation, zero outside the map.
#include "cuda_common.cuh"

namespace sige {
namespace cuda {

namespace {

template <typename scalar_t, typename index_t>
__global__ void gather_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out,
                              const int32_t* __restrict__ idx, index_t C, index_t H, index_t W, index_t N, index_t bh,
                              index_t bw, Bcast<scalar_t> sc, Bcast<scalar_t> sh, int act, bool act_first,
                              index_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const TileElem<index_t> q(e, idx, C, N, bh, bw, 0, 0, 1, 1);
    const index_t b = q.b, c = q.c, h = q.h, w = q.w;
    acc_t z = acc_t(0);  // zero padding, applied after the affine transform and activation
    if (q.inside(H, W)) {
      const acc_t v = static_cast<acc_t>(x[((b * C + c) * H + h) * W + w]);
      z = affine_act<scalar_t, acc_t>(v, sc, sh, b, c, h, w, act, act_first);
    }
    out[e] = static_cast<scalar_t>(z);
  }
}

template <typename scalar_t, typename index_t>
__global__ void scatter_gather_kernel(const scalar_t* __restrict__ tiles, const scalar_t* __restrict__ orig,
                                      const int32_t* __restrict__ smap, scalar_t* __restrict__ out,
                                      const int32_t* __restrict__ idx, index_t C, index_t H, index_t W, index_t N,
                                      index_t bh, index_t bw, index_t th, index_t tw, Bcast<scalar_t> sc,
                                      Bcast<scalar_t> sh, int act, bool act_first, index_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const TileElem<index_t> q(e, idx, C, N, bh, bw, 0, 0, 1, 1);
    const index_t b = q.b, c = q.c, h = q.h, w = q.w;
    acc_t z = acc_t(0);
    if (q.inside(H, W)) {
      const int32_t* m = smap + 3 * (h * W + w);
      const index_t mn = m[0], mr = m[1], ms = m[2];
      acc_t v;
      // Entries outside the tile batch (never produced by get_scatter_map) read the original.
      if (mn >= 0 && mn < N && mr >= 0 && mr < th && ms >= 0 && ms < tw) {
        v = static_cast<acc_t>(tiles[(((b * N + mn) * C + c) * th + mr) * tw + ms]);
      } else {
        v = static_cast<acc_t>(orig[((b * C + c) * H + h) * W + w]);
      }
      z = affine_act<scalar_t, acc_t>(v, sc, sh, b, c, h, w, act, act_first);
    }
    out[e] = static_cast<scalar_t>(z);
  }
}

}  // namespace

at::Tensor gather(const at::Tensor& x_in, int64_t bh, int64_t bw, const at::Tensor& indices, const OptTensor& scale,
                  const OptTensor& shift, int64_t act, bool act_first) {
  check_map(x_in, "x");
  check_cuda(x_in, "x");
  check_act(act);
  TORCH_CHECK(bh > 0 && bw > 0, "sige: block size must be positive, got (", bh, ", ", bw, ")");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor idx = indices_i32(indices);
  TORCH_CHECK(idx.device() == x.device(), "sige: indices are on ", idx.device(), " but x is on ", x.device());
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), N = idx.size(0);
  at::Tensor out = at::empty({B * N, C, bh, bw}, x.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  const int64_t grid = grid_for(total);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sige_gather_cuda", [&] {
    const auto sc = make_bcast<scalar_t>(scale, x, B, C, H, W, "scale");
    const auto sh = make_bcast<scalar_t>(shift, x, B, C, H, W, "shift");
    dispatch_index(std::max(total, x.numel()), grid, [&](auto tag) {
      using index_t = decltype(tag);
      gather_kernel<scalar_t, index_t><<<grid, kThreads, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), idx.const_data_ptr<int32_t>(), C, H, W, N,
          bh, bw, sc, sh, static_cast<int>(act), act_first, total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

at::Tensor scatter_gather(const at::Tensor& tiles_in, const at::Tensor& orig_in, int64_t bh, int64_t bw,
                          const at::Tensor& indices, const at::Tensor& scatter_map, const OptTensor& scale,
                          const OptTensor& shift, int64_t act, bool act_first) {
  check_map(orig_in, "original");
  check_map(tiles_in, "tiles");
  check_cuda(orig_in, "original");
  check_act(act);
  check_same(tiles_in, orig_in, "tiles", "original");
  TORCH_CHECK(bh > 0 && bw > 0, "sige: block size must be positive, got (", bh, ", ", bw, ")");
  const c10::cuda::CUDAGuard guard(orig_in.device());
  const at::Tensor tiles = tiles_in.contiguous(), orig = orig_in.contiguous();
  const at::Tensor idx = indices_i32(indices);
  const int64_t B = orig.size(0), C = orig.size(1), H = orig.size(2), W = orig.size(3), N = idx.size(0);
  TORCH_CHECK(tiles.size(0) == B * N && tiles.size(1) == C, "sige: tiles have shape ", tiles.sizes(), ", expected [",
              B * N, ", ", C, ", h, w]");
  TORCH_CHECK(scatter_map.dim() == 3 && scatter_map.size(0) == H && scatter_map.size(1) == W &&
                  scatter_map.size(2) == 3,
              "sige: scatter map has shape ", scatter_map.sizes(), ", expected [", H, ", ", W, ", 3]");
  TORCH_CHECK(scatter_map.device() == orig.device() && idx.device() == orig.device(),
              "sige: indices and scatter map must be on the device of the original map");
  const at::Tensor smap = scatter_map.to(at::kInt).contiguous();
  at::Tensor out = at::empty({B * N, C, bh, bw}, orig.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  const int64_t grid = grid_for(total);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, orig.scalar_type(), "sige_scatter_gather_cuda", [&] {
    const auto sc = make_bcast<scalar_t>(scale, orig, B, C, H, W, "scale");
    const auto sh = make_bcast<scalar_t>(shift, orig, B, C, H, W, "shift");
    const int64_t biggest = std::max({total, orig.numel(), tiles.numel(), smap.numel()});
    dispatch_index(biggest, grid, [&](auto tag) {
      using index_t = decltype(tag);
      scatter_gather_kernel<scalar_t, index_t><<<grid, kThreads, 0, stream>>>(
          tiles.const_data_ptr<scalar_t>(), orig.const_data_ptr<scalar_t>(), smap.const_data_ptr<int32_t>(),
          out.mutable_data_ptr<scalar_t>(), idx.const_data_ptr<int32_t>(), C, H, W, N, bh, bw, tiles.size(2),
          tiles.size(3), sc, sh, static_cast<int>(act), act_first, total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

}  // namespace cuda
}  // namespace sige
