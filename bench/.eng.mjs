import { TestEngine, TestRegistry, buildBusyboxImage, pushLayout } from '@ctr/testkit';
import { writeFileSync } from 'node:fs';
const registry = await TestRegistry.start();
const engine = await TestEngine.start();
const layout = await buildBusyboxImage('/tmp/ctr-devimg', '1');
const image = `${registry.host}/busybox:1`;
await pushLayout(layout.dir, '1', image);
const env = engine.env;
const lines = [
  'CTR_ROOT',
  'CTR_STATE',
  'CTR_INSTANCE',
  'CTR_CONFIG',
  'CTR_DEFAULT_SUBNET',
  'CTR_NETWORK_POOL',
  'DOCKER_CONFIG',
].map((k) => `export ${k}=${env[k]}`);
lines.push(`export IMG=${image}`);
writeFileSync('/tmp/eng.env', lines.join('\n') + '\n');
console.log('ready');
const stop = async () => {
  await engine.stop().catch((e) => console.error(e));
  await registry.stop();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setInterval(() => {}, 1e9);
