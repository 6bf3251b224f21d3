#ifndef MERGE_LAPACK_H
#define MERGE_LAPACK_H

/// The LAPACK routines merge uses, loaded on first use.
///
/// LAPACKE (Debian's liblapacke, OpenBLAS underneath when installed) is opened with `dlopen`
/// the first time a decomposition is asked for, not linked: OpenBLAS starts its worker threads
/// when it is loaded, and they spin (`sched_yield`) for a while waiting for work, taking a core
/// from every merge — most of which never decompose anything. Matrices are row-major; the
/// arguments are LAPACKE's, with `int` for `lapack_int`.

/// Loads LAPACKE once and asks OpenBLAS, when it is the BLAS, to use one thread (callers run
/// several decompositions at once, and a fixed thread count keeps the results' bits fixed).
/// Returns NULL, or why it could not be loaded (a static string, or the loader's message).
const char *merge_lapack_load(void);

/// `LAPACKE_sgesdd`; -1000 if LAPACKE could not be loaded.
int merge_lapack_sgesdd(char jobz, int m, int n, float *a, int lda, float *s, float *u, int ldu,
                        float *vt, int ldvt);

/// `LAPACKE_sgesvd`; -1000 if LAPACKE could not be loaded.
int merge_lapack_sgesvd(char jobu, char jobvt, int m, int n, float *a, int lda, float *s,
                        float *u, int ldu, float *vt, int ldvt, float *superb);

/// `LAPACKE_sgesvdx`; -1000 if LAPACKE could not be loaded.
int merge_lapack_sgesvdx(char jobu, char jobvt, char range, int m, int n, float *a, int lda,
                         float vl, float vu, int il, int iu, int *found, float *s, float *u,
                         int ldu, float *vt, int ldvt, int *superb);

#endif
