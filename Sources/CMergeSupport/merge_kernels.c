#include "merge_kernels.h"

#include <stdlib.h>

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

// Offsets of the set bits of an 8-bit mask, ascending, one per byte (filled at load).
static uint64_t set_bit_offsets[256];

__attribute__((constructor)) static void fill_set_bit_offsets(void) {
  for (int m = 0; m < 256; m++) {
    uint64_t packed = 0;
    int k = 0;
    for (int b = 0; b < 8; b++)
      if (m & (1 << b)) packed |= (uint64_t)b << (8 * k++);
    set_bit_offsets[m] = packed;
  }
}

// The 8-bit mask with its bits in reverse order.
static inline unsigned reverse8(unsigned m) {
  m = ((m & 0xF0) >> 4) | ((m & 0x0F) << 4);
  m = ((m & 0xCC) >> 2) | ((m & 0x33) << 2);
  return ((m & 0xAA) >> 1) | ((m & 0x55) << 1);
}

// The partition, with its swaps noted as bits (mode 0) or followed by the indices (mode 1);
// inlined with a constant mode.
// Tracked equal keys: open addressing by position (linear probing), each slot a position
// (EMPTY, GONE for a removed one) and the original index of the element there.
struct merge_tie_table {
  uint32_t tie;
  long mask, live, used;
  long *pos;
  int32_t *orig;
};

enum { TIE_EMPTY = -1, TIE_GONE = -2 };

static inline long tie_slot(const merge_tie_table *t, long p) {
  return (long)(((uint64_t)p * 0x9E3779B97F4A7C15ULL) >> 20) & t->mask;
}

static void tie_insert(merge_tie_table *t, long p, int32_t o) {
  long i = tie_slot(t, p);
  while (t->pos[i] >= 0) i = (i + 1) & t->mask;
  if (t->pos[i] == TIE_EMPTY) t->used++;
  t->pos[i] = p;
  t->orig[i] = o;
}

static long tie_find(const merge_tie_table *t, long p) {
  long i = tie_slot(t, p);
  while (t->pos[i] != p) {
    if (t->pos[i] == TIE_EMPTY) return -1;
    i = (i + 1) & t->mask;
  }
  return i;
}

// Rebuilds the slots without the removed ones.
static void tie_compact(merge_tie_table *t) {
  long size = t->mask + 1;
  long *pos = t->pos;
  int32_t *orig = t->orig;
  t->pos = (long *)malloc((size_t)size * sizeof(long));
  t->orig = (int32_t *)malloc((size_t)size * sizeof(int32_t));
  if (!t->pos || !t->orig) abort();
  for (long i = 0; i < size; i++) t->pos[i] = TIE_EMPTY;
  t->used = 0;
  for (long i = 0; i < size; i++)
    if (pos[i] >= 0) tie_insert(t, pos[i], orig[i]);
  free(pos);
  free(orig);
}

void merge_tie_swapped(merge_tie_table *t, const uint32_t *keys, long a, long b) {
  int at_a = keys[a] == t->tie, at_b = keys[b] == t->tie;
  // A tracked key is always at a tracked position: a miss is a broken invariant, not input.
  if (at_a && at_b) {
    long i = tie_find(t, a), j = tie_find(t, b);
    if (i < 0 || j < 0) abort();
    int32_t o = t->orig[i];
    t->orig[i] = t->orig[j];
    t->orig[j] = o;
    return;
  }
  if (!at_a && !at_b) return;
  // One equal key moved from `from` to `to`.
  long from = at_a ? b : a, to = at_a ? a : b;
  long i = tie_find(t, from);
  if (i < 0) abort();
  int32_t o = t->orig[i];
  t->pos[i] = TIE_GONE;
  if (2 * (t->used + 1) > t->mask + 1) tie_compact(t);
  tie_insert(t, to, o);
}

KERNEL __attribute__((always_inline)) static inline long hoare_partition(
  uint32_t *keys, long first, long last, uint32_t pivot, uint64_t *left_bits,
  uint64_t *right_bits, int32_t *indices, int mode, struct merge_tie_table *tracked) {
  // Mode 2 follows the keys equal to this one (the tracked table's).
  const uint32_t tie = mode == 2 ? tracked->tie : 0;
  enum { block = 128 };
  // Offsets of the listed stops, with room for one 8-byte store past a full block.
  uint8_t left_offsets[block + 8], right_offsets[block + 8];
  long scan_left = first, scan_right = last;
  long left_base = 0, right_base = 0;
  long left_count = 0, left_used = 0, right_count = 0, right_used = 0;
  long swapped_first = 0, swapped_last = 0;
  int any_swap = 0;
  const __m256i p = _mm256_set1_epi32((int)pivot);
  const uint64_t spread = 0x0101010101010101ULL;
  while (scan_right - scan_left > 2 * block) {
    if (left_used == left_count) {
      left_base = scan_left;
      left_count = 0;
      left_used = 0;
      // A stop from the left is a key not below the pivot: max(key, pivot) == key.
      for (long i = 0; i < block; i += 8) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(keys + left_base + i));
        unsigned m = (unsigned)_mm256_movemask_ps(
          _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_max_epu32(v, p), v)));
        uint64_t o = set_bit_offsets[m] + (uint64_t)i * spread;
        __builtin_memcpy(left_offsets + left_count, &o, 8);
        left_count += __builtin_popcount(m);
      }
      scan_left += block;
    }
    if (right_used == right_count) {
      right_base = scan_right - 1;
      right_count = 0;
      right_used = 0;
      // A stop from the right is a key not above the pivot; offset i is position base − i,
      // so lane l of the load at base − i − 7 is offset i + 7 − l.
      for (long i = 0; i < block; i += 8) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(keys + right_base - i - 7));
        unsigned m = (unsigned)_mm256_movemask_ps(
          _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_min_epu32(v, p), v)));
        uint64_t o = set_bit_offsets[reverse8(m)] + (uint64_t)i * spread;
        __builtin_memcpy(right_offsets + right_count, &o, 8);
        right_count += __builtin_popcount(m);
      }
      scan_right -= block;
    }
    long count = left_count - left_used;
    if (right_count - right_used < count) count = right_count - right_used;
    if (count == 0) continue;
    for (long j = 0; j < count; j++) {
      long a = left_base + left_offsets[left_used + j];
      long b = right_base - right_offsets[right_used + j];
      uint32_t t = keys[a];
      keys[a] = keys[b];
      keys[b] = t;
      if (mode == 0) {
        left_bits[a >> 6] |= 1ULL << (a & 63);
        right_bits[b >> 6] |= 1ULL << (b & 63);
      } else if (mode == 1) {
        int32_t k = indices[a];
        indices[a] = indices[b];
        indices[b] = k;
      } else if ((keys[a] == tie) | (keys[b] == tie)) {
        merge_tie_swapped(tracked, keys, a, b);
      }
      swapped_first = a;
      swapped_last = b;
    }
    any_swap = 1;
    left_used += count;
    right_used += count;
  }
  if (any_swap) {
    first = swapped_first + 1;
    last = swapped_last;
  }
  for (;;) {
    while (keys[first] < pivot) first++;
    last--;
    while (pivot < keys[last]) last--;
    if (!(first < last)) return first;
    uint32_t t = keys[first];
    keys[first] = keys[last];
    keys[last] = t;
    if (mode == 0) {
      left_bits[first >> 6] |= 1ULL << (first & 63);
      right_bits[last >> 6] |= 1ULL << (last & 63);
    } else if (mode == 1) {
      int32_t k = indices[first];
      indices[first] = indices[last];
      indices[last] = k;
    } else if ((keys[first] == tie) | (keys[last] == tie)) {
      merge_tie_swapped(tracked, keys, first, last);
    }
    first++;
  }
}

KERNEL long merge_hoare_partition(
  uint32_t *keys, long first, long last, uint32_t pivot, uint64_t *left_bits,
  uint64_t *right_bits, int32_t *indices) {
  if (indices) return hoare_partition(keys, first, last, pivot, NULL, NULL, indices, 1, NULL);
  return hoare_partition(keys, first, last, pivot, left_bits, right_bits, NULL, 0, NULL);
}

// The fused consensus's parameters, broadcast once per call.
typedef struct {
  int m, normalize, has_lambda;
  const uint32_t *bound;
  const uint64_t *const *ties;
  const float *scale, *weights;
  float lambda;
  __m256i limits[8];
  __m256 scales[8], w[8], l;
} consensus_params;

KERNEL static inline void consensus_setup(
  consensus_params *c, int m, const uint32_t *bound, const uint64_t *const *ties,
  const float *scale, const float *weights, int normalize, int has_lambda, float lambda) {
  c->m = m;
  c->bound = bound;
  c->ties = ties;
  c->scale = scale;
  c->weights = weights;
  c->normalize = normalize;
  c->has_lambda = has_lambda;
  c->lambda = lambda;
  for (int k = 0; k < m; k++) {
    // Unsigned bits ≥ bound as a signed comparison of both with the top bit flipped.
    c->limits[k] = _mm256_set1_epi32((int)((bound[k] - 1u) ^ 0x80000000u));
    c->scales[k] = _mm256_set1_ps(scale[k]);
    c->w[k] = _mm256_set1_ps(weights[k]);
  }
  c->l = _mm256_set1_ps(lambda);
}

// Eight entries from position p (a multiple of 8): base b, task vector entries xv[k].
KERNEL __attribute__((always_inline)) static inline __m256 consensus8(
  const consensus_params *c, __m256 b, const __m256 *xv, long p) {
#pragma STDC FP_CONTRACT OFF
  const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i flip = _mm256_set1_epi32((int)0x80000000u);
  const __m256i lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  __m256 term[8];
  __m256 total = zero;
  for (int k = 0; k < c->m; k++) {
    __m256 d = _mm256_sub_ps(xv[k], b);
    __m256i bits = _mm256_and_si256(_mm256_castps_si256(d), magnitude);
    // Bound 0 keeps everything (bound − 1 would wrap).
    __m256i keep = c->bound[k] == 0
      ? _mm256_set1_epi32(-1)
      : _mm256_cmpgt_epi32(_mm256_xor_si256(bits, flip), c->limits[k]);
    if (c->ties[k]) {
      unsigned byte = (unsigned)(c->ties[k][p >> 6] >> (p & 63)) & 0xFF;
      __m256i set = _mm256_and_si256(_mm256_set1_epi32((int)byte), lane_bits);
      keep = _mm256_or_si256(keep, _mm256_cmpeq_epi32(set, lane_bits));
    }
    d = _mm256_mul_ps(d, _mm256_blendv_ps(zero, one, _mm256_castsi256_ps(keep)));
    if (c->scale[k] == c->scale[k]) d = _mm256_mul_ps(d, c->scales[k]);
    term[k] = d;
    total = _mm256_add_ps(total, d);
  }
  __m256 nonnegative = _mm256_cmp_ps(total, zero, _CMP_GE_OQ);
  __m256 sum = zero, divisor = zero;
  for (int k = 0; k < c->m; k++) {
    __m256 agrees = _mm256_blendv_ps(
      _mm256_cmp_ps(term[k], zero, _CMP_LT_OQ), _mm256_cmp_ps(term[k], zero, _CMP_GT_OQ),
      nonnegative);
    sum = _mm256_add_ps(sum, _mm256_and_ps(agrees, term[k]));
    divisor = _mm256_add_ps(divisor, _mm256_and_ps(agrees, c->w[k]));
  }
  if (c->normalize) {
    __m256 none = _mm256_cmp_ps(divisor, zero, _CMP_EQ_OQ);
    sum = _mm256_div_ps(sum, _mm256_blendv_ps(divisor, one, none));
  }
  if (c->has_lambda) sum = _mm256_mul_ps(sum, c->l);
  return _mm256_add_ps(b, sum);
}

// One entry at position p.
KERNEL static inline float consensus1(const consensus_params *c, float b, const float *xv, long p) {
#pragma STDC FP_CONTRACT OFF
  float term[8];
  float total = 0;
  for (int k = 0; k < c->m; k++) {
    float d = xv[k] - b;
    uint32_t bits;
    __builtin_memcpy(&bits, &d, 4);
    bits &= 0x7FFFFFFF;
    int keep = bits >= c->bound[k];
    if (c->ties[k]) keep |= (int)((c->ties[k][p >> 6] >> (p & 63)) & 1);
    d = d * (keep ? 1.0f : 0.0f);
    if (c->scale[k] == c->scale[k]) d = d * c->scale[k];
    term[k] = d;
    total = total + d;
  }
  float sum = 0, divisor = 0;
  for (int k = 0; k < c->m; k++) {
    int agrees = total >= 0 ? term[k] > 0 : term[k] < 0;
    sum = sum + (agrees ? term[k] : 0.0f);
    divisor = divisor + (agrees ? c->weights[k] : 0.0f);
  }
  if (c->normalize) sum = sum / (divisor == 0 ? 1.0f : divisor);
  if (c->has_lambda) sum = sum * c->lambda;
  return b + sum;
}

KERNEL void merge_fused_consensus(
  const float *base, const float *const *x, int m, const uint32_t *bound,
  const uint64_t *const *ties, long first, const float *scale, const float *weights,
  int normalize, int has_lambda, float lambda, float *out, long n) {
  consensus_params c;
  consensus_setup(&c, m, bound, ties, scale, weights, normalize, has_lambda, lambda);
  long e = 0;
  for (; e + 8 <= n; e += 8) {
    __m256 xv[8];
    for (int k = 0; k < m; k++) xv[k] = _mm256_loadu_ps(x[k] + e);
    _mm256_storeu_ps(out + e, consensus8(&c, _mm256_loadu_ps(base + e), xv, first + e));
  }
  for (; e < n; e++) {
    float xv[8];
    for (int k = 0; k < m; k++) xv[k] = x[k][e];
    out[e] = consensus1(&c, base[e], xv, first + e);
  }
}

// bf16 bits → f32, exactly.
static inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

// f32 → bf16 bits: to nearest, ties to even; a NaN stays a quiet NaN.
static inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  __builtin_memcpy(&bits, &f, 4);
  if ((bits & 0x7FFFFFFF) > 0x7F800000) return (uint16_t)((bits >> 16) | 0x0040);
  return (uint16_t)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
}

KERNEL static inline __m256 load_bf16(const uint16_t *p) {
  __m128i half = _mm_loadu_si128((const __m128i *)p);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
}

KERNEL static inline void store_bf16(uint16_t *p, __m256 v) {
  __m256i bits = _mm256_castps_si256(v);
  __m256i magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFFFF));
  __m256i nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7F800000));
  __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i rounded = _mm256_srli_epi32(
    _mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7FFF)), odd), 16);
  __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x0040));
  __m256i h = _mm256_blendv_epi8(rounded, quiet, nan);
  // Each 32-bit lane holds at most 0xFFFF: pack to 16 bits, then put the halves together.
  __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(h, h), 0xD8);
  _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(packed));
}

KERNEL void merge_fused_consensus_bf16(
  const uint16_t *base, const uint16_t *const *x, int m, const uint32_t *bound,
  const uint64_t *const *ties, long first, const float *scale, const float *weights,
  int normalize, int has_lambda, float lambda, uint16_t *out, long n) {
  consensus_params c;
  consensus_setup(&c, m, bound, ties, scale, weights, normalize, has_lambda, lambda);
  long e = 0;
  for (; e + 8 <= n; e += 8) {
    __m256 xv[8];
    for (int k = 0; k < m; k++) xv[k] = load_bf16(x[k] + e);
    store_bf16(out + e, consensus8(&c, load_bf16(base + e), xv, first + e));
  }
  for (; e < n; e++) {
    float xv[8];
    for (int k = 0; k < m; k++) xv[k] = bf16_to_f32(x[k][e]);
    out[e] = f32_to_bf16(consensus1(&c, bf16_to_f32(base[e]), xv, first + e));
  }
}

KERNEL void merge_gather_bf16(
  const uint16_t *x, const uint16_t *base, float *out, long n, uint32_t *hist) {
  const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF);
  uint32_t *h0 = hist, *h1 = hist + 65536, *h2 = hist + 2 * 65536, *h3 = hist + 3 * 65536;
  const int aligned = ((uintptr_t)out & 31) == 0;
  long e = 0;
  for (; e + 8 <= n; e += 8) {
    __m256 d = _mm256_sub_ps(load_bf16(x + e), load_bf16(base + e));
    __m256i bits = _mm256_and_si256(_mm256_castps_si256(d), magnitude);
    if (aligned) _mm256_stream_si256((__m256i *)(out + e), bits);
    else _mm256_storeu_si256((__m256i *)(out + e), bits);
    uint32_t high[8];
    _mm256_storeu_si256((__m256i *)high, _mm256_srli_epi32(bits, 16));
    h0[high[0]]++;
    h1[high[1]]++;
    h2[high[2]]++;
    h3[high[3]]++;
    h0[high[4]]++;
    h1[high[5]]++;
    h2[high[6]]++;
    h3[high[7]]++;
  }
  for (; e < n; e++) {
    float d = bf16_to_f32(x[e]) - bf16_to_f32(base[e]);
    uint32_t bits;
    __builtin_memcpy(&bits, &d, 4);
    bits &= 0x7FFFFFFF;
    __builtin_memcpy(out + e, &bits, 4);
    h0[bits >> 16]++;
  }
  if (aligned) _mm_sfence();
}

// A growable list of positions (or other longs); abort() when memory runs out.
typedef struct {
  long *at;
  long count, capacity;
} long_list;

static void list_push(long_list *l, long v) {
  if (l->count == l->capacity) {
    l->capacity = l->capacity ? 2 * l->capacity : 64;
    long *grown = (long *)realloc(l->at, (size_t)l->capacity * sizeof(long));
    if (!grown) abort();
    l->at = grown;
  }
  l->at[l->count++] = v;
}

// The original index of position p after the first partition's median was moved to the front.
static inline long first_origin(long p, long median) {
  return p == 0 ? median : (p == median ? 0 : p);
}

KERNEL void merge_mark_ties(
  const uint32_t *keys, long from, long to, uint32_t tie, const uint64_t *skip,
  const int32_t *indices, long median, uint64_t *ties) {
  const __m256i t = _mm256_set1_epi32((int)tie);
  long p = from;
  for (; p + 8 <= to; p += 8) {
    __m256i v = _mm256_loadu_si256((const __m256i *)(keys + p));
    unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(v, t)));
    while (m) {
      long q = p + __builtin_ctz(m);
      m &= m - 1;
      if (skip && ((skip[q >> 6] >> (q & 63)) & 1)) continue;
      long o = indices ? indices[q - from] : first_origin(q, median);
      ties[o >> 6] |= 1ULL << (o & 63);
    }
  }
  for (; p < to; p++) {
    if (keys[p] != tie) continue;
    if (skip && ((skip[p >> 6] >> (p & 63)) & 1)) continue;
    long o = indices ? indices[p - from] : first_origin(p, median);
    ties[o >> 6] |= 1ULL << (o & 63);
  }
}

KERNEL __attribute__((always_inline)) static inline void first_pairs(
  const uint64_t *left, const uint64_t *right, long words, int mode, const uint32_t *keys,
  uint32_t tie, uint64_t *ties, int32_t *indices, long lo, long median) {
  // The right words are walked from the top bit down: bit-reversed, so that both sides take
  // their lowest set bit (a one-cycle step each, independent of the position's count).
  long li = 0, ri = words - 1;
  uint64_t lw = left[0], rw = __builtin_bitreverse64(right[ri]);
  for (;;) {
    while (lw == 0) {
      if (++li >= words) return;
      lw = left[li];
    }
    while (rw == 0) {
      if (--ri < 0) return;
      rw = __builtin_bitreverse64(right[ri]);
    }
    long a = (li << 6) | __builtin_ctzll(lw);
    long b = (ri << 6) | (63 - __builtin_ctzll(rw));
    lw &= lw - 1;
    rw &= rw - 1;
    if (mode & 1) {
      if (keys[a] == tie) {
        long o = first_origin(b, median);
        ties[o >> 6] |= 1ULL << (o & 63);
      }
    }
    if (mode & 2) indices[a - lo] = (int32_t)first_origin(b, median);
    if (mode & 4) indices[b - lo] = (int32_t)first_origin(a, median);
  }
}

KERNEL void merge_first_pairs(
  const uint64_t *left, const uint64_t *right, long words, int mode, const uint32_t *keys,
  uint32_t tie, uint64_t *ties, int32_t *indices, long lo, long median) {
  // Each mode the emulation uses, with the mode a constant.
  switch (mode) {
  case 2: first_pairs(left, right, words, 2, keys, tie, ties, indices, lo, median); break;
  case 4: first_pairs(left, right, words, 4, keys, tie, ties, indices, lo, median); break;
  default: first_pairs(left, right, words, mode, keys, tie, ties, indices, lo, median); break;
  }
}

KERNEL void merge_left_ties(
  const uint32_t *keys, long cut, uint32_t tie, const uint64_t *left, const uint64_t *right,
  long words, long median, uint64_t *ties) {
  // The equal keys that stayed are marked at once; those swapped in from the right are listed
  // by position, and their partners found by rank: the j-th swapped position from the left was
  // paired with the j-th from the right.
  long_list swapped = {0};
  const __m256i t = _mm256_set1_epi32((int)tie);
  for (long p = 0; p < cut; p += 8) {
    unsigned m;
    if (p + 8 <= cut) {
      __m256i v = _mm256_loadu_si256((const __m256i *)(keys + p));
      m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(v, t)));
    } else {
      m = 0;
      for (long q = p; q < cut; q++) m |= (unsigned)(keys[q] == tie) << (q - p);
    }
    while (m) {
      long q = p + __builtin_ctz(m);
      m &= m - 1;
      if (!((left[q >> 6] >> (q & 63)) & 1)) {
        long o = first_origin(q, median);
        ties[o >> 6] |= 1ULL << (o & 63);
        continue;
      }
      list_push(&swapped, q);
    }
  }
  // Ranks among the left swaps (positions ascending, so one walk up the words).
  long word = 0, before = 0;
  for (long j = 0; j < swapped.count; j++) {
    long q = swapped.at[j];
    while (word < (q >> 6)) before += __builtin_popcountll(left[word++]);
    swapped.at[j] = before + __builtin_popcountll(left[word] & ((1ULL << (q & 63)) - 1));
  }
  // The partners: the rank-th set bit of `right` from the top (ranks ascending, one walk down).
  long ri = words - 1, above = 0;
  for (long j = 0; j < swapped.count; j++) {
    long rank = swapped.at[j];
    while (ri >= 0 && above + __builtin_popcountll(right[ri]) <= rank)
      above += __builtin_popcountll(right[ri--]);
    if (ri < 0) break;
    uint64_t w = __builtin_bitreverse64(right[ri]);
    for (long k = above; k < rank; k++) w &= w - 1;
    long b = (ri << 6) | (63 - __builtin_ctzll(w));
    long o = first_origin(b, median);
    ties[o >> 6] |= 1ULL << (o & 63);
  }
  free(swapped.at);
}

KERNEL void merge_fused_task_sum_bf16(
  const uint16_t *base, const uint16_t *const *x, int m, const float *weights, int has_divisor,
  float divisor, int has_lambda, float lambda, uint16_t *out, long n) {
#pragma STDC FP_CONTRACT OFF
  __m256 w[8];
  for (int k = 0; k < m; k++) w[k] = _mm256_set1_ps(weights[k]);
  const __m256 d = _mm256_set1_ps(divisor), l = _mm256_set1_ps(lambda);
  long e = 0;
  for (; e + 8 <= n; e += 8) {
    __m256 b = load_bf16(base + e);
    __m256 sum = _mm256_mul_ps(_mm256_sub_ps(load_bf16(x[0] + e), b), w[0]);
    for (int k = 1; k < m; k++)
      sum = _mm256_add_ps(sum, _mm256_mul_ps(_mm256_sub_ps(load_bf16(x[k] + e), b), w[k]));
    if (has_divisor) sum = _mm256_div_ps(sum, d);
    if (has_lambda) sum = _mm256_mul_ps(sum, l);
    store_bf16(out + e, _mm256_add_ps(b, sum));
  }
  for (; e < n; e++) {
    float b = bf16_to_f32(base[e]);
    float sum = (bf16_to_f32(x[0][e]) - b) * weights[0];
    for (int k = 1; k < m; k++) {
      float term = (bf16_to_f32(x[k][e]) - b) * weights[k];
      sum = sum + term;
    }
    if (has_divisor) sum = sum / divisor;
    if (has_lambda) sum = sum * lambda;
    out[e] = f32_to_bf16(b + sum);
  }
}

// An empty table for `listed` positions of keys equal to `tie` (a quarter full at most).
static merge_tie_table *tie_table_make(uint32_t tie, long listed) {
  merge_tie_table *table = (merge_tie_table *)malloc(sizeof(merge_tie_table));
  if (!table) abort();
  long size = 16;
  while (size < 4 * listed) size *= 2;
  table->tie = tie;
  table->mask = size - 1;
  table->live = listed;
  table->used = 0;
  table->pos = (long *)malloc((size_t)size * sizeof(long));
  table->orig = (int32_t *)malloc((size_t)size * sizeof(int32_t));
  if (!table->pos || !table->orig) abort();
  for (long i = 0; i < size; i++) table->pos[i] = TIE_EMPTY;
  return table;
}

KERNEL merge_tie_table *merge_tie_table_new(const uint32_t *keys, long n, uint32_t tie, long most) {
  long_list found = {0};
  const __m256i t = _mm256_set1_epi32((int)tie);
  long p = 0;
  for (; p + 8 <= n && found.count <= most; p += 8) {
    __m256i v = _mm256_loadu_si256((const __m256i *)(keys + p));
    unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(v, t)));
    while (m) {
      list_push(&found, p + __builtin_ctz(m));
      m &= m - 1;
    }
  }
  for (; p < n && found.count <= most; p++)
    if (keys[p] == tie) list_push(&found, p);
  merge_tie_table *table = NULL;
  if (found.count <= most) {
    table = tie_table_make(tie, found.count);
    for (long i = 0; i < found.count; i++) tie_insert(table, found.at[i], (int32_t)found.at[i]);
  }
  free(found.at);
  return table;
}

long merge_tie_table_count(const merge_tie_table *t) { return t ? t->live : 0; }

void merge_tie_table_free(merge_tie_table *t) {
  if (!t) return;
  free(t->pos);
  free(t->orig);
  free(t);
}

void merge_tie_table_collect(
  const merge_tie_table *t, long below, long lo, long hi, uint64_t *ties, int32_t *indices) {
  for (long i = 0; i <= t->mask; i++) {
    long p = t->pos[i];
    if (p < 0) continue;
    if (p < below) {
      long o = t->orig[i];
      ties[o >> 6] |= 1ULL << (o & 63);
    }
    if (indices && p >= lo && p < hi) indices[p - lo] = t->orig[i];
  }
}

KERNEL long merge_hoare_partition_tracked(
  uint32_t *keys, long first, long last, uint32_t pivot, merge_tie_table *t) {
  return hoare_partition(keys, first, last, pivot, NULL, NULL, NULL, 2, t);
}

struct merge_bucket {
  // Each listed key as its position << 16 | its low 16 bits.
  long_list keys;
};

KERNEL merge_bucket *merge_bucket_scan(
  uint32_t *keys, long n, uint32_t bucket, int complement, uint32_t *low, long most) {
  merge_bucket *b = (merge_bucket *)calloc(1, sizeof(merge_bucket));
  if (!b) abort();
  int listing = most >= 0;
  const __m256i ones = _mm256_set1_epi32(-1);
  const __m256i want = _mm256_set1_epi32((int)bucket);
  for (long p = 0; p < n; p += 8) {
    unsigned m;
    long width = n - p < 8 ? n - p : 8;
    if (width == 8) {
      __m256i v = _mm256_loadu_si256((const __m256i *)(keys + p));
      m = (unsigned)_mm256_movemask_ps(
        _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_srli_epi32(v, 16), want)));
      if (complement) _mm256_storeu_si256((__m256i *)(keys + p), _mm256_xor_si256(v, ones));
    } else {
      m = 0;
      for (long q = 0; q < width; q++) m |= (unsigned)((keys[p + q] >> 16) == bucket) << q;
      if (complement)
        for (long q = 0; q < width; q++) keys[p + q] = ~keys[p + q];
    }
    while (m) {
      long q = p + __builtin_ctz(m);
      m &= m - 1;
      uint32_t bits = complement ? ~keys[q] : keys[q];
      low[bits & 0xFFFF]++;
      if (listing && b->keys.count == most) listing = 0;
      if (listing) list_push(&b->keys, q << 16 | (long)(bits & 0xFFFF));
    }
  }
  if (!listing) {
    merge_bucket_free(b);
    return NULL;
  }
  return b;
}

void merge_bucket_free(merge_bucket *b) {
  if (!b) return;
  free(b->keys.at);
  free(b);
}

merge_tie_table *merge_tie_table_from_bucket(
  const merge_bucket *b, uint32_t low, uint32_t tie, long most) {
  long listed = 0;
  for (long i = 0; i < b->keys.count; i++) listed += (b->keys.at[i] & 0xFFFF) == low;
  if (listed > most) return NULL;
  merge_tie_table *table = tie_table_make(tie, listed);
  for (long i = 0; i < b->keys.count; i++) {
    long key = b->keys.at[i];
    if ((key & 0xFFFF) == low) tie_insert(table, key >> 16, (int32_t)(key >> 16));
  }
  return table;
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
long merge_hoare_partition(
  uint32_t *keys, long first, long last, uint32_t pivot, uint64_t *left_bits,
  uint64_t *right_bits, int32_t *indices) {
  (void)keys; (void)last; (void)pivot; (void)left_bits; (void)right_bits; (void)indices;
  return first;
}
void merge_fused_consensus(
  const float *base, const float *const *x, int m, const uint32_t *bound,
  const uint64_t *const *ties, long first, const float *scale, const float *weights,
  int normalize, int has_lambda, float lambda, float *out, long n) {
  (void)base; (void)x; (void)m; (void)bound; (void)ties; (void)first; (void)scale;
  (void)weights; (void)normalize; (void)has_lambda; (void)lambda; (void)out; (void)n;
}
void merge_fused_consensus_bf16(
  const uint16_t *base, const uint16_t *const *x, int m, const uint32_t *bound,
  const uint64_t *const *ties, long first, const float *scale, const float *weights,
  int normalize, int has_lambda, float lambda, uint16_t *out, long n) {
  (void)base; (void)x; (void)m; (void)bound; (void)ties; (void)first; (void)scale;
  (void)weights; (void)normalize; (void)has_lambda; (void)lambda; (void)out; (void)n;
}

void merge_gather_bf16(
  const uint16_t *x, const uint16_t *base, float *out, long n, uint32_t *hist) {
  (void)x; (void)base; (void)out; (void)n; (void)hist;
}

void merge_mark_ties(
  const uint32_t *keys, long from, long to, uint32_t tie, const uint64_t *skip,
  const int32_t *indices, long median, uint64_t *ties) {
  (void)keys; (void)from; (void)to; (void)tie; (void)skip; (void)indices; (void)median;
  (void)ties;
}
void merge_first_pairs(
  const uint64_t *left, const uint64_t *right, long words, int mode, const uint32_t *keys,
  uint32_t tie, uint64_t *ties, int32_t *indices, long lo, long median) {
  (void)left; (void)right; (void)words; (void)mode; (void)keys; (void)tie; (void)ties;
  (void)indices; (void)lo; (void)median;
}

void merge_left_ties(
  const uint32_t *keys, long cut, uint32_t tie, const uint64_t *left, const uint64_t *right,
  long words, long median, uint64_t *ties) {
  (void)keys; (void)cut; (void)tie; (void)left; (void)right; (void)words; (void)median;
  (void)ties;
}

void merge_fused_task_sum_bf16(
  const uint16_t *base, const uint16_t *const *x, int m, const float *weights, int has_divisor,
  float divisor, int has_lambda, float lambda, uint16_t *out, long n) {
  (void)base; (void)x; (void)m; (void)weights; (void)has_divisor; (void)divisor;
  (void)has_lambda; (void)lambda; (void)out; (void)n;
}

merge_tie_table *merge_tie_table_new(const uint32_t *keys, long n, uint32_t tie, long most) {
  (void)keys; (void)n; (void)tie; (void)most;
  return NULL;
}
void merge_tie_table_free(merge_tie_table *t) { (void)t; }
void merge_tie_swapped(merge_tie_table *t, const uint32_t *keys, long a, long b) {
  (void)t; (void)keys; (void)a; (void)b;
}
void merge_tie_table_collect(
  const merge_tie_table *t, long below, long lo, long hi, uint64_t *ties, int32_t *indices) {
  (void)t; (void)below; (void)lo; (void)hi; (void)ties; (void)indices;
}
long merge_hoare_partition_tracked(
  uint32_t *keys, long first, long last, uint32_t pivot, merge_tie_table *t) {
  (void)keys; (void)last; (void)pivot; (void)t;
  return first;
}

long merge_tie_table_count(const merge_tie_table *t) { (void)t; return 0; }
merge_bucket *merge_bucket_scan(
  uint32_t *keys, long n, uint32_t bucket, int complement, uint32_t *low, long most) {
  (void)keys; (void)n; (void)bucket; (void)complement; (void)low; (void)most;
  return NULL;
}
void merge_bucket_free(merge_bucket *b) { (void)b; }
merge_tie_table *merge_tie_table_from_bucket(
  const merge_bucket *b, uint32_t low, uint32_t tie, long most) {
  (void)b; (void)low; (void)tie; (void)most;
  return NULL;
}

#endif
