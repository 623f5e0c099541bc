/**
 * Progress for people: on a TTY one line redrawn in place with a bar; elsewhere (CI, pipes, log
 * files) a plain line whenever the stage changes or every 10 %.
 */
export function progressPrinter(stream: NodeJS.WriteStream = process.stderr) {
  let lastStage = '';
  let lastDecile = -1;
  let drawn = false;
  const started = Date.now();
  return {
    update(stage: string, done: number, total: number) {
      const frac = total > 0 ? Math.min(1, done / total) : 0;
      if (stream.isTTY) {
        const width = 24;
        const filled = Math.round(frac * width);
        const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
        const secs = ((Date.now() - started) / 1000).toFixed(1);
        stream.write(`\r\x1b[2K${stage.padEnd(22)} [${bar}] ${done}/${total}  ${secs}s`);
        drawn = true;
        return;
      }
      const decile = Math.floor(frac * 10);
      if (stage !== lastStage || decile > lastDecile) {
        stream.write(`${stage}: ${done}/${total}\n`);
        lastStage = stage;
        lastDecile = decile;
      }
    },
    done() {
      if (drawn) stream.write('\n');
      drawn = false;
    },
  };
}
