/**
 * The content of a container's /etc/resolv.conf, /etc/hosts and
 * /etc/hostname, as docker writes them.
 */
import { readFileSync } from 'node:fs';
import type { DnsSettings } from './store.js';

export interface Resolv {
  nameservers: string[];
  search: string[];
  options: string[];
}

export function parseResolvConf(text: string): Resolv {
  const r: Resolv = { nameservers: [], search: [], options: [] };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, ...values] = line.split(/\s+/);
    if (key === 'nameserver' && values[0]) r.nameservers.push(values[0]);
    else if (key === 'search' || key === 'domain') r.search = values;
    else if (key === 'options') r.options.push(...values);
  }
  return r;
}

const isLoopbackResolver = (ip: string) => ip.startsWith('127.') || ip === '::1';

/** docker's fallback when the host has only a loopback resolver. */
export const DEFAULT_DNS = ['8.8.8.8', '8.8.4.4'];

/**
 * The host's resolvers as a container can use them: a loopback resolver
 * (systemd-resolved's 127.0.0.53) means nothing inside a network namespace,
 * so its upstream list is read instead, then docker's defaults.
 */
export function hostResolvers(files = ['/etc/resolv.conf', '/run/systemd/resolve/resolv.conf']): Resolv {
  let first: Resolv | undefined;
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    const r = parseResolvConf(text);
    first ??= r;
    const usable = r.nameservers.filter((ns) => !isLoopbackResolver(ns) && !ns.includes(':'));
    if (usable.length) return { ...r, nameservers: usable };
  }
  return { nameservers: DEFAULT_DNS, search: first?.search ?? [], options: first?.options ?? [] };
}

/** Upstreams our resolver forwards to from the host's namespace: loopback ones work there. */
export function hostUpstreams(file = '/etc/resolv.conf'): string[] {
  try {
    const r = parseResolvConf(readFileSync(file, 'utf8')).nameservers.filter((ns) => !ns.includes(':'));
    if (r.length) return r;
  } catch {}
  return DEFAULT_DNS;
}

export function renderResolvConf(opts: {
  nameservers: string[];
  search: string[];
  options: string[];
  comment?: string;
}): string {
  const lines: string[] = [];
  if (opts.comment) lines.push(`# ${opts.comment}`);
  if (opts.search.length) lines.push(`search ${opts.search.join(' ')}`);
  for (const ns of opts.nameservers) lines.push(`nameserver ${ns}`);
  if (opts.options.length) lines.push(`options ${opts.options.join(' ')}`);
  return `${lines.join('\n')}\n`;
}

/** The resolv.conf of a container: its own settings over the host's; `gateway` when our resolver serves its network. */
export function containerResolvConf(dns: DnsSettings, resolverAddress: string | undefined): string {
  const host = hostResolvers();
  const search = dns.search.length ? dns.search : host.search;
  const options = dns.options.length ? dns.options : host.options;
  if (resolverAddress) {
    const upstream = dns.servers.length ? dns.servers : host.nameservers;
    return renderResolvConf({
      nameservers: [resolverAddress],
      search,
      options,
      comment: `Served by ctr's resolver for the network; it forwards to ${upstream.join(', ')}`,
    });
  }
  return renderResolvConf({ nameservers: dns.servers.length ? dns.servers : host.nameservers, search, options });
}

export function renderHosts(opts: {
  hostname: string;
  domainname?: string;
  address?: string;
  extra: { hostname: string; ip: string }[];
}): string {
  const lines = [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::\tip6-localnet',
    'ff00::\tip6-mcastprefix',
    'ff02::1\tip6-allnodes',
    'ff02::2\tip6-allrouters',
  ];
  for (const e of opts.extra) lines.push(`${e.ip}\t${e.hostname}`);
  if (opts.address) {
    const names = opts.domainname ? `${opts.hostname}.${opts.domainname} ${opts.hostname}` : opts.hostname;
    lines.push(`${opts.address}\t${names}`);
  }
  return `${lines.join('\n')}\n`;
}
