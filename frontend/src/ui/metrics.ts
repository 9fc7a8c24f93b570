/**
 * The metrics panel: six counters, the throughput sparkline, the session line, and (on phones)
 * the one-line summary that folds the panel and expands it on demand.
 */
import * as fmt from '../core/format';
import type { Session } from '../core/session';
import { type CounterRate, sparkPoints } from '../core/throughput';
import type { ConnectionState } from '../net/connection';

const SPARK_W = 120;
const SPARK_H = 28;

function byId(id: string): HTMLElement {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from index.html`);
  return node;
}

function setText(node: Element | null, text: string): void {
  if (node && node.textContent !== text) node.textContent = text;
}

interface Card {
  readonly dd: HTMLElement;
  readonly value: Element | null;
  readonly sub: Element | null;
}

function card(id: string): Card {
  const dd = byId(id);
  return { dd, value: dd.querySelector('.value'), sub: dd.querySelector('.sub') };
}

export class MetricsView {
  private readonly panel = byId('metrics');
  private readonly summary = byId('metrics-summary');
  private readonly summaryText = byId('metrics-summary-text');
  private readonly cards = {
    connections: card('m-connections'),
    events: card('m-events'),
    sent: card('m-sent'),
    received: card('m-received'),
    online: card('m-online'),
    latency: card('m-latency'),
    throughput: card('m-throughput'),
  };
  private readonly spark = byId('sparkline');
  private readonly sparkYou: SVGPolylineElement | null = this.spark.querySelector('.spark-you');
  private readonly sparkServer: SVGPolylineElement | null = this.spark.querySelector('.spark-server');
  private readonly info = {
    client: byId('info-client'),
    epoch: byId('info-epoch'),
    seq: byId('info-seq'),
    server: byId('info-server'),
  };

  constructor(
    private readonly session: Session,
    private readonly serverRate: CounterRate,
  ) {
    this.summary.addEventListener('click', () => {
      const expanded = this.summary.getAttribute('aria-expanded') !== 'true';
      this.summary.setAttribute('aria-expanded', String(expanded));
      this.panel.classList.toggle('expanded', expanded);
    });
  }

  render(now: number, state: ConnectionState): void {
    const x = this.session.metrics;
    const c = this.cards;
    const open = state === 'open';
    setText(c.connections.value, x.connections === null ? '—' : fmt.count(x.connections));
    setText(c.connections.sub, open ? 'live now' : 'last known');
    setText(c.events.value, fmt.count(x.events));
    setText(c.events.sub, `${fmt.plural(x.frames, 'frame')}${x.batches ? ` · ${fmt.plural(x.batches, 'batch', 'batches')}` : ''}`);
    setText(c.sent.value, fmt.count(x.sent));
    const queued = this.session.queuedCount;
    setText(
      c.sent.sub,
      [`${fmt.count(x.delivered)} delivered`, x.failed ? `${fmt.count(x.failed)} failed` : '', queued ? `${fmt.count(queued)} queued` : '']
        .filter(Boolean)
        .join(' · '),
    );
    setText(c.received.value, fmt.count(x.received));
    const received = [x.replayed ? `${fmt.count(x.replayed)} via resume` : '', x.earlier ? `${fmt.count(x.earlier)} earlier` : '']
      .filter(Boolean)
      .join(' · ');
    setText(c.received.sub, received || 'from others');
    setText(c.online.value, this.session.onlineSince === null ? '—' : fmt.duration(now - this.session.onlineSince));
    setText(c.online.sub, `${fmt.duration(this.session.onlineTotal(now))} in total`);
    // Offline, the latency shown is the last one measured: say so.
    const stale = !open && x.lastLatencyMs !== null;
    c.latency.dd.classList.toggle('stale', stale);
    setText(c.latency.value, x.lastLatencyMs === null ? '—' : fmt.latency(x.lastLatencyMs));
    setText(
      c.latency.sub,
      stale ? 'stale: last while online' : x.avgLatencyMs === null ? 'server → you' : `avg ${fmt.latency(x.avgLatencyMs)}`,
    );
    this.renderThroughput(now);
    setText(this.info.client, this.session.clientId ?? '—');
    setText(this.info.epoch, this.session.resume.epoch ?? '—');
    setText(this.info.seq, this.session.resume.epoch === null ? '—' : String(this.session.resume.highestSeq));
    setText(
      this.info.server,
      [this.session.server, this.session.batch ? 'batched frames' : null].filter(Boolean).join(' · '),
    );
    setText(this.summaryText, this.summaryLine(open));
  }

  private renderThroughput(now: number): void {
    const you = this.session.seen.series(now);
    const server = this.serverRate.series(now);
    // The second in progress is partial: plot complete seconds only.
    const youDone = you.slice(0, -1);
    const serverDone = server.slice(0, -1);
    const max = Math.max(1, ...youDone, ...serverDone);
    this.sparkYou?.setAttribute('points', sparkPoints(youDone, SPARK_W, SPARK_H - 1, max));
    this.sparkServer?.setAttribute('points', sparkPoints(serverDone, SPARK_W, SPARK_H - 1, max));
    const mine = this.session.seen.rate(now);
    const theirs = this.serverRate.latest;
    const c = this.cards.throughput;
    setText(c.value, fmt.rate(mine));
    setText(c.sub, theirs === null ? 'you · server —' : `you · server ${fmt.rate(theirs)}`);
    this.spark.setAttribute(
      'aria-label',
      `Messages per second over the last minute: this tab ${fmt.rate(mine)}, server ${theirs === null ? 'unknown' : fmt.rate(theirs)}`,
    );
  }

  /** One line for the folded panel on phones. */
  private summaryLine(open: boolean): string {
    const x = this.session.metrics;
    const parts = [
      // Offline, the last known count would be stale: say offline instead.
      !open ? 'offline' : x.connections === null ? null : `${fmt.count(x.connections)} online`,
      `${fmt.count(x.sent)} sent`,
      `${fmt.count(x.received)} received`,
      x.lastLatencyMs === null ? null : `${fmt.latency(x.lastLatencyMs)}${open ? '' : ' (stale)'}`,
    ];
    return parts.filter(Boolean).join(' · ');
  }
}
