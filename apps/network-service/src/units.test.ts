/** Pure parts of the network-service: address math, the DNS codec, rule rendering, resolv.conf and hosts. */
import { describe, expect, it } from 'vitest';
import { answer, parseQuestion } from './dns.js';
import { Iptables } from './iptables.js';
import { formatIp, macForIp, parseIp, Subnet } from './ipv4.js';
import { containerResolvConf, parseResolvConf, renderHosts } from './names.js';

function query(name: string, type = 1): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const head = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([head, ...labels, Buffer.from([0, 0, type, 0, 1])]);
}

describe('ipv4', () => {
  it('parses, formats and compares subnets', () => {
    expect(formatIp(parseIp('100.64.1.2'))).toBe('100.64.1.2');
    expect(() => parseIp('100.64.1.256')).toThrow('invalid IP address');
    expect(() => parseIp('01.2.3.4')).toThrow('invalid IP address');
    const s = Subnet.parse('100.64.1.0/24');
    expect([formatIp(s.firstHost), formatIp(s.lastHost), s.size]).toEqual(['100.64.1.1', '100.64.1.254', 256]);
    expect(s.overlaps(Subnet.parse('100.64.0.0/16'))).toBe(true);
    expect(s.overlaps(Subnet.parse('100.64.2.0/24'))).toBe(false);
    expect(() => Subnet.parse('100.64.1.5/24')).toThrow('it should be 100.64.1.0/24');
    expect(() => Subnet.parse('100.64.1.0')).toThrow('invalid subnet');
    expect(macForIp(parseIp('100.64.1.2'))).toBe('02:42:64:40:01:02');
  });
});

describe('dns codec', () => {
  it('reads a question and answers it with A records', () => {
    const q = query('Web.example');
    const parsed = parseQuestion(q);
    expect(parsed).toMatchObject({ name: 'web.example', type: 1, qclass: 1 });
    const a = answer(q, parsed!, ['100.64.1.2', '100.64.1.3']);
    expect(a.readUInt16BE(0)).toBe(0x1234);
    expect(a.readUInt16BE(2) & 0x8000).toBe(0x8000);
    expect(a.readUInt16BE(2) & 0x000f).toBe(0);
    expect(a.readUInt16BE(6)).toBe(2);
    expect([...a.subarray(a.length - 4)]).toEqual([100, 64, 1, 3]);
    expect(answer(q, parsed!, [], 2).readUInt16BE(2) & 0x000f).toBe(2);
  });

  it('ignores malformed queries', () => {
    expect(parseQuestion(Buffer.alloc(5))).toBeUndefined();
    const bad = query('a.b');
    bad[12] = 60;
    expect(parseQuestion(bad)).toBeUndefined();
  });
});

describe('iptables rules', () => {
  const net = {
    name: 'app',
    bridge: 'ctrab12bdeadbee',
    subnet: '100.64.1.0/24',
    gateway: '100.64.1.1',
    internal: false,
    dns: true,
  };
  const ipt = new Iptables('t1');

  it('owns chains named from the instance, every rule with its owner', () => {
    const r = ipt.render([net], []);
    expect(Object.values(ipt.chains)).toEqual([
      'CTR-T1-RAW',
      'CTR-T1-DNAT',
      'CTR-T1-DNATL',
      'CTR-T1-POST',
      'CTR-T1-FWD',
      'CTR-T1-IN',
    ]);
    for (const rule of [...r.raw, ...r.nat, ...r.filter]) expect(rule).toContain('--comment "ctr:t1 network app"');
    expect(r.nat).toContain(
      '-A CTR-T1-POST -s 100.64.1.0/24 ! -o ctrab12bdeadbee -m comment --comment "ctr:t1 network app" -j MASQUERADE',
    );
    expect(r.raw[0]).toContain('-d 100.64.1.0/24 ! -i ctrab12bdeadbee');
  });

  it('DNATs loopback publications from OUTPUT only, others from both', () => {
    const r = ipt.render(
      [net],
      [
        {
          endpoint: 'e'.repeat(64),
          network: net,
          ip: '100.64.1.2',
          ports: [
            { protocol: 'tcp', containerPort: 80, hostPort: 8080, hostIp: '0.0.0.0' },
            { protocol: 'udp', containerPort: 53, hostPort: 5353, hostIp: '127.0.0.1' },
            { protocol: 'tcp', containerPort: 443, hostPort: 8443, hostIp: '100.100.0.1' },
          ],
        },
      ],
    );
    const dnat = r.nat.filter((l) => l.includes('DNAT --to'));
    expect(dnat[0]).toMatch(/^-A CTR-T1-DNAT -p tcp -m tcp --dport 8080 .* -j DNAT --to-destination 100.64.1.2:80$/);
    expect(dnat[1]).toMatch(/^-A CTR-T1-DNATL -d 127.0.0.1\/32 -p udp -m udp --dport 5353 .*100.64.1.2:53$/);
    expect(dnat[2]).toMatch(/^-A CTR-T1-DNAT -d 100.100.0.1\/32 -p tcp/);
  });

  it('an internal network does not masquerade and drops what leaves', () => {
    const r = ipt.render([{ ...net, internal: true }], []);
    expect(r.nat.some((l) => l.includes('! -o ctrab12bdeadbee') && l.includes('MASQUERADE'))).toBe(false);
    expect(r.filter).toContain(
      '-A CTR-T1-FWD -i ctrab12bdeadbee ! -o ctrab12bdeadbee -m comment --comment "ctr:t1 network app" -j DROP',
    );
  });
});

describe('names', () => {
  it('parses resolv.conf and renders a container one', () => {
    const r = parseResolvConf(
      '# c\nnameserver 1.1.1.1\nnameserver 127.0.0.53\nsearch a.example b.example\noptions ndots:2 edns0\n',
    );
    expect(r).toEqual({
      nameservers: ['1.1.1.1', '127.0.0.53'],
      search: ['a.example', 'b.example'],
      options: ['ndots:2', 'edns0'],
    });
    expect(containerResolvConf({ servers: ['100.64.53.53'], search: ['x.example'], options: [] }, undefined)).toMatch(
      /^search x\.example\nnameserver 100\.64\.53\.53\n/,
    );
    const served = containerResolvConf({ servers: [], search: [], options: [] }, '100.64.1.1');
    expect(served).toContain('nameserver 100.64.1.1\n');
    expect(served.split('\n').filter((l) => l.startsWith('nameserver'))).toHaveLength(1);
  });

  it('renders hosts like docker', () => {
    const h = renderHosts({
      hostname: 'web',
      domainname: 'example',
      address: '100.64.1.2',
      extra: [{ hostname: 'db', ip: '100.64.1.9' }],
    });
    expect(h.split('\n')[0]).toBe('127.0.0.1\tlocalhost');
    expect(h).toContain('100.64.1.9\tdb\n');
    expect(h.endsWith('100.64.1.2\tweb.example web\n')).toBe(true);
  });
});
