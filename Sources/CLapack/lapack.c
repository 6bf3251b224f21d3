#define _GNU_SOURCE
#include "merge_lapack.h"

#include <dlfcn.h>
#include <merge_support.h>
#include <lapacke.h>
#include <pthread.h>
#include <stddef.h>

_Static_assert(sizeof(lapack_int) == sizeof(int), "merge expects LAPACKE's 32-bit lapack_int");

// The pointers have the types lapacke.h declares, so a mismatch fails the build.
static __typeof__(&LAPACKE_sgesdd) sgesdd;
static __typeof__(&LAPACKE_sgesvd) sgesvd;
static __typeof__(&LAPACKE_sgesvdx) sgesvdx;
static const char *load_error;
static char first_error[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
  static const char *const names[] = {"liblapacke.so.3", "liblapacke.so"};
  void *library =
      merge_open_library(names, sizeof names / sizeof names[0], first_error, sizeof first_error);
  if (library == NULL) {
    load_error = first_error;
    return;
  }
  sgesdd = (__typeof__(sgesdd))dlsym(library, "LAPACKE_sgesdd");
  sgesvd = (__typeof__(sgesvd))dlsym(library, "LAPACKE_sgesvd");
  sgesvdx = (__typeof__(sgesvdx))dlsym(library, "LAPACKE_sgesvdx");
  if (sgesdd == NULL || sgesvd == NULL || sgesvdx == NULL) {
    sgesdd = NULL;
    load_error = "liblapacke lacks LAPACKE_sgesdd, LAPACKE_sgesvd or LAPACKE_sgesvdx";
    return;
  }
  // The BLAS is among the library's dependencies, which dlsym on its handle searches too.
  static const char *const setters[] = {"openblas_set_num_threads", "goto_set_num_threads"};
  for (size_t i = 0; i < sizeof setters / sizeof setters[0]; i++) {
    void (*set)(int) = (void (*)(int))dlsym(library, setters[i]);
    if (set != NULL) {
      set(1);
      break;
    }
  }
}

const char *merge_lapack_load(void) {
  pthread_once(&once, load);
  return load_error;
}

int merge_lapack_sgesdd(char jobz, int m, int n, float *a, int lda, float *s, float *u, int ldu,
                        float *vt, int ldvt) {
  if (merge_lapack_load() != NULL) return -1000;
  return sgesdd(LAPACK_ROW_MAJOR, jobz, m, n, a, lda, s, u, ldu, vt, ldvt);
}

int merge_lapack_sgesvd(char jobu, char jobvt, int m, int n, float *a, int lda, float *s,
                        float *u, int ldu, float *vt, int ldvt, float *superb) {
  if (merge_lapack_load() != NULL) return -1000;
  return sgesvd(LAPACK_ROW_MAJOR, jobu, jobvt, m, n, a, lda, s, u, ldu, vt, ldvt, superb);
}

int merge_lapack_sgesvdx(char jobu, char jobvt, char range, int m, int n, float *a, int lda,
                         float vl, float vu, int il, int iu, int *found, float *s, float *u,
                         int ldu, float *vt, int ldvt, int *superb) {
  if (merge_lapack_load() != NULL) return -1000;
  return sgesvdx(LAPACK_ROW_MAJOR, jobu, jobvt, range, m, n, a, lda, vl, vu, il, iu, found, s, u,
                 ldu, vt, ldvt, superb);
}
