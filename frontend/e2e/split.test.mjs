// @ts-check
/**
 * Split view: two independent clients side by side in one page; a message typed in one arrives
 * in the other. And the throughput sparkline draws what this tab and the server see.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TEST_TIMEOUT_MS, openUi, rawClient, until, waitForState, withServerAndBrowser } from './helpers.mjs';

test('split view runs two connections side by side; a broadcast goes from one to the other', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({}, async ({ server, browser }) => {
    const { page, errors } = await openUi(browser, server.url, { width: 1440, height: 900 });
    const toggle = page.getByRole('button', { name: 'Split view' });
    assert.equal(await toggle.getAttribute('aria-pressed'), 'false');
    await toggle.click();
    assert.equal(await page.locator('#split-toggle').getAttribute('aria-pressed'), 'true');

    // The page's own connection rests (its controls are hidden); each pane is a client of its own.
    await page.locator('#status[data-state="disconnected"]').waitFor({ state: 'attached' });
    assert.equal(await page.locator('#toggle-connection').isVisible(), false);
    const a = page.frameLocator('iframe[title="Client A"]');
    const b = page.frameLocator('iframe[title="Client B"]');
    for (const pane of [a, b]) await pane.locator('#status[data-state="open"]').waitFor();
    const ids = await Promise.all([a, b].map((pane) => pane.locator('#info-client').innerText()));
    assert.notEqual(ids[0], ids[1], 'two different connections');
    await until(async () => (await (await fetch(`${server.url}health`)).json()).connections === 2, {
      message: 'the server sees the two panes only',
    });

    // Side by side, each half the width.
    const boxes = await Promise.all(['Client A', 'Client B'].map((t) => page.locator(`iframe[title="${t}"]`).boundingBox()));
    const [left, right] = boxes;
    assert.ok(left && right && left.x + left.width <= right.x && Math.abs(left.y - right.y) < 1, 'panes side by side');
    assert.ok(left.width > 600 && right.width > 600);
    assert.equal(await a.locator('#pane-label').innerText(), 'Client A');

    // A says something; B receives it.
    const input = a.getByLabel('Message', { exact: true });
    await input.fill('from A to B');
    await input.press('Enter');
    await a.locator('#chat-list li.own[data-status="delivered"]', { hasText: 'from A to B' }).waitFor();
    await b.locator('#broadcast-list li.message', { hasText: 'from A to B' }).waitFor();

    // Back to a single view: the panes go, the page connects again.
    await page.getByRole('button', { name: 'Single view' }).click();
    await waitForState(page, 'open');
    assert.equal(await page.locator('iframe').count(), 0);
    await until(async () => (await (await fetch(`${server.url}health`)).json()).connections === 1, {
      message: 'the panes disconnected',
    });
    assert.deepEqual(errors, []);
  });
});

test('the throughput sparkline shows this tab\'s and the server\'s messages per second', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({ args: ['--publish-rate', '100000', '--publish-burst', '100000'] }, async ({ server, browser }) => {
    const { page, errors } = await openUi(browser, server.url);
    const raw = await rawClient(server.url);
    const points = (/** @type {string} */ cls) =>
      page.locator(`#sparkline .${cls}`).evaluate((el) => (el.getAttribute('points') ?? '').split(' ').filter(Boolean).map((p) => Number(p.split(',')[1])));
    // Flat at the bottom while nothing happens.
    const idle = await points('spark-you');
    assert.ok(idle.length >= 30 && idle.every((y) => y === idle[0]), 'flat line');
    // Traffic for a few seconds: both lines rise, and the numbers say so.
    let n = 0;
    await until(async () => {
      await raw.publishMany(Array.from({ length: 20 }, () => `tick ${(n += 1)}`));
      const you = await points('spark-you');
      const server = await points('spark-server');
      const youUp = you.some((y) => y < (idle[0] ?? 0));
      const serverUp = server.some((y) => y < (idle[0] ?? 0));
      return youUp && serverUp;
    }, { timeout: 20_000, interval: 200, message: 'both sparkline lines rise' });
    assert.match(await page.locator('#m-throughput .sub').innerText(), /^you · server \d[\d,.]*\/s$/);
    assert.match((await page.locator('#sparkline').getAttribute('aria-label')) ?? '', /this tab [\d.,]+\/s, server [\d.,]+\/s/);
    await raw.close();
    assert.deepEqual(errors, []);
  });
});
