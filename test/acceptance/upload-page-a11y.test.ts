/**
 * The upload page against WCAG 2.2 AA, in Chromium: axe-core in every state the page can be in
 * (idle, uploading, paused, done, error), what each state says and how often the live regions say
 * it, and what axe does not measure well: the contrast of borders and focus indicators (WCAG 1.4.11)
 * and a focus indicator on every control, the invisible file input's included.
 *
 * The states are held by events, not timers: the emulator's part gate keeps an upload in progress
 * for as long as the test reads it, and the page's own Pause keeps it paused.
 */
import { AxeBuilder } from '@axe-core/playwright';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../helpers/browser';
import { MiB, randomBytesOf, sha256 } from '../helpers/data';
import { inspectVideo } from '../helpers/emulator';
import { useRelay } from '../helpers/fixture';

const TOKEN = 'a11y-page-token-0123456789';
const fixture = useRelay({
  env: { RELAY_API_TOKENS: TOKEN, LOG_LEVEL: 'warn' },
  // As `npm start` without a key shows it: the page's demo note is part of what is checked.
  deps: { upstream: 'emulator' },
});
let browser: Browser;
beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

const WCAG_22_AA = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'];

/** axe's WCAG 2.2 AA rules on the page as it is now; `state` names it in a failure. */
async function expectNoViolations(page: Page, state: string): Promise<void> {
  const { violations } = await new AxeBuilder({ page }).withTags(WCAG_22_AA).analyze();
  const found = violations.map((v) => ({
    rule: v.id,
    help: v.help,
    nodes: v.nodes.map((n) => `${n.target.join(' ')}: ${n.failureSummary ?? ''}`),
  }));
  expect({ state, violations: found }).toEqual({ state, violations: [] });
}

/**
 * What the page's live regions say, in order, from the start: each text put in a status region,
 * and the text of an alert each time it is shown. A MutationObserver keeps the text of every node
 * added, so a status replaced within one task is still counted.
 */
const RECORD_ANNOUNCEMENTS = `
  window.__said = [];
  document.addEventListener('DOMContentLoaded', () => {
    const regions = document.querySelectorAll('[role="status"], [aria-live], [role="alert"]');
    for (const region of regions) {
      const alert = region.getAttribute('role') === 'alert';
      new MutationObserver((records) => {
        for (const r of records) {
          if (alert) {
            if (r.type === 'attributes' && !region.hidden) window.__said.push(region.innerText.trim());
            continue;
          }
          for (const node of r.addedNodes) {
            const text = node.textContent.trim();
            if (text) window.__said.push(text);
          }
        }
      }).observe(region, alert
        ? { attributes: true, attributeFilter: ['hidden'] }
        : { childList: true, subtree: true });
    }
  });
`;
const said = (page: Page) => page.evaluate('window.__said') as Promise<string[]>;

async function openPage(): Promise<{ page: Page; errors: string[] }> {
  // A context of its own, not browser.newPage(): axe opens a page beside it to run its checks.
  const context = await browser.newContext({ viewport: { width: 900, height: 900 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.addInitScript(RECORD_ANNOUNCEMENTS);
  await page.goto(fixture.url);
  await page.waitForSelector('#upstream-note:not([hidden])');
  return { page, errors };
}

/** Resolves with element `id`'s text once it matches `pattern` (checked in the page, on change). */
async function textOf(page: Page, id: string, pattern: RegExp): Promise<string> {
  const handle = await page.waitForFunction(
    ([id, source]) => {
      const text = (globalThis as unknown as PageGlobals).document.getElementById(id).textContent;
      return new RegExp(source).test(text) && text;
    },
    [id, pattern.source] as const,
  );
  return (await handle.jsonValue()) as string;
}
interface PageGlobals {
  document: { getElementById(id: string): { textContent: string } };
}

/** An upstream link of `bytesPerSecond` from the page, as Chromium's DevTools emulate it. */
async function throttle(page: Page, bytesPerSecond: number): Promise<void> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: bytesPerSecond,
  });
}

/** WCAG's contrast ratio of two computed `rgb()`/`rgba()` colours (opaque ones: see `opaque`). */
function contrast(a: string, b: string): number {
  const linear = (v: number) => {
    const c = v / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  const luminance = (color: string) => {
    const [r, g, b] = rgba(color);
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
  };
  const [x, y] = [luminance(a), luminance(b)];
  return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
}
/** Red, green and blue (0 to 255) and alpha (0 to 1) of a computed colour. */
function rgba(color: string): [number, number, number, number] {
  const m = /^rgba?\((\d+(?:\.\d+)?), (\d+(?:\.\d+)?), (\d+(?:\.\d+)?)(?:, ([\d.]+))?\)$/.exec(
    color,
  );
  if (!m) throw new Error(`not a computed rgb() colour: ${color}`);
  return [Number(m[1]), Number(m[2]), Number(m[3]), m[4] === undefined ? 1 : Number(m[4])];
}
/** A ratio is only meaningful between opaque colours: a translucent one would hide its real look. */
const opaque = (color: string) => rgba(color)[3] === 1;

interface Look {
  outlineStyle: string;
  outlineWidth: number;
  outlineOffset: number;
  outlineColor: string;
  boxShadow: string;
  borderColor: string;
  /** The element's own background, and the first opaque one behind it (around its outline). */
  background: string;
  behind: string;
}
// Run in the page (the tests' TypeScript has no DOM types): how an element looks now.
const LOOK_OF = `(selector) => {
  const el = document.querySelector(selector);
  if (!el) throw new Error('no ' + selector);
  const style = getComputedStyle(el);
  const isOpaque = (c) => c !== 'transparent' && !/^rgba\\(.*, 0\\)$/.test(c);
  let behind = 'rgb(255, 255, 255)';
  for (let up = el.parentElement; up; up = up.parentElement) {
    const bg = getComputedStyle(up).backgroundColor;
    if (isOpaque(bg)) {
      behind = bg;
      break;
    }
  }
  return {
    outlineStyle: style.outlineStyle,
    outlineWidth: parseFloat(style.outlineWidth),
    outlineOffset: parseFloat(style.outlineOffset),
    outlineColor: style.outlineColor,
    boxShadow: style.boxShadow,
    borderColor: style.borderTopColor,
    background: isOpaque(style.backgroundColor) ? style.backgroundColor : behind,
    behind,
  };
}`;
const lookOf = (page: Page, selector: string) =>
  page.evaluate(`(${LOOK_OF})(${JSON.stringify(selector)})`) as Promise<Look>;
const isFocused = (page: Page, selector: string) =>
  page.evaluate(`document.activeElement.matches(${JSON.stringify(selector)})`) as Promise<boolean>;

/** Presses Tab until `selector` has the focus, as a keyboard user gets there. */
async function tabTo(page: Page, selector: string): Promise<void> {
  for (let presses = 0; presses < 25; presses++) {
    if (await isFocused(page, selector)) return;
    await page.keyboard.press('Tab');
  }
  throw new Error(`Tab never reached ${selector}`);
}

/** The ratios below `floor`, by what was measured: `{}` when all pass, readable when not. */
const below = (floor: number, ratios: Record<string, number>) =>
  Object.fromEntries(
    Object.entries(ratios)
      .filter(([, ratio]) => !(ratio >= floor))
      .map(([what, ratio]) => [what, ratio.toFixed(2)]),
  );

/**
 * The keyboard reaches `selector` and its focus shows: an outline (which forced-colours modes keep,
 * unlike a box-shadow) of at least 2 px, not there before, at 3:1 against what is around it.
 * `drawnOn`: the element that shows the focus, when not the focused one.
 */
async function expectVisibleFocus(page: Page, selector: string, drawnOn = selector) {
  const before = await lookOf(page, drawnOn);
  await tabTo(page, selector);
  const focused = await lookOf(page, drawnOn);
  expect({
    selector,
    changed: focused.outlineStyle !== before.outlineStyle || focused.boxShadow !== before.boxShadow,
    style: focused.outlineStyle,
    wide: focused.outlineWidth >= 2,
    opaque: opaque(focused.outlineColor) && opaque(focused.behind),
  }).toEqual({ selector, changed: true, style: 'solid', wide: true, opaque: true });
  // Outside the element (an offset), the outline touches only what is behind it; else also the
  // element's own background.
  const ratio = Math.min(
    contrast(focused.outlineColor, focused.behind),
    focused.outlineOffset > 0 ? Infinity : contrast(focused.outlineColor, focused.background),
  );
  expect(below(3, { [`focus of ${selector}`]: ratio })).toEqual({});
}

test('idle, before and after a file is chosen: no WCAG 2.2 AA violations', async () => {
  const { page, errors } = await openPage();
  try {
    await expectNoViolations(page, 'idle');
    await page.setInputFiles('#file', {
      name: 'beach-day.mp4',
      mimeType: 'video/mp4',
      buffer: randomBytesOf(1000),
    });
    // The drop zone is the file input's label: it names the file and still says what to do.
    expect(await page.getByLabel(/beach-day\.mp4.*Choose another/).getAttribute('id')).toBe('file');
    await expectNoViolations(page, 'idle, a file chosen');
    expect(errors).toEqual([]);
  } finally {
    await page.context().close();
  }
});

test('borders of controls and the progress bar stand out at 3:1 (WCAG 1.4.11)', async () => {
  const { page } = await openPage();
  try {
    // The Pause and Cancel buttons are hidden until an upload starts; their colours are not.
    const ratios: Record<string, number> = {};
    for (const selector of ['#title', '#token', '#drop', '#pause', '#cancel']) {
      const look = await lookOf(page, selector);
      expect([selector, opaque(look.borderColor), opaque(look.behind)]).toEqual([
        selector,
        true,
        true,
      ]);
      // A border sits between the control's background and what is behind it: both count.
      ratios[selector] = Math.min(
        contrast(look.borderColor, look.behind),
        contrast(look.borderColor, look.background),
      );
    }
    const fill = (await lookOf(page, '#fill')).background;
    const track = (await lookOf(page, '#bar')).background;
    ratios['progress fill on its track'] = contrast(fill, track);
    expect(below(3, ratios)).toEqual({});
  } finally {
    await page.context().close();
  }
});

test('the keyboard shows where it is: the file picker (on its drop zone) and every other control', async () => {
  const { page } = await openPage();
  try {
    // The file input is invisible (the drop zone stands for it): its focus shows on the zone.
    await expectVisibleFocus(page, '#file', '#drop');
    for (const selector of ['#title', '#token', '#resumable', '#upload'])
      await expectVisibleFocus(page, selector);
  } finally {
    await page.context().close();
  }
});

test('uploading, paused, resumed, done: each says what is happening, once, with no violations', async () => {
  const { page, errors } = await openPage();
  const { gate } = fixture.emulator;
  try {
    const file = randomBytesOf(16 * MiB + 11);
    // A 4 MiB/s link gives the page a speed and a time left; the gate keeps part 1 at api.video
    // from being answered, so the upload cannot end while the test reads it.
    gate.hold();
    await throttle(page, 4 * MiB);
    await page.setInputFiles('#file', { name: 'holiday.mp4', mimeType: 'video/mp4', buffer: file });
    await page.fill('#token', TOKEN);
    await page.click('#upload');
    await gate.waitForHeld(1);

    // Uploading: progress, speed and time left.
    await textOf(page, 'speed', /^\d+\.\d MiB\/s$/);
    await textOf(page, 'eta', /^\d+ s left$/);
    expect(await page.textContent('#status')).toBe('Uploading…');
    expect(Number(await page.getAttribute('#bar', 'aria-valuenow'))).toBeGreaterThan(0);
    await expectNoViolations(page, 'uploading');

    // Paused: where it stopped, no speed or time left (nothing moves).
    await page.click('#pause');
    const paused = await textOf(page, 'status', /^Paused at \d+ %\.$/);
    expect(await page.textContent('#pause')).toBe('Resume');
    expect(await page.textContent('#speed')).toBe('');
    expect(await page.textContent('#eta')).toBe('');
    const pausedAt = Number(await page.getAttribute('#bar', 'aria-valuenow'));
    expect(paused).toBe(`Paused at ${pausedAt} %.`);
    await expectNoViolations(page, 'paused');
    // Pause and Cancel show the keyboard's focus too (they exist only during an upload).
    await expectVisibleFocus(page, '#cancel');
    await expectVisibleFocus(page, '#pause');

    // Resumed: "Resuming…", then "Uploading…" again with progress, then finishing, then done.
    gate.open();
    await page.click('#pause');
    await textOf(page, 'status', /^Uploading…$/);
    await textOf(page, 'speed', /^\d+\.\d MiB\/s$/);
    await page.waitForSelector('#result:not([hidden])', { timeout: 30_000 });
    await expectNoViolations(page, 'done');

    const statuses = await said(page);
    expect(statuses.slice(statuses.indexOf(paused))).toEqual([
      paused,
      'Resuming…',
      'Uploading…',
      'Finishing: api.video is receiving the last part…',
      'Uploaded. api.video is encoding it now.',
    ]);
    // No status said twice in a row (a screen reader would repeat it).
    statuses.forEach((text, i) => expect([i, text]).not.toEqual([i, statuses[i - 1]]));

    // Done, said once: in what is shown and in what a screen reader reads.
    expect((await page.innerText('body')).match(/Uploaded/g)).toHaveLength(1);
    expect((await page.locator('body').ariaSnapshot()).match(/Uploaded/g)).toHaveLength(1);
    expect(await page.textContent('#speed')).toBe('');
    expect(await page.textContent('#eta')).toBe('');
    expect(await page.getAttribute('#bar', 'aria-valuetext')).toBe('100 %, 16.0 MiB of 16.0 MiB');
    await expectVisibleFocus(page, '#player');

    const videoId = (await page.textContent('#video-id'))!;
    expect(inspectVideo(fixture.emulator, videoId)).toMatchObject({
      completed: true,
      sha256: sha256(file),
    });
    expect(errors).toEqual([]);
  } finally {
    gate.open();
    await page.context().close();
  }
});

test.each([
  ['resumable', true],
  ['one request', false],
])(
  'error (%s): a missing token is asked for in the token field, said once, with no violations',
  async (_mode, resumable) => {
    const { page, errors } = await openPage();
    try {
      await page.setChecked('#resumable', resumable);
      await page.setInputFiles('#file', {
        name: 'clip.mp4',
        mimeType: 'video/mp4',
        buffer: randomBytesOf(64 * 1024),
      });
      await page.click('#upload');
      await page.waitForSelector('#error:not([hidden])');
      expect(await page.textContent('#error-title')).toBe('Missing or invalid credentials');
      expect(await page.textContent('#error-detail')).toBe(
        'This relay needs an access token. Paste it in the Access token field, then upload again.',
      );
      expect(await page.textContent('#error')).not.toMatch(/Authorization|Bearer/);
      // The alert says it; the status does not say it again.
      expect(await page.textContent('#status')).toBe('');
      expect((await said(page)).filter((s) => /credentials|failed/i.test(s))).toHaveLength(1);
      await expectNoViolations(page, 'error');

      // A token that is not the relay's: the same field, named.
      await page.fill('#token', 'not-the-token-0123456789');
      await page.click('#upload');
      await textOf(page, 'error-detail', /did not accept/);
      expect(await page.textContent('#error-detail')).toBe(
        'The relay did not accept the token in the Access token field. Check it, then upload again.',
      );
      // Network failures of a refused upload are the relay's 401, which Chromium logs.
      expect(errors.filter((e) => !e.includes('401'))).toEqual([]);
    } finally {
      await page.context().close();
    }
  },
);
