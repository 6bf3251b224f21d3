#define _GNU_SOURCE
#include "merge_support.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

int merge_start_writeback(int fd, long offset, long length) {
#if defined(__linux__)
  return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
#else
  (void)fd; (void)offset; (void)length;
  return 0;
#endif
}

int merge_cached_pages(int fd, long offset, long length, unsigned long long *cached) {
#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
  // The kernel's struct cachestat_range and struct cachestat (include/uapi/linux/mman.h);
  // glibc has no wrapper yet. 451 is cachestat's number on x86-64 and on arm64 (the generic
  // table): system calls added since Linux 5.1 have one number on every architecture but alpha.
  struct {
    uint64_t off, len;
  } range = {(uint64_t)offset, (uint64_t)length};
  struct {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
  } stat;
  if (syscall(451, fd, &range, &stat, 0) != 0) return -1;
  *cached = stat.nr_cache;
  return 0;
#else
  (void)fd; (void)offset; (void)length; (void)cached;
  errno = ENOSYS;
  return -1;
#endif
}
