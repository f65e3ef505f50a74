// CPU scatter_, copy_tiles_, block_residual_ and get_scatter_map. The output tile of block n
// starts at floor((offset + index_n) / stride) and is clipped to the map. Tiles produced by
// sige.geometry never overlap; if a caller makes them overlap, every pixel still receives one
// whole value from one of the writers (as with the reference's index_put).
#include "cpu_common.h"

namespace sige {
namespace cpu {

namespace {

template <typename scalar_t>
void scatter_impl(at::Tensor& out, const at::Tensor& tiles, const std::vector<Win>& wins,
                  const Bcast<scalar_t>& res) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = out.size(0), C = out.size(1), H = out.size(2), W = out.size(3);
  const int64_t tw = tiles.size(3), TT = tiles.size(2) * tw, HW = H * W;
  const scalar_t* tp = tiles.const_data_ptr<scalar_t>();
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  if (!res.present()) {  // two loops, so the plain copy carries no per-row residual test
    for_each_tile_row(B, C, wins, TT, [&](int64_t i, int64_t b, int64_t c, const Win& w, int64_t r) {
      const scalar_t* trow = tp + i * TT + r * tw + w.s_lo;
      std::copy(trow, trow + (w.s_hi - w.s_lo), op + (b * C + c) * HW + (w.h0 + r) * W + (w.w0 + w.s_lo));
    });
    return;
  }
  for_each_tile_row(B, C, wins, TT, [&](int64_t i, int64_t b, int64_t c, const Win& w, int64_t r) {
    const int64_t h = w.h0 + r, len = w.s_hi - w.s_lo;
    scalar_t* orow = op + (b * C + c) * HW + h * W + (w.w0 + w.s_lo);
    const scalar_t* trow = tp + i * TT + r * tw + w.s_lo;
    const scalar_t* rrow = res.ptr + b * res.sb + c * res.sc + h * res.sh + (w.w0 + w.s_lo) * res.sw;
    if (res.sw == 1) {
      for (int64_t s = 0; s < len; ++s)
        orow[s] = static_cast<scalar_t>(static_cast<acc_t>(trow[s]) + static_cast<acc_t>(rrow[s]));
    } else {
      for (int64_t s = 0; s < len; ++s)
        orow[s] = static_cast<scalar_t>(static_cast<acc_t>(trow[s]) + static_cast<acc_t>(rrow[s * res.sw]));
    }
  });
}

template <typename scalar_t>
void copy_tiles_impl(at::Tensor& dst, const at::Tensor& src, const std::vector<Win>& wins) {
  const int64_t B = dst.size(0), C = dst.size(1), H = dst.size(2), W = dst.size(3);
  const int64_t N = static_cast<int64_t>(wins.size()), HW = H * W;
  const scalar_t* sp = src.const_data_ptr<scalar_t>();
  scalar_t* dp = dst.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, B * C * N, grain_for(16), [&](int64_t begin, int64_t end) {
    int64_t n = begin % N, bc = begin / N;  // (b, c, n) order: one plane at a time
    for (int64_t i = begin; i < end; ++i, n = (n + 1 == N) ? 0 : n + 1, bc += (n == 0)) {
      const Win& w = wins[n];
      const int64_t len = w.s_hi - w.s_lo;
      if (len <= 0) continue;
      for (int64_t r = w.r_lo; r < w.r_hi; ++r) {
        const int64_t off = bc * HW + (w.h0 + r) * W + (w.w0 + w.s_lo);
        std::copy(sp + off, sp + off + len, dp + off);
      }
    }
  });
}

template <typename scalar_t>
void block_residual_impl(at::Tensor& out, const at::Tensor& tiles, const at::Tensor& orig_res,
                         const std::vector<Win>& wins) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = out.size(0), C = out.size(1), H = out.size(2), W = out.size(3);
  const int64_t tw = tiles.size(3), TT = tiles.size(2) * tw, HW = H * W;
  const scalar_t* tp = tiles.const_data_ptr<scalar_t>();
  const scalar_t* rp = orig_res.const_data_ptr<scalar_t>();
  scalar_t* op = out.mutable_data_ptr<scalar_t>();
  for_each_tile_row(B, C, wins, TT, [&](int64_t i, int64_t b, int64_t c, const Win& w, int64_t r) {
    const int64_t off = (b * C + c) * HW + (w.h0 + r) * W + (w.w0 + w.s_lo), len = w.s_hi - w.s_lo;
    scalar_t* orow = op + off;
    const scalar_t* rrow = rp + off;
    const scalar_t* trow = tp + i * TT + r * tw + w.s_lo;
    for (int64_t s = 0; s < len; ++s) {
      // Same roundings as the reference: (tile - original_residual) in the tensor dtype, then +=.
      const acc_t d =
          static_cast<acc_t>(static_cast<scalar_t>(static_cast<acc_t>(trow[s]) - static_cast<acc_t>(rrow[s])));
      orow[s] = static_cast<scalar_t>(static_cast<acc_t>(orow[s]) + d);
    }
  });
}

void check_same(const at::Tensor& a, const at::Tensor& b, const char* an, const char* bn) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "sige: ", an, " (", a.scalar_type(), ") and ", bn, " (",
              b.scalar_type(), ") must have the same dtype");
  TORCH_CHECK(a.device() == b.device(), "sige: ", an, " and ", bn, " must be on the same device");
}

// The checks scatter_ and block_residual_ share: out and tiles as maps of one dtype and device, and a tile
// batch of B * N items of C channels for N blocks.
void check_out_and_tiles(const at::Tensor& out, const at::Tensor& tiles, int64_t N) {
  check_map(out, "out");
  check_map(tiles, "tiles");
  check_contig(out, "out");
  check_same(out, tiles, "out", "tiles");
  TORCH_CHECK(tiles.size(0) == out.size(0) * N && tiles.size(1) == out.size(1), "sige: tiles have shape ",
              tiles.sizes(), ", expected [", out.size(0) * N, ", ", out.size(1), ", h, w]");
}


}  // namespace

at::Tensor scatter_(at::Tensor out, const at::Tensor& tiles_in, const at::Tensor& indices, int64_t oh, int64_t ow,
                    int64_t sh, int64_t sw, const OptTensor& residual) {
  const at::Tensor idx = indices_i32(indices);
  check_out_and_tiles(out, tiles_in, idx.size(0));
  const int64_t B = out.size(0), C = out.size(1), H = out.size(2), W = out.size(3);
  if (tiles_in.numel() == 0 || out.numel() == 0) return out;
  const at::Tensor tiles = tiles_in.contiguous();
  const std::vector<Win> wins = tile_windows(idx, tiles.size(2), tiles.size(3), oh, ow, sh, sw, H, W);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "sige_scatter_cpu", [&] {
    scatter_impl<scalar_t>(out, tiles, wins, make_bcast<scalar_t>(residual, out, B, C, H, W, "residual"));
  });
  return out;
}

at::Tensor copy_tiles_(at::Tensor dst, const at::Tensor& src, const at::Tensor& indices, int64_t th, int64_t tw,
                       int64_t oh, int64_t ow, int64_t sh, int64_t sw) {
  check_map(dst, "dst");
  check_contig(dst, "dst");
  check_contig(src, "src");
  check_same(dst, src, "dst", "src");
  TORCH_CHECK(src.sizes() == dst.sizes(), "sige: copy_tiles_ needs src and dst of the same shape");
  TORCH_CHECK(th >= 0 && tw >= 0, "sige: tile size must be non-negative");
  const at::Tensor idx = indices_i32(indices);
  if (idx.size(0) == 0 || dst.numel() == 0 || th * tw == 0) return dst;
  const std::vector<Win> wins = tile_windows(idx, th, tw, oh, ow, sh, sw, dst.size(2), dst.size(3));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dst.scalar_type(), "sige_copy_tiles_cpu",
                                  [&] { copy_tiles_impl<scalar_t>(dst, src, wins); });
  return dst;
}

at::Tensor block_residual_(at::Tensor out, const at::Tensor& tiles_in, const at::Tensor& indices, int64_t oh,
                           int64_t ow, int64_t sh, int64_t sw, const at::Tensor& original_residual) {
  const at::Tensor idx = indices_i32(indices);
  check_out_and_tiles(out, tiles_in, idx.size(0));
  check_same(out, original_residual, "out", "original_residual");
  TORCH_CHECK(original_residual.sizes() == out.sizes(), "sige: original_residual has shape ",
              original_residual.sizes(), ", expected ", out.sizes());
  if (tiles_in.numel() == 0 || out.numel() == 0) return out;
  const at::Tensor tiles = tiles_in.contiguous(), res = original_residual.contiguous();
  const std::vector<Win> wins =
      tile_windows(idx, tiles.size(2), tiles.size(3), oh, ow, sh, sw, out.size(2), out.size(3));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "sige_block_residual_cpu",
                                  [&] { block_residual_impl<scalar_t>(out, tiles, res, wins); });
  return out;
}

at::Tensor get_scatter_map(int64_t H, int64_t W, int64_t bh, int64_t bw, int64_t kh, int64_t kw, int64_t oh,
                           int64_t ow, int64_t sh, int64_t sw, const at::Tensor& indices) {
  TORCH_CHECK(H >= 0 && W >= 0, "sige: map size must be non-negative");
  const auto [th, tw] = tile_of(bh, bw, kh, kw, sh, sw);
  const at::Tensor idx = indices_i32(indices);
  at::Tensor smap = at::full({H, W, 3}, -1, idx.options().dtype(at::kInt));
  const int64_t N = idx.size(0);
  if (N == 0 || smap.numel() == 0 || th * tw == 0) return smap;
  const std::vector<Win> wins = tile_windows(idx, th, tw, oh, ow, sh, sw, H, W);
  int32_t* mp = smap.mutable_data_ptr<int32_t>();
  // Parallel over output rows: each thread owns a band of rows and visits the blocks in order,
  // so overlapping tiles (never produced by sige.geometry) resolve deterministically to the
  // highest block id, with no concurrent writes to one record. The CUDA kernel agrees.
  at::parallel_for(0, H, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, N)), [&](int64_t h_begin, int64_t h_end) {
    for (int64_t n = 0; n < N; ++n) {
      const Win& w = wins[n];
      const int64_t r0 = std::max(w.r_lo, h_begin - w.h0), r1 = std::min(w.r_hi, h_end - w.h0);
      for (int64_t r = r0; r < r1; ++r) {
        int32_t* rec = mp + ((w.h0 + r) * W + (w.w0 + w.s_lo)) * 3;
        for (int64_t s = w.s_lo; s < w.s_hi; ++s, rec += 3) {
          rec[0] = static_cast<int32_t>(n);
          rec[1] = static_cast<int32_t>(r);
          rec[2] = static_cast<int32_t>(s);
        }
      }
    }
  });
  return smap;
}

}  // namespace cpu
}  // namespace sige
