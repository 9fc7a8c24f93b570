/**
 * The notice stack under the header: server error frames and meaningful closes. A notice with the
 * same code as a visible one replaces it (with a repeat count) instead of piling up.
 */
import { clockTime } from '../core/format';
import type { Notice } from '../core/session';

const MAX_VISIBLE = 4;
/** How long info and warning notices stay (ms); errors stay until dismissed. */
const AUTO_DISMISS_MS = 12_000;

export class NoticeStack {
  private readonly byCode = new Map<string, { node: HTMLElement; count: number; timer: number | null }>();

  constructor(private readonly root: HTMLElement) {}

  show(notice: Notice): void {
    const existing = this.byCode.get(notice.code);
    if (existing) this.remove(notice.code);
    const count = existing ? existing.count + 1 : 1;
    const node = document.createElement('div');
    node.className = `notice notice-${notice.severity}`;
    node.dataset['code'] = notice.code;
    // Errors interrupt (role=alert); the rest is read politely through the container's live region.
    if (notice.severity === 'error') node.setAttribute('role', 'alert');

    const icon = document.createElement('span');
    icon.className = 'notice-icon';
    icon.setAttribute('aria-hidden', 'true');
    icon.textContent = notice.severity === 'info' ? 'i' : '!';

    const body = document.createElement('div');
    body.className = 'notice-body';
    const title = document.createElement('strong');
    title.textContent = notice.title;
    const detail = document.createElement('span');
    detail.className = 'notice-detail';
    detail.textContent = notice.detail;
    body.append(title, ' ', detail);
    const meta = document.createElement('span');
    meta.className = 'notice-meta';
    meta.textContent = `${clockTime(notice.time)}${count > 1 ? ` · ×${count}` : ''}`;
    body.append(meta);

    const close = document.createElement('button');
    close.type = 'button';
    close.className = 'notice-close';
    close.setAttribute('aria-label', `Dismiss: ${notice.title}`);
    close.textContent = '×';
    close.addEventListener('click', () => this.remove(notice.code));

    node.append(icon, body, close);
    this.root.prepend(node);
    const timer =
      notice.severity === 'error'
        ? null
        : window.setTimeout(() => this.remove(notice.code), AUTO_DISMISS_MS);
    this.byCode.set(notice.code, { node, count, timer });
    while (this.root.children.length > MAX_VISIBLE) {
      const last = this.root.lastElementChild as HTMLElement | null;
      const code = last?.dataset['code'];
      if (code === undefined) break;
      this.remove(code);
    }
  }

  /** Removes the info and warning notices whose code starts with `prefix` (a problem that is over). */
  resolve(prefix: string): void {
    for (const [code, item] of [...this.byCode]) {
      if (code.startsWith(prefix) && !item.node.classList.contains('notice-error')) this.remove(code);
    }
  }

  /** Removes the notice with `code`, if shown. */
  remove(code: string): void {
    const item = this.byCode.get(code);
    if (!item) return;
    if (item.timer !== null) window.clearTimeout(item.timer);
    item.node.remove();
    this.byCode.delete(code);
  }
}
