import { describe, expect, it } from 'vitest';
import { connectionsFromHealth, healthUrl, socketUrl } from '../src/core/url';

describe('socketUrl', () => {
  it('uses ws: next to an http page and opts in to batches', () => {
    expect(socketUrl('http://127.0.0.1:8000/')).toBe('ws://127.0.0.1:8000/ws/events?batch=1');
  });

  it('uses wss: under https', () => {
    expect(socketUrl('https://example.org/')).toBe('wss://example.org/ws/events?batch=1');
  });

  it('stays under a proxy path prefix', () => {
    expect(socketUrl('https://example.org/apps/chat/')).toBe('wss://example.org/apps/chat/ws/events?batch=1');
    expect(socketUrl('https://example.org/apps/chat/index.html')).toBe('wss://example.org/apps/chat/ws/events?batch=1');
  });

  it("drops the page's own query and fragment", () => {
    expect(socketUrl('http://h:1/?x=1#top')).toBe('ws://h:1/ws/events?batch=1');
  });

  it('asks for a resume with since and epoch', () => {
    const url = new URL(socketUrl('http://h:1/', { since: 42, epoch: 'k2 x&8' }));
    expect(url.pathname).toBe('/ws/events');
    expect(url.searchParams.get('since')).toBe('42');
    expect(url.searchParams.get('epoch')).toBe('k2 x&8');
    expect(url.searchParams.get('batch')).toBe('1');
  });
});

describe('health', () => {
  it('is relative to the page', () => {
    expect(healthUrl('http://h:1/prefix/?q#f')).toBe('http://h:1/prefix/health');
  });

  it('reads the connection count', () => {
    expect(connectionsFromHealth({ status: 'healthy', connections: 3 })).toBe(3);
    expect(connectionsFromHealth({ status: 'healthy' })).toBeNull();
    expect(connectionsFromHealth({ connections: -1 })).toBeNull();
    expect(connectionsFromHealth({ connections: '3' })).toBeNull();
    expect(connectionsFromHealth(null)).toBeNull();
    expect(connectionsFromHealth('3')).toBeNull();
  });
});

describe('socketUrl: history on join', () => {
  it('asks for the newest broadcasts with last, and never with a negative count', () => {
    expect(new URL(socketUrl('http://h:1/', null, 50)).searchParams.get('last')).toBe('50');
    expect(new URL(socketUrl('http://h:1/', null, -1)).searchParams.has('last')).toBe(false);
    expect(new URL(socketUrl('http://h:1/', null)).searchParams.has('last')).toBe(false);
  });
});
