/**
 * Run `task(i)` for i in [0, count) with at most `limit` tasks in flight. Rejects with the first
 * error; tasks already started are allowed to finish but no new ones start.
 */
export async function mapWithConcurrency(
  count: number,
  limit: number,
  task: (i: number) => Promise<void>,
): Promise<void> {
  if (!Number.isInteger(limit) || limit < 1)
    throw new RangeError(`concurrency must be an integer >= 1, got ${limit}`);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < count) {
      const i = next++;
      try {
        await task(i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}
