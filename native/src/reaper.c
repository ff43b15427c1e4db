/*
 * `ctr-init -- CMD ARGS...`: docker's --init. Inside the container, as its
 * PID 1: runs CMD as a child in its own process group, forwards the signals
 * a PID 1 receives to that group, reaps every orphan that is reparented to
 * it, and exits with CMD's code (128+N when a signal N ended it), as tini
 * does. Bind-mounted read-only at /sbin/docker-init; static, so it needs
 * nothing from the image.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reaper.h"

int reaper_main(int argc, char **argv) {
  if (argc < 1) {
    fprintf(stderr, "docker-init: no command given\n");
    return 2;
  }
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  pid_t child = fork();
  if (child < 0) {
    perror("docker-init: fork");
    return 1;
  }
  if (child == 0) {
    setpgid(0, 0);
    /* The foreground group of a terminal, so ^C reaches the command. */
    if (isatty(STDIN_FILENO)) {
      signal(SIGTTOU, SIG_IGN);
      tcsetpgrp(STDIN_FILENO, getpid());
      signal(SIGTTOU, SIG_DFL);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    execvp(argv[0], argv);
    fprintf(stderr, "docker-init: exec %s: %s\n", argv[0], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
  }
  setpgid(child, child);
  for (;;) {
    siginfo_t info;
    struct timespec tick = {.tv_sec = 1, .tv_nsec = 0};
    int sig = sigtimedwait(&all, &info, &tick);
    if (sig > 0 && sig != SIGCHLD) {
      /* Job-control stops are not for PID 1. */
      if (sig != SIGTTIN && sig != SIGTTOU && sig != SIGTSTP && kill(-child, sig) < 0) kill(child, sig);
    }
    for (;;) {
      int status;
      pid_t r = waitpid(-1, &status, WNOHANG);
      if (r <= 0) break;
      if (r == child) {
        /* Whatever is left of the group goes with it, as tini's -g does not; reap it before leaving. */
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
    }
  }
}
