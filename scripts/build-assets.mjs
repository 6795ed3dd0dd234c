// Files the built relay serves besides its code, made at build time so that the running relay
// needs neither tus-js-client nor a markdown renderer among its production dependencies.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { marked } from 'marked';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const require = createRequire(import.meta.url);

// The upload page's tus client (GET /vendor/tus.min.js), with its licence beside it.
const tus = dirname(require.resolve('tus-js-client/package.json'));
mkdirSync(join(dist, 'vendor'), { recursive: true });
copyFileSync(join(tus, 'dist', 'tus.min.js'), join(dist, 'vendor', 'tus.min.js'));
copyFileSync(join(tus, 'LICENSE'), join(dist, 'vendor', 'tus-js-client.LICENSE'));

// The error catalogue (GET /docs/errors), where every problem's `type` points: one anchor per code.
const markdown = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');
const body = marked
  .parse(markdown, { async: false })
  .replace(
    /<tr>\s*<td><code>([a-z_]+)<\/code><\/td>/g,
    '<tr id="$1"><td><a href="#$1"><code>$1</code></a></td>',
  );
mkdirSync(join(dist, 'docs'), { recursive: true });
writeFileSync(
  join(dist, 'docs', 'errors.html'),
  `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8" />
<meta name="viewport" content="width=device-width, initial-scale=1" />
<title>Errors · api.video upload relay</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #1d1d2c; line-height: 1.5; }
table { border-collapse: collapse; font-size: 0.95rem; }
th, td { border: 1px solid #e6e6ef; padding: 6px 10px; text-align: left; vertical-align: top; }
tr:target { background: #fff6f3; outline: 2px solid #fa5b30; }
pre { background: #f6f6fb; padding: 12px; overflow-x: auto; }
a { color: #c23f16; }
</style>
</head>
<body>
${body}</body>
</html>
`,
);
