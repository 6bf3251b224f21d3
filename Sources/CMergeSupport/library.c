#define _GNU_SOURCE
#include "merge_support.h"

#include <dlfcn.h>
#include <stdio.h>

void *merge_open_library(const char *const *names, int count, char *error, size_t size) {
  if (size > 0) error[0] = 0;
  for (int i = 0; i < count; i++) {
    void *library = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (library != NULL) return library;
    // Why the first name failed is the useful message; dlerror's text is only good until the
    // next call, so it is copied.
    const char *reason = dlerror();
    if (i == 0 && size > 0) {
      snprintf(error, size, "%s", reason != NULL ? reason : "");
      if (error[0] == 0) snprintf(error, size, "%s could not be loaded", names[0]);
    }
  }
  return NULL;
}
