#ifndef CTR_PROCESS_H
#define CTR_PROCESS_H
#include "plan.h"

/* hostname, sysctls, rlimits, oom_score_adj: what the process's environment needs before the user switch. */
int process_setup(const struct plan *plan, struct init_error *err);
/* Groups, gid, uid, capabilities, no_new_privs and seccomp, in the order that lets each step still be allowed. */
int process_security(const struct plan *plan, struct init_error *err);
/* execve of argv[0], searched in the plan's PATH; returns only on failure. */
int process_exec(const struct plan *plan, struct init_error *err);
/* The plan's seccomp rules compiled to BPF (struct sock_filter x n) and written to fd, for PLAN_SECCOMP_BPF. */
int seccomp_export(const struct plan *plan, int fd, struct init_error *err);
#endif
