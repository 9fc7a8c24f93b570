// @ts-check
/**
 * Takes screenshots of the UI with some realistic traffic, desktop and phone. With
 * UPDATE_SCREENSHOT=1 (`make screenshot`) they replace docs/screenshot.png and
 * docs/screenshot-phone.png, the README's pictures; otherwise they go to a temporary directory,
 * so that running the tests leaves the tree as it was.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import {
  TEST_TIMEOUT_MS,
  openUi,
  rawClient,
  repoRoot,
  sendMessage,
  waitForState,
  withServerAndBrowser,
} from './helpers.mjs';

const dir = process.env.UPDATE_SCREENSHOT ? resolve(repoRoot, 'docs') : mkdtempSync(join(tmpdir(), 'trio-broadcast-'));
const target = join(dir, 'screenshot.png');
const phoneTarget = join(dir, 'screenshot-phone.png');

/** @param {string} path */
function assertPng(path) {
  const png = readFileSync(path);
  assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
  assert.ok(png.length > 10_000, `screenshot is ${png.length} bytes`);
}

test('takes a screenshot of the UI with some traffic', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({}, async ({ server, browser }) => {
    const a = await openUi(browser, server.url, { width: 1280, height: 960 });
    const b = await openUi(browser, server.url);
    const bot = await rawClient(server.url);
    const delivered = (/** @type {string} */ text) =>
      a.page.locator('#chat-list li.own[data-status="delivered"]', { hasText: text }).waitFor();
    const seen = (/** @type {string} */ text) => a.page.locator('#chat-list li', { hasText: text }).waitFor();

    await sendMessage(b.page, 'Morning! Is the broadcast server up?');
    await seen('Morning!');
    await sendMessage(a.page, 'Yes: Trio + Hypercorn, one hub, bounded outboxes. Open a second tab and say hi.');
    await delivered('Open a second tab');
    await bot.publish('deploy-bot: v0.1.0 rolled out to staging');
    await seen('deploy-bot: v0.1.0');
    await sendMessage(b.page, 'Latency looks great from here.');
    await seen('Latency looks great');

    // A drops off for a moment and catches up on what it missed.
    await a.page.locator('#toggle-connection').click();
    await waitForState(a.page, 'disconnected');
    await bot.publish('deploy-bot: health checks green on all replicas');
    await sendMessage(b.page, 'Did you catch that while you were away?');
    await b.page.locator('#chat-list li.own[data-status="delivered"]', { hasText: 'catch that' }).waitFor();
    await a.page.locator('#toggle-connection').click();
    await waitForState(a.page, 'open');
    await a.page.locator('#chat-list li.marker', { hasText: 'caught up on 2 missed messages' }).waitFor();
    await sendMessage(a.page, 'Back, and caught up: nothing lost.');
    await delivered('nothing lost');
    await a.page.locator('#m-connections .value', { hasText: /^3$/ }).waitFor();
    await a.page.locator('#m-latency .value', { hasText: /ms$/ }).waitFor();
    await a.page.locator('#announcer', { hasText: /./ }).waitFor({ state: 'attached' });
    await a.page.getByLabel('Message', { exact: true }).fill('Typing a reply…');
    await a.page.getByLabel('Message', { exact: true }).blur();
    await a.page.mouse.move(1, 950); // no hover highlight in the picture

    await a.page.screenshot({ path: target });
    assertPng(target);
    await bot.close();
    assert.deepEqual(a.errors, []);
    assert.deepEqual(b.errors, []);
  });
});

test('takes a phone screenshot of the UI with some traffic', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({}, async ({ server, browser }) => {
    const bot = await rawClient(server.url);
    // History from before the phone joined: it shows it as earlier messages.
    await bot.publish('deploy-bot: v0.1.0 rolled out to staging');
    await bot.publish('deploy-bot: health checks green on all replicas');
    const phone = await openUi(browser, server.url, { width: 390, height: 844 });
    const desk = await openUi(browser, server.url);
    await phone.page.locator('#chat-list li.marker', { hasText: '2 earlier messages' }).waitFor();
    await sendMessage(desk.page, 'Hi from the laptop: can you see this on your phone?');
    await phone.page.locator('#chat-list li', { hasText: 'Hi from the laptop' }).waitFor();
    await sendMessage(phone.page, 'Loud and clear. Composer stays at the bottom, list fills the rest.');
    await phone.page.locator('#chat-list li.own[data-status="delivered"]', { hasText: 'Loud and clear' }).waitFor();
    await sendMessage(desk.page, 'Tap the summary line for all the metrics.');
    await phone.page.locator('#chat-list li', { hasText: 'Tap the summary' }).waitFor();
    await phone.page.locator('#metrics-summary-text', { hasText: /2 online/ }).waitFor();
    await phone.page.getByLabel('Message', { exact: true }).fill('Typing a reply…');
    await phone.page.getByLabel('Message', { exact: true }).blur();
    await phone.page.mouse.move(1, 840);

    await phone.page.screenshot({ path: phoneTarget });
    assertPng(phoneTarget);
    await bot.close();
    assert.deepEqual(phone.errors, []);
    assert.deepEqual(desk.errors, []);
  });
});
