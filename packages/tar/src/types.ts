export const BLOCK = 512;

export type EntryType = 'file' | 'link' | 'symlink' | 'chardev' | 'blockdev' | 'dir' | 'fifo';

export interface Timespec {
  sec: number;
  nsec: number;
}

/** One archive member, as stored (paths unvalidated). */
export interface TarEntry {
  path: string;
  type: EntryType;
  /** Permission bits with setuid, setgid and sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of data that follow (regular files only). */
  size: number;
  mtime: Timespec;
  atime?: Timespec;
  /** Hard link or symlink target. */
  linkname: string;
  devmajor: number;
  devminor: number;
  xattrs: Map<string, Buffer>;
}
