#define _GNU_SOURCE
#include "merge_support.h"

#include <fcntl.h>

int merge_start_writeback(int fd, long offset, long length) {
#if defined(__linux__)
  return sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
#else
  (void)fd; (void)offset; (void)length;
  return 0;
#endif
}
