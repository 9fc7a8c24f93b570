/**
 * Split view: two independent clients side by side in one page, so a broadcast can be watched
 * going from one to the other. Each pane is this page in an iframe with `?pane=A` / `?pane=B`
 * (its own app, its own connection); the page's own connection rests meanwhile.
 */

/** The pane name when this page runs inside the split view (`?pane=A`), else null. */
export function paneName(search: string): string | null {
  const name = new URLSearchParams(search).get('pane');
  return name !== null && /^[A-Za-z0-9]{1,8}$/.test(name) ? name : null;
}

export interface SplitOptions {
  readonly root: HTMLElement;
  readonly toggle: HTMLButtonElement;
  /** Called with true when the split view opens (rest the page's connection), false when it closes. */
  readonly onChange: (split: boolean) => void;
}

export class SplitView {
  private open = false;

  constructor(private readonly options: SplitOptions) {
    options.toggle.addEventListener('click', () => this.set(!this.open));
  }

  get active(): boolean {
    return this.open;
  }

  set(open: boolean): void {
    if (open === this.open) return;
    this.open = open;
    const { root, toggle } = this.options;
    toggle.setAttribute('aria-pressed', String(open));
    toggle.textContent = open ? 'Single view' : 'Split view';
    document.body.dataset['split'] = open ? 'on' : 'off';
    if (open) {
      root.replaceChildren(...['A', 'B'].map((name) => pane(name)));
    } else {
      root.replaceChildren();
    }
    root.hidden = !open;
    this.options.onChange(open);
  }
}

function pane(name: string): HTMLElement {
  const frame = document.createElement('iframe');
  const url = new URL(window.location.href);
  url.search = '';
  url.hash = '';
  url.searchParams.set('pane', name);
  frame.src = url.toString();
  frame.title = `Client ${name}`;
  frame.name = `pane-${name}`;
  frame.className = 'split-pane';
  return frame;
}
