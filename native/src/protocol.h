/*
 * The contract between the shim (TypeScript) and ctr-init (C).
 *
 * The shim decides, ctr-init executes. The shim starts ctr-init with:
 *   fd 0,1,2  the container's stdio (pipes, or the pty's slave end)
 *   fd 3      the plan: a pipe the shim writes whole and closes
 *   fd 4      the init socket between the shim and the
 *             container's process; it is O_CLOEXEC in that process, so its
 *             EOF after SYNC_START means execve succeeded
 *   fd 5      the parent socket: ctr-init's own reports
 * Both sockets are stream socketpairs (what Node gives a child for a 'pipe'
 * stdio slot); every message is one fixed-size struct sync_msg.
 * and one argument, the mode: "create" (new namespaces) or "exec" (join a
 * running container's namespaces). A third mode, "seccomp-bpf", reads a plan
 * of seccomp records on stdin and writes the filter they compile to on
 * stdout (struct sock_filter x n), which the shim keeps and sends the next
 * time as PLAN_SECCOMP_BPF: libseccomp's compile of docker's default profile
 * takes some 20 ms.
 *
 * The plan is a sequence of records: u16 tag, u32 length, then `length`
 * bytes. Integers are little-endian; strings are NUL-terminated inside the
 * record; lists (argv, env, groups) repeat their record once per item.
 *
 * The handshake, one message per step (struct sync_msg):
 *
 *   ctr-init (parent, fd 5)      shim                  container process (child, fd 4)
 *   setns(joined namespaces)
 *   clone(new namespaces) -----------------------------------> waits for SYNC_PLACED
 *   SYNC_CHILD_PID(pid) ----->   writes uid/gid maps,
 *                                places pid in cgroups
 *                                SYNC_PLACED -------------> mounts, devices, pivot_root,
 *                                                           masks, hostname, rlimits,
 *                                                           user, caps, nnp, seccomp, cwd
 *                                            <------------- SYNC_READY
 *                                (create returns; start later)
 *                                SYNC_START --------------> execve(argv): fd 4 closes
 *   waits for the child; when it exits:
 *   SYNC_EXITED(wait status) ->  and ctr-init exits with the child's code
 *                                (128+signal when it was killed)
 *
 * Any failure before execve: SYNC_ERROR with the stage, errno and a message,
 * and the child exits 1. A successful execve closes the child's end of the
 * sync socket (it is O_CLOEXEC), which is how the shim knows it happened.
 */
#ifndef CTR_PROTOCOL_H
#define CTR_PROTOCOL_H

#include <stdint.h>

enum plan_tag {
  PLAN_NAMESPACES = 1,      /* u32 CLONE_NEW* flags to create */
  PLAN_JOIN_NS = 2,         /* u32 CLONE_NEW* type, then path: setns before clone */
  PLAN_UID_MAP = 3,         /* text as for /proc/pid/uid_map (written by the shim; here for the record) */
  PLAN_GID_MAP = 4,
  PLAN_ROOTFS = 10,         /* path of the root filesystem (already mounted by the shim or a plain dir) */
  PLAN_ROOTFS_READONLY = 11,
  PLAN_ROOTFS_PROPAGATION = 12, /* u32 MS_PRIVATE / MS_SLAVE / MS_SHARED for "/" */
  PLAN_MOUNT = 13,          /* u64 flags, u32 propagation, then type\0 source\0 target\0 data\0 */
  PLAN_MASKED_PATH = 14,
  PLAN_READONLY_PATH = 15,
  PLAN_DEVICE = 16,         /* u32 type ('c'/'b'/'p'), u32 major, u32 minor, u32 mode, u32 uid, u32 gid, path */
  PLAN_SYMLINK = 17,        /* target\0 linkpath\0 (linkpath inside the rootfs) */
  PLAN_HOSTNAME = 20,
  PLAN_RLIMIT = 21,         /* u32 resource, u64 soft, u64 hard */
  PLAN_SYSCTL = 22,         /* key\0 value\0 */
  PLAN_OOM_SCORE_ADJ = 23,  /* i32 */
  PLAN_UID = 30,            /* u32 */
  PLAN_GID = 31,            /* u32 */
  PLAN_GROUP = 32,          /* u32, one record per supplementary group */
  PLAN_CAPS = 33,           /* u64 x5: bounding, effective, inheritable, permitted, ambient */
  PLAN_NO_NEW_PRIVS = 34,
  PLAN_SECCOMP_DEFAULT = 40, /* u32 SCMP_ACT_* (errno in the low 16 bits for ERRNO) */
  PLAN_SECCOMP_ARCH = 41,   /* arch name: "x86_64", "x86", "x32" */
  PLAN_SECCOMP_RULE = 42,   /* u32 action, u32 nargs, nargs x (u32 index, u32 op, u64 value, u64 value2), name\0 */
  PLAN_SECCOMP_BPF = 43,    /* the filter compiled already (`ctr-init seccomp-bpf`): struct sock_filter x n;
                               loaded as is, in place of DEFAULT/ARCH/RULE records */
  PLAN_ARG = 50,            /* one per argv item */
  PLAN_ENV = 51,            /* one per KEY=VALUE */
  PLAN_CWD = 52,
  PLAN_PARENT_DEATH_SIGNAL = 53, /* u32 */
  PLAN_TERMINAL = 54,       /* make a pty in the container's devpts: its slave is stdio and controlling terminal */
};

enum sync_type {
  SYNC_CHILD_PID = 1, /* ctr-init -> shim: value = the child's pid in the shim's pid namespace */
  SYNC_PLACED = 2,    /* shim -> ctr-init -> child: maps written, cgroups joined */
  SYNC_READY = 3,     /* child -> shim: all set up, waiting to exec; value = the pty master's fd
                       * in the child when the plan asked for a terminal (the shim takes it with
                       * pidfd_getfd before START; it is close-on-exec in the child) */
  SYNC_START = 4,     /* shim -> child: exec now */
  SYNC_EXITED = 5,    /* ctr-init -> shim: value = the child's raw wait status */
  SYNC_ERROR = 6,     /* any -> shim: value = errno, stage and message follow */
};

/* Stages named in SYNC_ERROR. */
enum init_stage {
  STAGE_PLAN = 1,
  STAGE_NAMESPACES = 2,
  STAGE_SYNC = 3,
  STAGE_ROOTFS = 4,
  STAGE_MOUNTS = 5,
  STAGE_DEVICES = 6,
  STAGE_PIVOT = 7,
  STAGE_MASKS = 8,
  STAGE_HOSTNAME = 9,
  STAGE_RLIMITS = 10,
  STAGE_USER = 11,
  STAGE_CAPS = 12,
  STAGE_SECCOMP = 13,
  STAGE_CWD = 14,
  STAGE_EXEC = 15,
  STAGE_TERMINAL = 16,
};

#define SYNC_TEXT_MAX 480

struct sync_msg {
  uint32_t type;
  int32_t value;
  uint32_t stage;
  char text[SYNC_TEXT_MAX];
};

#endif
