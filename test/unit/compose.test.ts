/**
 * docker-compose.yml as compose reads it, with the variables a user sets in .env: whatever
 * EMULATOR_PORT says, the relay still points at the port the emulator listens on inside the
 * stack. (The image itself runs under compose in test/container/run.sh.)
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

const file = readFileSync(join(__dirname, '../../docker-compose.yml'), 'utf8');

/** Compose's interpolation of `${VAR}`, `${VAR:-default}` and `${VAR-default}`. */
function interpolate(text: string, env: Record<string, string>): string {
  return text.replace(/\$\{(\w+)(?:(:?-)([^}]*))?\}/g, (_all, name: string, op, fallback) => {
    const value = env[name];
    if (op === ':-') return value ? value : (fallback as string);
    if (op === '-') return value ?? (fallback as string);
    return value ?? '';
  });
}

interface Service {
  environment: Record<string, string>;
  ports?: string[];
}

function render(env: Record<string, string>) {
  return parse(interpolate(file, env)) as { services: Record<string, Service> };
}

test.each<Record<string, string>>([
  {},
  { EMULATOR_PORT: '4100' },
  { EMULATOR_PORT: '4100', PORT: '8080' },
])('with %j in .env, the relay reaches the emulator where it listens', (env) => {
  const { services } = render(env);
  const base = new URL(services.relay!.environment.APIVIDEO_BASE_URL!);
  expect(base.hostname).toBe('emulator');
  expect(base.port).toBe(String(services.emulator!.environment.EMULATOR_PORT));
  // Published on the host where EMULATOR_PORT says, from that same port inside.
  expect(services.emulator!.ports).toEqual([`${env.EMULATOR_PORT ?? '4000'}:${base.port}`]);
});
