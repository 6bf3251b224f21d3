#include "merge_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define KERNEL __attribute__((target("avx2,fma")))

int merge_kernels_available(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

KERNEL static inline long hsum_epi32(__m256i v) {
  uint32_t lanes[8];
  _mm256_storeu_si256((__m256i *)lanes, v);
  long s = 0;
  for (int i = 0; i < 8; i++) s += lanes[i];
  return s;
}

KERNEL void merge_subtract_widen(float *t, const float *base, double *wide, long n) {
  long e = 0;
  for (; e + 8 <= n; e += 8) {
    __m256 v = _mm256_loadu_ps(t + e);
    if (base) {
      v = _mm256_sub_ps(v, _mm256_loadu_ps(base + e));
      _mm256_storeu_ps(t + e, v);
    }
    if (wide) {
      _mm256_storeu_pd(wide + e, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
      _mm256_storeu_pd(wide + e + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
  }
  for (; e < n; e++) {
    if (base) t[e] -= base[e];
    if (wide) wide[e] = t[e];
  }
}

KERNEL void merge_bf16_subtract_widen(
  const uint16_t *src, const float *base, float *t, double *wide, long n) {
  long e = 0;
  for (; e + 8 <= n; e += 8) {
    __m128i half = _mm_loadu_si128((const __m128i *)(src + e));
    __m256 v = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
    if (base) v = _mm256_sub_ps(v, _mm256_loadu_ps(base + e));
    _mm256_storeu_ps(t + e, v);
    if (wide) {
      _mm256_storeu_pd(wide + e, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
      _mm256_storeu_pd(wide + e + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
  }
  for (; e < n; e++) {
    uint32_t bits = (uint32_t)src[e] << 16;
    float v;
    __builtin_memcpy(&v, &bits, 4);
    if (base) v -= base[e];
    t[e] = v;
    if (wide) wide[e] = v;
  }
}

KERNEL double merge_sum_squares(const float *v, long n) {
  __m256d x = _mm256_setzero_pd(), y = _mm256_setzero_pd();
  long e = 0;
  for (; e + 8 <= n; e += 8) {
    __m256 f = _mm256_loadu_ps(v + e);
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(f));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
    x = _mm256_fmadd_pd(lo, lo, x);
    y = _mm256_fmadd_pd(hi, hi, y);
  }
  double lanes[8];
  _mm256_storeu_pd(lanes, x);
  _mm256_storeu_pd(lanes + 4, y);
  double tail = 0;
  for (; e < n; e++) tail += (double)v[e] * (double)v[e];
  return ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])) + tail;
}

// The Gram matrix of n rows, four entries at a time, every row converted once; inlined with n a
// constant so that the rows and the accumulators stay in registers.
KERNEL static inline __attribute__((always_inline)) void gram_rows(
  const float *const *t, const int n, long len, double *gram) {
  __m256d acc[10];
  for (int p = 0; p < 10; p++) acc[p] = _mm256_setzero_pd();
  long e = 0;
  for (; e + 4 <= len; e += 4) {
    __m256d r[4];
    for (int i = 0; i < n; i++) r[i] = _mm256_cvtps_pd(_mm_loadu_ps(t[i] + e));
    int p = 0;
    for (int i = 0; i < n; i++)
      for (int j = i; j < n; j++, p++) acc[p] = _mm256_fmadd_pd(r[i], r[j], acc[p]);
  }
  int p = 0;
  for (int i = 0; i < n; i++)
    for (int j = i; j < n; j++, p++) {
      double lanes[4];
      _mm256_storeu_pd(lanes, acc[p]);
      double tail = 0;
      for (long k = e; k < len; k++) tail += (double)t[i][k] * (double)t[j][k];
      gram[i * n + j] = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail;
    }
}

KERNEL void merge_gram(const float *const *t, int n, long len, double *gram) {
  switch (n) {
  case 1: gram_rows(t, 1, len, gram); break;
  case 2: gram_rows(t, 2, len, gram); break;
  case 3: gram_rows(t, 3, len, gram); break;
  default: gram_rows(t, 4, len, gram); break;
  }
}

KERNEL void merge_kept(
  const float *const *t, int n, long len, const uint32_t *limit, const uint32_t *tie,
  long *left, long out[3], long *keptBy) {
  const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i zero = _mm256_setzero_si256();
  const __m256i laneBits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  __m256i below[4], equal[4];
  for (int i = 0; i < n; i++) {
    below[i] = _mm256_set1_epi32((int32_t)(limit[i] - 1));
    equal[i] = _mm256_set1_epi32((int32_t)tie[i]);
  }
  __m256i any = zero, shared = zero, conflicting = zero;
  __m256i by[4] = {zero, zero, zero, zero};
  long e = 0;
  for (; e + 8 <= len; e += 8) {
    __m256i count = zero, positive = zero, negative = zero;
    for (int i = 0; i < n; i++) {
      __m256i word = _mm256_loadu_si256((const __m256i *)(t[i] + e));
      __m256i bits = _mm256_and_si256(word, magnitude);
      __m256i keep = _mm256_cmpgt_epi32(bits, below[i]);
      if (left[i] > 0) {
        int ties = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(bits, equal[i])));
        int kept = 0;
        while (ties && left[i] > 0) {
          int l = ties & -ties;
          ties &= ties - 1;
          kept |= l;
          left[i]--;
        }
        __m256i lanes = _mm256_and_si256(_mm256_set1_epi32(kept), laneBits);
        keep = _mm256_or_si256(keep, _mm256_cmpeq_epi32(lanes, laneBits));
      }
      __m256i k = _mm256_and_si256(keep, one);
      __m256i sign = _mm256_andnot_si256(_mm256_cmpeq_epi32(bits, zero), k);
      __m256i neg = _mm256_and_si256(sign, _mm256_srli_epi32(word, 31));
      count = _mm256_add_epi32(count, k);
      by[i] = _mm256_add_epi32(by[i], k);
      negative = _mm256_add_epi32(negative, neg);
      positive = _mm256_add_epi32(positive, _mm256_sub_epi32(sign, neg));
    }
    any = _mm256_add_epi32(any, _mm256_andnot_si256(_mm256_cmpeq_epi32(count, zero), one));
    shared = _mm256_add_epi32(
      shared, _mm256_andnot_si256(_mm256_cmpeq_epi32(_mm256_srli_epi32(count, 1), zero), one));
    __m256i neither = _mm256_or_si256(_mm256_cmpeq_epi32(positive, zero), _mm256_cmpeq_epi32(negative, zero));
    conflicting = _mm256_add_epi32(conflicting, _mm256_andnot_si256(neither, one));
  }
  long a = hsum_epi32(any), s = hsum_epi32(shared), c = hsum_epi32(conflicting);
  long kept[4];
  for (int i = 0; i < n; i++) kept[i] = hsum_epi32(by[i]);
  for (; e < len; e++) {
    int count = 0, positive = 0, negative = 0;
    for (int i = 0; i < n; i++) {
      float v = t[i][e];
      uint32_t b;
      __builtin_memcpy(&b, &v, 4);
      uint32_t bits = b & 0x7FFFFFFF;
      int keep = bits >= limit[i];
      if (!keep && left[i] > 0 && bits == tie[i]) {
        keep = 1;
        left[i]--;
      }
      if (keep) {
        count++;
        kept[i]++;
        if (bits != 0) {
          if (b >> 31) negative++; else positive++;
        }
      }
    }
    if (count >= 1) a++;
    if (count >= 2) s++;
    if (positive > 0 && negative > 0) c++;
  }
  out[0] = a;
  out[1] = s;
  out[2] = c;
  if (keptBy)
    for (int i = 0; i < n; i++) keptBy[i] = kept[i];
}

KERNEL long merge_count_equal(const float *t, long n, uint32_t threshold) {
  const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i target = _mm256_set1_epi32((int32_t)threshold);
  __m256i count = _mm256_setzero_si256();
  long e = 0;
  for (; e + 8 <= n; e += 8) {
    __m256i bits = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(t + e)), magnitude);
    count = _mm256_sub_epi32(count, _mm256_cmpeq_epi32(bits, target));
  }
  uint32_t lanes[8];
  _mm256_storeu_si256((__m256i *)lanes, count);
  long total = 0;
  for (int i = 0; i < 8; i++) total += lanes[i];
  for (; e < n; e++) {
    uint32_t b;
    __builtin_memcpy(&b, t + e, 4);
    if ((b & 0x7FFFFFFF) == threshold) total++;
  }
  return total;
}

KERNEL double merge_dot_f64(const double *a, const double *b, long n) {
  __m256d x = _mm256_setzero_pd(), y = _mm256_setzero_pd();
  long e = 0;
  for (; e + 8 <= n; e += 8) {
    x = _mm256_fmadd_pd(_mm256_loadu_pd(a + e), _mm256_loadu_pd(b + e), x);
    y = _mm256_fmadd_pd(_mm256_loadu_pd(a + e + 4), _mm256_loadu_pd(b + e + 4), y);
  }
  double lanes[8];
  _mm256_storeu_pd(lanes, x);
  _mm256_storeu_pd(lanes + 4, y);
  double tail = 0;
  for (; e < n; e++) tail += a[e] * b[e];
  return ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])) + tail;
}


KERNEL long merge_counts_add(const float *t, long n, uint32_t limit, uint32_t *words, int first) {
  const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i zero = _mm256_setzero_si256();
  // bits ≥ limit as a signed comparison with limit − 1 (both below 2³¹; limit 0 gives −1).
  const __m256i below = _mm256_set1_epi32((int32_t)(limit - 1));
  __m256i total = zero;
  long e = 0;
  for (; e + 8 <= n; e += 8) {
    __m256i word = _mm256_loadu_si256((const __m256i *)(t + e));
    __m256i bits = _mm256_and_si256(word, magnitude);
    __m256i k = _mm256_and_si256(_mm256_cmpgt_epi32(bits, below), one);
    __m256i nonzero = _mm256_andnot_si256(_mm256_cmpeq_epi32(bits, zero), one);
    __m256i sign = _mm256_and_si256(k, nonzero);
    __m256i q = _mm256_and_si256(sign, _mm256_srli_epi32(word, 31));
    __m256i p = _mm256_andnot_si256(q, sign);
    __m256i add = _mm256_or_si256(k, _mm256_or_si256(_mm256_slli_epi32(p, 10), _mm256_slli_epi32(q, 20)));
    __m256i old = first ? zero : _mm256_loadu_si256((const __m256i *)(words + e));
    _mm256_storeu_si256((__m256i *)(words + e), _mm256_add_epi32(old, add));
    total = _mm256_add_epi32(total, k);
  }
  long added = hsum_epi32(total);
  for (; e < n; e++) {
    uint32_t word;
    __builtin_memcpy(&word, t + e, 4);
    if (first) words[e] = 0;
    if ((word & 0x7FFFFFFF) >= limit) {
      float v = t[e];
      words[e] += 1 | (v > 0 ? 1u << 10 : 0) | (v < 0 ? 1u << 20 : 0);
      added++;
    }
  }
  return added;
}

KERNEL void merge_counts_tally(const uint32_t *words, long n, long out[3]) {
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i zero = _mm256_setzero_si256();
  const __m256i low = _mm256_set1_epi32(0x3FF);
  const __m256i positive = _mm256_set1_epi32(0xFFC00);
  __m256i any = zero, shared = zero, conflicting = zero;
  long e = 0;
  for (; e + 8 <= n; e += 8) {
    __m256i w = _mm256_loadu_si256((const __m256i *)(words + e));
    __m256i k = _mm256_and_si256(w, low);
    any = _mm256_add_epi32(any, _mm256_andnot_si256(_mm256_cmpeq_epi32(k, zero), one));
    shared = _mm256_add_epi32(
      shared, _mm256_andnot_si256(_mm256_cmpeq_epi32(_mm256_srli_epi32(k, 1), zero), one));
    __m256i p = _mm256_cmpeq_epi32(_mm256_and_si256(w, positive), zero);
    __m256i q = _mm256_cmpeq_epi32(_mm256_srli_epi32(w, 20), zero);
    conflicting = _mm256_add_epi32(conflicting, _mm256_andnot_si256(_mm256_or_si256(p, q), one));
  }
  long a = hsum_epi32(any), s = hsum_epi32(shared), c = hsum_epi32(conflicting);
  for (; e < n; e++) {
    uint32_t w = words[e], k = w & 0x3FF;
    if (k >= 1) a++;
    if (k >= 2) {
      s++;
      if ((w & 0xFFC00) != 0 && (w >> 20) != 0) c++;
    }
  }
  out[0] = a;
  out[1] = s;
  out[2] = c;
}

KERNEL void merge_low_bits(
  const float *t, long n, const uint32_t *bins, uint32_t *const *hist, int nbins,
  const uint32_t *above, double *sums, int nsums) {
  const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i b0 = _mm256_set1_epi32((int32_t)bins[0]);
  const __m256i b1 = _mm256_set1_epi32((int32_t)bins[nbins > 1 ? 1 : 0]);
  const __m256i b2 = _mm256_set1_epi32((int32_t)bins[nbins - 1]);
  // Above a bin past every magnitude (0x10000) nothing is summed.
  const uint32_t s0 = nsums > 0 ? above[0] : 0x10000, s1 = nsums > 1 ? above[1] : 0x10000;
  const __m256i l0 = _mm256_set1_epi32((int32_t)s0), l1 = _mm256_set1_epi32((int32_t)s1);
  __m256d x0 = _mm256_setzero_pd(), y0 = _mm256_setzero_pd();
  __m256d x1 = _mm256_setzero_pd(), y1 = _mm256_setzero_pd();
  long e = 0;
  for (; e + 8 <= n; e += 8) {
    __m256i word = _mm256_loadu_si256((const __m256i *)(t + e));
    __m256i bits = _mm256_and_si256(word, magnitude);
    __m256i high = _mm256_srli_epi32(bits, 15);
    __m256 k0 = _mm256_castsi256_ps(_mm256_and_si256(word, _mm256_cmpgt_epi32(high, l0)));
    __m256 k1 = _mm256_castsi256_ps(_mm256_and_si256(word, _mm256_cmpgt_epi32(high, l1)));
    __m256d lo0 = _mm256_cvtps_pd(_mm256_castps256_ps128(k0));
    __m256d hi0 = _mm256_cvtps_pd(_mm256_extractf128_ps(k0, 1));
    __m256d lo1 = _mm256_cvtps_pd(_mm256_castps256_ps128(k1));
    __m256d hi1 = _mm256_cvtps_pd(_mm256_extractf128_ps(k1, 1));
    x0 = _mm256_fmadd_pd(lo0, lo0, x0);
    y0 = _mm256_fmadd_pd(hi0, hi0, y0);
    x1 = _mm256_fmadd_pd(lo1, lo1, x1);
    y1 = _mm256_fmadd_pd(hi1, hi1, y1);
    __m256i hit = _mm256_or_si256(
      _mm256_cmpeq_epi32(high, b0), _mm256_or_si256(_mm256_cmpeq_epi32(high, b1), _mm256_cmpeq_epi32(high, b2)));
    int lanes = _mm256_movemask_ps(_mm256_castsi256_ps(hit));
    while (lanes) {
      int l = __builtin_ctz(lanes);
      lanes &= lanes - 1;
      uint32_t b;
      __builtin_memcpy(&b, t + e + l, 4);
      b &= 0x7FFFFFFF;
      for (int j = 0; j < nbins; j++)
        if ((b >> 15) == bins[j]) hist[j][b & 0x7FFF]++;
    }
  }
  double lanes0[8], lanes1[8];
  _mm256_storeu_pd(lanes0, x0);
  _mm256_storeu_pd(lanes0 + 4, y0);
  _mm256_storeu_pd(lanes1, x1);
  _mm256_storeu_pd(lanes1 + 4, y1);
  double tail0 = 0, tail1 = 0;
  for (; e < n; e++) {
    uint32_t b;
    __builtin_memcpy(&b, t + e, 4);
    b &= 0x7FFFFFFF;
    for (int j = 0; j < nbins; j++)
      if ((b >> 15) == bins[j]) hist[j][b & 0x7FFF]++;
    double v = t[e];
    if ((b >> 15) > s0) tail0 += v * v;
    if ((b >> 15) > s1) tail1 += v * v;
  }
  double sum0 = 0, sum1 = 0;
  for (int i = 0; i < 8; i++) {
    sum0 += lanes0[i];
    sum1 += lanes1[i];
  }
  if (nsums > 0) sums[0] = sum0 + tail0;
  if (nsums > 1) sums[1] = sum1 + tail1;
}

#else

int merge_kernels_available(void) { return 0; }
void merge_subtract_widen(float *t, const float *base, double *wide, long n) {
  (void)t; (void)base; (void)wide; (void)n;
}
long merge_count_equal(const float *t, long n, uint32_t threshold) {
  (void)t; (void)n; (void)threshold; return 0;
}
void merge_gram(const float *const *t, int n, long len, double *gram) {
  (void)t; (void)n; (void)len; (void)gram;
}
double merge_sum_squares(const float *v, long n) { (void)v; (void)n; return 0; }
void merge_kept(
  const float *const *t, int n, long len, const uint32_t *limit, const uint32_t *tie,
  long *left, long out[3], long *keptBy) {
  (void)t; (void)n; (void)len; (void)limit; (void)tie; (void)left; (void)keptBy;
  out[0] = out[1] = out[2] = 0;
}
void merge_bf16_subtract_widen(
  const uint16_t *src, const float *base, float *t, double *wide, long n) {
  (void)src; (void)base; (void)t; (void)wide; (void)n;
}
double merge_dot_f64(const double *a, const double *b, long n) { (void)a; (void)b; (void)n; return 0; }
long merge_counts_add(const float *t, long n, uint32_t limit, uint32_t *words, int first) {
  (void)t; (void)n; (void)limit; (void)words; (void)first; return 0;
}
void merge_counts_tally(const uint32_t *words, long n, long out[3]) {
  (void)words; (void)n; out[0] = out[1] = out[2] = 0;
}
void merge_low_bits(
  const float *t, long n, const uint32_t *bins, uint32_t *const *hist, int nbins,
  const uint32_t *above, double *sums, int nsums) {
  (void)t; (void)n; (void)bins; (void)hist; (void)nbins; (void)above; (void)sums; (void)nsums;
}

#endif
