/**
 * Every way a checkpoint can be refused. The first group comes from the safetensors
 * container, the second from the Archipelago checkpoint layer on top of it.
 */
export type CheckpointErrorCode =
  // safetensors container
  | 'file_too_short'
  | 'header_too_large'
  | 'header_out_of_bounds'
  | 'invalid_utf8'
  | 'invalid_json'
  | 'header_not_object'
  | 'invalid_metadata'
  | 'invalid_tensor_entry'
  | 'unknown_dtype'
  | 'invalid_shape'
  | 'invalid_offsets'
  | 'byte_length_mismatch'
  | 'offset_out_of_bounds'
  | 'overlapping_tensors'
  | 'data_hole'
  | 'trailing_bytes'
  | 'invalid_bool'
  | 'invalid_tensor'
  // Archipelago checkpoints
  | 'not_safetensors'
  | 'bad_metadata'
  | 'config_mismatch'
  | 'missing_tensor'
  | 'unexpected_tensor'
  | 'shape_mismatch'
  | 'non_finite'
  | 'wrong_dtype'
  | 'not_ddpm';

/** A checkpoint (or safetensors file) that was refused, with a machine-readable code. */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
  readonly code: CheckpointErrorCode;
  /** The tensor the problem is about, when there is one. */
  readonly tensor: string | undefined;

  constructor(
    code: CheckpointErrorCode,
    message: string,
    options: { tensor?: string; cause?: unknown } = {},
  ) {
    super(
      `${code}: ${message}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.code = code;
    this.tensor = options.tensor;
  }
}

// Error messages quote values taken from untrusted files: keep them short.

/** Cuts a string for an error message. */
export const clip = (text: string, max = 200): string =>
  text.length <= max ? text : `${text.slice(0, max)}... (${text.length} chars)`;

/** Quotes a tensor or key name for an error message. */
export const q = (name: string): string => clip(JSON.stringify(name));

/** Any value, as short JSON, for an error message ('missing' for undefined). */
export const show = (value: unknown): string => {
  if (value === undefined) return 'missing';
  try {
    return clip(JSON.stringify(value) ?? String(value), 80);
  } catch {
    return typeof value;
  }
};

/** A shape for an error message: [2, 3], or its first dims and a count. */
export const fmtShape = (shape: readonly number[]): string =>
  shape.length <= 8
    ? `[${shape.join(', ')}]`
    : `[${shape.slice(0, 8).join(', ')}, ... (${shape.length} dims)]`;
