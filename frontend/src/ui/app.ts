/**
 * Wires the pure core (Session) and the socket adapter (Connection) to the page: status line,
 * composer (with its send queue and failures row), the two feeds, notices, metrics, the live
 * region, the status poll, the phone view switch and the split view.
 */
import * as fmt from '../core/format';
import type { Effect, Entry } from '../core/session';
import { Session } from '../core/session';
import { CounterRate } from '../core/throughput';
import { connectionsFromHealth, healthUrl, messagesInFromStatus, statusUrl } from '../core/url';
import { Connection, type SocketLike } from '../net/connection';
import { FailuresBar } from './failures';
import { FeedView } from './feed';
import { MetricsView } from './metrics';
import { NoticeStack } from './notices';
import { SplitView, paneName } from './split';
import { trackVisibleHeight } from './viewport';

/** Entries kept per list (and in the DOM): enough context, constant cost. */
export const LIST_CAPACITY = 500;
/** How often the connection count and server throughput are refreshed while visible (ms). */
const STATUS_INTERVAL_MS = 2_000;
/** How often the clock-driven bits (countdown, time online) refresh (ms). */
const TICK_MS = 200;
/** Announce at most this often to screen readers (ms). */
const ANNOUNCE_INTERVAL_MS = 1_500;

function byId<T extends HTMLElement>(id: string, type: { new (): T }): T {
  const node = document.getElementById(id);
  if (!(node instanceof type)) throw new Error(`#${id} is missing from index.html`);
  return node;
}

function setText(node: Element | null, text: string): void {
  if (node && node.textContent !== text) node.textContent = text;
}

export function startApp(): void {
  const status = byId('status', HTMLElement);
  const statusPill = byId('status-pill', HTMLElement);
  const statusText = byId('status-text', HTMLElement);
  const countdown = byId('countdown', HTMLElement);
  const reconnectNow = byId('reconnect-now', HTMLButtonElement);
  const toggle = byId('toggle-connection', HTMLButtonElement);
  const form = byId('composer', HTMLFormElement);
  const input = byId('message-input', HTMLTextAreaElement);
  const send = byId('send', HTMLButtonElement);
  const hint = byId('composer-hint', HTMLElement);
  const chatList = byId('chat-list', HTMLOListElement);
  const broadcastList = byId('broadcast-list', HTMLOListElement);
  const chatEmpty = byId('chat-empty', HTMLElement);
  const broadcastEmpty = byId('broadcast-empty', HTMLElement);
  const jump = byId('jump-latest', HTMLButtonElement);
  const announcer = byId('announcer', HTMLElement);
  const progress = byId('send-progress', HTMLElement);
  const notices = new NoticeStack(byId('notices', HTMLElement));

  const pane = paneName(window.location.search);
  if (pane !== null) {
    // Inside the split view: one of its two clients.
    document.body.dataset['pane'] = pane;
    const label = byId('pane-label', HTMLElement);
    label.textContent = `Client ${pane}`;
    label.hidden = false;
    byId('split-toggle', HTMLButtonElement).hidden = true;
  }
  trackVisibleHeight();

  const session = new Session();
  const serverRate = new CounterRate();
  const metrics = new MetricsView(session, serverRate);
  const chat = new FeedView(chatList, chatList, {
    capacity: LIST_CAPACITY,
    newestFirst: false,
    view: 'chat',
    trimNote: byId('chat-trimmed', HTMLElement),
    onUnseen: (n) => {
      jump.hidden = n === 0;
      jump.textContent = `${n} new message${n === 1 ? '' : 's'} ↓`;
    },
    onCount: (n) => {
      chatEmpty.hidden = n > 0;
    },
  });
  const broadcasts = new FeedView(broadcastList, broadcastList, {
    capacity: LIST_CAPACITY,
    newestFirst: true,
    view: 'broadcast',
    trimNote: byId('broadcast-trimmed', HTMLElement),
    onCount: (n) => {
      broadcastEmpty.hidden = n > 0;
    },
  });
  jump.addEventListener('click', () => {
    chat.jumpToNewest();
    input.focus();
  });

  // --- screen-reader announcements and the unread badge in the title ------------------------
  let toAnnounce: Entry[] = [];
  let announceTimer: number | null = null;
  let unread = 0;
  const baseTitle = document.title;
  const announce = (entry: Entry): void => {
    toAnnounce.push(entry);
    if (toAnnounce.length > 50) toAnnounce = toAnnounce.slice(-50);
    if (announceTimer !== null) return;
    announceTimer = window.setTimeout(() => {
      announceTimer = null;
      const batch = toAnnounce;
      toAnnounce = [];
      const last = batch[batch.length - 1];
      if (!last) return;
      const says =
        last.kind === 'marker'
          ? last.text
          : `from ${fmt.shortId(last.sender)}: ${last.text.slice(0, 160)}`;
      announcer.textContent =
        batch.length === 1
          ? last.kind === 'marker' ? says : `New message ${says}`
          : `${batch.length} new messages. Latest ${says}`;
    }, ANNOUNCE_INTERVAL_MS);
  };
  /** Says `text` through the live region now (not batched with messages). */
  const say = (text: string): void => {
    announcer.textContent = text;
  };
  /** The size of the queued run announced as started (0: none). */
  let announcedRun = 0;
  const updateTitle = (): void => {
    document.title = unread > 0 ? `(${unread}) ${baseTitle}` : baseTitle;
  };

  // --- effects from the session ---------------------------------------------------------------
  const onEffects = (effects: Effect[]): void => {
    for (const effect of effects) {
      switch (effect.type) {
        case 'added': {
          const entry = effect.entry;
          if (entry.kind === 'marker') {
            chat.add(entry);
            broadcasts.add(entry);
            announce(entry);
          } else if (entry.own) {
            chat.add(entry, !entry.replayed);
          } else {
            chat.add(entry);
            broadcasts.add(entry);
            if (!entry.replayed && !entry.earlier) {
              announce(entry);
              if (document.hidden) unread += 1;
            }
          }
          break;
        }
        case 'updated':
          chat.update(effect.entry);
          if (!effect.entry.own) broadcasts.update(effect.entry);
          break;
        case 'removed':
          chat.remove(effect.entry);
          break;
        case 'notice':
          notices.show(effect.notice);
          break;
      }
    }
    if (unread > 0) updateTitle();
  };

  let renderScheduled = false;
  const scheduleRender = (): void => {
    if (renderScheduled) return;
    renderScheduled = true;
    let done = false;
    const run = (): void => {
      if (done) return;
      done = true;
      renderScheduled = false;
      render();
    };
    requestAnimationFrame(run);
    window.setTimeout(run, 100);
  };

  const connection = new Connection({
    session,
    pageHref: window.location.href,
    createSocket: (url) => new WebSocket(url) as unknown as SocketLike,
    onEffects,
    onChange: scheduleRender,
  });
  const failures = new FailuresBar({
    root: byId('failures', HTMLElement),
    text: byId('failures-text', HTMLElement),
    resend: byId('resend-all', HTMLButtonElement),
    dismiss: byId('dismiss-failures', HTMLButtonElement),
    onResend: () => connection.resendFailed(),
    onDismiss: () => {
      session.dismissFailures();
      scheduleRender();
      input.focus();
    },
  });

  // --- status, composer, metrics --------------------------------------------------------------
  let lastState = '';
  const renderStatus = (now: number): void => {
    const state = connection.state;
    status.dataset['state'] = state;
    statusPill.dataset['state'] = state;
    document.body.dataset['connection'] = state;
    let text: string;
    switch (state) {
      case 'open':
        text = !session.recovering ? 'Connected' : session.askedLast !== null ? 'Connected · loading recent…' : 'Connected · catching up…';
        break;
      case 'connecting':
        text = connection.attempt === 0 ? 'Connecting…' : `Reconnecting… (attempt ${connection.attempt})`;
        break;
      case 'waiting': {
        text = connection.lastClose ? shortCloseTitle(connection.lastClose) : 'Offline';
        break;
      }
      case 'disconnected':
        text = 'Disconnected';
        break;
    }
    setText(statusText, text);
    const waiting = state === 'waiting' && connection.reconnectAt !== null;
    countdown.hidden = !waiting;
    reconnectNow.hidden = !waiting;
    if (waiting && connection.reconnectAt !== null) {
      setText(countdown, `retry in ${fmt.countdown(connection.reconnectAt - now)}`);
    }
    setText(toggle, state === 'disconnected' ? 'Connect' : 'Disconnect');
    toggle.classList.toggle('primary', state === 'disconnected');
    if (state !== lastState) {
      if (state === 'open') {
        notices.resolve('close-');
        void pollStatus(); // a first reading at once: the count, and the sparkline's baseline
      }
      lastState = state;
      renderComposer();
    }
  };

  const renderComposer = (): void => {
    const text = input.value;
    const open = connection.state === 'open';
    const problem = open && text.length > 0 ? session.check(text) : null;
    send.disabled = !open || text.trim() === '' || problem !== null;
    const run = session.progress();
    progress.hidden = run === null || run.total < 2;
    if (run !== null) {
      const rate = session.limits?.publishRate;
      setText(progress, open
        ? `Sending ${fmt.count(run.sent)} of ${fmt.count(run.total)}${rate != null ? ` · paced to the server's ${rate}/s` : ''}`
        : `${fmt.count(run.sent)} of ${fmt.count(run.total)} sent · ${fmt.count(run.queued)} waiting for the connection`);
    }
    failures.render(session.failures(), open);
    hint.classList.toggle('error', problem !== null);
    input.setAttribute('aria-invalid', String(problem !== null));
    if (!open) {
      setText(hint, connection.state === 'disconnected'
        ? 'Disconnected: connect to send. Your draft is kept.'
        : 'Offline: sending resumes once reconnected. Your draft is kept.');
    } else if (problem !== null) {
      setText(hint, problem);
    } else {
      const max = session.limits?.maxMessageBytes;
      const size = max != null && text.length * 3 > max * 0.8 ? new TextEncoder().encode(text).length : 0;
      setText(hint, max != null && size > max * 0.8
        ? `${fmt.count(size)} / ${fmt.count(max)} bytes`
        : 'Enter to send · Shift+Enter for a new line');
    }
  };

  /**
   * Screen readers hear when a queued run starts and ends, not every step of it. Called from the
   * scheduled render, so a burst submitted in one go is announced with its full size.
   */
  const announceRun = (): void => {
    const run = session.progress();
    if (run !== null && run.total >= 2 && announcedRun === 0) {
      announcedRun = run.total;
      say(`Sending ${fmt.plural(run.total, 'message')} at the server's pace.`);
    } else if (run === null && announcedRun > 0) {
      say(session.failures().length === 0 ? 'All queued messages sent.' : 'Queued messages sent; some failed.');
      announcedRun = 0;
    }
  };

  const render = (): void => {
    const now = Date.now();
    renderStatus(now);
    renderComposer();
    announceRun();
    metrics.render(now, connection.state);
  };

  // --- user input -----------------------------------------------------------------------------
  const autosize = (): void => {
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  };
  input.addEventListener('input', () => {
    autosize();
    renderComposer();
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = input.value;
    if (text.trim() === '') return;
    const result = connection.send(text);
    if (result.ok) {
      input.value = '';
      autosize();
    } else {
      hint.classList.add('error');
      setText(hint, result.reason);
    }
    renderComposer();
    input.focus();
  });
  toggle.addEventListener('click', () => {
    if (connection.state === 'disconnected') connection.connect();
    else connection.disconnect();
  });
  reconnectNow.addEventListener('click', () => connection.reconnectNow());
  chatList.addEventListener('click', (ev) => {
    const target = ev.target;
    if (!(target instanceof HTMLElement) || target.dataset['action'] !== 'resend') return;
    const li = target.closest('li');
    const text = li?.querySelector('.text')?.textContent ?? '';
    session.forgetFailure(target.dataset['key'] ?? '');
    input.value = text;
    autosize();
    renderComposer();
    input.focus();
  });
  window.addEventListener('online', () => connection.reconnectNow());

  // --- connection count and server throughput: GET api/status (else health) while visible ---
  let statusBusy = false;
  const getJson = async (url: string): Promise<unknown> => {
    const response = await fetch(url, { cache: 'no-store', headers: { accept: 'application/json' } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return response.json();
  };
  const pollStatus = async (): Promise<void> => {
    if (statusBusy || document.hidden || connection.state !== 'open') return;
    statusBusy = true;
    try {
      let body: unknown;
      try {
        body = await getJson(statusUrl(window.location.href));
        const messagesIn = messagesInFromStatus(body);
        if (messagesIn !== null) serverRate.sample(Date.now(), messagesIn);
      } catch {
        body = await getJson(healthUrl(window.location.href)); // a proxy may expose only /health
      }
      const n = connectionsFromHealth(body);
      if (n !== null) session.setConnections(n);
      scheduleRender();
    } catch {
      // Offline or restarting: the status line already says so.
      serverRate.reset();
    } finally {
      statusBusy = false;
    }
  };
  window.setInterval(() => void pollStatus(), STATUS_INTERVAL_MS);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) {
      unread = 0;
      updateTitle();
      void pollStatus();
    }
  });

  // --- phone: chat or broadcasts; split view ----------------------------------------------------
  const showView = (view: 'chat' | 'broadcasts'): void => {
    document.body.dataset['phoneView'] = view;
    (view === 'chat' ? input : broadcastList).focus();
  };
  byId('show-broadcasts', HTMLButtonElement).addEventListener('click', () => showView('broadcasts'));
  byId('show-chat', HTMLButtonElement).addEventListener('click', () => showView('chat'));
  new SplitView({
    root: byId('split', HTMLElement),
    toggle: byId('split-toggle', HTMLButtonElement),
    onChange: (split) => {
      // The panes are the clients now; this page's own connection rests meanwhile.
      if (split) connection.disconnect();
      else connection.connect();
    },
  });

  window.setInterval(() => {
    if (connection.state === 'waiting' || session.onlineSince !== null) render();
  }, TICK_MS);
  // The sparkline moves once a second even when nothing else changes.
  window.setInterval(() => metrics.render(Date.now(), connection.state), 1_000);

  connection.connect();
  render();
}

function shortCloseTitle(close: { code: number; opened: boolean }): string {
  if (!close.opened && close.code === 1006) return 'Server unreachable';
  switch (close.code) {
    case 1001:
      return 'Server restarting';
    case 1009:
      return 'Message too large';
    case 1012:
      return 'History lost';
    case 1013:
      return 'Server full';
    case 4008:
      return 'Fell behind';
    case 1008:
      return 'Rate limited';
    default:
      return 'Connection lost';
  }
}
