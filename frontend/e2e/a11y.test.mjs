// @ts-check
/**
 * axe-core (injected into the page) reports no serious or critical violation, in light and dark,
 * on desktop and phone widths, with every kind of list entry present: earlier messages, live
 * ones from others, own ones, resume markers, a failed message and the failures row.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  TEST_TIMEOUT_MS,
  openUi,
  rawClient,
  sendMessage,
  seriousViolations,
  waitForState,
  withServerAndBrowser,
} from './helpers.mjs';

for (const colorScheme of /** @type {const} */ (['light', 'dark'])) {
  test(`axe-core finds no serious or critical violation (${colorScheme})`, { timeout: TEST_TIMEOUT_MS }, async () => {
    await withServerAndBrowser({}, async ({ server, browser }) => {
      const raw = await rawClient(server.url);
      // Senders whose colours used to fail contrast, before the page joins (earlier messages).
      await raw.publish('from before the page joined');
      for (const [width, height] of [[1280, 800], [390, 844]]) {
        const { page, context, errors } = await openUi(browser, server.url, { width, height, colorScheme });
        await page.locator('#chat-list li[data-earlier="true"]').first().waitFor();
        await raw.publish(`live from another client ${width}`);
        await sendMessage(page, `my own message ${width}`);
        await page.locator('#chat-list li.own[data-status="delivered"]', { hasText: `my own message ${width}` }).waitFor();
        // A resume marker: disconnect, miss one, reconnect.
        await page.locator('#toggle-connection').click();
        await waitForState(page, 'disconnected');
        await raw.publish(`missed ${width}`);
        await page.locator('#toggle-connection').click();
        await waitForState(page, 'open');
        await page.locator('#chat-list li.marker', { hasText: 'caught up' }).waitFor();
        // Let the appear animations and the resume settle.
        await page.locator('#status-text', { hasText: /^Connected$/ }).waitFor();

        const found = await seriousViolations(page);
        assert.deepEqual(found, [], `${colorScheme} ${width}px:\n${found.join('\n')}`);

        // A disabled Send looks inert (not a dimmed accent button), in dark mode too.
        const sendLook = () =>
          page.locator('#send').evaluate((el) => {
            const style = getComputedStyle(el);
            return { bg: style.backgroundColor, border: style.borderStyle, cursor: style.cursor };
          });
        assert.equal(await page.locator('#send').isDisabled(), true);
        const disabled = await sendLook();
        await page.getByLabel('Message', { exact: true }).fill('ready');
        const enabled = await sendLook();
        assert.notEqual(disabled.bg, enabled.bg, 'disabled and enabled Send differ');
        assert.equal(disabled.border, 'dashed');
        assert.equal(disabled.cursor, 'not-allowed');
        await page.getByLabel('Message', { exact: true }).fill('');

        // Both scrolling lists can be reached from the keyboard (scrollable-region-focusable).
        for (const id of ['chat-list', 'broadcast-list']) {
          assert.equal(await page.locator(`#${id}`).getAttribute('tabindex'), '0');
        }
        assert.deepEqual(errors, []);
        await context.close();
      }
      await raw.close();
    });
  });
}
