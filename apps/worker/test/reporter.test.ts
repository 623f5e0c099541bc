import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { formatDuration, formatProgress, Reporter } from '../src/reporter.js';

const p = (step: number) => ({
  cluster: 2,
  objective: 'fm',
  step,
  target: 400,
  loss: 0.41234,
  imagesPerSec: 83.2,
  etaSeconds: 192,
});

describe('Reporter', () => {
  it('formats the progress line', () => {
    expect(formatProgress(p(120))).toBe('expert 2 (fm) step 120/400 loss 0.412 83 img/s ETA 3m12s');
    expect(formatDuration(42)).toBe('42s');
    expect(formatDuration(3840)).toBe('1h04m');
    expect(formatProgress({ ...p(0), loss: null, etaSeconds: null, note: 'offline' })).toMatch(
      /loss - .* ETA - \[offline\]$/,
    );
  });

  it('prints a plain line every 10 % off a TTY, and redraws one line on a TTY', () => {
    const plain = new PassThrough();
    let out = '';
    plain.on('data', (c) => {
      out += c;
    });
    const r = new Reporter(plain, false);
    for (let step = 1; step <= 400; step++) r.progress(p(step), 'lease');
    r.info('hello');
    const lines = out.trim().split('\n');
    expect(lines).toHaveLength(12); // steps 1, 40, 80, ..., 400 and the log line
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT.*Z expert 2 \(fm\) step 1\/400/);
    expect(lines[1]).toContain('step 40/400');
    expect(lines[11]).toMatch(/Z hello$/);

    const tty = new PassThrough();
    let screen = '';
    tty.on('data', (c) => {
      screen += c;
    });
    const t = new Reporter(tty, true);
    t.progress(p(1), 'lease');
    t.progress(p(2), 'lease');
    t.info('checkpoint');
    // The log line clears the progress line, and the progress line is drawn again below it.
    const clear = '\r\x1b[2K';
    const line = formatProgress(p(2));
    expect(screen.startsWith(`${clear}${formatProgress(p(1))}${clear}${line}${clear}`)).toBe(true);
    expect(screen.endsWith(` checkpoint\n${line}`)).toBe(true);
    t.endProgress();
    expect(screen.endsWith(clear)).toBe(true);
  });
});
