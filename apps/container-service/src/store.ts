/**
 * container-service's database: containers and volumes. A container's record
 * is the API's Container (stored as its proto JSON) plus what the service
 * keeps for itself (the image's config, an explicit stop, the restart
 * backoff). SQLite with a write-ahead journal, FULL sync: an exit code written
 * here is the one a user is shown after any crash or power cut.
 */
import type { DatabaseSync } from 'node:sqlite';
import { Container, type Volume } from '@ctr/api/containers/v1/containers';
import { openDatabase, transaction } from '@ctr/common/sqlite';
import type { ImageConfig } from '@ctr/oci';

export interface ContainerRecord {
  container: Container;
  /** The image's config (entrypoint, env, volumes...) as the container was created from it. */
  imageConfig: ImageConfig & { Volumes?: Record<string, unknown>; ExposedPorts?: Record<string, unknown> };
  /** The snapshot's parent (the image's top chain id). */
  chainId: string;
  /** docker's "manually stopped": a restart policy does not bring it back (until the next start). */
  manuallyStopped: boolean;
  /** Anonymous volumes made for it (removed with `rm -v`, as docker does). */
  anonymousVolumes: string[];
  /** The restart policy's current delay (docker's backoff). */
  backoffMs?: number;
}

export interface VolumeRecord {
  name: string;
  driver: string;
  mountpoint: string;
  labels: Record<string, string>;
  options: Record<string, string>;
  createdAt: string;
  anonymous: boolean;
}

interface Row {
  id: string;
  data: string;
}

export class Store {
  readonly db: DatabaseSync;

  constructor(path: string) {
    this.db = openDatabase(path, 'FULL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        data TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS volumes (
        name TEXT PRIMARY KEY,
        data TEXT NOT NULL
      );
    `);
  }

  close(): void {
    this.db.close();
  }

  containers(): ContainerRecord[] {
    return (this.db.prepare('SELECT id, data FROM containers').all() as unknown as Row[]).map(decode);
  }

  container(id: string): ContainerRecord | undefined {
    const row = this.db.prepare('SELECT id, data FROM containers WHERE id = ?').get(id) as Row | undefined;
    return row && decode(row);
  }

  byName(name: string): ContainerRecord | undefined {
    const row = this.db.prepare('SELECT id, data FROM containers WHERE name = ?').get(name) as Row | undefined;
    return row && decode(row);
  }

  /**
   * Inserts or replaces a container's record. Without `sync`, the change is
   * not synced to disk before this returns (it outlives a crash of this
   * process, not the host's): for a record that a synced one follows at
   * once, which syncs both.
   */
  putContainer(r: ContainerRecord, { sync = true } = {}): void {
    this.#write(sync, () =>
      this.db
        .prepare('INSERT OR REPLACE INTO containers (id, name, data) VALUES (?, ?, ?)')
        .run(r.container.id, r.container.name, encode(r)),
    );
  }

  /** Deletes a container's record; without `sync`, as putContainer's (a --rm container's: one a crash brings back is removed again). */
  deleteContainer(id: string, { sync = true } = {}): void {
    this.#write(sync, () => this.db.prepare('DELETE FROM containers WHERE id = ?').run(id));
  }

  /** Makes `change`, not synced to disk unless `sync` (the connection is FULL otherwise). */
  #write(sync: boolean, change: () => void): void {
    if (sync) {
      change();
      return;
    }
    this.db.exec('PRAGMA synchronous = NORMAL');
    try {
      change();
    } finally {
      this.db.exec('PRAGMA synchronous = FULL');
    }
  }

  volumes(): VolumeRecord[] {
    return (this.db.prepare('SELECT data FROM volumes ORDER BY name').all() as { data: string }[]).map(
      (r) => JSON.parse(r.data) as VolumeRecord,
    );
  }

  volume(name: string): VolumeRecord | undefined {
    const row = this.db.prepare('SELECT data FROM volumes WHERE name = ?').get(name) as { data: string } | undefined;
    return row && (JSON.parse(row.data) as VolumeRecord);
  }

  /** Adds a volume unless one of that name exists; returns the stored one. */
  addVolume(v: VolumeRecord): { volume: VolumeRecord; created: boolean } {
    return transaction(this.db, () => {
      const existing = this.volume(v.name);
      if (existing) return { volume: existing, created: false };
      this.db.prepare('INSERT INTO volumes (name, data) VALUES (?, ?)').run(v.name, JSON.stringify(v));
      return { volume: v, created: true };
    });
  }

  deleteVolume(name: string): void {
    this.db.prepare('DELETE FROM volumes WHERE name = ?').run(name);
  }
}

function encode(r: ContainerRecord): string {
  return JSON.stringify({ ...r, container: Container.toJSON(r.container) });
}

function decode(row: Row): ContainerRecord {
  const r = JSON.parse(row.data) as ContainerRecord & { container: unknown };
  return { ...r, container: Container.fromJSON(r.container) };
}

export type { Volume };
