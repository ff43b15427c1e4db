/**
 * Names of host objects, derived from the instance name so that two engines on
 * one host never touch each other's bridges, chains, cgroups or subjects.
 */
import { createHash } from 'node:crypto';
import { invalidArgument } from './errors.js';

// Short enough that `ctr-<instance>0` fits IFNAMSIZ (15) and chain names stay under 28.
const INSTANCE_RE = /^[a-z][a-z0-9]{0,9}$/;

export function validateInstance(instance: string): string {
  if (!INSTANCE_RE.test(instance)) {
    throw invalidArgument(
      `invalid instance name ${JSON.stringify(instance)}: use 1-10 lowercase letters and digits, starting with a letter`,
    );
  }
  return instance;
}

// docker's container-name rule; ids (64 hex) pass it too. Safe as a file and cgroup name.
const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

/** An id that becomes part of paths (shim dirs, exit files, cgroups): no slashes, no dot-dot. */
export function validateId(id: string, what = 'id'): string {
  if (!ID_RE.test(id)) {
    throw invalidArgument(`invalid ${what} ${JSON.stringify(id)}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
  }
  return id;
}

/** NATS subject of a topic: ctr.<instance>.events.<topic>. */
export const eventSubject = (instance: string, topic: string) => `ctr.${instance}.events.${topic}`;
export const eventSubjectAll = (instance: string) => `ctr.${instance}.events.>`;
/** JetStream stream that keeps an instance's events. */
export const eventStream = (instance: string) => `CTR_${instance.toUpperCase()}_EVENTS`;

/** Prefix of every iptables chain the instance owns. */
export const chainPrefix = (instance: string) => `CTR-${instance.toUpperCase()}`;
/** cgroup parent directory of the instance's containers. */
export const cgroupParent = (instance: string) => `ctr-${instance}`;
/** The default bridge. */
export const bridgeName = (instance: string) => `ctr-${instance}0`;
/**
 * Prefix of host-side links (veths) of the instance: `ctr` + 4 hex of the
 * instance, leaving 8 characters for the endpoint.
 */
export const linkPrefix = (instance: string) => `ctr${createHash('sha256').update(instance).digest('hex').slice(0, 4)}`;
