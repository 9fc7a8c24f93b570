// @ts-check
/** A new tab starts with a screenful of recent broadcasts (`last`), marked as earlier messages. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TEST_TIMEOUT_MS, listTexts, openUi, rawClient, sendMessage, withServerAndBrowser } from './helpers.mjs';

const FAST = ['--publish-rate', '100000', '--publish-burst', '100000'];

test('a new tab shows the last 50 broadcasts as earlier messages, then live ones', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({ args: FAST }, async ({ server, browser }) => {
    const raw = await rawClient(server.url);
    const texts = Array.from({ length: 80 }, (_, i) => `old ${i + 1}`);
    assert.equal((await raw.publishMany(texts)).type, 'ack');

    const { page, errors } = await openUi(browser, server.url);
    // The socket asked for a screenful.
    const divider = page.locator('#chat-list li.marker', { hasText: '50 earlier messages above, sent before you joined.' });
    await divider.waitFor();
    const earlier = page.locator('#chat-list li.message[data-earlier="true"]');
    assert.equal(await earlier.count(), 50);
    assert.deepEqual(await listTexts(page, '#chat-list'), texts.slice(30));
    assert.equal(await earlier.first().locator('.tag', { hasText: 'earlier' }).count(), 1);
    assert.deepEqual((await listTexts(page, '#broadcast-list')).slice(0, 2), ['old 80', 'old 79']);
    await page.locator('#status-text', { hasText: /^Connected$/ }).waitFor();
    await page.locator('#m-received .sub', { hasText: '50 earlier' }).waitFor();
    assert.equal(await page.locator('#m-received .value').innerText(), '0');

    // Live traffic follows, below the divider and not marked.
    await raw.publish('live now');
    const live = page.locator('#chat-list li.message', { hasText: 'live now' });
    await live.waitFor();
    assert.equal(await live.getAttribute('data-earlier'), null);
    await page.locator('#m-received .value', { hasText: /^1$/ }).waitFor();
    const order = await page.locator('#chat-list > li').evaluateAll((items) =>
      items.map((li) => (li.classList.contains('marker') ? 'divider' : li.querySelector('.text')?.textContent)),
    );
    assert.deepEqual(order.slice(-3), ['old 80', 'divider', 'live now']);
    await sendMessage(page, 'hello all');
    await page.locator('#chat-list li.own[data-status="delivered"]', { hasText: 'hello all' }).waitFor();
    await raw.close();
    assert.deepEqual(errors, []);
  });
});

test('the history on join is bounded by what the server keeps', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({ args: [...FAST, '--history-size', '10'] }, async ({ server, browser }) => {
    const raw = await rawClient(server.url);
    assert.equal((await raw.publishMany(Array.from({ length: 30 }, (_, i) => `kept? ${i + 1}`))).type, 'ack');
    const { page, errors } = await openUi(browser, server.url);
    await page.locator('#chat-list li.marker', { hasText: '10 earlier messages above' }).waitFor();
    assert.deepEqual(await listTexts(page, '#chat-list'), Array.from({ length: 10 }, (_, i) => `kept? ${i + 21}`));
    await raw.close();
    assert.deepEqual(errors, []);
  });
});

test('an empty server: no earlier messages, no divider', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({}, async ({ server, browser }) => {
    const { page, errors } = await openUi(browser, server.url);
    await page.locator('#status-text', { hasText: /^Connected$/ }).waitFor();
    assert.equal(await page.locator('#chat-list > li').count(), 0);
    await page.locator('#chat-empty').waitFor({ state: 'visible' });
    assert.deepEqual(errors, []);
  });
});
