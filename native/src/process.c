/* The process side of a container: limits, identity, privileges, exec. */
#define _GNU_SOURCE
#include "process.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

static int write_file(const char *path, const char *text) {
  cleanup_fd int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t n = strlen(text);
  return write(fd, text, n) == (ssize_t)n ? 0 : -1;
}

int process_setup(const struct plan *plan, struct init_error *err) {
  if (plan->hostname && sethostname(plan->hostname, strlen(plan->hostname)) < 0)
    return fail(err, STAGE_HOSTNAME, errno, "sethostname %s", plan->hostname);
  for (size_t i = 0; i + 1 < plan->sysctls.len; i += 2) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "/proc/sys/%s", plan->sysctls.items[i]);
    for (char *p = path + strlen("/proc/sys/"); *p; p++)
      if (*p == '.') *p = '/';
    if (write_file(path, plan->sysctls.items[i + 1]) < 0)
      return fail(err, STAGE_HOSTNAME, errno, "sysctl %s", plan->sysctls.items[i]);
  }
  for (size_t i = 0; i < plan->rlimits.len; i++) {
    const struct plan_rlimit *r = &plan->rlimits.items[i];
    struct rlimit lim = {.rlim_cur = r->soft, .rlim_max = r->hard};
    if (setrlimit((int)r->resource, &lim) < 0) return fail(err, STAGE_RLIMITS, errno, "setrlimit %u", r->resource);
  }
  if (plan->has_oom_score_adj) {
    char v[16];
    snprintf(v, sizeof(v), "%d", plan->oom_score_adj);
    if (write_file("/proc/self/oom_score_adj", v) < 0) return fail(err, STAGE_RLIMITS, errno, "oom_score_adj");
  }
  return 0;
}

static int drop_bounding(uint64_t keep, struct init_error *err) {
  for (int cap = 0; cap <= 63; cap++) {
    if (keep & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) <= 0) continue; /* unknown to this kernel, or already gone */
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) return fail(err, STAGE_CAPS, errno, "dropping bounding cap %d", cap);
  }
  return 0;
}

static int set_caps(const uint64_t caps[5], struct init_error *err) {
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2];
  for (int i = 0; i < 2; i++) {
    data[i].effective = (uint32_t)(caps[CAP_EFFECTIVE] >> (32 * i));
    data[i].permitted = (uint32_t)(caps[CAP_PERMITTED] >> (32 * i));
    data[i].inheritable = (uint32_t)(caps[CAP_INHERITABLE] >> (32 * i));
  }
  if (syscall(SYS_capset, &hdr, data) < 0) return fail(err, STAGE_CAPS, errno, "capset");
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  for (int cap = 0; cap <= 63; cap++) {
    if (!(caps[CAP_AMBIENT] & (1ULL << cap))) continue;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
      return fail(err, STAGE_CAPS, errno, "raising ambient cap %d", cap);
  }
  return 0;
}

/* The filter the plan's rules make, in libseccomp's hands (*out, to be released); a negative errno on failure. */
static int build_seccomp(const struct plan *plan, scmp_filter_ctx *out, struct init_error *err) {
  scmp_filter_ctx ctx = seccomp_init(plan->seccomp_default);
  if (!ctx) {
    snprintf(err->msg, sizeof(err->msg), "seccomp_init");
    return -EINVAL;
  }
  int rc = 0;
  /* no_new_privs is its own decision (PLAN_NO_NEW_PRIVS), not libseccomp's default. */
  if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0) goto out;
  for (size_t i = 0; i < plan->seccomp_arches.len; i++) {
    uint32_t arch = seccomp_arch_resolve_name(plan->seccomp_arches.items[i]);
    if (arch == 0) {
      rc = -EINVAL;
      goto out;
    }
    rc = seccomp_arch_add(ctx, arch);
    if (rc < 0 && rc != -EEXIST) goto out;
    rc = 0;
  }
  for (size_t i = 0; i < plan->seccomp_rules.len; i++) {
    const struct plan_seccomp_rule *r = &plan->seccomp_rules.items[i];
    int nr = seccomp_syscall_resolve_name(r->name);
    if (nr == __NR_SCMP_ERROR) continue; /* a syscall this kernel/libseccomp does not know */
    struct scmp_arg_cmp cmps[6];
    for (uint32_t a = 0; a < r->nargs; a++) {
      cmps[a] = (struct scmp_arg_cmp){.arg = r->args[a].index,
                                      .op = (enum scmp_compare)r->args[a].op,
                                      .datum_a = r->args[a].value,
                                      .datum_b = r->args[a].value2};
    }
    rc = seccomp_rule_add_array(ctx, r->action, nr, r->nargs, cmps);
    if (rc == -EEXIST || rc == -EACCES) rc = 0; /* same action as the default, or a duplicate */
    if (rc < 0) {
      snprintf(err->msg, sizeof(err->msg), "seccomp rule for %s", r->name);
      goto out;
    }
  }
out:
  if (rc < 0) seccomp_release(ctx);
  else *out = ctx;
  return rc;
}

static int load_seccomp(const struct plan *plan, struct init_error *err) {
  int rc;
  if (plan->seccomp_bpf) {
    /* Compiled ahead (libseccomp's compile of a docker-sized profile is some 20 ms): loaded as it is. */
    struct sock_fprog prog = {.len = plan->seccomp_bpf_len, .filter = plan->seccomp_bpf};
    rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0 ? -errno : 0;
  } else {
    scmp_filter_ctx ctx = NULL;
    rc = build_seccomp(plan, &ctx, err);
    if (rc == 0) {
      rc = seccomp_load(ctx);
      seccomp_release(ctx);
    }
  }
  if (rc < 0) return fail(err, STAGE_SECCOMP, -rc, "%s", err->msg[0] ? err->msg : "loading the seccomp filter");
  return 0;
}

int seccomp_export(const struct plan *plan, int fd, struct init_error *err) {
  scmp_filter_ctx ctx = NULL;
  int rc = build_seccomp(plan, &ctx, err);
  if (rc == 0) {
    rc = seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
  }
  if (rc < 0) return fail(err, STAGE_SECCOMP, -rc, "%s", err->msg[0] ? err->msg : "exporting the seccomp filter");
  return 0;
}

int process_security(const struct plan *plan, struct init_error *err) {
  if (plan->has_caps && drop_bounding(plan->caps[CAP_BOUNDING], err) < 0) return -1;
  /* Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we still have it. */
  if (plan->has_seccomp && !plan->no_new_privs && load_seccomp(plan, err) < 0) return -1;
  if (setgroups(plan->groups.len, plan->groups.items) < 0) return fail(err, STAGE_USER, errno, "setgroups");
  if (setresgid(plan->gid, plan->gid, plan->gid) < 0) return fail(err, STAGE_USER, errno, "setgid %u", plan->gid);
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) return fail(err, STAGE_USER, errno, "keepcaps");
  if (setresuid(plan->uid, plan->uid, plan->uid) < 0) return fail(err, STAGE_USER, errno, "setuid %u", plan->uid);
  prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
  if (plan->has_caps && set_caps(plan->caps, err) < 0) return -1;
  if (plan->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return fail(err, STAGE_CAPS, errno, "no_new_privs");
  if (plan->has_seccomp && plan->no_new_privs && load_seccomp(plan, err) < 0) return -1;
  return 0;
}

static const char *env_path(const struct plan *plan) {
  for (size_t i = 0; plan->env.items && plan->env.items[i]; i++)
    if (strncmp(plan->env.items[i], "PATH=", 5) == 0) return plan->env.items[i] + 5;
  return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

int process_exec(const struct plan *plan, struct init_error *err) {
  const char *file = plan->argv.items[0];
  char *const *argv = (char *const *)plan->argv.items;
  char *const *envp = (char *const *)plan->env.items;
  if (strchr(file, '/')) {
    execve(file, argv, envp);
    return fail(err, STAGE_EXEC, errno, "exec %s", file);
  }
  /* Search PATH as the container sees it; remember EACCES over ENOENT, as execvp does. */
  int seen = ENOENT;
  const char *path = env_path(plan);
  while (*path) {
    const char *end = strchrnul(path, ':');
    char candidate[PATH_MAX];
    int n = snprintf(candidate, sizeof(candidate), "%.*s/%s", (int)(end - path), path, file);
    if (n > 0 && n < (int)sizeof(candidate)) {
      execve(candidate, argv, envp);
      if (errno == EACCES) seen = EACCES;
      else if (errno != ENOENT && errno != ENOTDIR) return fail(err, STAGE_EXEC, errno, "exec %s", candidate);
    }
    path = *end ? end + 1 : end;
  }
  return fail(err, STAGE_EXEC, seen, "exec %s", file);
}
