#define _GNU_SOURCE
#include "merge_http.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <merge_support.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

// The pointers have the types curl.h declares, so a mismatch fails the build.
static __typeof__(&curl_global_init) global_init;
static __typeof__(&curl_easy_init) easy_init;
static __typeof__(&curl_easy_setopt) easy_setopt;
static __typeof__(&curl_easy_perform) easy_perform;
static __typeof__(&curl_easy_getinfo) easy_getinfo;
static __typeof__(&curl_easy_cleanup) easy_cleanup;
static __typeof__(&curl_easy_strerror) easy_strerror;
static __typeof__(&curl_slist_append) slist_append;
static __typeof__(&curl_slist_free_all) slist_free_all;
static const char *load_error;
static char first_error[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
  static const char *const names[] = {"libcurl.so.4", "libcurl-gnutls.so.4", "libcurl.so"};
  void *library =
      merge_open_library(names, sizeof names / sizeof names[0], first_error, sizeof first_error);
  if (library == NULL) {
    load_error = first_error;
    return;
  }
  global_init = (__typeof__(global_init))dlsym(library, "curl_global_init");
  easy_init = (__typeof__(easy_init))dlsym(library, "curl_easy_init");
  easy_setopt = (__typeof__(easy_setopt))dlsym(library, "curl_easy_setopt");
  easy_perform = (__typeof__(easy_perform))dlsym(library, "curl_easy_perform");
  easy_getinfo = (__typeof__(easy_getinfo))dlsym(library, "curl_easy_getinfo");
  easy_cleanup = (__typeof__(easy_cleanup))dlsym(library, "curl_easy_cleanup");
  easy_strerror = (__typeof__(easy_strerror))dlsym(library, "curl_easy_strerror");
  slist_append = (__typeof__(slist_append))dlsym(library, "curl_slist_append");
  slist_free_all = (__typeof__(slist_free_all))dlsym(library, "curl_slist_free_all");
  if (global_init == NULL || easy_init == NULL || easy_setopt == NULL || easy_perform == NULL ||
      easy_getinfo == NULL || easy_cleanup == NULL || easy_strerror == NULL ||
      slist_append == NULL || slist_free_all == NULL) {
    load_error = "the libcurl found lacks part of the easy interface";
    return;
  }
  if (global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) load_error = "curl_global_init failed";
}

const char *merge_http_load(void) {
  pthread_once(&once, load);
  return load_error;
}

void merge_http_header_line(const char *line, size_t count, merge_http_result *result) {
  // Without the line end.
  while (count > 0 && (line[count - 1] == '\n' || line[count - 1] == '\r')) count--;
  if (count >= 5 && memcmp(line, "HTTP/", 5) == 0) {
    size_t i = 5;
    while (i < count && line[i] != ' ') i++;
    while (i < count && line[i] == ' ') i++;
    long status = 0;
    for (size_t digits = 0; i < count && digits < 3 && line[i] >= '0' && line[i] <= '9';
         i++, digits++) {
      status = status * 10 + (line[i] - '0');
    }
    result->status = status;
    result->error_code[0] = 0;
    return;
  }
  static const char name[] = "x-error-code:";
  const size_t length = sizeof name - 1;
  if (count < length || strncasecmp(line, name, length) != 0) return;
  size_t start = length, end = count;
  while (start < end && (line[start] == ' ' || line[start] == '\t')) start++;
  while (end > start && (line[end - 1] == ' ' || line[end - 1] == '\t')) end--;
  size_t n = end - start;
  if (n >= sizeof result->error_code) n = sizeof result->error_code - 1;
  memcpy(result->error_code, line + start, n);
  result->error_code[n] = 0;
}

typedef struct {
  merge_http_result *result;
  merge_http_body body;
  void *context;
  int stopped;
} transfer;

static size_t on_header(char *bytes, size_t size, size_t count, void *user) {
  transfer *t = user;
  merge_http_header_line(bytes, size * count, t->result);
  return size * count;
}

static size_t on_body(char *bytes, size_t size, size_t count, void *user) {
  transfer *t = user;
  size_t n = size * count;
  if (t->result->status < 200 || t->result->status >= 300) return n;
  if (t->body(t->context, bytes, n)) return n;
  t->stopped = 1;
  return 0;
}

static merge_http_failure classify(CURLcode code) {
  switch (code) {
    case CURLE_OK: return merge_http_ok;
    case CURLE_COULDNT_CONNECT: return merge_http_refused;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return merge_http_unresolved;
    case CURLE_OPERATION_TIMEDOUT: return merge_http_timed_out;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return merge_http_lost;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR: return merge_http_tls;
    default: return merge_http_other;
  }
}

void merge_http_get(const char *url, const char *const *headers, int header_count,
                    long idle_seconds, merge_http_body body, void *context,
                    merge_http_result *result) {
  memset(result, 0, sizeof *result);
  const char *unavailable = merge_http_load();
  if (unavailable != NULL) {
    result->failure = merge_http_unavailable;
    snprintf(result->message, sizeof result->message, "%s", unavailable);
    return;
  }
  CURL *handle = easy_init();
  if (handle == NULL) {
    result->failure = merge_http_other;
    snprintf(result->message, sizeof result->message, "curl_easy_init failed");
    return;
  }
  struct curl_slist *list = NULL;
  for (int i = 0; i < header_count; i++) {
    struct curl_slist *longer = slist_append(list, headers[i]);
    if (longer == NULL) break;
    list = longer;
  }
  transfer t = {result, body, context, 0};
  char details[CURL_ERROR_SIZE] = {0};
  easy_setopt(handle, CURLOPT_URL, url);
  easy_setopt(handle, CURLOPT_HTTPHEADER, list);
  easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  easy_setopt(handle, CURLOPT_FOLLOWLOCATION, 1L);
  easy_setopt(handle, CURLOPT_MAXREDIRS, 20L);
#if LIBCURL_VERSION_NUM >= 0x075500
  // http and https only, redirects included (7.85+; an older libcurl at run time ignores it).
  easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
  easy_setopt(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#endif
  easy_setopt(handle, CURLOPT_CONNECTTIMEOUT, idle_seconds);
  easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, 1L);
  easy_setopt(handle, CURLOPT_LOW_SPEED_TIME, idle_seconds);
  easy_setopt(handle, CURLOPT_HEADERFUNCTION, on_header);
  easy_setopt(handle, CURLOPT_HEADERDATA, &t);
  easy_setopt(handle, CURLOPT_WRITEFUNCTION, on_body);
  easy_setopt(handle, CURLOPT_WRITEDATA, &t);
  easy_setopt(handle, CURLOPT_ERRORBUFFER, details);
  CURLcode code = easy_perform(handle);
  long status = 0;
  if (easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status != 0) {
    result->status = status;
  }
  easy_cleanup(handle);
  slist_free_all(list);
  if (code == CURLE_OK) return;
  result->failure = t.stopped ? merge_http_stopped : classify(code);
  snprintf(result->message, sizeof result->message, "%s",
           details[0] != 0 ? details : easy_strerror(code));
}
