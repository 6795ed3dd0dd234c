import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_TABLE, PROBLEM_TYPE_BASE, RelayError, toProblem } from '../../src/kernel/errors';

const doc = readFileSync(join(__dirname, '../../docs/errors.md'), 'utf8');
const rows = [...doc.matchAll(/^\|\s*`([a-z_]+)`\s*\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|/gm)].map(
  (m) => ({
    code: m[1],
    status: Number(m[2]),
    title: m[3]!.trim(),
  }),
);

test('docs/errors.md lists exactly the codes of src/kernel/errors.ts, with their status and title', () => {
  const table = Object.entries(ERROR_TABLE).map(([code, { status, title }]) => ({
    code,
    status,
    title,
  }));
  expect(rows).toEqual(table);
});

test('codes are snake_case and a problem links to its row', () => {
  for (const code of Object.keys(ERROR_TABLE)) expect(code).toMatch(/^[a-z]+(_[a-z]+)*$/);
  const problem = toProblem(new RelayError('empty_file', 'no bytes'), 'req-1');
  expect(problem).toEqual({
    type: `${PROBLEM_TYPE_BASE}empty_file`,
    title: 'The file is empty',
    status: 400,
    detail: 'no bytes',
    code: 'empty_file',
    requestId: 'req-1',
  });
});
