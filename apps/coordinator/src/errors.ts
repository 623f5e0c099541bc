/** An error with an HTTP status and a stable code; the error handler turns it into ErrorReply. */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const notFound = (what: string, id: string) =>
  new ApiError(404, 'not_found', `${what} ${id} does not exist`);
