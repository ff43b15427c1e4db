import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { layout, loadConfig } from './config.js';
import { isKind } from './errors.js';

const dir = mkdtempSync(join(tmpdir(), 'ctr-config-'));
const file = (name: string, content: unknown) => {
  const p = join(dir, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
};
const missing = join(dir, 'missing.json');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('configuration', () => {
  it('has a default for every value', () => {
    const c = loadConfig({ config: undefined }, { CTR_CONFIG: undefined });
    expect(c.root).toBe('/var/lib/ctr');
    expect(c.state).toBe('/run/ctr');
    expect(c.instance).toBe('default');
    expect(c.events.url).toBe('');
  });

  it('applies defaults, then the file, then env, then flags', () => {
    const f = file('c.json', {
      root: '/file/root',
      state: '/file/state',
      instance: 'fromfile',
      events: { url: 'nats://file:1' },
    });
    const env = { CTR_CONFIG: f, CTR_STATE: '/env/state', CTR_INSTANCE: 'fromenv' };
    const c = loadConfig({ instance: 'fromflag' }, env);
    expect(c.root).toBe('/file/root');
    expect(c.state).toBe('/env/state');
    expect(c.instance).toBe('fromflag');
    expect(c.events.url).toBe('nats://file:1');
    expect(c.events.maxAgeSeconds).toBeGreaterThan(0);
    expect(c.configFile).toBe(f);
  });

  it('ignores a missing default file but refuses a missing named one', () => {
    expect(() => loadConfig({ config: missing }, {})).toThrow(/cannot read config file/);
  });

  it('refuses unknown keys, wrong types and bad JSON with the key named', () => {
    expect(() => loadConfig({ config: file('u.json', { rot: '/x' }) }, {})).toThrow(/unknown key rot/);
    expect(() => loadConfig({ config: file('t.json', { events: { url: 3 } }) }, {})).toThrow(
      /events.url must be of type string/,
    );
    expect(() => loadConfig({ config: file('b.json', '{nope') }, {})).toThrow(/not a JSON object/);
  });

  it('validates the instance name and absolute paths', () => {
    let err: unknown;
    try {
      loadConfig({ instance: 'Bad.Name', config: missing.replace('missing', 'none') }, { CTR_CONFIG: undefined });
    } catch (e) {
      err = e;
    }
    expect(isKind(err, 'InvalidArgument')).toBe(true);
    expect(() => loadConfig({ root: 'relative' }, { CTR_CONFIG: file('e.json', {}) })).toThrow(/absolute/);
    expect(() => loadConfig({ instance: 'waytoolonginstance' }, { CTR_CONFIG: file('e2.json', {}) })).toThrow(
      /instance/,
    );
  });

  it('lays out sockets and records under the state dir', () => {
    const l = layout({ root: '/r', state: '/s' });
    expect(l.supervisorSocket).toBe('/s/ctrd.sock');
    expect(l.serviceSocket('snapshotter')).toBe('/s/snapshotter.sock');
    expect(l.logFile('ctrd')).toBe('/r/logs/ctrd.log');
  });
});
