/**
 * The error every dataset reader throws for a problem in the user's data (as opposed to a
 * programming error, which stays a `TypeError`/`RangeError`). The `code` is stable and meant for
 * the API and UI; the message names the file and says what is wrong and, where it helps, how to
 * fix it.
 */

/** Machine-readable reasons a dataset could not be imported or read. */
export const DATASET_ERROR_CODES = [
  /** The folder holds no image files (after ignoring dotfiles and OS metadata). */
  'empty_folder',
  /** An image file could not be decoded (truncated, damaged, unreadable). */
  'corrupt_image',
  /** A file that is not a PNG or JPEG, or whose content does not match its extension. */
  'unsupported_format',
  /** Embeddings whose row count or shape do not match the dataset. */
  'embeddings_mismatch',
  /** Embeddings stored with a dtype other than little-endian float32. */
  'embeddings_dtype',
  /** Embeddings that contain NaN or +-Infinity. */
  'embeddings_nonfinite',
  /** A `.npy` file whose header or length is invalid, or whose layout we do not read. */
  'bad_npy',
  /** An idx (MNIST-style) file whose header or length is invalid. */
  'bad_idx',
  /** A shard file whose magic, version, header or length is invalid. */
  'bad_shard',
  /** Fewer images than the operation needs (e.g. fewer images than clusters). */
  'too_small',
  /** A built-in dataset name that does not exist. */
  'unknown_dataset',
  /** An optional package that the operation needs is not installed. */
  'missing_dependency',
] as const;

export type DatasetErrorCode = (typeof DATASET_ERROR_CODES)[number];

export class DatasetImportError extends Error {
  /**
   * @param code - stable reason, one of {@link DATASET_ERROR_CODES}.
   * @param message - human-readable; should name the file and the problem.
   * @param file - the offending file, relative to the imported folder when there is one.
   */
  constructor(
    readonly code: DatasetErrorCode,
    message: string,
    readonly file?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DatasetImportError';
  }
}
