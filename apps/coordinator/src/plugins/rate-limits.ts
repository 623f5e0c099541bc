import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { DomainError } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Failed authentications per client: admin key, view key and worker token alike. */
    authFailures: AuthFailures;
  }
}

export interface AuthFailures {
  /**
   * Whether the request's client has used up its failed attempts for this window. Checked before
   * any key is, so a locked-out client learns nothing, not even that a key was right.
   */
  locked(request: FastifyRequest): Promise<boolean>;
  /** Count one failed attempt of the request's client. */
  failed(request: FastifyRequest): Promise<void>;
}

/** Every per-client limit counts over one minute. */
export const RATE_WINDOW_MS = 60_000;

export const rateLimited = (what: string) =>
  new DomainError('rate_limited', `too many ${what} from this client; wait a minute`);

/**
 * Per-client limits (@fastify/rate-limit, in memory). A client is `request.ip`: the socket's peer,
 * or with the `trustProxy` setting the client X-Forwarded-For names (IPv6 clients by /64). Routes
 * opt in with `config.rateLimit` (sampling, the worker socket); refusals are 429 `rate_limited`.
 */
export default fp(
  async (app: FastifyInstance) => {
    const { authFailureLimit } = app.coordinator.config;
    await app.register(rateLimit, {
      global: false,
      timeWindow: RATE_WINDOW_MS,
      errorResponseBuilder: (_request, context) =>
        new DomainError(
          'rate_limited',
          `too many requests from this client; retry in ${context.after}`,
        ),
    });
    // Its own store: counts failures only, read without counting before a key is checked.
    const failures = app.createRateLimit({ max: authFailureLimit, timeWindow: RATE_WINDOW_MS });
    app.decorate('authFailures', {
      async locked(request) {
        const state = await failures(request, { increment: false });
        return !state.isAllowed && state.remaining === 0;
      },
      async failed(request) {
        await failures(request);
      },
    } satisfies AuthFailures);
  },
  { name: 'rate-limits' },
);
