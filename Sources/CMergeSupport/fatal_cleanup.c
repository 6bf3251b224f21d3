#define _GNU_SOURCE
#include "merge_support.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PATH_BYTES 4096

static char partial_path[PATH_BYTES];
/// The handlers that were there before ours (the Swift runtime's backtracer, say).
static struct sigaction previous[32];
static char lock_path[PATH_BYTES];
/// 1 while the paths above are complete and may be used by the handler.
static atomic_int registered = 0;

struct linux_dirent64 {
  unsigned long long d_ino;
  long long d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

static void say(const char *text) {
  size_t n = strlen(text);
  while (n > 0) {
    ssize_t w = write(2, text, n);
    if (w <= 0) return;
    text += w;
    n -= (size_t)w;
  }
}

/// Removes the files of the flat folder `path`, then the folder.
static void remove_flat_folder(const char *path) {
  int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return;
  char buffer[8192];
  for (;;) {
    long n = syscall(SYS_getdents64, dir, buffer, sizeof buffer);
    if (n <= 0) break;
    for (long offset = 0; offset < n;) {
      struct linux_dirent64 *entry = (struct linux_dirent64 *)(buffer + offset);
      offset += entry->d_reclen;
      if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
      unlinkat(dir, entry->d_name, 0);
    }
  }
  close(dir);
  rmdir(path);
}

static void on_fatal_signal(int sig) {
  int had_output = atomic_exchange(&registered, 0) == 1;
  if (had_output) {
    remove_flat_folder(partial_path);
    unlink(lock_path);
  }
  if (sig == SIGBUS) {
    // Not a bug of merge's: a file it had mapped shrank under it.
    say("error: an input file was truncated or replaced while merge was reading it (SIGBUS)");
    say(had_output ? "; the output was not written\n" : "\n");
    _exit(1);
  }
  // A crash: let the previous handler (the runtime's backtrace) or the default action run.
  if (sig > 0 && sig < 32) sigaction(sig, &previous[sig], NULL);
  raise(sig);
}

void merge_fatal_install(void) {
  int signals[] = {SIGBUS, SIGSEGV, SIGILL, SIGFPE, SIGTRAP, SIGABRT};
  for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_fatal_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESETHAND;
    sigaction(signals[i], &action, &previous[signals[i]]);
  }
}

void merge_fatal_register(const char *partial_folder, const char *lock_file) {
  atomic_store(&registered, 0);
  if (partial_folder == NULL || strlen(partial_folder) >= PATH_BYTES) return;
  if (lock_file == NULL || strlen(lock_file) >= PATH_BYTES) return;
  strcpy(partial_path, partial_folder);
  strcpy(lock_path, lock_file);
  atomic_store(&registered, 1);
}

void merge_fatal_unregister(void) { atomic_store(&registered, 0); }
