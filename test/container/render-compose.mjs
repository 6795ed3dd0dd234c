// Renders docker-compose.yml for the sandbox engine, which has host networking only:
// compose v1 refuses network_mode: host together with ports, and service names do not resolve,
// so ports are dropped, every service joins the host network, and the relay finds the emulator on
// loopback. Usage: node render-compose.mjs <rendered.yml> <out.yml> <relay port> <emulator port>
import { readFileSync, writeFileSync } from 'node:fs';
import process from 'node:process';
import { parse, stringify } from 'yaml';

const [input, output, relayPort, emulatorPort] = process.argv.slice(2);
const doc = parse(readFileSync(input, 'utf8'));
// redis sits behind the `resumable` profile and its image cannot be pulled here.
delete doc.services.redis;
delete doc.volumes?.['redis-data'];
if (doc.volumes && Object.keys(doc.volumes).length === 0) delete doc.volumes;
for (const service of Object.values(doc.services)) {
  delete service.ports;
  delete service.networks;
  service.network_mode = 'host';
}
Object.assign(doc.services.relay.environment, {
  PORT: relayPort,
  HOST: '127.0.0.1',
  APIVIDEO_BASE_URL: `http://127.0.0.1:${emulatorPort}`,
});
Object.assign(doc.services.emulator.environment, {
  EMULATOR_PORT: emulatorPort,
  EMULATOR_HOST: '127.0.0.1',
});
delete doc.networks;
writeFileSync(output, stringify(doc));
