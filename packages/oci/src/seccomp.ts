/**
 * Seccomp for containers: ctr's default profile (the same policy as docker's
 * default: an allowlist that refuses everything else with EPERM, and the
 * system-administration calls only to a process that holds the capability
 * they need), and docker-format JSON profiles (`--security-opt seccomp=file`)
 * turned into the OCI form for a given capability set.
 */
import type { Seccomp, SeccompArg, SeccompSyscall } from './spec.js';

/** Allowed to every container: ordinary process, file, memory, signal, time and socket calls. */
const ALWAYS = `accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create epoll_create1
epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2
fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat
fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait
futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid
getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom
getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt
get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1
inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set
io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise
map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall
mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at
nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc
pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg
recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam sched_get_priority_max
sched_get_priority_min sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity
sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32
setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32
setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area
set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
sigprocmask sigreturn socket socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync
sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime
timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat
utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev arch_prctl modify_ldt`;

/** Calls a capability unlocks, as docker's profile grants them. */
const BY_CAPABILITY: Record<string, string> = {
  CAP_SYS_ADMIN: `bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr
move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog umount umount2
unshare`,
  CAP_SYS_BOOT: 'reboot',
  CAP_SYS_CHROOT: 'chroot',
  CAP_SYS_MODULE: 'delete_module init_module finit_module',
  CAP_SYS_PACCT: 'acct',
  CAP_SYS_PTRACE: 'kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace',
  CAP_SYS_RAWIO: 'iopl ioperm',
  CAP_SYS_TIME: 'settimeofday stime clock_settime clock_settime64',
  CAP_SYS_TTY_CONFIG: 'vhangup',
  CAP_SYS_NICE: 'get_mempolicy mbind set_mempolicy set_mempolicy_home_node',
  CAP_SYSLOG: 'syslog',
  CAP_BPF: 'bpf',
  CAP_PERFMON: 'perf_event_open',
};

const CLONE_NAMESPACES = 0x7e020000; // CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
const EPERM = 1;
const ENOSYS = 38;

const words = (s: string) => s.split(/\s+/).filter(Boolean);

/**
 * ctr's default seccomp profile for a process with these capabilities: what it
 * may call, and EPERM for the rest. Without CAP_SYS_ADMIN, clone may not make
 * namespaces and clone3 answers ENOSYS (so libcs fall back to clone); the
 * personality calls allowed are the harmless ones.
 */
export function defaultSeccomp(capabilities: readonly string[] = []): Seccomp {
  const caps = new Set(capabilities);
  const allowed = new Set(words(ALWAYS));
  for (const [cap, calls] of Object.entries(BY_CAPABILITY)) {
    if (caps.has(cap)) for (const c of words(calls)) allowed.add(c);
  }
  const syscalls: SeccompSyscall[] = [{ names: [...allowed].sort(), action: 'SCMP_ACT_ALLOW' }];
  const personality = (value: number): SeccompArg => ({ index: 0, value, op: 'SCMP_CMP_EQ' });
  for (const v of [0x0, 0x8, 0x20000, 0x20008, 0xffffffff]) {
    syscalls.push({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [personality(v)] });
  }
  if (!caps.has('CAP_SYS_ADMIN')) {
    syscalls.push({
      names: ['clone'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 0, value: CLONE_NAMESPACES, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
    });
    syscalls.push({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS });
  }
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: EPERM,
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    syscalls,
  };
}

/** A docker seccomp profile file (profiles/seccomp/default.json's format). */
export interface DockerSeccompProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  archMap?: { architecture: string; subArchitectures?: string[] }[];
  flags?: string[];
  syscalls?: (SeccompSyscall & {
    name?: string;
    includes?: { caps?: string[]; arches?: string[]; minKernel?: string };
    excludes?: { caps?: string[]; arches?: string[] };
  })[];
}

const HOST_ARCH = 'SCMP_ARCH_X86_64';
/** docker names architectures in includes/excludes as Go does. */
const GOARCH = 'amd64';

/** Turns a docker-format profile into the OCI form for a process with these capabilities (on x86-64). */
export function fromDockerProfile(profile: DockerSeccompProfile, capabilities: readonly string[] = []): Seccomp {
  if (typeof profile?.defaultAction !== 'string') throw new Error('a seccomp profile needs a defaultAction');
  const caps = new Set(capabilities);
  const arch = profile.archMap?.find((a) => a.architecture === HOST_ARCH);
  const architectures = arch
    ? [arch.architecture, ...(arch.subArchitectures ?? [])]
    : (profile.architectures ?? [HOST_ARCH]);
  const syscalls: SeccompSyscall[] = [];
  for (const s of profile.syscalls ?? []) {
    const inc = s.includes ?? {};
    const exc = s.excludes ?? {};
    if (inc.caps?.length && !inc.caps.every((c) => caps.has(c))) continue;
    if (inc.arches?.length && !inc.arches.includes(GOARCH)) continue;
    if (exc.caps?.some((c) => caps.has(c))) continue;
    if (exc.arches?.includes(GOARCH)) continue;
    const names = s.names ?? (s.name ? [s.name] : []);
    if (!names.length) continue;
    syscalls.push({ names, action: s.action, errnoRet: s.errnoRet, args: s.args?.length ? s.args : undefined });
  }
  return {
    defaultAction: profile.defaultAction,
    defaultErrnoRet: profile.defaultErrnoRet,
    architectures,
    flags: profile.flags,
    syscalls,
  };
}
