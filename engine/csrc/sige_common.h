// Shared definitions of the SIGE native kernels (CPU and CUDA): activation ids, the fused
// affine + activation element function, and small integer helpers.
//
// Semantics follow sige/backends/reference.py exactly:
//   act_first = false:  z = act(x * scale + shift)
//   act_first = true:   z = act(x) * scale + shift
// (a missing scale / shift is skipped). Multiplication and addition are separate roundings
// (never contracted into an FMA) so float32 results match the reference bit-for-bit for the
// piecewise-linear activations.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#ifdef __CUDACC__
#define SIGE_HD __host__ __device__ __forceinline__
#else
#define SIGE_HD inline __attribute__((always_inline))
#endif

namespace sige {

// Activation ids; sige/backends/native.py maps the names of sige/activations.py onto them.
enum Act : int {
  ACT_IDENTITY = 0,
  ACT_SWISH = 1,  // also "silu": x * sigmoid(x)
  ACT_RELU = 2,
  ACT_LEAKY_RELU = 3,  // slope 0.2 (sige.activations.LEAKY_RELU_SLOPE)
  ACT_GELU = 4,  // exact erf form, as torch.nn.functional.gelu's default
  ACT_TANH = 5,
  ACT_SIGMOID = 6,
  ACT_COUNT = 7,
};

constexpr float kLeakySlope = 0.2f;

// Floor division for a possibly negative numerator and a positive divisor (Python's //).
SIGE_HD int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// Multiply / add with one rounding each, never fused (nvcc contracts a*b+c by default).
SIGE_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
SIGE_HD float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
SIGE_HD double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
SIGE_HD double add_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// Clamp range of the host exp_f argument. Defined in one translation unit per extension
// (cpu/bindings.cpp, cuda/bindings.cpp) so that the optimiser cannot see the values: with
// literal bounds GCC duplicates the clamped path into a constant-folded arm, keeps it after
// if-conversion, and multiplies every lane by a tiny constant, which produces denormals and a
// microcode assist per vector (3-4x slower swish).
extern const float kExpArgMin;  // -87: exp stays a normal float, and so does 1 / (1 + exp(-x))
extern const float kExpArgMax;  // +87

// exp(x) for float. On the host a branch-free Cody-Waite + degree-6 polynomial (error ~1 ulp)
// that GCC vectorises with plain SSE2 (libm's expf is never vectorised without -ffast-math);
// on the device the CUDA expf.
SIGE_HD float exp_f(float x) {
#ifdef __CUDA_ARCH__
  return expf(x);
#else
  // Clamp so that 2^n is a normal float (n in [-126, 126]); NaN passes through the comparisons
  // unchanged and poisons the polynomial.
  const float hi = kExpArgMax, lo = kExpArgMin;
  x = x > hi ? hi : x;
  x = x < lo ? lo : x;
  const float kLog2e = 1.44269504088896341f;
  const float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to the nearest integer
  const float n = (x * kLog2e + kRound) - kRound;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // ln2 split (Cody-Waite)
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
#endif
}
SIGE_HD double exp_f(double x) {
  return ::exp(x);
}

// tanh(x) for float. Host: an odd polynomial x + x^3 q(x^2) for |x| < 0.625 (our own
// least-squares fit, max error ~1.2 ulp) and 1 - 2 / (exp(2|x|) + 1) elsewhere; both branch-free
// and vectorisable (glibc's tanhf is scalar and slow). Device: CUDA tanhf.
SIGE_HD float tanh_f(float x) {
#ifdef __CUDA_ARCH__
  return tanhf(x);
#else
  const float ax = std::fabs(x), x2 = x * x;
  float q = -6.25506229698658e-3f;
  q = q * x2 + 2.110712043941021e-2f;
  q = q * x2 - 5.3874384611845016e-2f;
  q = q * x2 + 1.3332927227020264e-1f;
  q = q * x2 - 3.333333134651184e-1f;
  const float small = x + (x * x2) * q;
  const float e = exp_f(2.0f * ax);
  const float big = 1.0f - 2.0f / (e + 1.0f);  // tanh(|x|); NaN stays NaN, +-inf saturates to 1
  const float signed_big = x < 0.0f ? -big : big;
  return ax < 0.625f ? small : signed_big;
#endif
}
SIGE_HD double tanh_f(double x) {
  return ::tanh(x);
}

// GELU, exact erf form: x * 0.5 * (1 + erf(x / sqrt(2))). Host: 1 + erf(x/sqrt2) is computed as
// erfc(|x|/sqrt2) (x < 0) or 2 - erfc(...) (x >= 0), with erfc(z) = t exp(p(t) - z^2),
// t = 1 / (1 + z/2) and p a degree-8 polynomial (our own Chebyshev fit); max error about 0.1 of
// 1e-6 absolute + relative, vectorisable (glibc's erff is scalar and slow). Device: CUDA erff.
SIGE_HD float gelu_f(float x) {
#ifdef __CUDA_ARCH__
  return x * 0.5f * (1.0f + erff(x * 0.70710678118654752f));
#else
  const float z = std::fabs(x) * 0.70710678118654752f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 6.462687253952026e-2f;
  p = p * t - 4.951326847076416e-1f;
  p = p * t + 1.3680670261383057f;
  p = p * t - 1.6792784929275513f;
  p = p * t + 7.95268714427948e-1f;
  p = p * t - 2.1752378344535828e-1f;
  p = p * t + 4.359057545661926e-1f;
  p = p * t + 9.932654500007629e-1f;
  p = p * t - 1.2651997804641724f;
  const float erfc = t * exp_f(p - z * z);
  const float one_plus_erf = x < 0.0f ? erfc : 2.0f - erfc;
  // torch's CPU gelu maps +inf to NaN (as it does -inf); follow it so that sparse agrees with dense
  return x == std::numeric_limits<float>::infinity() ? 0.0f * x : x * 0.5f * one_plus_erf;
#endif
}
SIGE_HD double gelu_f(double x) {
  return x * 0.5 * (1.0 + ::erf(x * 0.70710678118654752440));
}

template <int ACT, typename T>
SIGE_HD T activate(T x) {
  if constexpr (ACT == ACT_IDENTITY) {
    return x;
  } else if constexpr (ACT == ACT_SWISH) {
    const T sig = T(1) / (T(1) + exp_f(-x));
    if constexpr (std::is_same_v<T, float>) {
      // Below the clamp of exp_f the product is 0 to float precision, and 0 * x turns -inf into
      // NaN as torch's silu does (the clamped sigmoid would keep -inf).
#ifdef __CUDA_ARCH__
      const float lo = -87.0f;  // the host bound lives in host memory
#else
      const float lo = kExpArgMin;
#endif
      return x < lo ? 0.0f * x : x * sig;
    } else {
      return x * sig;
    }
  } else if constexpr (ACT == ACT_RELU) {
    return x < T(0) ? T(0) : x;  // NaN stays NaN (as torch.relu)
  } else if constexpr (ACT == ACT_LEAKY_RELU) {
    return x > T(0) ? x : x * T(kLeakySlope);
  } else if constexpr (ACT == ACT_GELU) {
    return gelu_f(x);
  } else if constexpr (ACT == ACT_TANH) {
    return tanh_f(x);
  } else {
    static_assert(ACT == ACT_SIGMOID, "unknown activation");
    return T(1) / (T(1) + exp_f(-x));
  }
}

// Runtime-dispatched activation (CUDA kernels: the id is uniform across a launch, so the switch
// never diverges and one kernel serves every activation).
template <typename T>
SIGE_HD T activate_rt(int act, T x) {
  switch (act) {
    case ACT_SWISH:
      return activate<ACT_SWISH>(x);
    case ACT_RELU:
      return activate<ACT_RELU>(x);
    case ACT_LEAKY_RELU:
      return activate<ACT_LEAKY_RELU>(x);
    case ACT_GELU:
      return activate<ACT_GELU>(x);
    case ACT_TANH:
      return activate<ACT_TANH>(x);
    case ACT_SIGMOID:
      return activate<ACT_SIGMOID>(x);
    default:
      return x;
  }
}

// Broadcast view of an optional scale / shift / residual tensor against the full map
// [B, C, H, W]: element (b, c, h, w) lives at ptr[b*sb + c*sc + h*sh + w*sw]; size-1 dims have
// stride 0. ptr == nullptr means "absent".
template <typename scalar_t>
struct Bcast {
  const scalar_t* ptr = nullptr;
  int64_t sb = 0, sc = 0, sh = 0, sw = 0;
  SIGE_HD bool present() const {
    return ptr != nullptr;
  }
  SIGE_HD bool per_pixel() const {
    return sh != 0 || sw != 0;
  }
};

}  // namespace sige
