/**
 * The services' SQLite databases (node:sqlite): a write-ahead journal, foreign
 * keys, and transactions that take the write lock up front, so a kill -9
 * leaves each change whole or absent.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';

/**
 * Opens (creating its directory, 0700) the database at `path`. `synchronous`
 * is FULL when a committed change must survive a power cut, NORMAL when a kill
 * is all it must survive (WAL keeps every commit through a process crash).
 */
export function openDatabase(path: string, synchronous: 'FULL' | 'NORMAL'): DatabaseSync {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const db = new DatabaseSync(path);
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${synchronous}; PRAGMA foreign_keys = ON;`);
  return db;
}

/** Runs `fn` in one transaction (BEGIN IMMEDIATE: the write lock is taken up front). */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE');
  try {
    const out = fn();
    db.exec('COMMIT');
    return out;
  } catch (err) {
    db.exec('ROLLBACK');
    throw err;
  }
}
