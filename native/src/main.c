/*
 * ctr-init: the only code in ctr that clones into namespaces and execs a
 * container's process. The shim (TypeScript) decides everything and sends a
 * plan; this program carries it out in named stages and reports each over
 * the sync sockets. protocol.h documents the contract.
 *
 *   ctr-init create   new namespaces, a root filesystem, then exec
 *   ctr-init exec     join a running container's namespaces, then exec
 *   ctr-init -- CMD   inside a container: a minimal PID 1 (docker's --init), reaper.c
 *
 * In both modes the parent stays behind, waits for the container's process
 * and exits with its code, reporting the raw wait status first.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "plan.h"
#include "reaper.h"
#include "process.h"
#include "rootfs.h"

#define PLAN_FD 3
#define INIT_FD 4
#define PARENT_FD 5

static int send_msg(int fd, uint32_t type, int32_t value, uint32_t stage, const char *text) {
  struct sync_msg m = {.type = type, .value = value, .stage = stage};
  if (text) snprintf(m.text, sizeof(m.text), "%s", text);
  const char *p = (const char *)&m;
  size_t left = sizeof(m);
  while (left > 0) {
    ssize_t r = send(fd, p, left, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    left -= (size_t)r;
  }
  return 0;
}

static int recv_msg(int fd, struct sync_msg *m) {
  char *p = (char *)m;
  size_t left = sizeof(*m);
  while (left > 0) {
    ssize_t r = recv(fd, p, left, MSG_WAITALL);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) errno = EPIPE;
    if (r <= 0) return -1;
    p += r;
    left -= (size_t)r;
  }
  return 0;
}

static int expect_msg(int fd, uint32_t type, struct init_error *err) {
  struct sync_msg m;
  if (recv_msg(fd, &m) < 0) return fail(err, STAGE_SYNC, errno, "waiting for the shim (message %u)", type);
  if (m.type != type) return fail(err, STAGE_SYNC, EPROTO, "expected message %u from the shim, got %u", type, m.type);
  return 0;
}

static _Noreturn void child_fail(int fd, const struct init_error *err) {
  send_msg(fd, SYNC_ERROR, err->err, (uint32_t)err->stage, err->msg);
  _exit(1);
}

/*
 * A terminal made inside the container, from its own devpts instance (so
 * `tty` names /dev/pts/0 there): the slave becomes stdin, stdout, stderr and
 * the controlling terminal; the master stays open (close-on-exec) at the fd
 * returned, for the shim to take with pidfd_getfd before it says START.
 */
static int setup_terminal(struct init_error *err) {
  int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return fail(err, STAGE_TERMINAL, errno, "opening /dev/ptmx");
  char name[64];
  if (unlockpt(master) < 0 || ptsname_r(master, name, sizeof(name)) != 0)
    return fail(err, STAGE_TERMINAL, errno, "unlocking the pty");
  int slave = open(name, O_RDWR | O_NOCTTY);
  if (slave < 0) return fail(err, STAGE_TERMINAL, errno, "opening %s", name);
  for (int fd = 0; fd <= 2; fd++)
    if (dup2(slave, fd) < 0) return fail(err, STAGE_TERMINAL, errno, "dup2 of the pty");
  if (slave > 2) close(slave);
  if (ioctl(0, TIOCSCTTY, 0) < 0) return fail(err, STAGE_TERMINAL, errno, "making the pty the controlling terminal");
  return master;
}

/* The container's process: set everything up, report ready, exec on start. */
static _Noreturn void run_child(const struct plan *plan, bool create) {
  struct init_error err = {0};
  if (plan->parent_death_signal) prctl(PR_SET_PDEATHSIG, plan->parent_death_signal, 0, 0, 0);
  /* Signal dispositions the parent set for itself must not leak into the container. */
  for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
  if (expect_msg(INIT_FD, SYNC_PLACED, &err) < 0) child_fail(INIT_FD, &err);
  if (create && (plan->namespaces & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP) < 0) {
    fail(&err, STAGE_NAMESPACES, errno, "unshare of the cgroup namespace");
    child_fail(INIT_FD, &err);
  }
  /* In a new user namespace, become its root now that the shim wrote the maps:
   * until then our ids are unmapped there and the kernel refuses to create files. */
  if (create && (plan->namespaces & CLONE_NEWUSER) && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) {
    fail(&err, STAGE_USER, errno, "becoming root of the new user namespace");
    child_fail(INIT_FD, &err);
  }
  /* A session of its own, as runc gives every container process. */
  if (setsid() < 0) {
    fail(&err, STAGE_TERMINAL, errno, "setsid");
    child_fail(INIT_FD, &err);
  }
  if (create) {
    if (rootfs_prepare(plan, &err) < 0 || rootfs_pivot(plan, &err) < 0 || rootfs_finish(plan, &err) < 0)
      child_fail(INIT_FD, &err);
  }
  int pty_master = 0;
  if (plan->terminal && (pty_master = setup_terminal(&err)) < 0) child_fail(INIT_FD, &err);
  if (process_setup(plan, &err) < 0 || process_security(plan, &err) < 0) child_fail(INIT_FD, &err);
  if (chdir(plan->cwd) < 0) {
    fail(&err, STAGE_CWD, errno, "chdir to %s", plan->cwd);
    child_fail(INIT_FD, &err);
  }
  if (send_msg(INIT_FD, SYNC_READY, pty_master, 0, NULL) < 0) _exit(1);
  if (expect_msg(INIT_FD, SYNC_START, &err) < 0) child_fail(INIT_FD, &err);
  process_exec(plan, &err);
  child_fail(INIT_FD, &err);
}

static int clone_child(void *arg) {
  const struct plan *plan = arg;
  run_child(plan, true);
}

static int join_namespaces(const struct plan *plan, struct init_error *err) {
  /* Open them all first: once the mount namespace is joined, /proc is the
   * container's and the host's pid paths no longer resolve. */
  int fds[16];
  size_t n = plan->joins.len;
  if (n > 16) return fail(err, STAGE_NAMESPACES, E2BIG, "too many namespaces to join");
  for (size_t i = 0; i < n; i++) {
    fds[i] = open(plan->joins.items[i].path, O_RDONLY | O_CLOEXEC);
    if (fds[i] < 0) {
      int e = errno;
      for (size_t k = 0; k < i; k++) close(fds[k]);
      return fail(err, STAGE_NAMESPACES, e, "opening namespace %s", plan->joins.items[i].path);
    }
  }
  /* The user namespace first: it decides what the others allow. */
  int rc = 0;
  for (int pass = 0; pass < 2 && rc == 0; pass++) {
    for (size_t i = 0; i < n; i++) {
      const struct plan_join *j = &plan->joins.items[i];
      if ((pass == 0) != (j->type == CLONE_NEWUSER)) continue;
      if (setns(fds[i], (int)j->type) < 0) {
        rc = fail(err, STAGE_NAMESPACES, errno, "setns %s", j->path);
        break;
      }
    }
  }
  for (size_t i = 0; i < n; i++) close(fds[i]);
  return rc;
}

static int wait_child(pid_t pid) {
  int status;
  for (;;) {
    pid_t r = waitpid(pid, &status, 0);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return 255;
  }
  send_msg(PARENT_FD, SYNC_EXITED, status, 0, NULL);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv) {
  struct init_error err = {0};
  struct plan plan;
  if (argc >= 2 && strcmp(argv[1], "--") == 0) return reaper_main(argc - 2, argv + 2);
  if (argc == 2 && strcmp(argv[1], "seccomp-bpf") == 0) {
    /* The plan's seccomp records on stdin, the compiled filter on stdout (the shim keeps it for the next container). */
    if (plan_decode(0, &plan, &err) < 0 || !plan.has_seccomp || seccomp_export(&plan, 1, &err) < 0) {
      if (!err.msg[0]) snprintf(err.msg, sizeof(err.msg), "the plan has no seccomp rules");
      fprintf(stderr, "ctr-init seccomp-bpf: %s: %s\n", err.msg, strerror(err.err));
      return 1;
    }
    return 0;
  }
  bool create = argc == 2 && strcmp(argv[1], "create") == 0;
  bool exec_mode = argc == 2 && strcmp(argv[1], "exec") == 0;
  if (!create && !exec_mode) {
    fprintf(stderr, "usage: ctr-init create|exec|seccomp-bpf (started by the ctr shim; see native/src/protocol.h)\n");
    return 2;
  }
  for (int fd = PLAN_FD; fd <= PARENT_FD; fd++) {
    if (fcntl(fd, F_GETFD) < 0) {
      fprintf(stderr, "ctr-init: fd %d is not open: started by the ctr shim only\n", fd);
      return 2;
    }
  }
  /* Blocking I/O on what we were given; the parent socket is ours only; the
   * init socket must close on exec (that EOF says exec worked). */
  for (int fd = PLAN_FD; fd <= PARENT_FD; fd++) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  fcntl(PARENT_FD, F_SETFD, FD_CLOEXEC);
  fcntl(INIT_FD, F_SETFD, FD_CLOEXEC);
  if (plan_read(PLAN_FD, &plan, &err) < 0) goto parent_fail;
  close(PLAN_FD);
  /* A process that joins a container must not be reachable through /proc by it (CVE-2019-5736). */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (join_namespaces(&plan, &err) < 0) goto parent_fail;
  /* The parent only waits; signals meant for the container go to the child's pid. */
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGQUIT, SIG_IGN);

  pid_t pid;
  if (create) {
    /* clone() with new namespaces; the child runs on its own stack, not sharing memory. */
    size_t stack_size = 256 * 1024;
    char *stack = malloc(stack_size);
    if (!stack) {
      fail(&err, STAGE_NAMESPACES, ENOMEM, "clone stack");
      goto parent_fail;
    }
    /* Not the cgroup namespace yet: it is made after the shim placed the child in
     * its cgroup (SYNC_PLACED), so that cgroup is the namespace's root, as runc does. */
    pid = clone(clone_child, stack + stack_size, (int)(plan.namespaces & ~CLONE_NEWCGROUP) | SIGCHLD, &plan);
  } else {
    /* setns(CLONE_NEWPID) applies to children: fork so the process is inside. */
    pid = fork();
    if (pid == 0) run_child(&plan, false);
  }
  if (pid < 0) {
    fail(&err, STAGE_NAMESPACES, errno, "clone into new namespaces");
    goto parent_fail;
  }
  close(INIT_FD);
  if (send_msg(PARENT_FD, SYNC_CHILD_PID, pid, 0, NULL) < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 255;
  }
  return wait_child(pid);

parent_fail:
  send_msg(PARENT_FD, SYNC_ERROR, err.err, (uint32_t)err.stage, err.msg);
  fprintf(stderr, "ctr-init: %s: %s\n", err.msg, strerror(err.err));
  return 255;
}
