/** The events' types and topics, apart from any NATS client (the shim publishes with its own). */
import { randomUUID } from 'node:crypto';
import { Envelope } from '@ctr/api/events/v1/events';

export { Envelope };

/** The union of every event: `{ $case: 'taskExited', value: TaskExited } | ...`. */
export type Event = NonNullable<Envelope['event']>;
export type EventCase = Event['$case'];
export type EventOf<C extends EventCase> = Extract<Event, { $case: C }>['value'];

/** `taskExited` → `task.exited`, `taskExecStarted` → `task.exec_started`. */
export function topicOf(eventCase: string): string {
  const snake = eventCase.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  return snake.replace('_', '.');
}

/** True when a NATS-style filter (`task.*`, `container.>`, `task.exited`) matches a topic. */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('.');
  const t = topic.split('.');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '>') return t.length > i;
    if (i >= t.length || (f[i] !== '*' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

/** A new event's envelope, stamped with its id, time, instance and publishing process. */
export function newEnvelope<C extends EventCase>(
  instance: string,
  source: string,
  eventCase: C,
  value: EventOf<C>,
): Envelope {
  return {
    id: randomUUID(),
    timestamp: new Date(),
    instance,
    source,
    topic: topicOf(eventCase),
    event: { $case: eventCase, value } as Event,
  };
}
