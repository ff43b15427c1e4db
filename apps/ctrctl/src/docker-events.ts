/** ctr's event envelopes as docker shows events: Type, Action, Actor, time. */
import type { Envelope } from '@ctr/api/events/v1/events';

export interface DockerEvent {
  status?: string;
  id?: string;
  from?: string;
  Type: string;
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  scope: 'local';
  time: number;
  timeNano: bigint;
  /** The ctr topic it came from (an extra field). */
  topic: string;
}

/** topic → docker's [Type, Action]. */
const ACTIONS: Record<string, [string, string]> = {
  'image.pulled': ['image', 'pull'],
  'image.pushed': ['image', 'push'],
  'image.tagged': ['image', 'tag'],
  'image.deleted': ['image', 'delete'],
  'image.imported': ['image', 'import'],
  'image.loaded': ['image', 'load'],
  'image.saved': ['image', 'save'],
  'content.deleted': ['content', 'delete'],
  'snapshot.prepared': ['snapshot', 'prepare'],
  'snapshot.committed': ['snapshot', 'commit'],
  'snapshot.removed': ['snapshot', 'remove'],
  'network.created': ['network', 'create'],
  'network.removed': ['network', 'destroy'],
  'network.attached': ['network', 'connect'],
  'network.detached': ['network', 'disconnect'],
  'container.created': ['container', 'create'],
  'container.updated': ['container', 'update'],
  'container.renamed': ['container', 'rename'],
  'container.deleted': ['container', 'destroy'],
  'container.committed': ['container', 'commit'],
  'task.created': ['container', 'init'],
  'task.started': ['container', 'start'],
  'task.exited': ['container', 'die'],
  'task.oom': ['container', 'oom'],
  'task.paused': ['container', 'pause'],
  'task.resumed': ['container', 'unpause'],
  'task.killed': ['container', 'kill'],
  'task.stopped': ['container', 'stop'],
  'task.restarted': ['container', 'restart'],
  'task.exec_added': ['container', 'exec_create'],
  'task.exec_started': ['container', 'exec_start'],
  'task.attached': ['container', 'attach'],
  'volume.created': ['volume', 'create'],
  'volume.removed': ['volume', 'destroy'],
  'service.started': ['service', 'start'],
  'service.exited': ['service', 'die'],
  'service.restarted': ['service', 'restart'],
};

/** Which payload field is the actor's id, per type. */
const ID_FIELDS = ['containerId', 'networkId', 'id', 'name', 'key', 'digest'];
const RENAME: Record<string, string> = { exitStatus: 'exitCode', containerId: 'container', networkName: 'name' };

export function toDockerEvent(env: Envelope): DockerEvent {
  const [type, baseAction] = ACTIONS[env.topic] ?? [env.topic.split('.')[0], env.topic.split('.').slice(1).join('.')];
  const value = (env.event?.value ?? {}) as unknown as Record<string, unknown>;
  let action = baseAction;
  if (env.topic === 'task.exited' && value.execId) action = 'exec_die';
  const idField = ID_FIELDS.find((f) => typeof value[f] === 'string' && value[f] !== '');
  const id = idField ? String(value[idField]) : '';
  const attributes: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (k === idField || v === undefined || v === null || v === '' || typeof v === 'object') continue;
    attributes[RENAME[k] ?? k] = String(v);
  }
  const ms = env.timestamp?.getTime() ?? 0;
  const timeNano = BigInt(ms) * 1_000_000n;
  const event: DockerEvent = {
    Type: type,
    Action: action,
    Actor: { ID: id, Attributes: attributes },
    scope: 'local',
    time: Math.floor(ms / 1000),
    timeNano,
    topic: env.topic,
  };
  if (type === 'container') {
    event.status = action;
    event.id = id;
    if (attributes.image) event.from = attributes.image;
  }
  return event;
}

/**
 * Gives container events the `name` and `image` docker always shows: learned
 * from the container's create (and rename) events in the same stream, or
 * asked of container-service once per container for a live stream that
 * started later. Task events come from the shim, which knows only the id.
 */
export class ContainerAttributes {
  readonly #known = new Map<string, { name: string; image: string }>();
  constructor(private readonly lookup?: (id: string) => Promise<{ name: string; image: string } | undefined>) {}

  async enrich(e: DockerEvent): Promise<DockerEvent> {
    const id = e.Actor.ID;
    if (e.Type !== 'container' || !id) return e;
    const a = e.Actor.Attributes;
    if (a.name && (e.topic === 'container.created' || e.topic === 'container.renamed'))
      this.#known.set(id, { name: a.name, image: a.image ?? this.#known.get(id)?.image ?? '' });
    let k = this.#known.get(id);
    if (!k && this.lookup) {
      k = await this.lookup(id).catch(() => undefined);
      this.#known.set(id, k ?? { name: '', image: '' });
    }
    if (k?.name && !a.name) a.name = k.name;
    if (k?.image && !a.image) a.image = k.image;
    if (a.image) e.from = a.image;
    return e;
  }
}

/** docker's line: `2024-01-02T03:04:05.123456789Z container start ID (image=x, name=y)`. */
export function formatDockerEvent(e: DockerEvent): string {
  const iso = new Date(Number(e.timeNano / 1_000_000n)).toISOString();
  const nanos = String(e.timeNano % 1_000_000_000n).padStart(9, '0');
  const time = `${iso.slice(0, 19)}.${nanos}Z`;
  const attrs = Object.entries(e.Actor.Attributes)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  return `${time} ${e.Type} ${e.Action} ${e.Actor.ID}${attrs ? ` (${attrs})` : ''}`;
}

/**
 * docker's --filter for events: keys type, event, container, image, network,
 * volume, service, label; the same key ORs, different keys AND.
 */
export function eventFilter(filters: string[]): (e: DockerEvent) => boolean {
  const byKey = new Map<string, string[]>();
  for (const f of filters) {
    const eq = f.indexOf('=');
    if (eq <= 0) throw new Error(`bad format of filter (expected name=value): ${f}`);
    const key = f.slice(0, eq);
    if (!['type', 'event', 'container', 'image', 'network', 'volume', 'service', 'label'].includes(key)) {
      throw new Error(`invalid filter '${key}'`);
    }
    byKey.set(key, [...(byKey.get(key) ?? []), f.slice(eq + 1)]);
  }
  return (e) => {
    for (const [key, values] of byKey) {
      const ok = values.some((v) => {
        switch (key) {
          case 'type':
            return e.Type === v;
          case 'event':
            return e.Action === v;
          case 'label': {
            const [lk, lv] = v.split('=');
            return lv === undefined ? lk in e.Actor.Attributes : e.Actor.Attributes[lk] === lv;
          }
          case 'image':
            return e.Actor.Attributes.image === v || (e.Type === 'image' && e.Actor.ID === v);
          default:
            return (
              (e.Type === key || (key === 'container' && e.Actor.Attributes.container !== undefined)) &&
              (e.Actor.ID === v ||
                e.Actor.ID.startsWith(v) ||
                e.Actor.Attributes.name === v ||
                e.Actor.Attributes.container === v)
            );
        }
      });
      if (!ok) return false;
    }
    return true;
  };
}

/** --since/--until: RFC 3339, unix seconds (with fraction), or a duration back from now (10m, 1h30m). */
export function parseTime(value: string, now = Date.now()): Date {
  if (/^\d+(\.\d+)?$/.test(value)) return new Date(Number(value) * 1000);
  const dur = /^((\d+(\.\d+)?)(ns|us|µs|ms|s|m|h))+$/.test(value);
  if (dur) {
    const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
    let ms = 0;
    for (const m of value.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) ms += Number(m[1]) * unit[m[2]];
    return new Date(now - ms);
  }
  const d = new Date(value);
  if (Number.isNaN(d.getTime()))
    throw new Error(`invalid time ${JSON.stringify(value)}: use RFC 3339, unix seconds, or a duration like 10m`);
  return d;
}
