/**
 * The hub tells the agent how many clients watch the live figures: the agent
 * reads the board on its heartbeat while nobody does (SerialLink.setUnwatched).
 * Pure logic, in memory; the link's side runs on a real pty in
 * test/link/serial-link.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { ApiHub, type ApiBackend, type ApiConnection } from '../../src/api/hub.js';
import { createLogger } from '../../src/log/logger.js';

function connection(hub: ApiHub): ApiConnection {
  const c: ApiConnection = {
    id: hub.newConnectionId(),
    transport: 'unix',
    queuedBytes: () => 0,
    write: () => {},
    close: () => hub.detach(c),
    subscriptions: new Set(),
  };
  hub.attach(c);
  return c;
}

describe('ApiHub live watchers', () => {
  it('reports each change in the number of live subscribers, and only changes', () => {
    const seen: number[] = [];
    const backend = { agentVersion: 'test', deviceId: 'bike-hub' } as ApiBackend;
    const hub = new ApiHub(backend, { clientQueueBytes: 1 << 16, log: createLogger('silent'), onLiveWatchers: (n) => seen.push(n) });
    const a = connection(hub);
    const b = connection(hub);
    hub.call(a, 'subscribe', { streams: ['summary'] });
    expect(seen).toEqual([]); // the 1 Hz summary needs no faster reads
    hub.call(a, 'subscribe', { streams: ['live'] });
    hub.call(a, 'subscribe', { streams: ['live'] }); // already subscribed: no change
    hub.call(b, 'subscribe', { streams: ['live', 'health'] });
    expect(seen).toEqual([1, 2]);
    hub.call(a, 'unsubscribe', { streams: ['live'] });
    expect(seen).toEqual([1, 2, 1]);
    hub.detach(b); // a client that goes away stops watching
    expect(seen).toEqual([1, 2, 1, 0]);
    hub.detach(a);
    expect(seen).toEqual([1, 2, 1, 0]);
  });
});
