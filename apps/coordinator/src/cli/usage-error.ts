/** A command used wrongly (missing or invalid flags); the CLI exits with 2. */
export class UsageError extends Error {
  static readonly CODE = 'usage_error';
  readonly code = UsageError.CODE;

  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
