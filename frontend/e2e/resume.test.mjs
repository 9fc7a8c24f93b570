// @ts-check
/**
 * Manual disconnect / connect, and a resume without loss: messages published while the page was
 * away appear exactly once when it comes back.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  TEST_TIMEOUT_MS,
  listTexts,
  openUi,
  rawClient,
  sendMessage,
  until,
  waitForState,
  withServerAndBrowser,
} from './helpers.mjs';

test('manual disconnect stops the connection; connect resumes without loss', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({}, async ({ server, browser }) => {
    const { page, errors } = await openUi(browser, server.url);
    const raw = await rawClient(server.url);
    await raw.publish('live before');
    await page.locator('#broadcast-list li.message', { hasText: 'live before' }).waitFor();
    await sendMessage(page, 'mine before');
    await page.locator('#chat-list li.own[data-status="delivered"]', { hasText: 'mine before' }).waitFor();

    // Disconnect by hand: the status says so, nothing reconnects, sending is off.
    const toggle = page.locator('#toggle-connection');
    assert.equal(await toggle.innerText(), 'Disconnect');
    await toggle.click();
    await waitForState(page, 'disconnected');
    assert.equal(await page.locator('#status-text').innerText(), 'Disconnected');
    assert.equal(await toggle.innerText(), 'Connect');
    assert.equal(await page.locator('#reconnect-now').isHidden(), true);
    assert.equal(await page.locator('#send').isDisabled(), true);
    await page.locator('#composer-hint', { hasText: 'Disconnected' }).waitFor();
    // The latency shown is the last one measured while online, and says so.
    await page.locator('#m-latency.stale .sub', { hasText: 'stale: last while online' }).waitFor();
    // The server sees the page go (the raw client is the only one left).
    await until(async () => {
      const res = await fetch(`${server.url}health`);
      return (await res.json()).connections === 1;
    }, { message: 'server connection count drops to 1' });

    // Others keep talking while the page is away.
    for (const text of ['missed 1', 'missed 2', 'missed 3']) assert.equal((await raw.publish(text)).type, 'ack');
    assert.equal(await page.locator('#status').getAttribute('data-state'), 'disconnected');

    // Connect again: the page resumes from its last seq and catches up.
    await toggle.click();
    await waitForState(page, 'open');
    await page.locator('li.marker', { hasText: 'caught up on 3 missed messages' }).first().waitFor();

    // Exactly once each, in order (newest first in the broadcast list, oldest first in the chat).
    assert.deepEqual(await listTexts(page, '#broadcast-list'), ['missed 3', 'missed 2', 'missed 1', 'live before']);
    assert.deepEqual(await listTexts(page, '#chat-list'), ['live before', 'mine before', 'missed 1', 'missed 2', 'missed 3']);
    assert.equal(await page.locator('#chat-list li[data-replayed="true"]').count(), 3);

    // Live traffic flows both ways again.
    await raw.publish('live after');
    await page.locator('#broadcast-list li.message', { hasText: 'live after' }).waitFor();
    await sendMessage(page, 'mine after');
    await page.locator('#chat-list li.own[data-status="delivered"]', { hasText: 'mine after' }).waitFor();
    await raw.waitFrame((f) => f.type === 'message' && f.message === 'mine after');
    assert.deepEqual(await listTexts(page, '#broadcast-list'), ['live after', 'missed 3', 'missed 2', 'missed 1', 'live before']);
    await page.locator('#m-received .sub', { hasText: '3 via resume' }).waitFor();
    await page.locator('#m-latency:not(.stale) .sub', { hasText: /^avg / }).waitFor();

    await raw.close();
    assert.deepEqual(errors, []);
  });
});
