/** Small, pure formatting helpers for the UI (deterministic, so they are easy to test). */

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** `HH:MM:SS` in the viewer's local time zone. */
export function clockTime(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A full local date and time for a tooltip / `datetime` attribute. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

/** `42s`, `3m 05s`, `1h 02m`: how long something has lasted. */
export function duration(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h ${pad(m)}m`;
  if (m > 0) return `${m}m ${pad(s)}s`;
  return `${s}s`;
}

/** A latency for display: `0.4 ms`, `12 ms`, `1.3 s`. Negative values (clock skew) show as `<1 ms`. */
export function latency(ms: number): string {
  if (!Number.isFinite(ms)) return '—';
  if (ms < 1) return '<1 ms';
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/** A countdown for the reconnect line: `3.2 s`, `12 s`. */
export function countdown(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  return s < 10 ? `${s.toFixed(1)} s` : `${Math.ceil(s)} s`;
}

/** Thousands separators without depending on the locale: `12,345`. */
export function count(n: number): string {
  return String(Math.trunc(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** A short, readable form of a client id: its first 6 characters. */
export function shortId(id: string): string {
  return id.length > 6 ? id.slice(0, 6) : id || '?';
}

/** A stable hue (0–359) for a client id, so each sender keeps its colour. */
export function hue(id: string): number {
  let h = 2166136261;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0) % 360;
}

/** `1 frame`, `2 frames`, `1,000 messages`: a count with its noun, plural when it is not 1. */
export function plural(n: number, noun: string, nouns = `${noun}s`): string {
  return `${count(n)} ${Math.trunc(n) === 1 ? noun : nouns}`;
}

/** A rate for display: `0/s`, `0.3/s`, `12/s`, `1,250/s`. */
export function rate(perSecond: number): string {
  if (!Number.isFinite(perSecond) || perSecond <= 0) return '0/s';
  if (perSecond < 10) return `${Math.round(perSecond * 10) / 10}/s`;
  return `${count(Math.round(perSecond))}/s`;
}
