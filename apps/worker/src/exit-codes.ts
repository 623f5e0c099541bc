/**
 * The worker's exit codes (README "Exit codes"): scripts and service managers act on them.
 *
 * - `ok` 0: stopped by SIGINT/SIGTERM after checkpointing and releasing its lease, finished
 *   (`worker finish`: the current checkpoint uploaded, the lease released), or no work left with
 *   `--exit-when-idle`;
 * - `error` 1: bad usage, a work dir in use, an unexpected failure, or a second signal;
 * - `backend` 2: the requested compute backend (a GPU above all) cannot load; nothing was sent;
 * - `refused` 3: the coordinator refused the worker for good: unknown or revoked token, no common
 *   protocol version, or an invalid hello. Retrying will not help.
 * - `memory` 4: its resident memory went above `--max-memory-mb`; it uploaded what was
 *   checkpointed already and released its lease. Raise the ceiling, or train a smaller preset.
 */
export const EXIT = { ok: 0, error: 1, backend: 2, refused: 3, memory: 4 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];
