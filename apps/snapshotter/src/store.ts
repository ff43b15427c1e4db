/**
 * overlay2 snapshots on disk, containerd's model:
 *
 *   <root>/snapshots/overlay2/metadata.json   every snapshot: id, name, parent, kind, labels
 *   <root>/snapshots/overlay2/snapshots/<id>/fs     its own layer (overlay upper, or the whole tree)
 *   <root>/snapshots/overlay2/snapshots/<id>/work   overlay's work dir (active snapshots)
 *
 * Ids are short numbers, so a chain of many layers keeps its mount options
 * short. Metadata changes are transactions: one writer at a time, the new
 * state written whole (temp + fsync + rename) before anyone sees it. A crash
 * can leave a directory no record owns, never a record without its
 * directory's content being what it says: cleanup() removes the strays, and
 * runs at start.
 */
import { closeSync, constants, existsSync, mkdirSync, openSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '@ctr/common/errors';
import { readJsonFile, writeFileAtomicSync } from '@ctr/common/fsutil';
import { addInodeFlags, FS_FL } from '@ctr/sys';
import type { Usage } from './usage.js';

export type Kind = 'view' | 'active' | 'committed';

/**
 * Marks the snapshots' directory as the top of directory hierarchies (chattr
 * +T), as /home is: ext4's allocator then places each snapshot's tree in
 * block groups of its own choosing rather than next to its siblings. Without
 * it a layer unpacks into the groups the last removed snapshots emptied, and
 * where ext4 runs without a journal it skips every inode freed in the last
 * minutes one by one on each inode it allocates: on this machine a pull after
 * a removal took 2.2 s (3.8 s of CPU, most of it in the kernel's
 * recently_deleted) against 0.9 s with the flag. Other file systems ignore it.
 */
function spreadSnapshots(dir: string, warn: (err: unknown) => void) {
  try {
    const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      addInodeFlags(fd, FS_FL.TOPDIR);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    warn(err); // a hint: the snapshots work as well without it
  }
}

/**
 * Keys of the active snapshots layers are applied into. Nobody else may use
 * them, and any found at start are what a crash interrupted: removed.
 */
export const EXTRACT_PREFIX = '.extract/';

export interface SnapshotRecord {
  id: number;
  name: string;
  parent: string;
  kind: Kind;
  labels: Record<string, string>;
  createdAt: string;
  updatedAt: string;
  /** A committed snapshot's disk usage, when it was measured as it was made (it never changes). */
  usage?: Usage;
}

interface Db {
  nextId: number;
  snapshots: Record<string, SnapshotRecord>;
}

export interface MountSpec {
  type: string;
  source: string;
  options: string[];
}

export class SnapshotStore {
  readonly dir: string;
  #db: Db = { nextId: 1, snapshots: {} };
  #lock: Promise<unknown> = Promise.resolve();
  /** Directories of removed snapshots being deleted. */
  #removing = new Set<Promise<void>>();
  /** Who waits for a snapshot to be committed, by name (whenCommitted). */
  #waiting = new Map<string, Set<() => void>>();

  private constructor(root: string) {
    this.dir = join(root, 'snapshots', 'overlay2');
  }

  static async open(root: string, warn: (err: unknown) => void = () => undefined): Promise<SnapshotStore> {
    const s = new SnapshotStore(root);
    await mkdir(join(s.dir, 'snapshots'), { recursive: true, mode: 0o700 });
    spreadSnapshots(join(s.dir, 'snapshots'), warn);
    s.#db = (await readJsonFile<Db>(s.#metaFile)) ?? { nextId: 1, snapshots: {} };
    return s;
  }

  get #metaFile() {
    return join(this.dir, 'metadata.json');
  }

  snapshotDir(id: number): string {
    return join(this.dir, 'snapshots', String(id));
  }

  fsDir(id: number): string {
    return join(this.snapshotDir(id), 'fs');
  }

  /** Runs fn on a copy of the metadata; the copy becomes the state once it is on disk. One at a time. */
  async #txn<T>(fn: (db: Db) => Promise<T> | T, sync: 'full' | 'file' = 'full'): Promise<T> {
    const run = this.#lock.then(async () => {
      const db = structuredClone(this.#db);
      const result = await fn(db);
      // In one go, without nine thread-pool trips: a prepare and a remove are on the path of every create and --rm.
      writeFileAtomicSync(this.#metaFile, JSON.stringify(db), 0o600, { sync });
      this.#db = db;
      return result;
    });
    this.#lock = run.catch(() => undefined);
    return run;
  }

  get(key: string): SnapshotRecord {
    const r = this.#db.snapshots[key];
    if (!r) throw notFound(`snapshot ${key} does not exist`);
    return r;
  }

  has(key: string): boolean {
    return key in this.#db.snapshots;
  }

  list(): SnapshotRecord[] {
    return Object.values(this.#db.snapshots);
  }

  /** The committed ancestors of a snapshot, nearest first. */
  parents(r: SnapshotRecord): SnapshotRecord[] {
    const out: SnapshotRecord[] = [];
    for (let p = r.parent; p; p = this.get(p).parent) out.push(this.get(p));
    return out;
  }

  /** A new active or view snapshot on a committed parent. */
  async create(kind: 'active' | 'view', key: string, parent: string, labels: Record<string, string>) {
    if (!key) throw invalidArgument('a snapshot needs a key');
    return this.#txn(async (db) => {
      if (db.snapshots[key]) throw alreadyExists(`snapshot ${key} already exists`);
      if (parent) {
        const p = db.snapshots[parent];
        if (!p) throw notFound(`parent snapshot ${parent} does not exist`);
        if (p.kind !== 'committed') throw failedPrecondition(`parent snapshot ${parent} is not committed`);
      }
      const id = db.nextId++;
      const dir = this.snapshotDir(id);
      // In place: three thread-pool trips were some 3 ms of every container's create. (A directory
      // already there is a crash's leftover under a reused id: rare, and not waited on at that.)
      if (existsSync(dir)) await rm(dir, { recursive: true, force: true });
      mkdirSync(join(dir, 'fs'), { recursive: true, mode: 0o755 });
      if (kind === 'active' && parent) mkdirSync(join(dir, 'work'), { mode: 0o700 });
      const now = new Date().toISOString();
      const rec: SnapshotRecord = { id, name: key, parent, kind, labels, createdAt: now, updatedAt: now };
      db.snapshots[key] = rec;
      return rec;
    });
  }

  /** What mount(2) needs for an active snapshot or a view. */
  mounts(key: string): MountSpec[] {
    const r = this.get(key);
    if (r.kind === 'committed')
      throw failedPrecondition(`snapshot ${key} is committed: prepare or view it to mount it`);
    const parents = this.parents(r);
    if (r.kind === 'view') {
      if (parents.length === 0) return [{ type: 'bind', source: this.fsDir(r.id), options: ['ro', 'rbind'] }];
      if (parents.length === 1) return [{ type: 'bind', source: this.fsDir(parents[0].id), options: ['ro', 'rbind'] }];
      return [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${this.#lowers(parents)}`] }];
    }
    if (parents.length === 0) return [{ type: 'bind', source: this.fsDir(r.id), options: ['rw', 'rbind'] }];
    return [
      {
        type: 'overlay',
        source: 'overlay',
        options: [
          `workdir=${join(this.snapshotDir(r.id), 'work')}`,
          `upperdir=${this.fsDir(r.id)}`,
          `lowerdir=${this.#lowers(parents)}`,
        ],
      },
    ];
  }

  #lowers(parents: SnapshotRecord[]): string {
    return parents.map((p) => this.fsDir(p.id)).join(':');
  }

  /**
   * Commits an active snapshot as `name`. `parent` sets the parent of one made
   * without it: a layer unpacked before its parent was there (it has no work
   * dir, and needs none: nothing mounts a committed snapshot).
   */
  async commit(
    name: string,
    key: string,
    labels: Record<string, string>,
    usage?: Usage,
    parent?: string,
  ): Promise<SnapshotRecord> {
    if (!name) throw invalidArgument('a committed snapshot needs a name');
    const rec = await this.#txn((db) => {
      const r = db.snapshots[key];
      if (!r) throw notFound(`snapshot ${key} does not exist`);
      if (r.kind !== 'active') throw failedPrecondition(`snapshot ${key} is not active: only active snapshots commit`);
      if (db.snapshots[name]) throw alreadyExists(`snapshot ${name} already exists`);
      if (parent) {
        if (r.parent) throw failedPrecondition(`snapshot ${key} has a parent already`);
        const p = db.snapshots[parent];
        if (!p) throw notFound(`parent snapshot ${parent} does not exist`);
        if (p.kind !== 'committed') throw failedPrecondition(`parent snapshot ${parent} is not committed`);
        r.parent = parent;
      }
      delete db.snapshots[key];
      const now = new Date().toISOString();
      const rec: SnapshotRecord = {
        ...r,
        name,
        kind: 'committed',
        labels: { ...r.labels, ...labels },
        updatedAt: now,
        ...(usage ? { usage } : {}),
      };
      db.snapshots[name] = rec;
      return rec;
    });
    const waiting = this.#waiting.get(name);
    this.#waiting.delete(name);
    for (const wake of waiting ?? []) wake();
    return rec;
  }

  /** Resolves once `name` is a committed snapshot (at once if it is); rejects when `signal` aborts. */
  whenCommitted(name: string, signal: AbortSignal): Promise<void> {
    if (this.#db.snapshots[name]?.kind === 'committed') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const set = this.#waiting.get(name) ?? new Set();
      this.#waiting.set(name, set);
      const onAbort = () => {
        set.delete(wake);
        if (!set.size && this.#waiting.get(name) === set) this.#waiting.delete(name);
        reject(signal.reason);
      };
      const wake = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      if (signal.aborted) return onAbort();
      set.add(wake);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Removes a snapshot without children (a missing one is removed already):
   * its record, then its directory. With `background`
   * the caller does not wait for the directory (containerd's snapshotters may
   * remove asynchronously too): nothing finds it once the record is gone, a
   * crash leaves it a stray that cleanup removes, and snapshot ids are never
   * reused, so no new snapshot meets it.
   */
  async remove(key: string, opts: { background?: boolean } = {}): Promise<boolean> {
    const removed = await this.#txn((db) => {
      const r = db.snapshots[key];
      if (!r) return undefined;
      const child = Object.values(db.snapshots).find((s) => s.parent === key);
      if (child) throw failedPrecondition(`snapshot ${key} has children (${child.name}): remove them first`);
      delete db.snapshots[key];
      return r;
      // A removal that a power cut undoes leaves a record nobody uses, which the sweeps remove (its
      // directory cannot have gone before it: the journal keeps the rename ahead of the unlinks).
    }, 'file');
    if (!removed) return false;
    // After the record is gone: a crash here leaves a stray directory for cleanup, not a dangling record.
    const going: Promise<void> = rm(this.snapshotDir(removed.id), { recursive: true, force: true }).finally(() =>
      this.#removing.delete(going),
    );
    this.#removing.add(going);
    if (opts.background) going.catch(() => undefined);
    else await going;
    return true;
  }

  /** Waits for the directories of removed snapshots to be gone (the daemon stopping, a test). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.#removing);
  }

  async updateLabels(key: string, labels: Record<string, string>, mask: string[]): Promise<SnapshotRecord> {
    return this.#txn((db) => {
      const r = db.snapshots[key];
      if (!r) throw notFound(`snapshot ${key} does not exist`);
      if (!mask.length || mask.includes('labels')) r.labels = { ...labels };
      else {
        for (const m of mask) {
          if (!m.startsWith('labels.')) throw invalidArgument(`cannot update ${m}: only labels change`);
          const k = m.slice('labels.'.length);
          if (labels[k] === undefined || labels[k] === '') delete r.labels[k];
          else r.labels[k] = labels[k];
        }
      }
      r.updatedAt = new Date().toISOString();
      return r;
    });
  }

  /** Removes the snapshots of applies a crash cut short (their records and directories). */
  async removeInterruptedApplies(): Promise<string[]> {
    const gone = this.list()
      .filter((r) => r.name.startsWith(EXTRACT_PREFIX))
      .map((r) => r.name);
    for (const key of gone) await this.remove(key);
    return gone;
  }

  /** Directories no snapshot owns (a crash between mkdir and the metadata, or after a remove's record). */
  async cleanup(): Promise<string[]> {
    await this.settle(); // a removal under way is not a stray
    return this.#txn(async (db) => {
      const owned = new Set(Object.values(db.snapshots).map((s) => String(s.id)));
      const removed: string[] = [];
      for (const name of await readdir(join(this.dir, 'snapshots'))) {
        if (owned.has(name)) continue;
        await rm(join(this.dir, 'snapshots', name), { recursive: true, force: true });
        removed.push(name);
      }
      return removed;
    });
  }
}

/** containerd-style filters: `name==x`, `parent==x`, `kind==committed`, `labels."k"==v`, `labels.k` (present). */
export function matchFilters(r: SnapshotRecord, filters: string[]): boolean {
  return filters.every((f) => {
    const m = f.match(/^(labels\."[^"]+"|[\w.]+)\s*(==|!=)?\s*(.*)$/);
    if (!m) throw invalidArgument(`invalid filter ${f}`);
    const [, field, op, rawValue] = m;
    const value = rawValue.replace(/^"(.*)"$/, '$1');
    let actual: string | undefined;
    if (field === 'name') actual = r.name;
    else if (field === 'parent') actual = r.parent;
    else if (field === 'kind') actual = r.kind;
    else if (field.startsWith('labels.')) actual = r.labels[field.slice(7).replace(/^"(.*)"$/, '$1')];
    else throw invalidArgument(`invalid filter field ${field}`);
    if (!op) return actual !== undefined && actual !== '';
    return op === '==' ? actual === value : actual !== value;
  });
}
