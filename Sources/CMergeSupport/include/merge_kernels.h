#ifndef MERGE_KERNELS_H
#define MERGE_KERNELS_H

#include <stdint.h>

/// AVX2 kernels for `merge analyze`'s passes over task vectors, chosen at run time.
///
/// The release binary targets baseline x86-64 (SSE2), where Swift's SIMD types use 128-bit
/// registers; these functions are compiled for AVX2 and FMA with per-function target
/// attributes and called only when `merge_kernels_available()` says the CPU has both. On other
/// CPUs and on arm64, merge uses its Swift loops, which compute the same counts; the f64 sums
/// differ in rounding only (FMA here).

/// 1 when this CPU runs the kernels below (x86-64 with AVX2 and FMA), else 0.
int merge_kernels_available(void);

/// t[e] −= base[e] (when base is not NULL), then wide[e] = t[e] in f64 (when wide is not NULL),
/// for e < n.
void merge_subtract_widen(float *t, const float *base, double *wide, long n);

/// bf16 entries `src` widened to f32 (minus base[e] when base is not NULL) into t, and to f64
/// into wide when it is not NULL, for e < n.
void merge_bf16_subtract_widen(
  const uint16_t *src, const float *base, float *t, double *wide, long n);

/// gram[i·n + j] (j ≥ i) = Σ t_i·t_j in f64 over len entries of up to four task vectors
/// (n ≤ 4), each row converted once.
void merge_gram(const float *const *t, int n, long len, double *gram);

/// TIES's overlap over a chunk of up to four task vectors (n ≤ 4), without a word per entry:
/// t_i keeps an entry whose magnitude's bit pattern is limit[i] or more, and, while left[i] > 0,
/// the entries equal to tie[i] in position order (left[i] counting down; tie[i] is ignored when
/// left[i] is 0). out[0..2]: entries kept by one or more, by two or more, and of those with both
/// signs among the kept values; keptBy[i] (when not NULL) the entries t_i keeps. With every
/// limit 1 and no ties, "kept" is "changed": pass 1's sign counts.
void merge_kept(
  const float *const *t, int n, long len, const uint32_t *limit, const uint32_t *tie,
  long *left, long out[3], long *keptBy);

/// Σ v² over n f32 entries, in f64.
double merge_sum_squares(const float *v, long n);

/// The entries whose magnitude's f32 bit pattern is `threshold`.
long merge_count_equal(const float *t, long n, uint32_t threshold);

/// Σ a[i]·b[i] over n entries, in eight f64 lanes added in a fixed order.
double merge_dot_f64(const double *a, const double *b, long n);

/// For each entry whose magnitude's f32 bit pattern is `limit` or more: words[e] gains 1, and
/// 1 << 10 if it is positive or 1 << 20 if negative (words start at 0 when `first`). Returns
/// how many entries that is.
long merge_counts_add(const float *t, long n, uint32_t limit, uint32_t *words, int first);

/// Over n words of merge_counts_add: entries kept once or more, twice or more, and with both
/// signs, into out[0], out[1], out[2].
void merge_counts_tally(const uint32_t *words, long n, long out[3]);

/// Pass 2 over one fine-tune's entries: counts the entries whose magnitude's high 16 bits are
/// bins[j] (j < nbins ≤ 3) by their low 15 bits into hist[j], and into sums[j] (j < nsums ≤ 2)
/// Σ v² in f64 over the entries whose high bits are above above[j].
void merge_low_bits(
  const float *t, long n, const uint32_t *bins, uint32_t *const *hist, int nbins,
  const uint32_t *above, double *sums, int nsums);

#endif
