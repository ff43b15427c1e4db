/**
 * A file tree as a comparable value: every path with its type, mode (with
 * setuid, setgid, sticky), owner, size and content hash, link target, device
 * numbers and xattrs. Two trees are the same file system content when these
 * are equal; times are left out (directories' change with every child).
 */
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { lgetxattr, llistxattr, MNT, MS, mount, mountOverlay, umount } from '@ctr/sys';

export interface TreeNode {
  type: 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev' | 'fifo' | 'socket';
  mode: string;
  owner: string;
  size?: number;
  sha256?: string;
  link?: string;
  dev?: string;
  /** Hard links: how many names the inode has within the tree. */
  links?: number;
  xattrs?: Record<string, string>;
}

/** Xattrs the kernel or overlayfs manage, not the image. */
const IGNORED_XATTRS = /^(trusted\.overlay\.|security\.selinux$)/;

export async function fileTree(root: string): Promise<Record<string, TreeNode>> {
  const out: Record<string, TreeNode> = {};
  const inodes = new Map<string, string[]>();
  const walk = async (rel: string) => {
    const path = rel ? join(root, rel) : root;
    const st = await lstat(path);
    const type: TreeNode['type'] = st.isFile()
      ? 'file'
      : st.isDirectory()
        ? 'dir'
        : st.isSymbolicLink()
          ? 'symlink'
          : st.isCharacterDevice()
            ? 'chardev'
            : st.isBlockDevice()
              ? 'blockdev'
              : st.isFIFO()
                ? 'fifo'
                : 'socket';
    const node: TreeNode = { type, mode: (st.mode & 0o7777).toString(8), owner: `${st.uid}:${st.gid}` };
    if (type === 'file') {
      node.size = st.size;
      node.sha256 = createHash('sha256')
        .update(await readFile(path))
        .digest('hex');
      const key = `${st.dev}:${st.ino}`;
      inodes.set(key, [...(inodes.get(key) ?? []), rel]);
    }
    if (type === 'symlink') {
      node.link = await readlink(path);
      delete (node as Partial<TreeNode>).mode;
    }
    if (type === 'chardev' || type === 'blockdev') node.dev = `${Math.floor(st.rdev / 256)}:${st.rdev % 256}`;
    const xattrs: Record<string, string> = {};
    for (const name of llistxattr(path).sort())
      if (!IGNORED_XATTRS.test(name)) xattrs[name] = lgetxattr(path, name)?.toString('base64') ?? '';
    if (Object.keys(xattrs).length) node.xattrs = xattrs;
    out[rel || '.'] = node;
    if (type === 'dir') for (const name of (await readdir(path)).sort()) await walk(rel ? `${rel}/${name}` : name);
  };
  await walk('');
  for (const names of inodes.values()) if (names.length > 1) for (const n of names) out[n].links = names.length;
  return out;
}

/**
 * Mounts what the snapshotter returned for a snapshot on `target` (as the
 * shim does: overlay through the new mount API, or a bind), runs fn on it,
 * unmounts.
 */
export async function withSnapshotMounted<T>(
  mounts: Array<{ type: string; source: string; options: string[] }>,
  target: string,
  fn: (dir: string) => Promise<T>,
): Promise<T> {
  const m = mounts[0];
  if (m.type === 'overlay') {
    const kv = new Map(m.options.map((o) => [o.split('=')[0], o.slice(o.indexOf('=') + 1)]));
    mountOverlay(target, {
      lower: (kv.get('lowerdir') ?? '').split(':'),
      upper: kv.get('upperdir'),
      work: kv.get('workdir'),
    });
  } else {
    mount(m.source, target, null, MS.BIND | MS.REC);
    if (m.options.includes('ro')) mount('', target, null, MS.BIND | MS.REMOUNT | MS.RDONLY);
  }
  try {
    return await fn(target);
  } finally {
    umount(target, MNT.DETACH);
  }
}
