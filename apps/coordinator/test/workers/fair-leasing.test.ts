/**
 * Fair leasing over real sockets (issue 12): one token cannot open more than its share of
 * connections or hold more than its share of leases, a revoked token's sockets close at once and
 * its leases end, and a peer that stops answering pings is dropped.
 */
import type { LeaseGrant, Run } from '@archipelago/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './coordinator-harness.js';
import { hello, TestClient } from './socket-client.js';

describe('fair leasing', () => {
  let h: Harness;
  afterEach(async () => h.close());

  const workers = async () =>
    ((await h.api('GET', '/api/v1/workers')).body as { workers: { id: string; online: boolean }[] })
      .workers;
  const connectedEvents = async () =>
    (
      (await h.api('GET', '/api/v1/events?limit=200')).body as {
        events: { type: string }[];
      }
    ).events.filter((e) => e.type === 'worker.connected').length;
  const expertsOf = async (run: Run) =>
    ((await h.api('GET', `/api/v1/runs/${run.id}`)).body as unknown as Run).experts;

  it('a token opens at most maxConnectionsPerToken connections; a further hello is refused (connection_limit) and records nothing', async () => {
    h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 10_000, maxConnectionsPerToken: 2 });
    const { c: a, welcome } = await h.connect('any');
    const { c: b } = await h.connect('any');
    const before = { workers: (await workers()).length, events: await connectedEvents() };
    const third = await TestClient.connect(h.base);
    expect(await third.request(hello(h.token, 'any'))).toMatchObject({
      type: 'error',
      code: 'connection_limit',
      fatal: true,
    });
    expect((await third.closedWith).code).toBe(4029);
    expect({ workers: (await workers()).length, events: await connectedEvents() }).toEqual(before);
    // A reconnect of a worker it already has replaces that connection: not a further one.
    const again = await TestClient.connect(h.base);
    expect(
      await again.request(hello(h.token, 'any', { workerId: welcome.workerId })),
    ).toMatchObject({ type: 'welcome', workerId: welcome.workerId });
    await a.closedWith;
    // Another token has its own share; once a connection closes, its token may open one again.
    const other = await h.api('POST', '/api/v1/tokens', { name: 'other' });
    const o = await TestClient.connect(h.base);
    expect(await o.request(hello(other.body.token as string, 'any'))).toMatchObject({
      type: 'welcome',
    });
    b.close();
    await expect
      .poll(async () => (await workers()).filter((w) => w.online).length, { timeout: 10_000 })
      .toBe(2);
    const fresh = await TestClient.connect(h.base);
    expect(await fresh.request(hello(h.token, 'any'))).toMatchObject({ type: 'welcome' });
    for (const c of [again, o, fresh]) c.close();
  });

  it("a token's workers hold at most maxLeasesPerToken leases together; a further request is refused (lease_limit) and leases nothing", async () => {
    h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 10_000, maxLeasesPerToken: 2 });
    const run = await h.makeRun(3, 'any');
    const clients = await Promise.all([1, 2, 3].map(() => h.connect('any')));
    const [first, second, third] = clients.map((x) => x.c) as [TestClient, TestClient, TestClient];
    const g1 = (await first.request({ type: 'lease.request' })) as LeaseGrant;
    const g2 = (await second.request({ type: 'lease.request' })) as LeaseGrant;
    expect([g1.type, g2.type]).toEqual(['lease.grant', 'lease.grant']);
    expect(await third.request({ type: 'lease.request' })).toMatchObject({
      type: 'error',
      code: 'lease_limit',
      fatal: false,
      inReplyTo: 'lease.request',
    });
    expect((await expertsOf(run)).map((e) => e.status).sort()).toEqual([
      'leased',
      'leased',
      'pending',
    ]);
    // A volunteer with its own token gets the third expert.
    const other = await h.api('POST', '/api/v1/tokens', { name: 'other' });
    const o = await TestClient.connect(h.base);
    await o.request(hello(other.body.token as string, 'any'));
    expect(await o.request({ type: 'lease.request' })).toMatchObject({ type: 'lease.grant' });
    // A released lease frees the token's share.
    first.send({ type: 'lease.release', leaseId: g1.leaseId, reason: 'done' });
    await expect
      .poll(async () => (await expertsOf(run)).find((e) => e.id === g1.expert.id)?.status)
      .toBe('pending');
    expect(await third.request({ type: 'lease.request' })).toMatchObject({
      type: 'lease.grant',
      expert: { id: g1.expert.id },
    });
    for (const c of [first, second, third, o]) c.close();
  });

  it('revoking a token over REST closes every socket of it at once and ends all their leases', async () => {
    h = await startHarness({ heartbeatMs: 60_000, leaseTtlMs: 120_000 });
    const run = await h.makeRun(2, 'any');
    const doomed = await h.api('POST', '/api/v1/tokens', { name: 'doomed' });
    const conns = await Promise.all(
      [1, 2, 3].map(async () => {
        const c = await TestClient.connect(h.base);
        await c.request(hello(doomed.body.token as string, 'any'));
        return c;
      }),
    );
    const grants = [
      (await conns[0]!.request({ type: 'lease.request' })) as LeaseGrant,
      (await conns[1]!.request({ type: 'lease.request' })) as LeaseGrant,
    ];
    expect(grants.map((g) => g.type)).toEqual(['lease.grant', 'lease.grant']);
    const { c: bystander } = await h.connect('any');
    const revoked = await h.api('DELETE', `/api/v1/tokens/${doomed.body.id}`);
    expect(revoked.body).toMatchObject({ closedConnections: 3 });
    expect((await Promise.all(conns.map((c) => c.closedWith))).map((x) => x.code)).toEqual([
      4003, 4003, 4003,
    ]);
    expect((await expertsOf(run)).map((e) => e.status)).toEqual(['pending', 'pending']);
    // The other token's worker is untouched and leases what they gave back.
    expect(await bystander.request({ type: 'lease.request' })).toMatchObject({
      type: 'lease.grant',
    });
    bystander.close();
  });

  it('drops a peer that stopped answering pings; one that answers stays', async () => {
    h = await startHarness({ heartbeatMs: 1000, leaseTtlMs: 10_000, wsPingMs: 100 });
    const dead = await TestClient.connect(h.base, { autoPong: false });
    const welcome = await dead.request(hello(h.token, 'fm'));
    expect(welcome.type).toBe('welcome');
    const { c: alive } = await h.connect('ddpm');
    let pings = 0;
    alive.ws.on('ping', () => pings++);
    // Dropped without a closing handshake (1006): it would not have answered one either.
    expect((await dead.closedWith).code).toBe(1006);
    await expect.poll(() => pings, { timeout: 10_000 }).toBeGreaterThanOrEqual(3);
    expect(alive.ws.readyState).toBe(alive.ws.OPEN);
    await expect
      .poll(async () => (await workers()).map((w) => w.online).sort(), { timeout: 10_000 })
      .toEqual([false, true]);
    alive.close();
  });
});
