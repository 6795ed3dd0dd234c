/** `npm run emulator`: the api.video emulator on its own, for local development and compose. */
import { startEmulator } from './app';

async function main(): Promise<void> {
  const apiKey = process.env.EMULATOR_API_KEY ?? 'emulator-key';
  const port = Number(process.env.EMULATOR_PORT ?? 4000);
  const host = process.env.EMULATOR_HOST ?? '0.0.0.0';
  const emulator = await startEmulator({ apiKey, port, host });
  process.stdout.write(
    JSON.stringify({
      level: 'info',
      msg: `api.video emulator listening on ${host}:${emulator.server.address() && port}`,
    }) + '\n',
  );
  const stop = () => void emulator.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err: unknown) => {
  console.error(`emulator failed to start: ${(err as Error).message}`);
  process.exit(1);
});
