/**
 * `npm test` checks everything the suite needs before any test runs, and names all of what is
 * missing in one message with the line that installs it (test/global-setup.ts).
 */
import { missingPrerequisites } from '../helpers/prerequisites';

test('a machine without the programs: one message naming each, and the install line', async () => {
  const message = await missingPrerequisites({ PATH: '/nonexistent' });
  expect(message).toBeDefined();
  const [first, install] = message!.split('\n');
  expect(first).toMatch(/^npm test needs what is missing here: /);
  for (const program of ['curl', 'openssl', 'nginx', 'redis-server', 'promtool', 'kubectl'])
    expect(first).toContain(program);
  expect(install).toBe(
    'Install with: sudo apt-get install -y curl openssl nginx-light redis-server prometheus',
  );
  expect(message).toContain('kubectl: https://kubernetes.io/docs/tasks/tools/');
});

test('this machine has everything: no message', async () => {
  expect(await missingPrerequisites()).toBeUndefined();
});
