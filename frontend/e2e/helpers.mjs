// @ts-check
/**
 * Shared fixtures for the end-to-end tests: a real trio-broadcast server process, Debian's
 * Chromium driven by playwright-core, and a raw WebSocket client (the `ws` package) for traffic
 * that does not come from a page.
 *
 * Every wait here is on a condition (a line on stdout, a DOM state, a frame) with a deadline;
 * nothing sleeps for a fixed time.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (frontend/e2e/../..). */
export const repoRoot = resolve(here, '..', '..');
/** The server executable, relative to the repository (the Makefile's venv). */
export const serverBin = resolve(repoRoot, process.env.TRIO_BROADCAST_BIN ?? '.venv/bin/trio-broadcast');
/** Debian's chromium (scripts/system-deps.sh installs it); never a downloaded browser. */
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const chromiumArgs = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** Default deadline for one UI condition (ms). */
export const WAIT_MS = 15_000;
/** Deadline for one whole test (ms): pass as `{ timeout: TEST_TIMEOUT_MS }`. */
export const TEST_TIMEOUT_MS = 90_000;

/** The built UI the server serves (`npm run build` writes it). */
export const staticIndex = resolve(repoRoot, 'trio_broadcast', 'static', 'index.html');

const LISTENING = /^trio-broadcast listening on (http:\/\/\S+?):(\d+)\s*$/;

/**
 * @typedef {object} Server
 * @property {string} url    base URL, e.g. http://127.0.0.1:41234/
 * @property {number} port
 * @property {import('node:child_process').ChildProcess} proc
 * @property {() => string} log  everything the process printed so far (for failure messages)
 * @property {() => Promise<number | null>} stop  SIGTERM, wait for exit (SIGKILL after a deadline)
 */

/**
 * Starts `trio-broadcast serve` and resolves once it printed its listening line.
 *
 * @param {{ port?: number, args?: string[], timeoutMs?: number }} [options]
 * @returns {Promise<Server>}
 */
export async function startServer({ port = 0, args = [], timeoutMs = 30_000 } = {}) {
  if (!existsSync(staticIndex)) {
    throw new Error(`${staticIndex} not found: run \`npm run build\` first (the server would serve its fallback page)`);
  }
  if (!existsSync(serverBin)) {
    throw new Error(`${serverBin} not found: run \`make venv\` (or pip install -e .) first`);
  }
  const proc = spawn(
    serverBin,
    ['serve', '--host', '127.0.0.1', '--port', String(port), '--no-access-log', ...args],
    { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PYTHONUNBUFFERED: '1' } },
  );
  let output = '';
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (chunk) => {
    output += chunk;
    if (output.length > 200_000) output = output.slice(-100_000);
  });
  const exited = new Promise((resolveExit) => proc.once('exit', (code, signal) => resolveExit(code ?? signal)));
  const lines = createInterface({ input: /** @type {import('node:stream').Readable} */ (proc.stdout) });
  const found = await new Promise((resolveFound, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`server did not print its listening line within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    lines.on('line', (line) => {
      output += `${line}\n`;
      const m = LISTENING.exec(line);
      if (m) {
        clearTimeout(timer);
        resolveFound({ host: m[1], port: Number(m[2]) });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${String(code)}) before listening:\n${output}`));
    });
  });
  let stopped = /** @type {Promise<number | null> | null} */ (null);
  return {
    url: `${found.host}:${found.port}/`,
    port: found.port,
    proc,
    log: () => output,
    stop() {
      stopped ??= (async () => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
        const kill = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        const code = await exited;
        clearTimeout(kill);
        return typeof code === 'number' ? code : null;
      })();
      return stopped;
    },
  };
}

/** Launches headless Debian chromium. */
export async function launchBrowser() {
  return chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs, timeout: 30_000 });
}

/**
 * Opens the UI in a new page (its own context, so pages do not share state) and waits until it
 * is connected. Page errors fail loudly through `errors`.
 *
 * @param {import('playwright-core').Browser} browser
 * @param {string} url
 * @param {{ width?: number, height?: number, colorScheme?: 'light' | 'dark' }} [options]
 */
export async function openUi(browser, url, { width = 1280, height = 800, colorScheme = 'light' } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, colorScheme, reducedMotion: 'reduce' });
  const page = await context.newPage();
  /** @type {string[]} */
  const errors = [];
  page.on('pageerror', (err) => errors.push(String(err)));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/WebSocket|ERR_CONNECTION_REFUSED|Failed to load resource|net::/.test(msg.text())) {
      errors.push(msg.text());
    }
  });
  page.setDefaultTimeout(WAIT_MS);
  await page.goto(url);
  await waitForState(page, 'open');
  return { page, context, errors };
}

/**
 * Waits until the status indicator shows `state` (open, connecting, waiting, disconnected).
 *
 * @param {import('playwright-core').Page} page
 * @param {string} state
 * @param {number} [timeout]
 */
export async function waitForState(page, state, timeout = WAIT_MS) {
  await page.locator(`#status[data-state="${state}"]`).waitFor({ timeout });
}

/**
 * Types `text` in the message box and sends it with Enter (or the Send button).
 *
 * @param {import('playwright-core').Page} page
 * @param {string} text
 * @param {{ via?: 'enter' | 'button' }} [options]
 */
export async function sendMessage(page, text, { via = 'enter' } = {}) {
  const input = page.getByLabel('Message', { exact: true });
  await input.fill(text);
  if (via === 'enter') await input.press('Enter');
  else await page.getByRole('button', { name: 'Send', exact: true }).click();
}

/**
 * Texts of the messages in a list, in DOM order.
 *
 * @param {import('playwright-core').Page} page
 * @param {'#chat-list' | '#broadcast-list'} list
 * @param {string} [filter] extra selector for the entries, e.g. `[data-own="true"]`
 */
export async function listTexts(page, list, filter = '') {
  return page.locator(`${list} li.message${filter} .text`).allTextContents();
}

/**
 * Polls `fn` until it returns a truthy value (or throws the last error at the deadline).
 *
 * @template T
 * @param {() => Promise<T>} fn
 * @param {{ timeout?: number, interval?: number, message?: string }} [options]
 * @returns {Promise<T>}
 */
export async function until(fn, { timeout = WAIT_MS, interval = 50, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  /** @type {unknown} */
  let last;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
      last = new Error(`${message}: got ${JSON.stringify(value)}`);
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw last instanceof Error ? last : new Error(String(last));
    await new Promise((r) => setTimeout(r, interval));
  }
}

/**
 * A raw WebSocket client from Node (no Origin header, as scripts and CLIs connect).
 *
 * @param {string} baseUrl  the server's http URL
 * @param {string} [query]
 */
export async function rawClient(baseUrl, query = '') {
  const url = `${baseUrl.replace(/^http/, 'ws')}ws/events${query}`;
  const ws = new WebSocket(url);
  /** @type {any[]} */
  const frames = [];
  /** @type {Array<() => void>} */
  let waiters = [];
  ws.on('message', (data) => {
    const frame = JSON.parse(String(data));
    if (frame.type === 'batch') frames.push(...frame.events);
    else frames.push(frame);
    const ready = waiters;
    waiters = [];
    for (const w of ready) w();
  });
  const closed = new Promise((resolveClose) => ws.once('close', (code) => resolveClose(code)));
  await new Promise((resolveOpen, reject) => {
    ws.once('open', resolveOpen);
    ws.once('error', reject);
  });
  /**
   * @param {(frame: any) => boolean} predicate
   * @param {number} [timeout]
   */
  const waitFrame = async (predicate, timeout = WAIT_MS) => {
    const deadline = Date.now() + timeout;
    for (;;) {
      const hit = frames.find(predicate);
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching frame; got ${JSON.stringify(frames).slice(0, 2000)}`);
      await new Promise((r) => {
        const t = setTimeout(r, left);
        waiters.push(() => {
          clearTimeout(t);
          r(undefined);
        });
      });
    }
  };
  const welcome = await waitFrame((f) => f.type === 'welcome');
  let counter = 0;
  return {
    ws,
    frames,
    welcome,
    waitFrame,
    closed,
    /**
     * Publishes `message` and waits for its ack.
     * @param {string} message
     */
    async publish(message) {
      counter += 1;
      const id = `raw-${counter}`;
      ws.send(JSON.stringify({ message, id }));
      return waitFrame((f) => (f.type === 'ack' && f.id === id) || f.type === 'error');
    },
    /**
     * Publishes every text without waiting in between, then waits for the last one's answer.
     * @param {string[]} messages
     */
    async publishMany(messages) {
      let lastId = '';
      for (const message of messages) {
        counter += 1;
        lastId = `raw-${counter}`;
        ws.send(JSON.stringify({ message, id: lastId }));
      }
      return waitFrame((f) => (f.type === 'ack' && f.id === lastId) || f.type === 'error', 60_000);
    },
    close() {
      ws.close(1000);
      return closed;
    },
  };
}

const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

/**
 * Runs axe-core (injected into the page) and returns its serious and critical violations, one
 * line per offending node (an empty array when there are none).
 *
 * @param {import('playwright-core').Page} page
 * @returns {Promise<string[]>}
 */
export async function seriousViolations(page) {
  await page.addScriptTag({ path: axePath });
  /** @type {Array<{ id: string, impact: string | null, help: string, nodes: Array<{ target: unknown[], failureSummary?: string }> }>} */
  const violations = await page.evaluate(async () => {
    // @ts-expect-error axe is the global the injected script defines
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations;
  });
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .flatMap((v) => v.nodes.map((n) => `${v.id} (${v.impact}) ${JSON.stringify(n.target)}: ${n.failureSummary ?? v.help}`));
}

/**
 * A box's edges from a bounding box.
 *
 * @param {{ x: number, y: number, width: number, height: number } | null} box
 */
export function edges(box) {
  assert(box, 'element has no box (not visible)');
  return { top: box.y, bottom: box.y + box.height, left: box.x, right: box.x + box.width, height: box.height, width: box.width };
}

/**
 * Whether two boxes overlap (touching edges do not count).
 *
 * @param {ReturnType<typeof edges>} a
 * @param {ReturnType<typeof edges>} b
 */
export function overlaps(a, b) {
  return a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
}

/**
 * Runs `fn` with a server and a browser, and always cleans both up.
 *
 * @param {{ args?: string[] }} options
 * @param {(ctx: { server: Server, browser: import('playwright-core').Browser }) => Promise<void>} fn
 */
export async function withServerAndBrowser(options, fn) {
  const server = await startServer(options);
  let browser;
  try {
    browser = await launchBrowser();
    await fn({ server, browser });
  } catch (err) {
    if (err instanceof Error) err.message += `\n--- server log (tail) ---\n${server.log().slice(-4000)}`;
    throw err;
  } finally {
    await browser?.close().catch(() => {});
    await server.stop();
  }
}
