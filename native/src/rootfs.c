/* The container's filesystem view, built inside its new mount namespace.
 * Every path inside the rootfs is resolved with openat2(RESOLVE_IN_ROOT) from
 * the rootfs fd, so no symlink in the image can point a mount outside it, and
 * mounts are made onto /proc/self/fd/N of the resolved fd, never onto a path
 * string that could change under us. */
#define _GNU_SOURCE
#include "rootfs.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

static int sys_openat2(int dirfd, const char *path, uint64_t flags, uint64_t resolve) {
  struct open_how how = {.flags = flags, .mode = 0, .resolve = resolve};
  return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

/* Opens `path` (relative to the rootfs, leading slashes ignored) inside the rootfs. */
static int open_in_root(int rootfd, const char *path, int flags) {
  while (*path == '/') path++;
  if (*path == '\0') return fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
  return sys_openat2(rootfd, path, (uint64_t)(flags | O_CLOEXEC),
                     RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
}

static void split_path(const char *path, char *parent, size_t size, const char **name) {
  const char *slash = strrchr(path, '/');
  if (!slash) {
    parent[0] = '\0';
    *name = path;
    return;
  }
  snprintf(parent, size, "%.*s", (int)(slash - path), path);
  *name = slash + 1;
}

/*
 * Opens `path` in the root (O_PATH), creating what is missing: directories
 * for the parents, and a directory or an empty file at the end. A dangling
 * symlink on the way is followed the way the kernel would follow it with the
 * rootfs as "/", so the result is always inside the rootfs (securejoin's job).
 */
static int open_or_create_in_root(int rootfd, const char *path, bool as_file, int depth) {
  int fd = open_in_root(rootfd, path, O_PATH);
  if (fd >= 0 || errno != ENOENT) return fd;
  if (depth > 40) return -(errno = ELOOP);
  char parent[PATH_MAX];
  const char *name;
  split_path(path, parent, sizeof(parent), &name);
  if (*name == '\0') return -(errno = EINVAL);
  cleanup_fd int pfd = *parent ? open_or_create_in_root(rootfd, parent, false, depth + 1) : fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
  if (pfd < 0) return -1;
  char link[PATH_MAX];
  ssize_t n = readlinkat(pfd, name, link, sizeof(link) - 1);
  if (n >= 0) {
    link[n] = '\0';
    char next[PATH_MAX];
    /* Relative links resolve from the link's directory; openat2 clamps ".." at the root. */
    if (snprintf(next, sizeof(next), "%s%s%s", link[0] == '/' ? "" : parent, link[0] == '/' ? "" : "/", link) >= (int)sizeof(next))
      return -(errno = ENAMETOOLONG);
    return open_or_create_in_root(rootfd, next, as_file, depth + 1);
  }
  if (as_file) {
    int f = openat(pfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (f < 0 && errno != EEXIST) return -1;
    if (f >= 0) close(f);
  } else if (mkdirat(pfd, name, 0755) < 0 && errno != EEXIST) {
    return -1;
  }
  return openat(pfd, name, O_PATH | O_CLOEXEC | O_NOFOLLOW);
}

static int mount_on_fd(const char *source, int fd, const char *type, unsigned long flags, const char *data) {
  char proc[64];
  snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
  return mount(source, proc, type, flags, data && *data ? data : NULL);
}

static int do_mount(int rootfd, const struct plan_mount *m, struct init_error *err) {
  bool bind = (m->flags & MS_BIND) != 0;
  bool as_file = false;
  if (bind) {
    struct stat st;
    if (stat(m->source, &st) < 0) return fail(err, STAGE_MOUNTS, errno, "bind source %s", m->source);
    as_file = !S_ISDIR(st.st_mode);
  }
  cleanup_fd int fd = open_or_create_in_root(rootfd, m->target, as_file, 0);
  if (fd < 0) return fail(err, STAGE_MOUNTS, errno, "creating mount point %s", m->target);
  unsigned long flags = (unsigned long)m->flags;
  if (bind) {
    if (mount_on_fd(m->source, fd, NULL, MS_BIND | (flags & MS_REC), NULL) < 0)
      return fail(err, STAGE_MOUNTS, errno, "bind mount %s on %s", m->source, m->target);
    unsigned long extra = flags & ~(unsigned long)(MS_BIND | MS_REC);
    if (extra) {
      /* Re-open: the fd must name the new mount, not the directory below it. */
      cleanup_fd int again = open_in_root(rootfd, m->target, O_PATH);
      if (again < 0 || mount_on_fd(NULL, again, NULL, MS_REMOUNT | MS_BIND | extra, NULL) < 0)
        return fail(err, STAGE_MOUNTS, errno, "remounting %s with its options", m->target);
    }
  } else if (mount_on_fd(m->source, fd, m->type, flags, m->data) < 0) {
    return fail(err, STAGE_MOUNTS, errno, "mount %s (%s) on %s", m->source, m->type, m->target);
  }
  if (m->propagation) {
    cleanup_fd int again = open_in_root(rootfd, m->target, O_PATH);
    if (again < 0 || mount_on_fd(NULL, again, NULL, m->propagation, NULL) < 0)
      return fail(err, STAGE_MOUNTS, errno, "setting propagation of %s", m->target);
  }
  return 0;
}

static int make_device(int rootfd, const struct plan_device *d, struct init_error *err) {
  char parent[PATH_MAX];
  const char *name;
  split_path(d->path, parent, sizeof(parent), &name);
  cleanup_fd int pfd = *parent ? open_or_create_in_root(rootfd, parent, false, 0) : fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
  if (pfd < 0) return fail(err, STAGE_DEVICES, errno, "opening %s", parent);
  mode_t type = d->type == 'b' ? S_IFBLK : d->type == 'p' ? S_IFIFO : S_IFCHR;
  unlinkat(pfd, name, 0);
  if (mknodat(pfd, name, type | (d->mode & 07777), makedev(d->major, d->minor)) == 0) {
    /* mknod applied the umask: set the mode the plan asked for. */
    if (fchmodat(pfd, name, d->mode & 07777, 0) < 0) return fail(err, STAGE_DEVICES, errno, "chmod %s", d->path);
    if (fchownat(pfd, name, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
      return fail(err, STAGE_DEVICES, errno, "chown %s", d->path);
    return 0;
  }
  if (errno != EPERM) return fail(err, STAGE_DEVICES, errno, "mknod %s", d->path);
  /* In a user namespace mknod is refused: bind the host's node instead. */
  int fd = openat(pfd, name, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail(err, STAGE_DEVICES, errno, "creating %s", d->path);
  close(fd);
  cleanup_fd int target = openat(pfd, name, O_PATH | O_CLOEXEC | O_NOFOLLOW);
  if (target < 0 || mount_on_fd(d->path, target, NULL, MS_BIND, NULL) < 0)
    return fail(err, STAGE_DEVICES, errno, "binding host device %s", d->path);
  return 0;
}

static int make_symlink(int rootfd, const char *target, const char *link, struct init_error *err) {
  char parent[PATH_MAX];
  const char *name;
  split_path(link, parent, sizeof(parent), &name);
  cleanup_fd int pfd = *parent ? open_or_create_in_root(rootfd, parent, false, 0) : fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
  if (pfd < 0) return fail(err, STAGE_DEVICES, errno, "opening %s", parent);
  if (symlinkat(target, pfd, name) < 0 && errno != EEXIST)
    return fail(err, STAGE_DEVICES, errno, "symlink %s -> %s", link, target);
  return 0;
}

int rootfs_prepare(const struct plan *plan, struct init_error *err) {
  /* Nothing we mount may propagate back to the host. */
  unsigned long prop = plan->rootfs_propagation ? plan->rootfs_propagation : MS_PRIVATE;
  if (mount(NULL, "/", NULL, MS_REC | prop, NULL) < 0)
    return fail(err, STAGE_ROOTFS, errno, "making / %s", prop == MS_SLAVE ? "rslave" : "rprivate");
  /* pivot_root needs the new root to be a mount point. */
  if (mount(plan->rootfs, plan->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
    return fail(err, STAGE_ROOTFS, errno, "bind mounting the rootfs %s", plan->rootfs);
  cleanup_fd int rootfd = open(plan->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) return fail(err, STAGE_ROOTFS, errno, "opening the rootfs %s", plan->rootfs);
  for (size_t i = 0; i < plan->mounts.len; i++)
    if (do_mount(rootfd, &plan->mounts.items[i], err) < 0) return -1;
  for (size_t i = 0; i < plan->devices.len; i++)
    if (make_device(rootfd, &plan->devices.items[i], err) < 0) return -1;
  for (size_t i = 0; i + 1 < plan->symlinks.len; i += 2)
    if (make_symlink(rootfd, plan->symlinks.items[i], plan->symlinks.items[i + 1], err) < 0) return -1;
  return 0;
}

int rootfs_pivot(const struct plan *plan, struct init_error *err) {
  cleanup_fd int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  cleanup_fd int newroot = open(plan->rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (oldroot < 0 || newroot < 0) return fail(err, STAGE_PIVOT, errno, "opening the roots");
  if (fchdir(newroot) < 0) return fail(err, STAGE_PIVOT, errno, "chdir to the rootfs");
  /* pivot_root(".", "."): the old root is stacked under the new one, then detached. */
  if (syscall(SYS_pivot_root, ".", ".") < 0) return fail(err, STAGE_PIVOT, errno, "pivot_root");
  if (fchdir(oldroot) < 0) return fail(err, STAGE_PIVOT, errno, "chdir to the old root");
  if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0) return fail(err, STAGE_PIVOT, errno, "rslave old root");
  if (umount2(".", MNT_DETACH) < 0) return fail(err, STAGE_PIVOT, errno, "detaching the old root");
  if (chdir("/") < 0) return fail(err, STAGE_PIVOT, errno, "chdir /");
  return 0;
}

int rootfs_finish(const struct plan *plan, struct init_error *err) {
  cleanup_fd int rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) return fail(err, STAGE_MASKS, errno, "opening /");
  for (size_t i = 0; i < plan->readonly.len; i++) {
    const char *p = plan->readonly.items[i];
    cleanup_fd int fd = open_in_root(rootfd, p, O_PATH);
    if (fd < 0) {
      if (errno == ENOENT) continue;
      return fail(err, STAGE_MASKS, errno, "opening read-only path %s", p);
    }
    if (mount_on_fd(p, fd, NULL, MS_BIND | MS_REC, NULL) < 0)
      return fail(err, STAGE_MASKS, errno, "binding read-only path %s", p);
    cleanup_fd int again = open_in_root(rootfd, p, O_PATH);
    if (again < 0 || mount_on_fd(NULL, again, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
      return fail(err, STAGE_MASKS, errno, "remounting %s read-only", p);
  }
  for (size_t i = 0; i < plan->masked.len; i++) {
    const char *p = plan->masked.items[i];
    cleanup_fd int fd = open_in_root(rootfd, p, O_PATH);
    if (fd < 0) {
      if (errno == ENOENT) continue;
      return fail(err, STAGE_MASKS, errno, "opening masked path %s", p);
    }
    struct stat st;
    if (fstat(fd, &st) < 0) return fail(err, STAGE_MASKS, errno, "stat %s", p);
    int r = S_ISDIR(st.st_mode) ? mount_on_fd("tmpfs", fd, "tmpfs", MS_RDONLY, "size=0")
                                : mount_on_fd("/dev/null", fd, NULL, MS_BIND, NULL);
    if (r < 0) return fail(err, STAGE_MASKS, errno, "masking %s", p);
  }
  if (plan->rootfs_readonly && mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
    return fail(err, STAGE_MASKS, errno, "remounting / read-only");
  return 0;
}
