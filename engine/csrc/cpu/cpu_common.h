// Helpers shared by the CPU kernels: per-block windows (valid row/column ranges computed once
// per call), strided window loads into a float scratch tile, and the fused affine + activation
// epilogue, templated on the activation and the scale/shift kind so that its loop over a
// contiguous tile has no per-element branches and vectorises.
//
// Work decomposition: every op runs at::parallel_for (OpenMP, torch.get_num_threads() threads)
// over (batch, block, channel) items in the order of the tile tensors' memory layout, so each
// item reads/writes one contiguous tile and a few rows of one channel plane.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "../sige_ops.h"

namespace sige {
namespace cpu {

SIGE_OP_DECLS

// A bh x bw window whose top-left pixel is (h0, w0) in an H x W map; rows [r_lo, r_hi) and
// columns [s_lo, s_hi) of the window lie inside the map (empty ranges have lo == hi).
struct Win {
  int64_t h0 = 0, w0 = 0;
  int64_t r_lo = 0, r_hi = 0, s_lo = 0, s_hi = 0;
  bool full = false;  // the whole window is inside the map
};

inline Win make_win(int64_t h0, int64_t w0, int64_t bh, int64_t bw, int64_t H, int64_t W) {
  Win v;
  v.h0 = h0;
  v.w0 = w0;
  v.r_lo = std::clamp<int64_t>(-h0, 0, bh);
  v.r_hi = std::clamp<int64_t>(H - h0, v.r_lo, bh);
  v.s_lo = std::clamp<int64_t>(-w0, 0, bw);
  v.s_hi = std::clamp<int64_t>(W - w0, v.s_lo, bw);
  v.full = v.r_lo == 0 && v.r_hi == bh && v.s_lo == 0 && v.s_hi == bw;
  return v;
}

// Windows of the gathered input blocks (top-left = the active index).
inline std::vector<Win> block_windows(const at::Tensor& idx, int64_t bh, int64_t bw, int64_t H, int64_t W) {
  const int64_t N = idx.size(0);
  const int32_t* p = idx.const_data_ptr<int32_t>();
  std::vector<Win> wins(N);
  for (int64_t n = 0; n < N; ++n) wins[n] = make_win(p[2 * n], p[2 * n + 1], bh, bw, H, W);
  return wins;
}

// Windows of the output tiles (top-left = floor((offset + index) / stride)).
inline std::vector<Win> tile_windows(const at::Tensor& idx, int64_t th, int64_t tw, int64_t oh, int64_t ow,
                                     int64_t sh, int64_t sw, int64_t H, int64_t W) {
  TORCH_CHECK(sh > 0 && sw > 0, "sige: strides must be positive, got (", sh, ", ", sw, ")");
  const int64_t N = idx.size(0);
  const int32_t* p = idx.const_data_ptr<int32_t>();
  std::vector<Win> wins(N);
  for (int64_t n = 0; n < N; ++n)
    wins[n] = make_win(floor_div(oh + p[2 * n], sh), floor_div(ow + p[2 * n + 1], sw), th, tw, H, W);
  return wins;
}

// Walks the flat (batch, block, channel) item ids [begin, end) of a parallel_for chunk in order,
// decoding the start once instead of dividing for every item.
struct ItemCursor {
  int64_t b, n, c;
  const int64_t N, C;
  ItemCursor(int64_t i, int64_t N_, int64_t C_) : N(N_), C(C_) {
    c = i % C;
    const int64_t bn = i / C;
    n = bn % N;
    b = bn / N;
  }
  void next() {
    if (++c == C) {
      c = 0;
      if (++n == N) {
        n = 0;
        ++b;
      }
    }
  }
};

// Grain (in items) so that one chunk handles at least ~16k elements.
inline int64_t grain_for(int64_t elems_per_item) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, elems_per_item));
}

// Visit every in-map row of every tile item i = (b, n, c) of a [B*N, C, th, tw] tile batch, in parallel
// over items: row_fn(i, b, c, w, r) for the tile rows r in [w.r_lo, w.r_hi) of window w = wins[n]
// (windows with no in-map column are skipped). The scatter kernels differ only in the row body.
template <typename RowFn>
inline void for_each_tile_row(int64_t B, int64_t C, const std::vector<Win>& wins, int64_t TT, RowFn&& row_fn) {
  const int64_t N = static_cast<int64_t>(wins.size());
  at::parallel_for(0, B * N * C, grain_for(TT), [&](int64_t begin, int64_t end) {
    ItemCursor cur(begin, N, C);
    for (int64_t i = begin; i < end; ++i, cur.next()) {
      const Win& w = wins[cur.n];
      if (w.s_hi <= w.s_lo) continue;
      for (int64_t r = w.r_lo; r < w.r_hi; ++r) row_fn(i, cur.b, cur.c, w, r);
    }
  });
}

// Load the window `w` of a plane (element (h, w) at base[h*sh + w*sw]) into dst[bh*bw] as acc_t;
// pixels outside the map get 0.
template <typename scalar_t, typename acc_t>
inline void load_window(const scalar_t* base, int64_t sh, int64_t sw, const Win& w, int64_t bh, int64_t bw,
                        acc_t* dst) {
  for (int64_t r = 0; r < bh; ++r) {
    acc_t* d = dst + r * bw;
    if (r < w.r_lo || r >= w.r_hi) {
      std::fill(d, d + bw, acc_t(0));
      continue;
    }
    std::fill(d, d + w.s_lo, acc_t(0));
    const scalar_t* row = base + (w.h0 + r) * sh + (w.w0 + w.s_lo) * sw;
    const int64_t len = w.s_hi - w.s_lo;
    acc_t* dd = d + w.s_lo;
    if (sw == 1) {
      for (int64_t s = 0; s < len; ++s) dd[s] = static_cast<acc_t>(row[s]);
    } else {
      for (int64_t s = 0; s < len; ++s) dd[s] = static_cast<acc_t>(row[s * sw]);
    }
    std::fill(d + w.s_hi, d + bw, acc_t(0));
  }
}

// Zero the pixels of a bh x bw tile that lie outside the map (the padding is applied after the
// affine transform and the activation).
template <typename acc_t>
inline void zero_outside(acc_t* z, const Win& w, int64_t bh, int64_t bw) {
  for (int64_t r = 0; r < bh; ++r) {
    acc_t* d = z + r * bw;
    if (r < w.r_lo || r >= w.r_hi) {
      std::fill(d, d + bw, acc_t(0));
    } else {
      std::fill(d, d + w.s_lo, acc_t(0));
      std::fill(d + w.s_hi, d + bw, acc_t(0));
    }
  }
}

template <typename scalar_t, typename acc_t>
inline void store_tile(scalar_t* dst, const acc_t* z, int64_t n) {
  for (int64_t k = 0; k < n; ++k) dst[k] = static_cast<scalar_t>(z[k]);
}

// Scale/shift kinds for the epilogue.
enum AffineMode : int { AFF_NONE = 0, AFF_CONST = 1, AFF_PIXEL = 2 };

// z[k] = act(z*sc + sh) or act(z)*sc + sh over a contiguous tile. AFF_CONST uses the scalars
// sc0/sh0 (1 and 0 stand in for a missing scale or shift: x*1 and x+0 are exact), AFF_PIXEL the
// per-pixel arrays sc/sh.
template <typename acc_t, int ACT, bool ACT_FIRST, int MODE>
void epilogue(acc_t* __restrict__ z, int64_t n, const acc_t* __restrict__ sc, const acc_t* __restrict__ sh,
              acc_t sc0, acc_t sh0) {
  for (int64_t k = 0; k < n; ++k) {
    acc_t v = z[k];
    if constexpr (ACT_FIRST) v = activate<ACT>(v);
    if constexpr (MODE == AFF_CONST) {
      v = v * sc0;
      v = v + sh0;
    } else if constexpr (MODE == AFF_PIXEL) {
      v = v * sc[k];
      v = v + sh[k];
    }
    if constexpr (!ACT_FIRST) v = activate<ACT>(v);
    z[k] = v;
  }
}

template <typename acc_t>
using EpilogueFn = void (*)(acc_t*, int64_t, const acc_t*, const acc_t*, acc_t, acc_t);

template <typename acc_t, int ACT>
EpilogueFn<acc_t> pick_epilogue_act(bool act_first, int mode) {
  if (act_first) {
    if (mode == AFF_PIXEL) return &epilogue<acc_t, ACT, true, AFF_PIXEL>;
    if (mode == AFF_CONST) return &epilogue<acc_t, ACT, true, AFF_CONST>;
    return &epilogue<acc_t, ACT, true, AFF_NONE>;
  }
  if (mode == AFF_PIXEL) return &epilogue<acc_t, ACT, false, AFF_PIXEL>;
  if (mode == AFF_CONST) return &epilogue<acc_t, ACT, false, AFF_CONST>;
  return &epilogue<acc_t, ACT, false, AFF_NONE>;
}

template <typename acc_t>
EpilogueFn<acc_t> pick_epilogue(int64_t act, bool act_first, int mode) {
  switch (act) {
    case ACT_SWISH:
      return pick_epilogue_act<acc_t, ACT_SWISH>(act_first, mode);
    case ACT_RELU:
      return pick_epilogue_act<acc_t, ACT_RELU>(act_first, mode);
    case ACT_LEAKY_RELU:
      return pick_epilogue_act<acc_t, ACT_LEAKY_RELU>(act_first, mode);
    case ACT_GELU:
      return pick_epilogue_act<acc_t, ACT_GELU>(act_first, mode);
    case ACT_TANH:
      return pick_epilogue_act<acc_t, ACT_TANH>(act_first, mode);
    case ACT_SIGMOID:
      return pick_epilogue_act<acc_t, ACT_SIGMOID>(act_first, mode);
    default:
      return pick_epilogue_act<acc_t, ACT_IDENTITY>(act_first, mode);
  }
}

// Per-(batch, channel) scale/shift for the epilogue: fills the per-pixel arrays (AFF_PIXEL) or
// returns the scalars (AFF_CONST).
template <typename scalar_t, typename acc_t>
struct AffineSource {
  Bcast<scalar_t> scale, shift;
  int mode = AFF_NONE;

  AffineSource(const Bcast<scalar_t>& sc, const Bcast<scalar_t>& sh) : scale(sc), shift(sh) {
    if (sc.per_pixel() || sh.per_pixel())
      mode = AFF_PIXEL;
    else if (sc.present() || sh.present())
      mode = AFF_CONST;
  }

  // Prepare item (b, c) on window w; sets sc0/sh0 or fills scb/shb.
  void prepare(int64_t b, int64_t c, const Win& w, int64_t bh, int64_t bw, acc_t* scb, acc_t* shb, acc_t& sc0,
               acc_t& sh0) const {
    if (mode == AFF_NONE) return;
    fill(scale, b, c, w, bh, bw, scb, sc0, acc_t(1));
    fill(shift, b, c, w, bh, bw, shb, sh0, acc_t(0));
  }

 private:
  void fill(const Bcast<scalar_t>& t, int64_t b, int64_t c, const Win& w, int64_t bh, int64_t bw, acc_t* buf,
            acc_t& v0, acc_t dflt) const {
    v0 = t.present() ? static_cast<acc_t>(t.ptr[b * t.sb + c * t.sc]) : dflt;
    if (mode != AFF_PIXEL) return;
    if (t.per_pixel()) {
      load_window(t.ptr + b * t.sb + c * t.sc, t.sh, t.sw, w, bh, bw, buf);
    } else {
      std::fill(buf, buf + bh * bw, v0);
    }
  }
};

}  // namespace cpu
}  // namespace sige
