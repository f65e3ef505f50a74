// CPU gather and scatter_gather: cut active blocks (zero outside the map) with the fused
// scale/shift/activation epilogue. Output [B*N, C, bh, bw], batch-major.
#include "cpu_common.h"

namespace sige {
namespace cpu {

namespace {

template <typename scalar_t>
void gather_impl(const at::Tensor& x, const at::Tensor& idx, at::Tensor& out, int64_t bh, int64_t bw,
                 const OptTensor& scale, const OptTensor& shift, int64_t act, bool act_first) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), N = idx.size(0);
  const int64_t HW = H * W, T = bh * bw;
  const AffineSource<scalar_t, acc_t> aff(make_bcast<scalar_t>(scale, x, B, C, H, W, "scale"),
                                          make_bcast<scalar_t>(shift, x, B, C, H, W, "shift"));
  const EpilogueFn<acc_t> epi = pick_epilogue<acc_t>(act, act_first, aff.mode);
  const std::vector<Win> wins = block_windows(idx, bh, bw, H, W);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  scalar_t* op = out.mutable_data_ptr<scalar_t>();

  at::parallel_for(0, B * N * C, grain_for(T), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buf(3 * T);
    acc_t *z = buf.data(), *scb = z + T, *shb = z + 2 * T;
    ItemCursor cur(begin, N, C);
    for (int64_t i = begin; i < end; ++i, cur.next()) {
      const int64_t b = cur.b, n = cur.n, c = cur.c;
      const Win& w = wins[n];
      load_window(xp + (b * C + c) * HW, W, int64_t(1), w, bh, bw, z);
      acc_t sc0 = acc_t(1), sh0 = acc_t(0);
      aff.prepare(b, c, w, bh, bw, scb, shb, sc0, sh0);
      epi(z, T, scb, shb, sc0, sh0);
      if (!w.full) zero_outside(z, w, bh, bw);
      store_tile(op + i * T, z, T);
    }
  });
}

// A run of window pixels [k, k + len) of one row whose values come from consecutive elements of
// one tile row (offset `off` relative to the tile batch of (b, c)). scatter_gather loads the
// window from the original map like gather (contiguous rows), then overwrites these runs; with
// the usual geometry a block has its own tile (one run per tile row) plus a few halo runs from
// active neighbours. Measured faster than a per-pixel source branch or select.
struct TileRun {
  int64_t k, len, off;
};

template <typename scalar_t>
void scatter_gather_impl(const at::Tensor& tiles, const at::Tensor& orig, const at::Tensor& idx,
                         const at::Tensor& smap, at::Tensor& out, int64_t bh, int64_t bw, const OptTensor& scale,
                         const OptTensor& shift, int64_t act, bool act_first) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t B = orig.size(0), C = orig.size(1), H = orig.size(2), W = orig.size(3), N = idx.size(0);
  const int64_t th = tiles.size(2), tw = tiles.size(3), TT = th * tw;
  const int64_t HW = H * W, T = bh * bw;
  const AffineSource<scalar_t, acc_t> aff(make_bcast<scalar_t>(scale, orig, B, C, H, W, "scale"),
                                          make_bcast<scalar_t>(shift, orig, B, C, H, W, "shift"));
  const EpilogueFn<acc_t> epi = pick_epilogue<acc_t>(act, act_first, aff.mode);
  const std::vector<Win> wins = block_windows(idx, bh, bw, H, W);
  const scalar_t* tp = tiles.const_data_ptr<scalar_t>();
  const scalar_t* obase = orig.const_data_ptr<scalar_t>();
  const int32_t* mp = smap.const_data_ptr<int32_t>();
  scalar_t* op = out.mutable_data_ptr<scalar_t>();

  at::parallel_for(0, B * N * C, grain_for(T), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buf(3 * T);
    acc_t *z = buf.data(), *scb = z + T, *shb = z + 2 * T;
    std::vector<TileRun> runs;
    runs.reserve(T);
    int64_t runs_n = -1;
    ItemCursor cur(begin, N, C);
    for (int64_t i = begin; i < end; ++i, cur.next()) {
      const int64_t b = cur.b, n = cur.n, c = cur.c;
      const Win& w = wins[n];
      if (n != runs_n) {  // scatter-map lookups once per block (items of one block are consecutive)
        runs.clear();
        for (int64_t r = w.r_lo; r < w.r_hi; ++r) {
          for (int64_t s = w.s_lo; s < w.s_hi; ++s) {
            const int32_t* m = mp + 3 * ((w.h0 + r) * W + (w.w0 + s));
            if (m[0] < 0) continue;
            TORCH_CHECK(m[0] < N && m[1] >= 0 && m[1] < th && m[2] >= 0 && m[2] < tw, "sige: scatter map entry (",
                        m[0], ", ", m[1], ", ", m[2], ") at (", w.h0 + r, ", ", w.w0 + s, ") is out of range for ", N,
                        " tiles of ", th, "x", tw);
            const int64_t k = r * bw + s, off = int64_t(m[0]) * C * TT + int64_t(m[1]) * tw + m[2];
            if (!runs.empty() && runs.back().k + runs.back().len == k &&
                runs.back().off + runs.back().len == off) {
              ++runs.back().len;
            } else {
              runs.push_back({k, 1, off});
            }
          }
        }
        runs_n = n;
      }
      load_window(obase + (b * C + c) * HW, W, int64_t(1), w, bh, bw, z);
      const scalar_t* tb = tp + (b * N * C + c) * TT;
      for (const TileRun& run : runs) {
        const scalar_t* src = tb + run.off;
        acc_t* dst = z + run.k;
        for (int64_t j = 0; j < run.len; ++j) dst[j] = static_cast<acc_t>(src[j]);
      }
      acc_t sc0 = acc_t(1), sh0 = acc_t(0);
      aff.prepare(b, c, w, bh, bw, scb, shb, sc0, sh0);
      epi(z, T, scb, shb, sc0, sh0);
      if (!w.full) zero_outside(z, w, bh, bw);
      store_tile(op + i * T, z, T);
    }
  });
}

}  // namespace

at::Tensor gather(const at::Tensor& x_in, int64_t bh, int64_t bw, const at::Tensor& indices, const OptTensor& scale,
                  const OptTensor& shift, int64_t act, bool act_first) {
  check_map(x_in, "x");
  check_act(act);
  TORCH_CHECK(bh > 0 && bw > 0, "sige: block size must be positive, got (", bh, ", ", bw, ")");
  const at::Tensor x = x_in.contiguous();
  const at::Tensor idx = indices_i32(indices);
  const int64_t N = idx.size(0);
  at::Tensor out = at::empty({x.size(0) * N, x.size(1), bh, bw}, x.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sige_gather_cpu", [&] {
    gather_impl<scalar_t>(x, idx, out, bh, bw, scale, shift, act, act_first);
  });
  return out;
}

at::Tensor scatter_gather(const at::Tensor& tiles_in, const at::Tensor& orig_in, int64_t bh, int64_t bw,
                          const at::Tensor& indices, const at::Tensor& scatter_map, const OptTensor& scale,
                          const OptTensor& shift, int64_t act, bool act_first) {
  check_map(orig_in, "original");
  check_map(tiles_in, "tiles");
  check_act(act);
  TORCH_CHECK(bh > 0 && bw > 0, "sige: block size must be positive, got (", bh, ", ", bw, ")");
  TORCH_CHECK(tiles_in.scalar_type() == orig_in.scalar_type(), "sige: tiles (", tiles_in.scalar_type(),
              ") and original (", orig_in.scalar_type(), ") must have the same dtype");
  const at::Tensor tiles = tiles_in.contiguous(), orig = orig_in.contiguous();
  const at::Tensor idx = indices_i32(indices);
  const int64_t B = orig.size(0), C = orig.size(1), H = orig.size(2), W = orig.size(3), N = idx.size(0);
  TORCH_CHECK(tiles.size(0) == B * N && tiles.size(1) == C, "sige: tiles have shape ", tiles.sizes(), ", expected [",
              B * N, ", ", C, ", h, w]");
  TORCH_CHECK(scatter_map.dim() == 3 && scatter_map.size(0) == H && scatter_map.size(1) == W &&
                  scatter_map.size(2) == 3,
              "sige: scatter map has shape ", scatter_map.sizes(), ", expected [", H, ", ", W, ", 3]");
  const at::Tensor smap = scatter_map.to(at::kInt).contiguous();
  at::Tensor out = at::empty({B * N, C, bh, bw}, orig.options());
  if (out.numel() == 0) return out;
  if (H == 0 || W == 0) return out.zero_();  // every block pixel is padding
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, orig.scalar_type(), "sige_scatter_gather_cpu", [&] {
    scatter_gather_impl<scalar_t>(tiles, orig, idx, smap, out, bh, bw, scale, shift, act, act_first);
  });
  return out;
}

}  // namespace cpu
}  // namespace sige
