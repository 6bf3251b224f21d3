#ifndef MERGE_HTTP_H
#define MERGE_HTTP_H

#include <stddef.h>

/// HTTP GET through libcurl, loaded on first use.
///
/// libcurl (Debian's libcurl4) is opened with `dlopen` the first time a request is made, not
/// linked: it and the two dozen libraries behind it (TLS, Kerberos, LDAP, IDN, compression)
/// take ~9 ms of the dynamic loader at every start of `merge`, and most runs never touch the
/// network. The calls are libcurl's "easy" interface, through pointers typed from curl.h.

/// Loads libcurl once and initializes it. Returns NULL, or why it could not be loaded (a static
/// string, or the loader's message).
const char *merge_http_load(void);

/// What went wrong with a request below HTTP (the status says the rest).
typedef enum {
  merge_http_ok = 0,
  merge_http_refused,      ///< the server refused the connection
  merge_http_unresolved,   ///< the host name does not resolve
  merge_http_timed_out,    ///< no byte for the idle limit, or no connection in time
  merge_http_lost,         ///< the connection broke during the transfer
  merge_http_tls,          ///< the TLS handshake or the certificate failed
  merge_http_stopped,      ///< the body callback asked to stop
  merge_http_other,        ///< anything else (see `message`)
  merge_http_unavailable,  ///< libcurl could not be loaded (see `message`)
} merge_http_failure;

/// The answer: the final response's status and `X-Error-Code` after redirects.
typedef struct {
  long status;                 ///< 0 when no response arrived
  merge_http_failure failure;  ///< merge_http_ok when the transfer completed
  char error_code[128];        ///< the `X-Error-Code` header of the final response, or ""
  char message[256];           ///< libcurl's words for a failure, or ""
} merge_http_result;

/// Receives the body of a 2xx answer as it arrives; returns 0 to stop the transfer.
typedef int (*merge_http_body)(void *context, const void *bytes, size_t count);

/// GETs `url` with `header_count` request headers ("Name: value"), following redirects
/// (http and https only; credentials in the headers are not sent to another host), failing
/// when no byte arrives for `idle_seconds`. Bodies of non-2xx answers are not delivered.
void merge_http_get(const char *url, const char *const *headers, int header_count,
                    long idle_seconds, merge_http_body body, void *context,
                    merge_http_result *result);

/// Reads one response header line into `result` as the transfer does: a status line starts a
/// new response (status set, error code cleared); `X-Error-Code` (any case) is kept.
void merge_http_header_line(const char *line, size_t count, merge_http_result *result);

#endif
