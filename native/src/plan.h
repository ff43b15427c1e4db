/* The plan, decoded: what the shim decided, for ctr-init to carry out. */
#ifndef CTR_PLAN_H
#define CTR_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define PLAN_MAX_BYTES (4 << 20)

struct plan_mount {
  uint64_t flags;
  uint32_t propagation;
  const char *type, *source, *target, *data;
};

struct plan_device {
  uint32_t type, major, minor, mode, uid, gid;
  const char *path;
};

struct plan_join {
  uint32_t type;
  const char *path;
};

struct plan_rlimit {
  uint32_t resource;
  uint64_t soft, hard;
};

struct plan_seccomp_arg {
  uint32_t index, op;
  uint64_t value, value2;
};

struct plan_seccomp_rule {
  uint32_t action, nargs;
  const struct plan_seccomp_arg *args; /* unaligned-safe copies */
  const char *name;
};

/* Growable arrays of pointers into the plan buffer (which lives as long as the process). */
#define PLAN_LIST(T) struct { T *items; size_t len, cap; }

struct plan {
  uint32_t namespaces;
  PLAN_LIST(struct plan_join) joins;
  const char *rootfs;
  bool rootfs_readonly;
  uint32_t rootfs_propagation;
  PLAN_LIST(struct plan_mount) mounts;
  PLAN_LIST(const char *) masked;
  PLAN_LIST(const char *) readonly;
  PLAN_LIST(struct plan_device) devices;
  PLAN_LIST(const char *) symlinks; /* pairs: target, linkpath */
  const char *hostname;
  PLAN_LIST(struct plan_rlimit) rlimits;
  PLAN_LIST(const char *) sysctls; /* pairs: key, value */
  bool has_oom_score_adj;
  int32_t oom_score_adj;
  uint32_t uid, gid;
  PLAN_LIST(uint32_t) groups;
  bool has_caps;
  uint64_t caps[5]; /* bounding, effective, inheritable, permitted, ambient */
  bool no_new_privs;
  bool terminal;
  bool has_seccomp;
  uint32_t seccomp_default;
  PLAN_LIST(const char *) seccomp_arches;
  PLAN_LIST(struct plan_seccomp_rule) seccomp_rules;
  void *seccomp_bpf; /* struct sock_filter[seccomp_bpf_len], when compiled ahead */
  uint16_t seccomp_bpf_len;
  PLAN_LIST(const char *) argv; /* NULL-terminated when decoded */
  PLAN_LIST(const char *) env;  /* NULL-terminated when decoded */
  const char *cwd;
  uint32_t parent_death_signal;
};

enum { CAP_BOUNDING, CAP_EFFECTIVE, CAP_INHERITABLE, CAP_PERMITTED, CAP_AMBIENT };

/* Reads the whole plan from fd and decodes it. */
int plan_read(int fd, struct plan *plan, struct init_error *err);
/* The records only, for a plan that need not run anything (`ctr-init seccomp-bpf`). */
int plan_decode(int fd, struct plan *plan, struct init_error *err);

#endif
