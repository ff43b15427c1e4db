/* Decoding the plan records of protocol.h. Every length is checked against
 * the record; strings must be NUL-terminated inside it. */
#define _GNU_SOURCE
#include "plan.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LIST_PUSH(list, value)                                                        \
  ({                                                                                  \
    int ok_ = 0;                                                                      \
    if ((list).len == (list).cap) {                                                   \
      size_t cap_ = (list).cap ? (list).cap * 2 : 8;                                  \
      void *p_ = realloc((list).items, cap_ * sizeof(*(list).items));                 \
      if (p_) {                                                                       \
        (list).items = p_;                                                            \
        (list).cap = cap_;                                                            \
      }                                                                               \
    }                                                                                 \
    if ((list).len < (list).cap) {                                                    \
      (list).items[(list).len++] = (value);                                           \
      ok_ = 1;                                                                        \
    }                                                                                 \
    ok_;                                                                              \
  })

struct cursor {
  const char *p;
  size_t left;
};

static int take(struct cursor *c, void *out, size_t n) {
  if (c->left < n) return -1;
  memcpy(out, c->p, n);
  c->p += n;
  c->left -= n;
  return 0;
}

static const char *take_str(struct cursor *c) {
  const char *end = memchr(c->p, '\0', c->left);
  if (!end) return NULL;
  const char *s = c->p;
  size_t n = (size_t)(end - c->p) + 1;
  c->p += n;
  c->left -= n;
  return s;
}

static int read_all(int fd, char **buf, size_t *len, struct init_error *err) {
  size_t cap = 64 * 1024, n = 0;
  char *b = malloc(cap);
  if (!b) return fail(err, STAGE_PLAN, ENOMEM, "allocating the plan buffer");
  for (;;) {
    if (n == cap) {
      if (cap >= PLAN_MAX_BYTES) {
        free(b);
        return fail(err, STAGE_PLAN, E2BIG, "plan larger than %d bytes", PLAN_MAX_BYTES);
      }
      cap *= 2;
      char *nb = realloc(b, cap);
      if (!nb) {
        free(b);
        return fail(err, STAGE_PLAN, ENOMEM, "growing the plan buffer");
      }
      b = nb;
    }
    ssize_t r = read(fd, b + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      free(b);
      return fail(err, STAGE_PLAN, e, "reading the plan");
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  *buf = b;
  *len = n;
  return 0;
}

#define BAD(what) return fail(err, STAGE_PLAN, EINVAL, "malformed plan record %u: %s", tag, what)
#define PUSH(list, v)                                                     \
  do {                                                                    \
    if (!LIST_PUSH(list, v)) return fail(err, STAGE_PLAN, ENOMEM, "plan"); \
  } while (0)

static int decode_record(struct plan *plan, uint16_t tag, struct cursor *c, struct init_error *err) {
  switch (tag) {
  case PLAN_NAMESPACES:
    if (take(c, &plan->namespaces, 4)) BAD("namespaces");
    break;
  case PLAN_JOIN_NS: {
    struct plan_join j;
    if (take(c, &j.type, 4) || !(j.path = take_str(c))) BAD("join");
    PUSH(plan->joins, j);
    break;
  }
  case PLAN_UID_MAP:
  case PLAN_GID_MAP:
    break; /* written by the shim; carried for the record */
  case PLAN_ROOTFS:
    if (!(plan->rootfs = take_str(c))) BAD("rootfs");
    break;
  case PLAN_ROOTFS_READONLY:
    plan->rootfs_readonly = true;
    break;
  case PLAN_ROOTFS_PROPAGATION:
    if (take(c, &plan->rootfs_propagation, 4)) BAD("propagation");
    break;
  case PLAN_MOUNT: {
    struct plan_mount m;
    if (take(c, &m.flags, 8) || take(c, &m.propagation, 4) || !(m.type = take_str(c)) ||
        !(m.source = take_str(c)) || !(m.target = take_str(c)) || !(m.data = take_str(c)))
      BAD("mount");
    PUSH(plan->mounts, m);
    break;
  }
  case PLAN_MASKED_PATH:
  case PLAN_READONLY_PATH: {
    const char *p = take_str(c);
    if (!p) BAD("path");
    if (tag == PLAN_MASKED_PATH) PUSH(plan->masked, p);
    else PUSH(plan->readonly, p);
    break;
  }
  case PLAN_DEVICE: {
    struct plan_device d;
    if (take(c, &d.type, 4) || take(c, &d.major, 4) || take(c, &d.minor, 4) || take(c, &d.mode, 4) ||
        take(c, &d.uid, 4) || take(c, &d.gid, 4) || !(d.path = take_str(c)))
      BAD("device");
    PUSH(plan->devices, d);
    break;
  }
  case PLAN_SYMLINK: {
    const char *target = take_str(c), *link = target ? take_str(c) : NULL;
    if (!link) BAD("symlink");
    PUSH(plan->symlinks, target);
    PUSH(plan->symlinks, link);
    break;
  }
  case PLAN_HOSTNAME:
    if (!(plan->hostname = take_str(c))) BAD("hostname");
    break;
  case PLAN_RLIMIT: {
    struct plan_rlimit r;
    if (take(c, &r.resource, 4) || take(c, &r.soft, 8) || take(c, &r.hard, 8)) BAD("rlimit");
    PUSH(plan->rlimits, r);
    break;
  }
  case PLAN_SYSCTL: {
    const char *k = take_str(c), *v = k ? take_str(c) : NULL;
    if (!v) BAD("sysctl");
    PUSH(plan->sysctls, k);
    PUSH(plan->sysctls, v);
    break;
  }
  case PLAN_OOM_SCORE_ADJ:
    if (take(c, &plan->oom_score_adj, 4)) BAD("oom_score_adj");
    plan->has_oom_score_adj = true;
    break;
  case PLAN_UID:
    if (take(c, &plan->uid, 4)) BAD("uid");
    break;
  case PLAN_GID:
    if (take(c, &plan->gid, 4)) BAD("gid");
    break;
  case PLAN_GROUP: {
    uint32_t g;
    if (take(c, &g, 4)) BAD("group");
    PUSH(plan->groups, g);
    break;
  }
  case PLAN_CAPS:
    if (take(c, plan->caps, sizeof(plan->caps))) BAD("caps");
    plan->has_caps = true;
    break;
  case PLAN_TERMINAL:
    plan->terminal = true;
    break;
  case PLAN_NO_NEW_PRIVS:
    plan->no_new_privs = true;
    break;
  case PLAN_SECCOMP_DEFAULT:
    if (take(c, &plan->seccomp_default, 4)) BAD("seccomp default");
    plan->has_seccomp = true;
    break;
  case PLAN_SECCOMP_ARCH: {
    const char *a = take_str(c);
    if (!a) BAD("seccomp arch");
    PUSH(plan->seccomp_arches, a);
    break;
  }
  case PLAN_SECCOMP_RULE: {
    struct plan_seccomp_rule r;
    if (take(c, &r.action, 4) || take(c, &r.nargs, 4) || r.nargs > 6) BAD("seccomp rule");
    struct plan_seccomp_arg *args = calloc(r.nargs ? r.nargs : 1, sizeof(*args));
    if (!args) return fail(err, STAGE_PLAN, ENOMEM, "plan");
    for (uint32_t i = 0; i < r.nargs; i++) {
      if (take(c, &args[i].index, 4) || take(c, &args[i].op, 4) || take(c, &args[i].value, 8) ||
          take(c, &args[i].value2, 8)) {
        free(args);
        BAD("seccomp arg");
      }
    }
    r.args = args;
    if (!(r.name = take_str(c))) BAD("seccomp rule name");
    PUSH(plan->seccomp_rules, r);
    break;
  }
  case PLAN_SECCOMP_BPF: {
    /* 8-byte instructions, at most BPF_MAXINSNS (4096): copied out, the plan may not be aligned. */
    if (c->left == 0 || c->left % 8 || c->left / 8 > 4096) BAD("seccomp bpf");
    plan->seccomp_bpf = malloc(c->left);
    if (!plan->seccomp_bpf) return fail(err, STAGE_PLAN, ENOMEM, "plan");
    plan->seccomp_bpf_len = (uint16_t)(c->left / 8);
    if (take(c, plan->seccomp_bpf, c->left)) BAD("seccomp bpf");
    plan->has_seccomp = true;
    break;
  }
  case PLAN_ARG:
  case PLAN_ENV: {
    const char *s = take_str(c);
    if (!s) BAD("string");
    if (tag == PLAN_ARG) PUSH(plan->argv, s);
    else PUSH(plan->env, s);
    break;
  }
  case PLAN_CWD:
    if (!(plan->cwd = take_str(c))) BAD("cwd");
    break;
  case PLAN_PARENT_DEATH_SIGNAL:
    if (take(c, &plan->parent_death_signal, 4)) BAD("pdeathsig");
    break;
  default:
    return fail(err, STAGE_PLAN, EINVAL, "unknown plan record %u", tag);
  }
  if (c->left != 0) BAD("trailing bytes");
  return 0;
}

int plan_decode(int fd, struct plan *plan, struct init_error *err) {
  char *buf = NULL;
  size_t len = 0;
  if (read_all(fd, &buf, &len, err) < 0) return -1;
  memset(plan, 0, sizeof(*plan));
  plan->cwd = "/";
  size_t off = 0;
  while (off < len) {
    uint16_t tag;
    uint32_t rlen;
    if (len - off < 6) return fail(err, STAGE_PLAN, EINVAL, "truncated plan header at byte %zu", off);
    memcpy(&tag, buf + off, 2);
    memcpy(&rlen, buf + off + 2, 4);
    off += 6;
    if (rlen > len - off) return fail(err, STAGE_PLAN, EINVAL, "record %u runs past the plan's end", tag);
    struct cursor c = {buf + off, rlen};
    if (decode_record(plan, tag, &c, err) < 0) return -1;
    off += rlen;
  }
  return 0;
}

int plan_read(int fd, struct plan *plan, struct init_error *err) {
  if (plan_decode(fd, plan, err) < 0) return -1;
  if (plan->argv.len == 0) return fail(err, STAGE_PLAN, EINVAL, "the plan has no command to run");
  if (!LIST_PUSH(plan->argv, NULL) || !LIST_PUSH(plan->env, NULL))
    return fail(err, STAGE_PLAN, ENOMEM, "plan");
  return 0;
}
