#ifndef CTR_ROOTFS_H
#define CTR_ROOTFS_H
#include "plan.h"

/* Makes / private, binds the rootfs, mounts and creates devices inside it. */
int rootfs_prepare(const struct plan *plan, struct init_error *err);
/* pivot_root(".", ".") into the rootfs and detaches the old root. */
int rootfs_pivot(const struct plan *plan, struct init_error *err);
/* Read-only and masked paths, then the read-only root when asked. */
int rootfs_finish(const struct plan *plan, struct init_error *err);
#endif
