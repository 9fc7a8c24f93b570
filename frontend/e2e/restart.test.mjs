// @ts-check
/**
 * The server restarts (SIGTERM, then a new process on the same port): the page notices, counts
 * down, reconnects by itself, says honestly that history was lost, and works again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  TEST_TIMEOUT_MS,
  WAIT_MS,
  launchBrowser,
  listTexts,
  openUi,
  rawClient,
  sendMessage,
  startServer,
  waitForState,
} from './helpers.mjs';

test('the page reconnects by itself after a server restart and messaging works again', { timeout: TEST_TIMEOUT_MS }, async () => {
  let server = await startServer();
  const port = server.port;
  const browser = await launchBrowser();
  try {
    const { page, errors } = await openUi(browser, server.url);
    const epochBefore = await page.locator('#info-epoch').innerText();
    const before = await rawClient(server.url);
    await before.publish('before the restart');
    await page.locator('#broadcast-list li.message', { hasText: 'before the restart' }).waitFor();

    // SIGTERM: clients get 1001; the page shows why and counts down to its next try.
    const code = await server.stop();
    assert.equal(code, 0, `server exit code; log:\n${server.log()}`);
    await before.closed;
    await page.locator('.notice[data-code="close-1001"]', { hasText: 'Server going away' }).waitFor();
    await page.locator('#status:not([data-state="open"])').waitFor();
    await page.locator('#reconnect-now').waitFor({ state: 'visible' });
    await page.locator('#countdown', { hasText: /^retry in \d+(\.\d)? s$/ }).waitFor({ state: 'visible' });

    // Start again on the same port; the page must come back without any click.
    server = await startServer({ port });
    await waitForState(page, 'open', 3 * WAIT_MS);
    await page.locator('#reconnect-now').waitFor({ state: 'hidden' });

    // The new process has a new history: the page says messages may be missing, in both lists.
    const epochAfter = await page.locator('#info-epoch').innerText();
    assert.notEqual(epochAfter, epochBefore);
    for (const list of ['#chat-list', '#broadcast-list']) {
      await page.locator(`${list} li.marker[data-marker="warning"]`, { hasText: 'server restarted' }).waitFor();
    }
    // What it had before is still shown, once.
    assert.deepEqual(await listTexts(page, '#broadcast-list'), ['before the restart']);

    // Live messaging works again, both ways.
    const after = await rawClient(server.url);
    await after.publish('after the restart');
    await page.locator('#broadcast-list li.message', { hasText: 'after the restart' }).waitFor();
    await sendMessage(page, 'page is back');
    await page.locator('#chat-list li.own[data-status="delivered"]', { hasText: 'page is back' }).waitFor();
    await after.waitFrame((f) => f.type === 'message' && f.message === 'page is back');
    assert.deepEqual(await listTexts(page, '#broadcast-list'), ['after the restart', 'before the restart']);
    await after.close();
    assert.deepEqual(errors, []);
  } finally {
    await browser.close().catch(() => {});
    await server.stop();
  }
});
