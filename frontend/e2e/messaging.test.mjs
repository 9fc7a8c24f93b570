// @ts-check
/** Two pages exchange messages; each shows them in the right views. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  TEST_TIMEOUT_MS,
  listTexts,
  openUi,
  rawClient,
  sendMessage,
  until,
  withServerAndBrowser,
} from './helpers.mjs';

test('two pages exchange messages and each shows them in the right views', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({}, async ({ server, browser }) => {
    const a = await openUi(browser, server.url);
    const b = await openUi(browser, server.url);

    await sendMessage(a.page, 'Hello from A', { via: 'enter' });
    await sendMessage(b.page, 'Hi A, this is B', { via: 'button' });

    // Each page's chat shows both messages: its own on the right (data-own), the other's on the left.
    for (const [me, mine, theirs] of /** @type {const} */ ([
      [a, 'Hello from A', 'Hi A, this is B'],
      [b, 'Hi A, this is B', 'Hello from A'],
    ])) {
      const own = me.page.locator('#chat-list li.message.own', { hasText: mine });
      await own.waitFor();
      // pending → delivered once the server's ack arrives
      await me.page.locator('#chat-list li.message.own[data-status="delivered"]', { hasText: mine }).waitFor();
      assert.match((await own.getAttribute('data-seq')) ?? '', /^\d+$/);
      await me.page.locator('#chat-list li.message.other', { hasText: theirs }).waitFor();

      const ownBox = await own.locator('.bubble').boundingBox();
      const otherBox = await me.page.locator('#chat-list li.message.other .bubble', { hasText: theirs }).boundingBox();
      const listBox = await me.page.locator('#chat-list').boundingBox();
      assert.ok(ownBox && otherBox && listBox);
      const middle = listBox.x + listBox.width / 2;
      assert.ok(ownBox.x + ownBox.width > middle && ownBox.x > otherBox.x, 'own bubble is on the right');
      assert.ok(otherBox.x < middle, "the other's bubble is on the left");

      // The broadcast list holds only the other page's message, with its time.
      await me.page.locator('#broadcast-list li.message', { hasText: theirs }).waitFor();
      assert.deepEqual(await listTexts(me.page, '#broadcast-list'), [theirs]);
      assert.match(await me.page.locator('#broadcast-list li.message time').first().innerText(), /^\d\d:\d\d:\d\d$/);
      assert.match(await me.page.locator('#chat-list li.message.own time').first().innerText(), /^\d\d:\d\d:\d\d$/);
    }

    // Live metrics: sent and received counts, a latency, and the connection count (2 pages).
    await a.page.locator('#m-sent .value', { hasText: /^1$/ }).waitFor();
    await a.page.locator('#m-received .value', { hasText: /^1$/ }).waitFor();
    await a.page.locator('#m-latency .value', { hasText: /(ms|s)$/ }).waitFor();
    await a.page.locator('#m-online .value', { hasText: /^\d+s$/ }).waitFor();
    await a.page.locator('#m-connections .value', { hasText: /^2$/ }).waitFor();

    // A third client joins: the first page's count follows through the health poll.
    const raw = await rawClient(server.url);
    await a.page.locator('#m-connections .value', { hasText: /^3$/ }).waitFor();
    // …and its messages reach both pages' broadcast lists, newest first.
    const reply = await raw.publish('Raw client here');
    assert.equal(reply.type, 'ack');
    for (const page of [a.page, b.page]) {
      await until(async () => (await listTexts(page, '#broadcast-list'))[0] === 'Raw client here', {
        message: 'newest broadcast on top',
      });
    }
    // The raw client saw both pages' messages as ordinary broadcasts.
    await raw.close();

    // Screen readers hear about new messages through the live region.
    await a.page.locator('#announcer', { hasText: 'Raw client here' }).waitFor();
    assert.equal(await a.page.locator('#announcer').getAttribute('aria-live'), 'polite');

    assert.deepEqual(a.errors, []);
    assert.deepEqual(b.errors, []);
  });
});

test('the message box works from the keyboard alone', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({}, async ({ server, browser }) => {
    const { page, errors } = await openUi(browser, server.url);
    // The skip link is the first stop and leads to the message box.
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.className), 'skip-link');
    await page.keyboard.press('Enter');
    await page.keyboard.type('typed line one');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('line two');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'message-input');
    await page.keyboard.press('Enter');
    const own = page.locator('#chat-list li.own[data-status="delivered"]');
    await own.waitFor();
    assert.equal(await own.locator('.text').textContent(), 'typed line one\nline two');
    assert.equal(await page.getByLabel('Message', { exact: true }).inputValue(), '');
    // Every control has an accessible name.
    for (const name of ['Send', 'Disconnect']) {
      await page.getByRole('button', { name, exact: true }).waitFor();
    }
    assert.deepEqual(errors, []);
  });
});
