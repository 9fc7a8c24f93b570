// @ts-check
/** Phone-width layout, and a thousand messages without the lists growing without bound. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  TEST_TIMEOUT_MS,
  listTexts,
  openUi,
  rawClient,
  sendMessage,
  withServerAndBrowser,
} from './helpers.mjs';

const FAST = ['--publish-rate', '100000', '--publish-burst', '100000'];

/**
 * Elements wider than the viewport, and scroll containers that scroll sideways.
 * @param {import('playwright-core').Page} page
 */
async function overflow(page) {
  return page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    /** @type {string[]} */
    const problems = [];
    if (document.documentElement.scrollWidth > width) {
      problems.push(`document scrollWidth ${document.documentElement.scrollWidth} > ${width}`);
    }
    for (const node of document.querySelectorAll('body *')) {
      if (!(node instanceof HTMLElement) || node.closest('.visually-hidden')) continue;
      const rect = node.getBoundingClientRect();
      if (rect.width === 0 && rect.height === 0) continue;
      const name = `${node.tagName.toLowerCase()}${node.id ? `#${node.id}` : ''}.${node.className}`;
      if (rect.right > width + 0.5 || rect.left < -0.5) problems.push(`${name} spans ${rect.left}…${rect.right}`);
      if (node.scrollWidth > node.clientWidth + 1 && getComputedStyle(node).overflowX !== 'visible' && node.clientWidth > 0) {
        const ox = getComputedStyle(node).overflowX;
        if (ox === 'auto' || ox === 'scroll') problems.push(`${name} scrolls sideways`);
      }
    }
    return problems;
  });
}

test('a 375px-wide phone layout has no horizontal overflow', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({ args: FAST }, async ({ server, browser }) => {
    const { page, errors } = await openUi(browser, server.url, { width: 375, height: 740 });
    const raw = await rawClient(server.url);
    const unbroken = 'https://example.org/'.concat('a'.repeat(300));
    await raw.publish(unbroken);
    await raw.publish('A normal sentence from another client, long enough to wrap on a phone screen.');
    await sendMessage(page, 'b'.repeat(250));
    await sendMessage(page, 'short one');
    await page.locator('#chat-list li.own[data-status="delivered"]', { hasText: 'short one' }).waitFor();
    await page.locator('#chat-list li.message', { hasText: 'A normal sentence' }).waitFor();
    // A notice too (its text must wrap as well).
    await page.evaluate(() => {
      const input = /** @type {HTMLTextAreaElement} */ (document.getElementById('message-input'));
      input.value = 'c'.repeat(70_000);
      input.dispatchEvent(new Event('input'));
    });
    await page.locator('#composer-hint.error', { hasText: 'Too large' }).waitFor();

    assert.deepEqual(await overflow(page), []);

    // Metrics (folded to one line) above the chat, each the full width; broadcasts one tap away.
    const boxes = await Promise.all(['.metrics', '.chat'].map((s) => page.locator(s).boundingBox()));
    const [metrics, chat] = boxes;
    assert.ok(metrics && chat);
    assert.ok(metrics.y < chat.y, 'metrics above the chat');
    for (const box of boxes) assert.ok(box && box.width > 340 && box.x >= 0, `panel width ${box?.width}`);
    await page.getByRole('button', { name: 'Broadcasts', exact: true }).click();
    const broadcasts = await page.locator('.broadcasts').boundingBox();
    assert.ok(broadcasts && broadcasts.width > 340 && broadcasts.x >= 0, `broadcasts width ${broadcasts?.width}`);
    assert.deepEqual(await overflow(page), []);
    await page.getByRole('button', { name: 'Back to chat', exact: true }).click();
    // The controls fit: message box, send and connection buttons are inside the screen.
    for (const selector of ['#message-input', '#send', '#toggle-connection', '#status']) {
      const box = await page.locator(selector).boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= 375, `${selector} inside the viewport`);
    }
    await raw.close();
    assert.deepEqual(errors, []);
  });
});

test('a thousand messages: the lists stay capped and the newest is visible', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withServerAndBrowser({ args: FAST }, async ({ server, browser }) => {
    const { page, errors } = await openUi(browser, server.url);
    const raw = await rawClient(server.url);
    const texts = Array.from({ length: 1000 }, (_, i) => `bulk ${i + 1}`);
    const last = await raw.publishMany(texts);
    assert.equal(last.type, 'ack');

    await page.locator('#m-received .value', { hasText: /^1,000$/ }).waitFor({ timeout: 30_000 });
    assert.equal(await page.locator('#chat-list > li').count(), 500);
    assert.equal(await page.locator('#broadcast-list > li').count(), 500);
    assert.equal((await listTexts(page, '#broadcast-list'))[0], 'bulk 1000');
    const chatTexts = await listTexts(page, '#chat-list');
    assert.equal(chatTexts[0], 'bulk 501');
    assert.equal(chatTexts.at(-1), 'bulk 1000');

    // The newest chat line is scrolled into view.
    const list = await page.locator('#chat-list').boundingBox();
    const newest = await page.locator('#chat-list > li').last().boundingBox();
    assert.ok(list && newest && newest.y + newest.height <= list.y + list.height + 1 && newest.y >= list.y - 1);

    // Reading older messages after the cap trimmed some: the list says so.
    const note = page.locator('#chat-trimmed');
    assert.equal(await note.isVisible(), false, 'no note while following the newest');
    await page.locator('#chat-list').evaluate((el) => {
      el.scrollTop = 0;
    });
    await note.waitFor({ state: 'visible' });
    assert.match(await note.innerText(), /Older messages trimmed/);
    await page.locator('#chat-list').evaluate((el) => {
      el.scrollTop = el.scrollHeight;
    });
    await note.waitFor({ state: 'hidden' });

    // Still responsive: a message of ours goes out and is confirmed.
    await sendMessage(page, 'still snappy');
    await page.locator('#chat-list li.own[data-status="delivered"]', { hasText: 'still snappy' }).waitFor();
    assert.equal(await page.locator('#chat-list > li').count(), 500);
    await raw.close();
    assert.deepEqual(errors, []);
  });
});
