import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MINIMUM_NODE, satisfiesMinimum } from '../../src/kernel/node-version';

const ROOT = join(__dirname, '../..');
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');

test('the minimum is compared part by part', () => {
  expect(satisfiesMinimum('20.19.0')).toBe(true);
  expect(satisfiesMinimum('v20.20.2')).toBe(true);
  expect(satisfiesMinimum('22.0.0')).toBe(true);
  expect(satisfiesMinimum('20.18.3')).toBe(false);
  expect(satisfiesMinimum('18.20.8')).toBe(false);
  expect(satisfiesMinimum('20.9.0')).toBe(false); // not a string comparison
});

test('one Node.js version everywhere: engines, README, Dockerfile, and the Node running this', () => {
  const pkg = JSON.parse(read('package.json')) as { engines: { node: string } };
  expect(pkg.engines.node).toBe(`>=${MINIMUM_NODE}`);
  const readme = read('README.md');
  expect(readme).toContain(`Node.js ${MINIMUM_NODE} or newer`);
  expect(readme).not.toMatch(/Node(\.js)? (18|20|22)(\+| or newer)/);
  const image = /^ARG NODE_IMAGE=node:(\d+)[-\w]*$/m.exec(read('Dockerfile'));
  expect(image).not.toBeNull();
  expect(satisfiesMinimum(`${image![1]}.0.0`)).toBe(true);
  expect(read('Dockerfile')).toContain(`Node.js >= ${MINIMUM_NODE}`);
  expect(satisfiesMinimum(process.versions.node)).toBe(true);
});
