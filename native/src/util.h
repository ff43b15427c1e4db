/* Small helpers in crun's manner: cleanup attributes so that no early return
 * leaks an fd or a buffer, and one error type filled in where things fail. */
#ifndef CTR_UTIL_H
#define CTR_UTIL_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <unistd.h>

#include "protocol.h"

struct init_error {
  int stage;
  int err;
  char msg[SYNC_TEXT_MAX];
};

/* Fills *e and returns -1, so a failing step can `return fail(...)`. */
static inline int fail(struct init_error *e, int stage, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline int fail(struct init_error *e, int stage, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  e->stage = stage;
  e->err = err;
  vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
  va_end(ap);
  return -1;
}

static inline void close_fdp(int *fd) {
  if (*fd >= 0) {
    int saved = errno;
    close(*fd);
    errno = saved;
  }
}
static inline void free_p(void *p) { free(*(void **)p); }

#define cleanup_fd __attribute__((cleanup(close_fdp)))
#define cleanup_free __attribute__((cleanup(free_p)))

#endif
