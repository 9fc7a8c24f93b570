/** Builds the DOM for one list entry. Plain DOM calls: text is never parsed as HTML. */
import * as fmt from '../core/format';
import type { Entry, MarkerEntry, MessageEntry } from '../core/session';

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function timeOf(entry: MessageEntry): number {
  return entry.serverTime ?? entry.localTime;
}

function statusText(entry: MessageEntry): string {
  switch (entry.status) {
    case 'queued':
      return 'Queued';
    case 'pending':
      return 'Sending…';
    case 'delivered':
      return 'Delivered';
    case 'failed':
      return 'Not delivered';
  }
}

/** Fills the meta line (time, latency, status) of a message node. */
function fillMeta(meta: HTMLElement, entry: MessageEntry, view: 'chat' | 'broadcast'): void {
  meta.replaceChildren();
  if (!entry.own || view === 'broadcast') {
    const who = el('span', 'sender', fmt.shortId(entry.sender));
    who.title = `client ${entry.sender}`;
    meta.append(who);
  }
  const t = timeOf(entry);
  const time = el('time', 'time', fmt.clockTime(t));
  time.dateTime = fmt.isoTime(t);
  time.title = entry.serverTime !== null ? 'server time' : 'sent at';
  meta.append(time);
  if (entry.seq !== null) meta.append(el('span', 'seq', `#${entry.seq}`));
  if (entry.earlier) {
    const tag = el('span', 'tag tag-earlier', 'earlier');
    tag.title = 'Sent before you joined';
    meta.append(tag);
  } else if (entry.replayed) {
    const tag = el('span', 'tag', 'replayed');
    tag.title = 'Missed while disconnected; delivered by the resume';
    meta.append(tag);
  } else if (entry.latencyMs !== null) {
    const lat = el('span', 'latency', fmt.latency(entry.latencyMs));
    lat.title = entry.own ? 'round trip: sent → acknowledged' : 'arrival minus server timestamp';
    meta.append(lat);
  }
  if (entry.own && view === 'chat') {
    const status = el('span', `state state-${entry.status}`, statusText(entry));
    meta.append(status);
  }
}

/** A message as a list item. `data-*` attributes make it easy to find in tests. */
export function renderMessage(entry: MessageEntry, view: 'chat' | 'broadcast'): HTMLLIElement {
  const li = el('li', `entry message ${entry.own ? 'own' : 'other'}`);
  li.dataset['key'] = entry.key;
  li.style.setProperty('--sender-hue', String(fmt.hue(entry.sender)));
  const bubble = el('div', 'bubble');
  const body = el('p', 'text', entry.text);
  if (entry.text === '') body.classList.add('blank');
  const meta = el('p', 'meta');
  bubble.append(body, meta);
  const failure = el('p', 'failure');
  bubble.append(failure);
  li.append(bubble);
  updateMessage(li, entry, view);
  return li;
}

/** Brings an existing message node up to date (status, seq, latency). */
export function updateMessage(li: HTMLElement, entry: MessageEntry, view: 'chat' | 'broadcast'): void {
  li.dataset['status'] = entry.status;
  li.dataset['own'] = String(entry.own);
  if (entry.seq !== null) li.dataset['seq'] = String(entry.seq);
  if (entry.replayed) li.dataset['replayed'] = 'true';
  if (entry.earlier) li.dataset['earlier'] = 'true';
  const meta = li.querySelector<HTMLElement>('.meta');
  if (meta) fillMeta(meta, entry, view);
  const failure = li.querySelector<HTMLElement>('.failure');
  if (failure) {
    failure.replaceChildren();
    failure.hidden = entry.status !== 'failed';
    if (entry.status === 'failed') {
      // One line: the failures row above the composer says the rest, once for all of them.
      const why = el('span', 'failure-reason', entry.failure ?? 'Not delivered.');
      why.title = entry.failure ?? '';
      failure.append(why);
      const retry = el('button', 'link-button', 'Edit & resend');
      retry.type = 'button';
      retry.dataset['action'] = 'resend';
      retry.dataset['key'] = entry.key;
      failure.append(retry);
    }
  }
  const at = fmt.clockTime(timeOf(entry));
  const label = entry.own
    ? `You at ${at}, ${statusText(entry).toLowerCase()}`
    : `From ${fmt.shortId(entry.sender)} at ${at}${entry.earlier ? ', before you joined' : ''}`;
  li.setAttribute('aria-label', `${label}: ${entry.text}`);
}

export function renderMarker(entry: MarkerEntry): HTMLLIElement {
  const li = el('li', `entry marker marker-${entry.level}`);
  li.dataset['key'] = entry.key;
  li.dataset['marker'] = entry.level;
  const icon = el('span', 'marker-icon', entry.level === 'warning' ? '!' : '↻');
  icon.setAttribute('aria-hidden', 'true');
  const text = el('span', 'marker-text', entry.text);
  const time = el('time', 'time', fmt.clockTime(entry.time));
  time.dateTime = fmt.isoTime(entry.time);
  li.append(icon, text, time);
  return li;
}

export function renderEntry(entry: Entry, view: 'chat' | 'broadcast'): HTMLLIElement {
  return entry.kind === 'marker' ? renderMarker(entry) : renderMessage(entry, view);
}
