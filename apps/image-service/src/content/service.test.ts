/** The content store through image-service's socket, as ctrd runs it. */
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ContentService, WriteAction, type WriteContentResponse } from '@ctr/api/content/v1/content';
import { type ApiClient, readStream } from '@ctr/common/grpc';
import { TestEngine } from '@ctr/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let engine: TestEngine;
let content: ApiClient<typeof ContentService>;
beforeAll(async () => {
  engine = await TestEngine.start();
  content = engine.client(ContentService, 'image-service');
});
afterAll(async () => {
  await engine?.stop();
});

const blob = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7) % 256));
const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;

/** Sends the requests on one Write stream and collects the replies (or the error). */
async function ingest(reqs: Array<{ action: WriteAction; offset?: number; data?: Buffer; expected?: string }>) {
  const call = content.write();
  const replies: WriteContentResponse[] = [];
  const done = new Promise<void>((resolve, reject) => {
    call.on('data', (r: WriteContentResponse) => replies.push(r));
    call.on('end', resolve);
    call.on('error', reject);
  });
  for (const { action, offset = 0, data = Buffer.alloc(0), expected = digest } of reqs)
    call.write({
      action,
      ref: 'layer-x',
      total: BigInt(blob.length),
      expected,
      labels: {},
      lease: '',
      offset: BigInt(offset),
      data,
    });
  call.end();
  await done;
  return replies;
}

describe('content service', () => {
  it('resumes an ingest a dropped stream left, commits it verified, reads it back', async () => {
    await ingest([{ action: WriteAction.WRITE_ACTION_WRITE, offset: 0, data: blob.subarray(0, 70_000) }]);
    const { statuses } = await content.listStatuses({ filters: [] });
    expect(statuses).toEqual([expect.objectContaining({ ref: 'layer-x', offset: 70_000n, expected: digest })]);

    const replies = await ingest([
      { action: WriteAction.WRITE_ACTION_STAT },
      { action: WriteAction.WRITE_ACTION_WRITE, offset: 70_000, data: blob.subarray(70_000) },
      { action: WriteAction.WRITE_ACTION_COMMIT },
    ]);
    expect(replies[0]).toMatchObject({ action: WriteAction.WRITE_ACTION_STAT, offset: 70_000n });
    expect(replies[2]).toMatchObject({ action: WriteAction.WRITE_ACTION_COMMIT, digest });
    expect(await content.info({ digest })).toMatchObject({ digest, size: BigInt(blob.length) });
    const parts: Buffer[] = [];
    for await (const r of readStream(content.read({ digest, offset: 100n, size: 0n }))) parts.push(r.data);
    expect(Buffer.concat(parts)).toEqual(blob.subarray(100));
    expect((await content.listStatuses({ filters: [] })).statuses).toEqual([]);
    await expect(ingest([{ action: WriteAction.WRITE_ACTION_WRITE, offset: 0, data: blob }])).rejects.toThrow(
      /already exists/,
    );
    await content.delete({ digest });
    await expect(content.info({ digest })).rejects.toThrow(/does not exist/);
  });

  it('refuses a write out of order and a blob that does not match, keeping nothing', async () => {
    await expect(
      ingest([{ action: WriteAction.WRITE_ACTION_WRITE, offset: 5, data: blob.subarray(5, 10) }]),
    ).rejects.toThrow(/write at offset 5, but ingest layer-x is at 0/);
    const corrupt = Buffer.from(blob);
    corrupt[1000] ^= 0xff;
    await expect(
      ingest([
        { action: WriteAction.WRITE_ACTION_WRITE, offset: 0, data: corrupt },
        { action: WriteAction.WRITE_ACTION_COMMIT },
      ]),
    ).rejects.toThrow(/unexpected commit digest/);
    const list: string[] = [];
    for await (const r of readStream(content.list({ filters: [] }))) list.push(...r.info.map((i) => i.digest));
    expect(list).toEqual([]);
    await content.abort({ ref: 'layer-x' });
    expect(readdirSync(join(engine.root, 'content', 'ingest'))).toEqual([]);
  });
});
