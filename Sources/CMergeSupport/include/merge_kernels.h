#ifndef MERGE_KERNELS_H
#define MERGE_KERNELS_H

#include <stdint.h>

/// AVX2 kernels, chosen at run time: `merge analyze`'s passes over task vectors, and the hot
/// loops of a merge (TIES' selections and the replay of torch's sort, the final passes of TIES
/// and task arithmetic from bf16 to bf16).
///
/// The release binary targets baseline x86-64 (SSE2), where Swift's SIMD types use 128-bit
/// registers; these functions are compiled for AVX2 and FMA with per-function target
/// attributes and called only when `merge_kernels_available()` says the CPU has both. On other
/// CPUs and on arm64, merge uses its Swift loops. A merge's kernels compute the same bits as
/// those loops (f32 operations in the same order, no fused multiply-add; the same swaps in the
/// same order); analyze's f64 sums differ in rounding only (FMA there).

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

/// libstdc++'s `std::__unguarded_partition(keys + first, keys + last, pivot)` on unsigned keys
/// (`<`), in the block form of `TorchSortEmulation.hoarePartition` (the same swaps in the same
/// order): returns the cut. Each swap of positions a < b is noted, when `indices` is NULL, as
/// bit a of left_bits and bit b of right_bits; otherwise indices[a] and indices[b] are swapped
/// too.
long merge_hoare_partition(
  uint32_t *keys, long first, long last, uint32_t pivot, uint64_t *left_bits,
  uint64_t *right_bits, int32_t *indices);
/// TIES's final pass over n entries of m ≤ 8 task vectors, in the fused consensus's order and
/// f32 roundings (no fused multiply-add): term_k = (x_k − base)·(kept ? 1 : 0), then ·scale[k]
/// unless scale[k] is NaN; kept when the term's magnitude bits are bound[k] or more, or when
/// ties[k] (if not NULL) has bit first + e. total = 0 + term_0 + term_1 + …; a term agrees when
/// total ≥ 0 ? term > 0 : term < 0; sum = 0 + the agreeing terms, divisor = 0 + their weights, in
/// k order; sum /= (divisor == 0 ? 1 : divisor) when normalize, sum ·= lambda when has_lambda;
/// out = base + sum. `first + e` for e a multiple of 8 must be a multiple of 8.
void merge_fused_consensus(
  const float *base, const float *const *x, int m, const uint32_t *bound,
  const uint64_t *const *ties, long first, const float *scale, const float *weights,
  int normalize, int has_lambda, float lambda, float *out, long n);

/// merge_fused_consensus on bf16 inputs (widened to f32 exactly), its result rounded to bf16 (to
/// nearest, ties to even; a NaN stays a quiet NaN), as the store of a bf16 tensor rounds it.
void merge_fused_consensus_bf16(
  const uint16_t *base, const uint16_t *const *x, int m, const uint32_t *bound,
  const uint64_t *const *ties, long first, const float *scale, const float *weights,
  int normalize, int has_lambda, float lambda, uint16_t *out, long n);

/// Task arithmetic's fused sum over n entries of 1 ≤ m ≤ 8 bf16 task vectors (widened to f32
/// exactly), in the executor's order and f32 roundings (no fused multiply-add): sum =
/// (x_0 − base)·w_0, then sum + (x_k − base)·w_k for k = 1…m−1; sum / divisor when has_divisor,
/// sum · lambda when has_lambda; base + sum rounded to bf16 as merge_fused_consensus_bf16 rounds.
void merge_fused_task_sum_bf16(
  const uint16_t *base, const uint16_t *const *x, int m, const float *weights, int has_divisor,
  float divisor, int has_lambda, float lambda, uint16_t *out, long n);

/// A selection's gather from bf16 entries: out[e] = |x[e] − base[e]| in f32 (each widened
/// exactly), and each result's high 16 bits counted into one of four tables of 65536 counts at
/// hist (entry e into table e mod 4), to be summed.
void merge_gather_bf16(
  const uint16_t *x, const uint16_t *base, float *out, long n, uint32_t *hist);

/// For each position p in [from, to) whose key is `tie` and whose bit in `skip` (when not NULL)
/// is clear, sets the bit of its original index in `ties`: indices[p − from] when `indices` is
/// not NULL, else p with 0 and `median` exchanged (after the first partition's median move).
void merge_mark_ties(
  const uint32_t *keys, long from, long to, uint32_t tie, const uint64_t *skip,
  const int32_t *indices, long median, uint64_t *ties);

/// The first partition's swaps, in order: the j-th set bit of `left` (ascending) with the j-th
/// of `right` (descending), over `words` words each; origins as in merge_mark_ties. For each
/// pair (a, b), by the bits of `mode`: 1, when the key at a is `tie`, sets the bit of b's origin
/// in `ties`; 2, indices[a − lo] = b's origin; 4, indices[b − lo] = a's origin.
void merge_first_pairs(
  const uint64_t *left, const uint64_t *right, long words, int mode, const uint32_t *keys,
  uint32_t tie, uint64_t *ties, int32_t *indices, long lo, long median);

/// After the first partition, when its left side [0, cut) lies before the boundary: sets in
/// `ties` the original index of every element of that side whose key is `tie`. One that stayed
/// is its own (as in merge_mark_ties); one swapped in (its position's bit set in `left`) is its
/// partner's, the position of the same rank among the set bits of `right` counted from the top.
void merge_left_ties(
  const uint32_t *keys, long cut, uint32_t tie, const uint64_t *left, const uint64_t *right,
  long words, long median, uint64_t *ties);

/// The elements whose key equals one value, followed through a sort's swaps by position: for a
/// sort of many keys of which few are equal to the value that matters, in place of an index per
/// element.
typedef struct merge_tie_table merge_tie_table;

/// The positions of the n keys equal to `tie`, each its own original index; NULL when more
/// than `most` are.
merge_tie_table *merge_tie_table_new(const uint32_t *keys, long n, uint32_t tie, long most);

/// How many elements a table follows.
long merge_tie_table_count(const merge_tie_table *t);

/// Frees a table (NULL is ignored).
void merge_tie_table_free(merge_tie_table *t);

/// Positions a and b of `keys` were just swapped: the tracked elements among them move.
void merge_tie_swapped(merge_tie_table *t, const uint32_t *keys, long a, long b);

/// For each tracked element at a position below `below`, sets the bit of its original index in
/// `ties`; for each at a position p in [lo, hi), indices[p − lo] = its original index (when
/// `indices` is not NULL).
void merge_tie_table_collect(
  const merge_tie_table *t, long below, long lo, long hi, uint64_t *ties, int32_t *indices);

/// The keys of one high-16-bits bucket: positions and low 16 bits.
typedef struct merge_bucket merge_bucket;

/// The radix selection's second pass and a tie table's scan in one: counts the n keys whose
/// high 16 bits are `bucket` by their low 16 bits into low[65536], complements every key when
/// `complement` (after reading it), and lists the bucket's keys by position; NULL (counted and
/// complemented all the same) when more than `most` are in the bucket.
merge_bucket *merge_bucket_scan(
  uint32_t *keys, long n, uint32_t bucket, int complement, uint32_t *low, long most);

/// Frees a bucket list (NULL is ignored).
void merge_bucket_free(merge_bucket *b);

/// A tie table of the listed keys whose low 16 bits are `low` (the table's value is `tie`, the
/// key as the sort sees it), or NULL when more than `most` are.
merge_tie_table *merge_tie_table_from_bucket(
  const merge_bucket *b, uint32_t low, uint32_t tie, long most);

/// merge_hoare_partition, following the tracked elements through its swaps.
long merge_hoare_partition_tracked(
  uint32_t *keys, long first, long last, uint32_t pivot, merge_tie_table *t);
#endif
