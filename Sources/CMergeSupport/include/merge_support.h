#ifndef MERGE_SUPPORT_H
#define MERGE_SUPPORT_H

#include <stddef.h>

/// Cleanup after a fatal signal, for what Swift cannot do in a signal handler.
///
/// A run writes its output into a hidden folder beside the destination. When the process dies
/// of a fatal signal — SIGBUS when an input file is truncated under its memory mapping, or a
/// crash — the handler installed here removes that folder (flat: it holds only files) and the
/// run's lock file with async-signal-safe calls only, says why on standard error, and lets the
/// signal take its default action.

/// Installs the handlers for SIGBUS, SIGSEGV, SIGILL, SIGFPE, SIGTRAP and SIGABRT.
void merge_fatal_install(void);

/// Records the folder and lock file to remove if the process dies (NULL: nothing). The paths
/// are copied; later calls replace earlier ones.
void merge_fatal_register(const char *partial_folder, const char *lock_file);

/// Forgets the registered paths (the output was committed or discarded).
void merge_fatal_unregister(void);

/// Opens the first of the `count` libraries `names` that loads (`dlopen`, `RTLD_NOW |
/// RTLD_LOCAL`), for what merge opens on first use rather than links (LAPACKE, libcurl). When
/// none does, returns NULL with why the first name failed in `error` (`size` bytes).
void *merge_open_library(const char *const *names, int count, char *error, size_t size);

/// Asks the kernel to start writing the dirty pages of `length` bytes of `fd` from `offset` to
/// disk, without waiting (`sync_file_range` with `SYNC_FILE_RANGE_WRITE` on Linux; nothing
/// elsewhere). Returns 0, or -1 with errno set.
int merge_start_writeback(int fd, long offset, long length);

/// How many of the pages of `length` bytes of `fd` from `offset` (a multiple of the page size)
/// are in the page cache, into `*cached`: one `cachestat` call (Linux 6.5+), which walks the
/// cache's folios rather than every page as `mincore` does. Returns 0, or -1 with errno set
/// (ENOSYS where the kernel or the platform has no `cachestat`).
int merge_cached_pages(int fd, long offset, long length, unsigned long long *cached);

#include "merge_kernels.h"

#endif
