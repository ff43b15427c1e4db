/*
 * ctr-init: the only code in ctr that clones into namespaces and execs a
 * container's process. The shim (TypeScript) decides everything and sends a
 * plan; this program carries it out in named stages and reports each over
 * the sync sockets. protocol.h documents the contract.
 *
 *   ctr-init create   new namespaces, a root filesystem, then exec
 *   ctr-init exec     join a running container's namespaces, then exec
 *
 * In both modes the parent stays behind, waits for the container's process
 * and exits with its code, reporting the raw wait status first.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "plan.h"
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

/* The container's process: set everything up, report ready, exec on start. */
static _Noreturn void run_child(const struct plan *plan, bool create) {
  struct init_error err = {0};
  if (plan->parent_death_signal) prctl(PR_SET_PDEATHSIG, plan->parent_death_signal, 0, 0, 0);
  /* Signal dispositions the parent set for itself must not leak into the container. */
  for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
  if (expect_msg(INIT_FD, SYNC_PLACED, &err) < 0) child_fail(INIT_FD, &err);
  if (create) {
    if (rootfs_prepare(plan, &err) < 0 || rootfs_pivot(plan, &err) < 0 || rootfs_finish(plan, &err) < 0)
      child_fail(INIT_FD, &err);
  }
  if (process_setup(plan, &err) < 0 || process_security(plan, &err) < 0) child_fail(INIT_FD, &err);
  if (chdir(plan->cwd) < 0) {
    fail(&err, STAGE_CWD, errno, "chdir to %s", plan->cwd);
    child_fail(INIT_FD, &err);
  }
  if (send_msg(INIT_FD, SYNC_READY, 0, 0, NULL) < 0) _exit(1);
  if (expect_msg(INIT_FD, SYNC_START, &err) < 0) child_fail(INIT_FD, &err);
  process_exec(plan, &err);
  child_fail(INIT_FD, &err);
}

static int clone_child(void *arg) {
  const struct plan *plan = arg;
  run_child(plan, true);
}

static int join_namespaces(const struct plan *plan, struct init_error *err) {
  /* The user namespace first: it decides what the others allow. */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < plan->joins.len; i++) {
      const struct plan_join *j = &plan->joins.items[i];
      if ((pass == 0) != (j->type == CLONE_NEWUSER)) continue;
      cleanup_fd int fd = open(j->path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) return fail(err, STAGE_NAMESPACES, errno, "opening namespace %s", j->path);
      if (setns(fd, (int)j->type) < 0) return fail(err, STAGE_NAMESPACES, errno, "setns %s", j->path);
    }
  }
  return 0;
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
  bool create = argc == 2 && strcmp(argv[1], "create") == 0;
  bool exec_mode = argc == 2 && strcmp(argv[1], "exec") == 0;
  if (!create && !exec_mode) {
    fprintf(stderr, "usage: ctr-init create|exec (started by the ctr shim; see native/README.md)\n");
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
    pid = clone(clone_child, stack + stack_size, (int)plan.namespaces | SIGCHLD, &plan);
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
