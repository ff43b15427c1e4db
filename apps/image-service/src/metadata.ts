/**
 * The image-service's metadata: images (name → target descriptor, labels,
 * times) and leases (what an operation in flight holds against garbage
 * collection), in an SQLite database with a write-ahead journal, so a kill -9
 * leaves each change whole or absent.
 */
import type { DatabaseSync } from 'node:sqlite';
import { openDatabase, transaction } from '@ctr/common/sqlite';
import { alreadyExists, notFound } from '@ctr/common/errors';
import type { Descriptor } from './oci.js';

export interface ImageRecord {
  name: string;
  target: Descriptor;
  labels: Record<string, string>;
  createdAt: Date;
  updatedAt: Date;
}

export type LeaseResource = { kind: 'content' | 'snapshot' | 'ingest'; id: string };

export interface LeaseRecord {
  id: string;
  createdAt: Date;
  expiresAt?: Date;
  labels: Record<string, string>;
}

interface ImageRow {
  name: string;
  target: string;
  labels: string;
  created_at: number;
  updated_at: number;
}

const toImage = (r: ImageRow): ImageRecord => ({
  name: r.name,
  target: JSON.parse(r.target),
  labels: JSON.parse(r.labels),
  createdAt: new Date(r.created_at),
  updatedAt: new Date(r.updated_at),
});

export class Metadata {
  readonly #db: DatabaseSync;

  constructor(path: string) {
    this.#db = openDatabase(path, 'FULL');
    this.#db.exec(`
      CREATE TABLE IF NOT EXISTS images (
        name TEXT PRIMARY KEY,
        target TEXT NOT NULL,
        labels TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS leases (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        labels TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS lease_resources (
        lease TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        PRIMARY KEY (lease, kind, id)
      );
    `);
  }

  close(): void {
    this.#db.close();
  }

  /** Runs fn in one transaction. */
  tx<T>(fn: () => T): T {
    return transaction(this.#db, fn);
  }

  // --- images ---------------------------------------------------------------

  getImage(name: string): ImageRecord | undefined {
    const row = this.#db.prepare('SELECT * FROM images WHERE name = ?').get(name) as ImageRow | undefined;
    return row && toImage(row);
  }

  listImages(): ImageRecord[] {
    return (this.#db.prepare('SELECT * FROM images ORDER BY name').all() as unknown as ImageRow[]).map(toImage);
  }

  /** Creates or repoints an image; created_at stays that of the first record. */
  putImage(name: string, target: Descriptor, labels: Record<string, string> = {}): ImageRecord {
    const now = Date.now();
    this.#db
      .prepare(
        `INSERT INTO images (name, target, labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET target = excluded.target, labels = excluded.labels, updated_at = excluded.updated_at`,
      )
      .run(name, JSON.stringify(target), JSON.stringify(labels), now, now);
    return this.getImage(name) as ImageRecord;
  }

  deleteImage(name: string): void {
    const res = this.#db.prepare('DELETE FROM images WHERE name = ?').run(name);
    if (res.changes === 0) throw notFound(`No such image: ${name}`);
  }

  // --- leases ---------------------------------------------------------------

  createLease(id: string, ttlSeconds = 0, labels: Record<string, string> = {}): LeaseRecord {
    const now = Date.now();
    const expires = ttlSeconds > 0 ? now + ttlSeconds * 1000 : null;
    try {
      this.#db
        .prepare('INSERT INTO leases (id, created_at, expires_at, labels) VALUES (?, ?, ?, ?)')
        .run(id, now, expires, JSON.stringify(labels));
    } catch (err) {
      if (/UNIQUE/.test((err as Error).message)) throw alreadyExists(`lease ${id} already exists`);
      throw err;
    }
    return { id, createdAt: new Date(now), expiresAt: expires ? new Date(expires) : undefined, labels };
  }

  /** Removes the leases carrying a label: the service's own, left by operations a crash ended. */
  deleteLeasesLabelled(key: string, value: string): number {
    let n = 0;
    for (const row of this.#db.prepare('SELECT id, labels FROM leases').all() as { id: string; labels: string }[]) {
      if (JSON.parse(row.labels)[key] !== value) continue;
      this.deleteLease(row.id);
      n++;
    }
    return n;
  }

  deleteLease(id: string): void {
    this.#db.prepare('DELETE FROM leases WHERE id = ?').run(id);
  }

  addLeaseResource(lease: string, res: LeaseResource): void {
    this.#db
      .prepare('INSERT OR IGNORE INTO lease_resources (lease, kind, id) VALUES (?, ?, ?)')
      .run(lease, res.kind, res.id);
  }

  /** Drops expired leases; returns what the live ones hold. */
  leasedResources(now = Date.now()): LeaseResource[] {
    this.#db.prepare('DELETE FROM leases WHERE expires_at IS NOT NULL AND expires_at <= ?').run(now);
    return this.#db.prepare('SELECT kind, id FROM lease_resources').all() as unknown as LeaseResource[];
  }
}
