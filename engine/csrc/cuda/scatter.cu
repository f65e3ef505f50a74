// CUDA scatter_, copy_tiles_, block_residual_ and get_scatter_map: one thread per tile element
// (b, n, c, r, s) in a grid-stride loop; the tile of block n starts at
// floor((offset + index_n) / stride) and is clipped to the map. Tiles from sige.geometry never
// overlap, so the in-place writes are race-free.
#include "cuda_common.cuh"

namespace sige {
namespace cuda {

namespace {

template <typename scalar_t, typename index_t>
__global__ void scatter_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ tiles,
                               const int32_t* __restrict__ idx, index_t C, index_t H, index_t W, index_t N, index_t th,
                               index_t tw, index_t oh, index_t ow, index_t sh, index_t sw, Bcast<scalar_t> res,
                               index_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const TileElem<index_t> q(e, idx, C, N, th, tw, oh, ow, sh, sw);
    if (!q.inside(H, W)) continue;
    const index_t o = ((q.b * C + q.c) * H + q.h) * W + q.w;
    if (res.ptr == nullptr) {
      out[o] = tiles[e];
    } else {
      const acc_t v = static_cast<acc_t>(tiles[e]) + static_cast<acc_t>(res.ptr[bcast_off(res, q.b, q.c, q.h, q.w)]);
      out[o] = static_cast<scalar_t>(v);
    }
  }
}

template <typename scalar_t, typename index_t>
__global__ void copy_tiles_kernel(scalar_t* __restrict__ dst, const scalar_t* __restrict__ src,
                                  const int32_t* __restrict__ idx, index_t C, index_t H, index_t W, index_t N,
                                  index_t th, index_t tw, index_t oh, index_t ow, index_t sh, index_t sw,
                                  index_t total) {
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const TileElem<index_t> q(e, idx, C, N, th, tw, oh, ow, sh, sw);
    if (!q.inside(H, W)) continue;
    const index_t o = ((q.b * C + q.c) * H + q.h) * W + q.w;
    dst[o] = src[o];
  }
}

template <typename scalar_t, typename index_t>
__global__ void block_residual_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ tiles,
                                      const scalar_t* __restrict__ orig_res, const int32_t* __restrict__ idx,
                                      index_t C, index_t H, index_t W, index_t N, index_t th, index_t tw, index_t oh,
                                      index_t ow, index_t sh, index_t sw, index_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const TileElem<index_t> q(e, idx, C, N, th, tw, oh, ow, sh, sw);
    if (!q.inside(H, W)) continue;
    const index_t o = ((q.b * C + q.c) * H + q.h) * W + q.w;
    // Same roundings as the reference: (tile - original_residual) in the tensor dtype, then +=.
    const scalar_t d = static_cast<scalar_t>(static_cast<acc_t>(tiles[e]) - static_cast<acc_t>(orig_res[o]));
    out[o] = static_cast<scalar_t>(static_cast<acc_t>(out[o]) + static_cast<acc_t>(d));
  }
}

// Pass 1: the highest block id covering a pixel claims it (atomicMax on the record's first int,
// which starts at -1). Pass 2: the owner writes (r, s). Deterministic, no torn records, and the
// same winner as the CPU kernel.
template <typename index_t>
__global__ void scatter_map_claim_kernel(int32_t* __restrict__ smap, const int32_t* __restrict__ idx, index_t H,
                                         index_t W, index_t N, index_t th, index_t tw, index_t oh, index_t ow,
                                         index_t sh, index_t sw, index_t total) {
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const TileElem<index_t> q(e, idx, 1, N, th, tw, oh, ow, sh, sw);
    if (!q.inside(H, W)) continue;
    atomicMax(smap + 3 * (q.h * W + q.w), static_cast<int32_t>(q.n));
  }
}

template <typename index_t>
__global__ void scatter_map_fill_kernel(int32_t* __restrict__ smap, const int32_t* __restrict__ idx, index_t H,
                                        index_t W, index_t N, index_t th, index_t tw, index_t oh, index_t ow,
                                        index_t sh, index_t sw, index_t total) {
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const TileElem<index_t> q(e, idx, 1, N, th, tw, oh, ow, sh, sw);
    if (!q.inside(H, W)) continue;
    int32_t* rec = smap + 3 * (q.h * W + q.w);
    if (rec[0] == static_cast<int32_t>(q.n)) {
      rec[1] = static_cast<int32_t>(q.r);
      rec[2] = static_cast<int32_t>(q.s);
    }
  }
}

void check_tiles(const at::Tensor& tiles, int64_t B, int64_t C, int64_t N) {
  TORCH_CHECK(tiles.size(0) == B * N && tiles.size(1) == C, "sige: tiles have shape ", tiles.sizes(), ", expected [",
              B * N, ", ", C, ", h, w]");
}

}  // namespace

at::Tensor scatter_(at::Tensor out, const at::Tensor& tiles_in, const at::Tensor& indices, int64_t oh, int64_t ow,
                    int64_t sh, int64_t sw, const OptTensor& residual) {
  check_map(out, "out");
  check_map(tiles_in, "tiles");
  check_cuda(out, "out");
  check_contig(out, "out");
  check_same(out, tiles_in, "out", "tiles");
  TORCH_CHECK(sh > 0 && sw > 0, "sige: strides must be positive");
  const c10::cuda::CUDAGuard guard(out.device());
  check_indices_on(indices, out, "out");
  const at::Tensor idx = indices_i32(indices);
  const int64_t B = out.size(0), C = out.size(1), H = out.size(2), W = out.size(3), N = idx.size(0);
  check_tiles(tiles_in, B, C, N);
  const int64_t total = tiles_in.numel();
  if (total == 0 || out.numel() == 0) return out;
  const at::Tensor tiles = tiles_in.contiguous();
  const int64_t grid = grid_for(total);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "sige_scatter_cuda", [&] {
    const auto res = make_bcast<scalar_t>(residual, out, B, C, H, W, "residual");
    dispatch_index(std::max(total, out.numel()), grid, [&](auto tag) {
      using index_t = decltype(tag);
      scatter_kernel<scalar_t, index_t><<<grid, kThreads, 0, stream>>>(
          out.mutable_data_ptr<scalar_t>(), tiles.const_data_ptr<scalar_t>(), idx.const_data_ptr<int32_t>(), C, H, W,
          N, tiles.size(2), tiles.size(3), oh, ow, sh, sw, res, total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

at::Tensor copy_tiles_(at::Tensor dst, const at::Tensor& src, const at::Tensor& indices, int64_t th, int64_t tw,
                       int64_t oh, int64_t ow, int64_t sh, int64_t sw) {
  check_map(dst, "dst");
  check_cuda(dst, "dst");
  check_contig(dst, "dst");
  check_contig(src, "src");
  check_same(dst, src, "dst", "src");
  TORCH_CHECK(src.sizes() == dst.sizes(), "sige: copy_tiles_ needs src and dst of the same shape");
  TORCH_CHECK(th >= 0 && tw >= 0 && sh > 0 && sw > 0, "sige: invalid tile size or stride");
  const c10::cuda::CUDAGuard guard(dst.device());
  check_indices_on(indices, dst, "dst");
  const at::Tensor idx = indices_i32(indices);
  const int64_t B = dst.size(0), C = dst.size(1), H = dst.size(2), W = dst.size(3), N = idx.size(0);
  const int64_t total = B * N * C * th * tw;
  if (total == 0 || dst.numel() == 0) return dst;
  const int64_t grid = grid_for(total);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dst.scalar_type(), "sige_copy_tiles_cuda", [&] {
    dispatch_index(std::max(total, dst.numel()), grid, [&](auto tag) {
      using index_t = decltype(tag);
      copy_tiles_kernel<scalar_t, index_t><<<grid, kThreads, 0, stream>>>(
          dst.mutable_data_ptr<scalar_t>(), src.const_data_ptr<scalar_t>(), idx.const_data_ptr<int32_t>(), C, H, W, N,
          th, tw, oh, ow, sh, sw, total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return dst;
}

at::Tensor block_residual_(at::Tensor out, const at::Tensor& tiles_in, const at::Tensor& indices, int64_t oh,
                           int64_t ow, int64_t sh, int64_t sw, const at::Tensor& original_residual) {
  check_map(out, "out");
  check_map(tiles_in, "tiles");
  check_cuda(out, "out");
  check_contig(out, "out");
  check_same(out, tiles_in, "out", "tiles");
  check_same(out, original_residual, "out", "original_residual");
  TORCH_CHECK(original_residual.sizes() == out.sizes(), "sige: original_residual has shape ",
              original_residual.sizes(), ", expected ", out.sizes());
  TORCH_CHECK(sh > 0 && sw > 0, "sige: strides must be positive");
  const c10::cuda::CUDAGuard guard(out.device());
  check_indices_on(indices, out, "out");
  const at::Tensor idx = indices_i32(indices);
  const int64_t B = out.size(0), C = out.size(1), H = out.size(2), W = out.size(3), N = idx.size(0);
  check_tiles(tiles_in, B, C, N);
  const int64_t total = tiles_in.numel();
  if (total == 0 || out.numel() == 0) return out;
  const at::Tensor tiles = tiles_in.contiguous(), res = original_residual.contiguous();
  const int64_t grid = grid_for(total);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "sige_block_residual_cuda", [&] {
    dispatch_index(std::max(total, out.numel()), grid, [&](auto tag) {
      using index_t = decltype(tag);
      block_residual_kernel<scalar_t, index_t><<<grid, kThreads, 0, stream>>>(
          out.mutable_data_ptr<scalar_t>(), tiles.const_data_ptr<scalar_t>(), res.const_data_ptr<scalar_t>(),
          idx.const_data_ptr<int32_t>(), C, H, W, N, tiles.size(2), tiles.size(3), oh, ow, sh, sw, total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

at::Tensor get_scatter_map(int64_t H, int64_t W, int64_t bh, int64_t bw, int64_t kh, int64_t kw, int64_t oh,
                           int64_t ow, int64_t sh, int64_t sw, const at::Tensor& indices) {
  TORCH_CHECK(H >= 0 && W >= 0, "sige: map size must be non-negative");
  check_cuda(indices, "indices");
  const auto [th, tw] = tile_of(bh, bw, kh, kw, sh, sw);
  const c10::cuda::CUDAGuard guard(indices.device());
  const at::Tensor idx = indices_i32(indices);
  at::Tensor smap = at::full({H, W, 3}, -1, idx.options().dtype(at::kInt));
  const int64_t N = idx.size(0), total = N * th * tw;
  if (total == 0 || smap.numel() == 0) return smap;
  const int64_t grid = grid_for(total);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_index(std::max(total, smap.numel()), grid, [&](auto tag) {
    using index_t = decltype(tag);
    scatter_map_claim_kernel<index_t><<<grid, kThreads, 0, stream>>>(
        smap.mutable_data_ptr<int32_t>(), idx.const_data_ptr<int32_t>(), H, W, N, th, tw, oh, ow, sh, sw, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    scatter_map_fill_kernel<index_t><<<grid, kThreads, 0, stream>>>(
        smap.mutable_data_ptr<int32_t>(), idx.const_data_ptr<int32_t>(), H, W, N, th, tw, oh, ow, sh, sw, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return smap;
}

}  // namespace cuda
}  // namespace sige
