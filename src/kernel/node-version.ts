/**
 * The one Node.js version the relay needs, checked before anything else loads: on an older Node,
 * require() of an ES module (@tus/server) fails later with a cryptic ERR_REQUIRE_ESM. package.json
 * `engines`, .nvmrc, the Dockerfile and the README say the same (test/unit/node-version.test.ts).
 */
export const MINIMUM_NODE = '20.19.0';

export function satisfiesMinimum(version: string, minimum = MINIMUM_NODE): boolean {
  const have = version.replace(/^v/, '').split('.').map(Number);
  const need = minimum.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    if ((have[i] ?? 0) !== need[i]) return (have[i] ?? 0) > need[i]!;
  }
  return true;
}

if (!satisfiesMinimum(process.versions.node)) {
  console.error(
    `The relay needs Node.js ${MINIMUM_NODE} or newer (it require()s ES modules); this is ${process.version}.`,
  );
  process.exit(1);
}
