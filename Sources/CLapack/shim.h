#ifndef MERGE_CLAPACK_SHIM_H
#define MERGE_CLAPACK_SHIM_H
// LAPACK's C interface (Debian's liblapacke-dev); with libopenblas installed, Debian's
// alternatives make OpenBLAS the LAPACK and BLAS underneath.
#include <lapacke.h>
#endif
