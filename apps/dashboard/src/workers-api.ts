/** Shapes of the worker and token endpoints (declared by the coordinator's routes). */

export interface WorkerInfo {
  id: string;
  name: string;
  objective: string;
  backend: string | null;
  hardware: {
    cpus?: number;
    memoryBytes?: number;
    threads?: number;
    gpu?: { index: number; name?: string };
  } | null;
  online: boolean;
  lastSeenAt: string | null;
  /** `pausedSince`: when its worker paused training (the volunteer's pause), or null. */
  lease: { id: string; expertId: string; pausedSince?: string | null } | null;
}

export interface WorkerList {
  workers: WorkerInfo[];
}

export interface TokenInfo {
  id: string;
  name: string;
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/** What `GET /api/v1/ensembles/:id/verify` answers. */
export interface Verification {
  ok: boolean;
  id: boolean;
  signature: boolean;
  keyId?: string;
  /** The signing key is the serving coordinator's own. */
  trusted?: boolean;
  error?: string;
  checkpoints: { name: string; ok: boolean; reason?: string }[];
}
