import { chromium, type Browser } from 'playwright-core';
import { CHROMIUM, requirePrograms } from './prerequisites';

/**
 * Debian's Chromium, headless, with the flags a closed network needs (no background calls home,
 * no sandbox as root); `extraArgs` for what one test adds (a host rule, a trusted CA).
 */
export function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  requirePrograms('chromium');
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...extraArgs,
    ],
  });
}
