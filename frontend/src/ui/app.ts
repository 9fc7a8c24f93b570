/**
 * Wires the pure core (Session) and the socket adapter (Connection) to the page: status line,
 * composer, the two feeds, notices, metrics, the live region and the health poll.
 */
import * as fmt from '../core/format';
import type { Effect, Entry } from '../core/session';
import { Session } from '../core/session';
import { connectionsFromHealth, healthUrl } from '../core/url';
import { Connection, type SocketLike } from '../net/connection';
import { FeedView } from './feed';
import { NoticeStack } from './notices';

/** Entries kept per list (and in the DOM): enough context, constant cost. */
export const LIST_CAPACITY = 500;
/** How often the connection count is refreshed while the tab is visible (ms). */
const HEALTH_INTERVAL_MS = 3_000;
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
  const notices = new NoticeStack(byId('notices', HTMLElement));
  const metric = (id: string): { value: Element | null; sub: Element | null } => {
    const dd = byId(id, HTMLElement);
    return { value: dd.querySelector('.value'), sub: dd.querySelector('.sub') };
  };
  const m = {
    connections: metric('m-connections'),
    events: metric('m-events'),
    sent: metric('m-sent'),
    received: metric('m-received'),
    online: metric('m-online'),
    latency: metric('m-latency'),
  };
  const info = {
    client: byId('info-client', HTMLElement),
    epoch: byId('info-epoch', HTMLElement),
    seq: byId('info-seq', HTMLElement),
    server: byId('info-server', HTMLElement),
  };

  const session = new Session();
  const chat = new FeedView(chatList, chatList, {
    capacity: LIST_CAPACITY,
    newestFirst: false,
    view: 'chat',
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
            if (!entry.replayed) announce(entry);
            if (document.hidden) unread += 1;
          }
          break;
        }
        case 'updated':
          chat.update(effect.entry);
          if (!effect.entry.own) broadcasts.update(effect.entry);
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
        text = session.recovering ? 'Connected · catching up…' : 'Connected';
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
      if (state === 'open') notices.resolve('close-');
      lastState = state;
      renderComposer();
    }
  };

  const renderComposer = (): void => {
    const text = input.value;
    const open = connection.state === 'open';
    const problem = open && text.length > 0 ? session.check(text) : null;
    send.disabled = !open || text.trim() === '' || problem !== null;
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

  const renderMetrics = (now: number): void => {
    const x = session.metrics;
    setText(m.connections.value, x.connections === null ? '—' : fmt.count(x.connections));
    setText(m.connections.sub, connection.state === 'open' ? 'live now' : 'last known');
    setText(m.events.value, fmt.count(x.events));
    setText(m.events.sub, `${fmt.count(x.frames)} frames${x.batches ? ` · ${fmt.count(x.batches)} batched` : ''}`);
    setText(m.sent.value, fmt.count(x.sent));
    setText(m.sent.sub, `${fmt.count(x.delivered)} delivered${x.failed ? ` · ${fmt.count(x.failed)} failed` : ''}`);
    setText(m.received.value, fmt.count(x.received));
    setText(m.received.sub, x.replayed ? `${fmt.count(x.replayed)} via resume` : 'from others');
    setText(m.online.value, session.onlineSince === null ? '—' : fmt.duration(now - session.onlineSince));
    setText(m.online.sub, `${fmt.duration(session.onlineTotal(now))} in total`);
    setText(m.latency.value, x.lastLatencyMs === null ? '—' : fmt.latency(x.lastLatencyMs));
    setText(m.latency.sub, x.avgLatencyMs === null ? 'server → you' : `avg ${fmt.latency(x.avgLatencyMs)}`);
    setText(info.client, session.clientId ?? '—');
    setText(info.epoch, session.resume.epoch ?? '—');
    setText(info.seq, session.resume.epoch === null ? '—' : String(session.resume.highestSeq));
    setText(info.server, [session.server, session.batch ? 'batched frames' : null].filter(Boolean).join(' · '));
  };

  const render = (): void => {
    const now = Date.now();
    renderStatus(now);
    renderMetrics(now);
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
    input.value = text;
    autosize();
    renderComposer();
    input.focus();
  });
  window.addEventListener('online', () => connection.reconnectNow());

  // --- connection count: GET health while the tab is visible ----------------------------------
  let healthBusy = false;
  const pollHealth = async (): Promise<void> => {
    if (healthBusy || document.hidden || connection.state !== 'open') return;
    healthBusy = true;
    try {
      const response = await fetch(healthUrl(window.location.href), {
        cache: 'no-store',
        headers: { accept: 'application/json' },
      });
      if (response.ok) {
        const n = connectionsFromHealth(await response.json());
        if (n !== null) {
          session.setConnections(n);
          scheduleRender();
        }
      }
    } catch {
      // Offline or restarting: the status line already says so.
    } finally {
      healthBusy = false;
    }
  };
  window.setInterval(() => void pollHealth(), HEALTH_INTERVAL_MS);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) {
      unread = 0;
      updateTitle();
      void pollHealth();
    }
  });

  window.setInterval(() => {
    if (connection.state === 'waiting' || session.onlineSince !== null) render();
  }, TICK_MS);

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
