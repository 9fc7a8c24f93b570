// @ts-check
/**
 * The phone layout (390×844) behaves like a chat app: the list takes the free height, the
 * composer is pinned at the bottom, the metrics fold into one line, and nothing overlaps, with an
 * empty feed and with a notice shown (the server stopped).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  TEST_TIMEOUT_MS,
  edges,
  launchBrowser,
  openUi,
  overlaps,
  rawClient,
  sendMessage,
  seriousViolations,
  startServer,
} from './helpers.mjs';

const WIDTH = 390;
const HEIGHT = 844;

/**
 * The boxes that matter on a phone, and whether the page itself scrolls.
 * @param {import('playwright-core').Page} page
 */
async function geometry(page) {
  const box = async (/** @type {string} */ selector) => edges(await page.locator(selector).boundingBox());
  return {
    list: await box('#chat-list'),
    empty: await box('#chat-empty'),
    composer: await box('#composer'),
    input: await box('#message-input'),
    summary: await box('#metrics-summary'),
    topbar: await box('.topbar'),
    pageScrolls: await page.evaluate(() => document.documentElement.scrollHeight > document.documentElement.clientHeight + 1),
  };
}

/**
 * What must hold in every state: the composer at the bottom, the list above it taking the free
 * height, the empty-state text inside the list and clear of the composer.
 * @param {Awaited<ReturnType<typeof geometry>>} g
 * @param {number} minListHeight
 */
function assertChatLayout(g, minListHeight) {
  assert.equal(g.pageScrolls, false, 'the page itself does not scroll');
  assert.ok(g.composer.bottom <= HEIGHT && g.composer.bottom >= HEIGHT - 24, `composer pinned at the bottom: ${JSON.stringify(g.composer)}`);
  assert.ok(g.input.bottom <= HEIGHT, 'message box on screen');
  assert.ok(g.list.height >= minListHeight, `chat list is ${g.list.height}px tall, want >= ${minListHeight}`);
  assert.ok(g.list.bottom <= g.composer.top + 0.5, 'list ends above the composer');
  assert.ok(g.summary.height <= 48, `metrics fold into one line (${g.summary.height}px)`);
  assert.ok(g.summary.bottom <= g.list.top, 'metrics summary above the list');
  // The empty state sits inside the list, clear of the composer.
  assert.ok(g.empty.top >= g.list.top - 0.5 && g.empty.bottom <= g.list.bottom + 0.5, `empty text inside the list: ${JSON.stringify({ empty: g.empty, list: g.list })}`);
  assert.equal(overlaps(g.empty, g.composer), false, 'empty text clear of the composer');
}

test('phone 390×844: list fills the screen, composer pinned, with an empty feed and with a notice', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await startServer();
  const browser = await launchBrowser();
  try {
    const { page, errors } = await openUi(browser, server.url, { width: WIDTH, height: HEIGHT });

    // Empty feed.
    await page.locator('#chat-empty').waitFor({ state: 'visible' });
    const empty = await geometry(page);
    assertChatLayout(empty, HEIGHT * 0.55);
    // The empty-state text fits (it does not spill out of its box).
    assert.equal(
      await page.locator('#chat-empty').evaluate((el) => el.scrollHeight <= el.clientHeight + 1),
      true,
      'empty text fits its box',
    );

    // The summary expands to the full metrics and folds again.
    const summary = page.locator('#metrics-summary');
    assert.equal(await page.locator('#m-sent').isVisible(), false);
    await summary.click();
    assert.equal(await summary.getAttribute('aria-expanded'), 'true');
    await page.locator('#m-sent').waitFor({ state: 'visible' });
    const expanded = await geometry(page);
    assert.ok(expanded.composer.bottom <= HEIGHT, 'composer still on screen with metrics expanded');
    await summary.click();
    await page.locator('#m-sent').waitFor({ state: 'hidden' });

    // The server stops: a notice appears; the layout still holds, nothing overlaps.
    await server.stop();
    const notice = page.locator('.notice[data-code="close-1001"]');
    await notice.waitFor();
    await page.locator('#reconnect-now').waitFor({ state: 'visible' });
    const stopped = await geometry(page);
    assertChatLayout(stopped, HEIGHT * 0.35);
    const n = edges(await notice.boundingBox());
    for (const [name, box] of Object.entries({ list: stopped.list, empty: stopped.empty, composer: stopped.composer, summary: stopped.summary })) {
      assert.equal(overlaps(n, box), false, `notice overlaps the ${name}`);
    }
    assert.ok(n.bottom <= stopped.summary.top + 0.5, 'notice above the metrics and the list');
    // The status and its countdown are readable in full (not cut to "Server un…").
    await page.locator('#countdown').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#status-text').evaluate((el) => el.scrollWidth <= el.clientWidth), true, 'status text not truncated');
    assert.match(await page.locator('#metrics-summary-text').innerText(), /^offline · /);
    assert.deepEqual(await seriousViolations(page), [], 'axe-core on the phone with a notice shown');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close().catch(() => {});
    await server.stop();
  }
});

test('phone: the composer stays above the on-screen keyboard, and broadcasts are one tap away', { timeout: TEST_TIMEOUT_MS }, async () => {
  const server = await startServer();
  const browser = await launchBrowser();
  try {
    const { page, errors } = await openUi(browser, server.url, { width: WIDTH, height: HEIGHT });
    const raw = await rawClient(server.url);
    for (let i = 1; i <= 30; i++) await raw.publish(`line ${i} from another client`);
    await page.locator('#chat-list li.message', { hasText: 'line 30 from' }).waitFor();
    await sendMessage(page, 'mine, at the bottom');
    const mine = page.locator('#chat-list li.own[data-status="delivered"]', { hasText: 'mine, at the bottom' });
    await mine.waitFor();

    // The keyboard opens: Chromium shrinks the layout viewport (interactive-widget=resizes-content).
    await page.getByLabel('Message', { exact: true }).focus();
    const keyboardTop = 480;
    await page.setViewportSize({ width: WIDTH, height: keyboardTop });
    await page.waitForFunction((h) => {
      const c = document.getElementById('composer')?.getBoundingClientRect();
      return c !== undefined && c.bottom <= h && c.bottom >= h - 24;
    }, keyboardTop);
    // The page is as tall as the visible viewport (--app-height follows visualViewport).
    await page.waitForFunction(() => {
      const vv = window.visualViewport;
      return vv !== null && Math.abs(document.body.getBoundingClientRect().height - vv.height) <= 1;
    });
    const list = edges(await page.locator('#chat-list').boundingBox());
    const composer = edges(await page.locator('#composer').boundingBox());
    assert.ok(list.height >= 120, `list keeps ${list.height}px above the keyboard`);
    assert.ok(list.bottom <= composer.top + 0.5);
    // The newest message is still in view right above the composer.
    const last = edges(await mine.boundingBox());
    assert.ok(last.bottom <= list.bottom + 1 && last.top >= list.top - 1, 'newest message visible');
    await page.setViewportSize({ width: WIDTH, height: HEIGHT });

    // Broadcasts: a tap away, and back.
    await page.getByRole('button', { name: 'Broadcasts', exact: true }).click();
    await page.locator('#broadcast-list').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#chat-list').isVisible(), false);
    const feed = edges(await page.locator('#broadcast-list').boundingBox());
    assert.ok(feed.height >= HEIGHT * 0.55, `broadcast list fills the screen (${feed.height}px)`);
    assert.equal(await page.locator('#broadcast-list li.message').first().locator('.text').innerText(), 'line 30 from another client');
    await page.getByRole('button', { name: 'Back to chat', exact: true }).click();
    await page.locator('#chat-list').waitFor({ state: 'visible' });
    await raw.close();
    assert.deepEqual(errors, []);
  } finally {
    await browser.close().catch(() => {});
    await server.stop();
  }
});
