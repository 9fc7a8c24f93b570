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

test('nothing missed after a restart: the gap marker, then what was sent in the new epoch', { timeout: TEST_TIMEOUT_MS }, async () => {
  let server = await startServer();
  const port = server.port;
  const browser = await launchBrowser();
  try {
    const a = await openUi(browser, server.url);
    const b = await openUi(browser, server.url);
    await sendMessage(a.page, 'before the restart');
    await b.page.locator('#chat-list li.message', { hasText: 'before the restart' }).waitFor();

    // B disconnects; the server restarts; A (back by itself) sends in the new epoch.
    await b.page.locator('#toggle-connection').click();
    await waitForState(b.page, 'disconnected');
    await server.stop();
    server = await startServer({ port });
    await waitForState(a.page, 'open', 3 * WAIT_MS);
    await a.page.locator('#chat-list li.marker', { hasText: 'server restarted' }).waitFor();
    await sendMessage(a.page, 'sent in new epoch');
    await a.page.locator('#chat-list li.own[data-status="delivered"]', { hasText: 'sent in new epoch' }).waitFor();

    // B reconnects: it says history was lost, then shows A's message, which the server kept.
    await b.page.locator('#toggle-connection').click();
    await waitForState(b.page, 'open');
    const replayed = b.page.locator('#chat-list li.message[data-replayed="true"]', { hasText: 'sent in new epoch' });
    await replayed.waitFor();
    await b.page.locator('#chat-list li.marker', { hasText: 'Caught up on 1 message sent since the restart.' }).waitFor();
    const order = await b.page.locator('#chat-list > li').evaluateAll((items) =>
      items.map((li) => (li.classList.contains('marker') ? `${li.getAttribute('data-marker')}: ${li.querySelector('.marker-text')?.textContent}` : li.querySelector('.text')?.textContent)),
    );
    assert.equal(order.length, 4, JSON.stringify(order));
    assert.equal(order[0], 'before the restart');
    assert.match(order[1] ?? '', /^warning: The server restarted and its history was lost/);
    assert.equal(order[2], 'sent in new epoch');
    assert.equal(order[3], 'info: Caught up on 1 message sent since the restart.');
    assert.equal(await replayed.getAttribute('data-seq'), '1');
    assert.deepEqual(await listTexts(b.page, '#broadcast-list'), ['sent in new epoch', 'before the restart']);

    // And it is live in the new epoch: no duplicate of the replayed message, new ones arrive.
    await sendMessage(a.page, 'live in new epoch');
    await b.page.locator('#chat-list li.message', { hasText: 'live in new epoch' }).waitFor();
    assert.equal(await b.page.locator('#chat-list li.message', { hasText: 'sent in new epoch' }).count(), 1);
    assert.deepEqual(a.errors, []);
    assert.deepEqual(b.errors, []);
  } finally {
    await browser.close().catch(() => {});
    await server.stop();
  }
});
