/**
 * `.env` for a first run: the README says to create one, so the relay reads it. Node's own parser
 * (util.parseEnv) reads it; this checks its lines first, because that parser skips nothing it does
 * not understand: a stray line silently swallows the setting after it.
 */
import { parseEnv } from 'node:util';

export class DotEnvError extends Error {}

const ASSIGNMENT = /^\s*(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*\s*=(.*)$/;

/** Problems by line number; never the line's text, which may hold a secret. */
export function dotEnvProblems(text: string): string[] {
  const problems: string[] = [];
  let openQuote: { char: string; line: number } | undefined;
  text.split(/\r?\n/).forEach((line, index) => {
    const n = index + 1;
    if (openQuote) {
      if (line.includes(openQuote.char)) openQuote = undefined;
      return;
    }
    if (/^\s*(#.*)?$/.test(line)) return;
    const match = ASSIGNMENT.exec(line);
    if (!match) {
      problems.push(`line ${n}: expected NAME=value`);
      return;
    }
    const value = match[1]!.trimStart();
    const quote = value[0];
    if (quote === '"' || quote === "'" || quote === '`') {
      if (!value.slice(1).includes(quote)) openQuote = { char: quote, line: n };
    }
  });
  if (openQuote) problems.push(`line ${openQuote.line}: the quoted value is never closed`);
  return problems;
}

/**
 * The settings of a `.env` text to add to `env`: those `env` does not already have, so a real
 * environment variable always wins. Throws DotEnvError naming every bad line.
 */
export function dotEnvAdditions(
  text: string,
  env: Record<string, string | undefined>,
  where: string,
): Record<string, string> {
  const problems = dotEnvProblems(text);
  if (problems.length > 0)
    throw new DotEnvError(
      `Invalid ${where}:\n${problems.map((p) => `  - ${p}`).join('\n')}\n` +
        'Fix or remove the file; real environment variables need no .env.',
    );
  const additions: Record<string, string> = {};
  for (const [name, value] of Object.entries(parseEnv(text)))
    if (env[name] === undefined && value !== undefined) additions[name] = value;
  return additions;
}

/**
 * Variables the C library or Node read before any JavaScript runs: from `.env` they change nothing
 * (the relay reads it once started). Names only, so the warning never shows a value.
 */
export function readBeforeStart(names: Iterable<string>): string[] {
  return [...names].filter((name) =>
    /^(MALLOC_\w+|GLIBC_TUNABLES|LD_PRELOAD|NODE_OPTIONS)$/.test(name),
  );
}
