import { describe, expect, it } from 'vitest';
import { CappedList } from '../src/core/capped';

describe('CappedList', () => {
  it('keeps only the newest items and reports what fell off', () => {
    const list = new CappedList<number>(3);
    expect(list.push(1)).toEqual([]);
    list.push(2);
    list.push(3);
    expect(list.push(4)).toEqual([1]);
    expect(list.toArray()).toEqual([2, 3, 4]);
    expect(list.last()).toBe(4);
    expect(list.dropped).toBe(1);
  });

  it('stays at its capacity under a thousand items', () => {
    const list = new CappedList<number>(500);
    for (let i = 0; i < 1000; i++) list.push(i);
    expect(list.length).toBe(500);
    expect(list.toArray()[0]).toBe(500);
    expect(list.dropped).toBe(500);
  });

  it('can be cleared and refuses a bad capacity', () => {
    const list = new CappedList<string>(2);
    list.push('a');
    list.clear();
    expect(list.length).toBe(0);
    expect(() => new CappedList(0)).toThrow(RangeError);
    expect(() => new CappedList(1.5)).toThrow(RangeError);
  });
});
