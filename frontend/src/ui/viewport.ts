/**
 * Keeps `--app-height` at the visible height, so the phone layout (list above, composer pinned
 * at the bottom) stays above the on-screen keyboard where the browser only shrinks the visual
 * viewport (iOS Safari; Chromium resizes the layout viewport itself with
 * `interactive-widget=resizes-content`).
 */
export function trackVisibleHeight(): void {
  const vv = window.visualViewport;
  if (!vv) return;
  const apply = (): void => {
    document.documentElement.style.setProperty('--app-height', `${Math.round(vv.height)}px`);
  };
  vv.addEventListener('resize', apply);
  apply();
}
