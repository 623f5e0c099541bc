import { describe, expect, it } from 'vitest';
import { Controls } from '../src/controls.js';

describe('Controls', () => {
  it('pauses, resumes and finishes once each; a finish resumes a paused worker', () => {
    const c = new Controls();
    const changes: string[] = [];
    c.onChange(() => changes.push(c.paused ? 'paused' : c.finishing ? 'finishing' : 'training'));
    expect(c.pause()).toBe(true);
    expect(c.pause()).toBe(false);
    expect(c.since).not.toBeNull();
    expect(c.resume()).toBe(true);
    expect(c.resume()).toBe(false);
    c.pause();
    expect(c.finish()).toBe(true);
    expect(c.finish()).toBe(false);
    expect({ paused: c.paused, finishing: c.finishing, since: c.since }).toEqual({
      paused: false,
      finishing: true,
      since: null,
    });
    expect(changes).toEqual(['paused', 'training', 'paused', 'finishing']);
  });

  it('a wait ends on the next change, on abort, or after its time', async () => {
    const c = new Controls();
    c.pause();
    const never = new AbortController().signal;
    const woken = c.waitForChange(60_000, never);
    c.resume();
    await woken;
    const aborted = new AbortController();
    const waiting = c.waitForChange(60_000, aborted.signal);
    aborted.abort();
    await waiting;
    await c.waitForChange(1, never);
  });

  it('is over its memory ceiling only with one set and an RSS above it', () => {
    const mib = 1024 ** 2;
    expect(new Controls().overMemory(10_000 * mib)).toBeNull();
    const c = new Controls({ maxMemoryMb: 512 });
    expect(c.overMemory(512 * mib)).toBeNull();
    expect(c.overMemory(700.4 * mib)).toBe(700);
  });
});
