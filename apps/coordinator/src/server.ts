import { LocalObjectStore } from '@archipelago/storage';
import { type App, buildApp } from './app.js';
import type { CoordinatorConfig } from './config.js';
import { type Coordinator, openCoordinator } from './coordinator.js';

/** How long a shutdown waits for in-flight requests before cutting their connections. */
const DRAIN_MS = 3000;

export interface RunningServer {
  app: App;
  coordinator: Coordinator;
  url: string;
  close(): Promise<void>;
}

/** Open the coordinator, listen, and (optionally) close gracefully on SIGINT/SIGTERM. */
export async function startServer(
  config: CoordinatorConfig,
  { handleSignals = true }: { handleSignals?: boolean } = {},
): Promise<RunningServer> {
  const coordinator = await openCoordinator(config);
  const { log } = coordinator;
  if (coordinator.adminKey.generated) {
    // Shown once: only its hash is kept.
    process.stdout.write(
      `\nAdmin API key (shown once; its hash is in ${coordinator.adminKey.file}):\n  ${coordinator.adminKey.generated}\n\n`,
    );
  }
  const app = await buildApp(coordinator);
  app.addHook('onClose', async () => coordinator.close());
  await app.listen({ host: config.host, port: config.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  if (!config.publicUrlExplicit && config.port === 0) {
    // Port 0 became a real port only now: presigned local-store URLs must carry it.
    const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
    config.publicUrl = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    if (coordinator.store instanceof LocalObjectStore)
      coordinator.store.setBaseUrl(`${config.publicUrl}/store`);
  }
  coordinator.hub.start();
  // The compute threads load their backend now rather than on first use.
  coordinator.compute?.warm();
  log.info(
    { url, dataDir: config.dataDir, store: coordinator.store.description },
    'coordinator listening',
  );

  let closing: Promise<void> | null = null;
  const close = () => {
    if (!closing) {
      // Drain in-flight requests, but never wait on them for more than a few seconds.
      const deadline = setTimeout(() => app.server.closeAllConnections(), DRAIN_MS);
      deadline.unref();
      closing = app.close().finally(() => clearTimeout(deadline));
    }
    return closing;
  };
  if (handleSignals) {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => {
        log.info({ signal }, 'shutting down');
        // A second signal, or a shutdown stuck past 10 s, exits at once.
        const force = setTimeout(() => process.exit(1), 10_000);
        force.unref();
        process.once(signal, () => process.exit(1));
        close().then(
          () => process.exit(0),
          (err) => {
            log.error({ err }, 'shutdown failed');
            process.exit(1);
          },
        );
      });
    }
  }
  return { app, coordinator, url, close };
}
