/** What `worker gpu-check` (gpu-check.ts) and its measuring processes (gpu-check-child.ts) say. */
import type { BackendName } from '@archipelago/models';

/** Each record a measuring process prints on stdout starts with this; other lines are not ours. */
export const RECORD_PREFIX = '@@gpu-check ';

export type ChildCommand =
  | { cmd: 'load'; backend: BackendName; gpu?: number }
  | {
      cmd: 'cell';
      preset: string;
      imageSize: number;
      channels: number;
      batch: number;
      /** The sampling steps images/s is given for. */
      sampleSteps: number;
      /** Epoch ms by which the measurements must be done. */
      deadline: number;
    };
