/**
 * Every relative link of the Markdown documentation points at a file that exists, and every
 * `#anchor` at a heading that exists, by GitHub's rules. Links into src/ are checked like any
 * other: a file that moves takes its links with it.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';

const ROOT = join(__dirname, '../..');
const DOCS = [
  'README.md',
  'CONTRIBUTING.md',
  'CHANGELOG.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`),
];

/** Blanks text out, keeping its line breaks (so that line numbers stay true). */
const blank = (text: string) => text.replace(/[^\n]/g, ' ');

/** The text without fenced code blocks and inline code: a link there is an example, not a link. */
function prose(markdown: string): string {
  return markdown
    .replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, blank)
    .replace(/(`+)[\s\S]*?\1/g, blank);
}

/** GitHub's anchor for a heading: lower-case, punctuation dropped, spaces to `-`, repeats numbered. */
function anchorsOf(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  const withoutFences = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
  for (const [, heading] of withoutFences.matchAll(/^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$/gm)) {
    const text = heading!
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link's text, not its target
      .replace(/<[^>]+>/g, '') // HTML tags
      .replace(/[*`]/g, ''); // emphasis and code marks
    const base = text
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
      .replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

interface Link {
  file: string;
  line: number;
  target: string;
}

function linksOf(file: string): Link[] {
  const lines = prose(readFileSync(join(ROOT, file), 'utf8')).split('\n');
  const links: Link[] = [];
  lines.forEach((text, i) => {
    // [text](target) and ![alt](target), with an optional "title"; <…> autolinks are absolute.
    for (const m of text.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g))
      links.push({ file, line: i + 1, target: m[1]! });
    // Reference definitions: [name]: target
    const ref = /^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/.exec(text);
    if (ref) links.push({ file, line: i + 1, target: ref[1]! });
  });
  return links.filter((l) => !/^[a-z][a-z0-9+.-]*:/i.test(l.target)); // http:, https:, mailto:…
}

const anchorCache = new Map<string, Set<string>>();
function anchorsIn(path: string): Set<string> {
  let anchors = anchorCache.get(path);
  if (!anchors) {
    anchors = anchorsOf(readFileSync(path, 'utf8'));
    anchorCache.set(path, anchors);
  }
  return anchors;
}

/** What is wrong with a link, or undefined when it resolves. */
function broken(link: Link): string | undefined {
  const [rawPath, anchor] = link.target.split('#', 2) as [string, string | undefined];
  const path = decodeURIComponent(rawPath);
  if (path.startsWith('/'))
    return 'a root-relative link does not resolve on GitHub and locally alike';
  const resolved = path === '' ? join(ROOT, link.file) : join(ROOT, dirname(link.file), path);
  if (!resolved.startsWith(ROOT)) return 'points outside the repository';
  if (!existsSync(resolved)) return `${relative(ROOT, resolved)} does not exist`;
  if (anchor === undefined) return undefined;
  if (!resolved.endsWith('.md') || statSync(resolved).isDirectory())
    return `#${anchor} on a file that is not Markdown`;
  if (!anchorsIn(resolved).has(decodeURIComponent(anchor)))
    return `${relative(ROOT, resolved)} has no heading #${anchor}`;
  return undefined;
}

test('GitHub anchors: lower-case, punctuation dropped, spaces to hyphens, repeats numbered', () => {
  const anchors = anchorsOf(
    [
      '# Operating the relay',
      '## `POST /v1/videos`',
      "## api.video's uploaders: `POST /upload?token=`",
      '### For contributors: why src/tracing.ts comes first',
      '## Resumable uploads: tus 1.0 on `/v1/uploads`',
      '### RelayNoReadyInstance',
      '## Settings',
      '## Settings',
      '```sh',
      '# not a heading',
      '```',
    ].join('\n'),
  );
  expect([...anchors]).toEqual([
    'operating-the-relay',
    'post-v1videos',
    'apivideos-uploaders-post-uploadtoken',
    'for-contributors-why-srctracingts-comes-first',
    'resumable-uploads-tus-10-on-v1uploads',
    'relaynoreadyinstance',
    'settings',
    'settings-1',
  ]);
});

test('the documentation has links to check', () => {
  const all = DOCS.flatMap(linksOf);
  expect(all.length).toBeGreaterThan(50);
  expect(all.filter((l) => l.target.includes('#')).length).toBeGreaterThan(20);
});

test.each(DOCS)('every relative link and anchor in %s resolves', (file) => {
  const problems = linksOf(file)
    .map((link) => {
      const why = broken(link);
      return why && `${link.file}:${link.line} (${link.target}): ${why}`;
    })
    .filter(Boolean);
  expect(problems).toEqual([]);
});
