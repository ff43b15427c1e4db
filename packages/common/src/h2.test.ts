import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Http2Server, type ServerHttp2Stream, constants } from 'node:http2';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { H2Error, type H2Headers, H2Session, type H2Stream, HpackDecoder } from './h2.js';

// Our HTTP/2 client against node:http2's server (nghttp2, as grpc-js's servers run on it).
let dir: string;
let server: Http2Server | undefined;
let sock: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ctr-h2-'));
  sock = join(dir, 's.sock');
});

afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

async function serve(handler: (stream: ServerHttp2Stream, headers: Record<string, unknown>) => void) {
  server = createServer();
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined); // a reset stream's, on the server's side
    handler(stream, headers as Record<string, unknown>);
  });
  await new Promise<void>((r) => server?.listen(sock, r));
}

interface Result {
  headers?: H2Headers;
  trailers?: H2Headers;
  body: Buffer;
  error?: H2Error;
  reset?: number;
}

function exchange(stream: H2Stream): Promise<Result> {
  return new Promise((resolve) => {
    const r: Result = { body: Buffer.alloc(0) };
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (r.headers = h));
    stream.on('trailers', (h) => (r.trailers = h));
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('error', (e: H2Error) => (r.error = e));
    stream.on('reset', (code: number) => (r.reset = code));
    stream.on('close', () => {
      r.body = Buffer.concat(chunks);
      resolve(r);
    });
  });
}

describe('HpackDecoder', () => {
  it("decodes RFC 7541's Huffman examples, and refuses padding that is not EOS's prefix and EOS itself", () => {
    // C.4.1 to C.4.3, one connection's requests: :authority www.example.com, cache-control: no-cache, then
    // custom-key: custom-value, all Huffman-coded (and indexed from the dynamic table when they come again).
    const d = new HpackDecoder();
    expect(d.decode(Buffer.from('828684418cf1e3c2e5f23a6ba0ab90f4ff', 'hex'))).toEqual([
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', '/'],
      [':authority', 'www.example.com'],
    ]);
    expect(d.decode(Buffer.from('828684be5886a8eb10649cbf', 'hex'))).toContainEqual(['cache-control', 'no-cache']);
    expect(d.decode(Buffer.from('828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf', 'hex'))).toContainEqual([
      'custom-key',
      'custom-value',
    ]);
    const literal = (huffman: string) =>
      Buffer.concat([Buffer.from([0x00, 0x01, 0x61, 0x80 | (huffman.length / 2)]), Buffer.from(huffman, 'hex')]);
    expect(new HpackDecoder().decode(literal('07'))).toEqual([['a', '0']]); // '0' is 00000, then 111 of padding
    expect(() => new HpackDecoder().decode(literal('00'))).toThrow('bad Huffman padding'); // padding of zeros
    expect(() => new HpackDecoder().decode(literal('1fff'))).toThrow('bad Huffman padding'); // 11 bits of padding
    expect(() => new HpackDecoder().decode(literal('fffffffc'))).toThrow('EOS in a string'); // EOS: 30 ones
  });
});

describe('H2Session', () => {
  it('decodes what nghttp2 encodes: static and dynamic tables, Huffman, every byte a value may hold', async () => {
    // Values of every byte a header may carry, some repeated (indexed from the dynamic table the second time).
    const all = Buffer.from([9, ...Array.from({ length: 95 }, (_, i) => 0x20 + i)])
      .toString('latin1')
      .trim();
    await serve((stream, headers) => {
      stream.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc',
          'x-echo': String(headers['x-value']),
          'x-all': all,
          'x-many': ['one', 'two'],
        },
        { waitForTrailers: true },
      );
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'fine%20here' }));
      stream.end(Buffer.from(`body of ${headers[':path']}`));
    });
    const session = new H2Session(connect(sock));
    for (let i = 0; i < 20; i++) {
      const value = randomBytes(1 + (i % 7) * 10).toString('base64');
      const stream = session.request({ ':method': 'POST', ':path': `/p/${i}`, 'x-value': value });
      stream.end();
      const r = await exchange(stream);
      expect(r.error).toBeUndefined();
      expect(r.headers?.[':status']).toBe('200');
      expect(r.headers?.['x-echo']).toBe(value);
      expect(r.headers?.['x-all']).toBe(all);
      expect(r.headers?.['x-many']).toEqual(['one', 'two']);
      expect(r.trailers?.['grpc-message']).toBe('fine%20here');
      expect(r.body.toString()).toBe(`body of /p/${i}`);
    }
    session.close();
  });

  it('moves large bodies both ways within the flow-control windows, and holds data while paused', async () => {
    const big = randomBytes(5 * 1024 * 1024 + 123);
    await serve((stream, headers) => {
      if (headers[':path'] === '/down') {
        stream.respond({ ':status': 200 });
        stream.end(big);
        return;
      }
      const hash = createHash('sha256');
      let n = 0;
      stream.on('data', (d: Buffer) => {
        hash.update(d);
        n += d.length;
      });
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end(`${n} ${hash.digest('hex')}`);
      });
    });
    const session = new H2Session(connect(sock));
    const down = session.request({ ':method': 'GET', ':path': '/down' });
    down.end();
    down.pause();
    setTimeout(() => down.resume(), 200);
    const got = await exchange(down);
    expect(got.body.equals(big)).toBe(true);

    const up = session.request({ ':method': 'POST', ':path': '/up' });
    let written = false;
    up.write(big, () => (written = true));
    up.end();
    const r = await exchange(up);
    expect(written).toBe(true);
    expect(r.body.toString()).toBe(`${big.length} ${createHash('sha256').update(big).digest('hex')}`);
    session.close();
  });

  it('ends a stream the server resets, and the session goes on', async () => {
    await serve((stream, headers) => {
      if (headers[':path'] === '/reset') stream.close(constants.NGHTTP2_REFUSED_STREAM);
      else {
        stream.respond({ ':status': 200 });
        stream.end('ok');
      }
    });
    const session = new H2Session(connect(sock));
    const s = session.request({ ':method': 'POST', ':path': '/reset' });
    s.end();
    const r = await exchange(s);
    expect(r.reset).toBe(constants.NGHTTP2_REFUSED_STREAM);
    const ok = session.request({ ':method': 'POST', ':path': '/ok' });
    ok.end();
    expect((await exchange(ok)).body.toString()).toBe('ok');
    session.close();
  });

  it('fails its streams with the socket error when nobody listens', async () => {
    const session = new H2Session(connect(join(dir, 'nobody.sock')));
    session.on('error', () => undefined);
    const s = session.request({ ':method': 'POST', ':path': '/x' });
    s.end();
    const r = await exchange(s);
    expect(r.error?.code).toBe('ENOENT');
    expect(session.destroyed).toBe(true);
  });

  it('fails the streams in flight when the server goes away', async () => {
    await serve((stream) => {
      stream.respond({ ':status': 200 });
      stream.write('partial');
      setTimeout(() => stream.session?.destroy(), 50);
    });
    const session = new H2Session(connect(sock));
    session.on('error', () => undefined);
    const s = session.request({ ':method': 'POST', ':path': '/x' });
    s.end();
    const r = await exchange(s);
    expect(r.body.toString()).toBe('partial');
    expect(r.error).toBeInstanceOf(H2Error);
  });
});
