// node bench/render.mjs [dir]: renders <dir>/benchmarks.md and .svg again from <dir>/benchmarks.json
// (default docs/), when the report's wording changes and the numbers need not be measured again.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderReport } from './report.mjs';

const dir = process.argv[2] ?? join(import.meta.dirname, '..', 'docs');
const { meta, variants } = JSON.parse(readFileSync(join(dir, 'benchmarks.json'), 'utf8'));
const { markdown, svg } = await renderReport(meta, variants);
writeFileSync(join(dir, 'benchmarks.md'), markdown);
writeFileSync(join(dir, 'benchmarks.svg'), svg);
