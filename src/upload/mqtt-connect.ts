/**
 * mqtt.js's client with only the transport the broker's URL names.
 *
 * mqtt.js's own `connect()` loads every transport it has at the first
 * connection: WebSocket (`ws`), SOCKS (`socks`, `ip-address`,
 * `smart-buffer`) and TLS, about 30 modules and the `tls`, `http` and
 * `https` built-ins, whatever the URL. Measured in an empty `node`, connected
 * to a broker: 55.2 MB RSS through `connect()`, 50.9 MB through the client
 * with a plain socket (docs/performance.md). So:
 * - `mqtt://`: a TCP socket, as mqtt.js's TCP builder opens one when no SOCKS
 *   proxy is set (MQTTJS_SOCKS_PROXY is not read);
 * - `mqtts://`: mqtt.js's own TLS builder (certificate checks, SNI), loaded
 *   only then;
 * - `ws://`, `wss://`: mqtt.js's `connect()`, loaded only then.
 * The client, its options and its events are mqtt.js's, unchanged.
 *
 * One more thing mqtt.js loads and never uses in Node: `worker-timers`
 * (keep-alive timers in a browser Web Worker, with `@babel/runtime` and three
 * helper packages, 27 modules, 0.7 MB of RSS). mqtt.js picks Node's own timers
 * outside a browser; the module is stood in for by one that hands out Node's
 * own timers, so were it ever used it would still work.
 */
import { Module } from 'node:module';
import { createConnection } from 'node:net';
import { dirname } from 'node:path';
import type { Duplex } from 'node:stream';
import type * as Mqtt from 'mqtt';
import type { IClientOptions, MqttClient } from 'mqtt';
import { requireCjs } from '../util/require-cjs.js';

type StreamBuilder = (client: MqttClient, opts: IClientOptions) => Duplex;

const DEFAULT_PORT = { mqtt: 1883, mqtts: 8883 } as const;

let timersStandIn = false;

/** worker-timers as mqtt.js would resolve it, answered with Node's timers before mqtt.js's client first loads. */
function standInForWorkerTimers(): void {
  if (timersStandIn) return;
  timersStandIn = true;
  let path: string;
  try {
    path = requireCjs.resolve('worker-timers', { paths: [dirname(requireCjs.resolve('mqtt/package.json'))] });
  } catch {
    return; // an mqtt.js without it: nothing to stand in for
  }
  if (requireCjs.cache[path]) return;
  const m = new Module(path);
  m.exports = { setInterval, clearInterval, setTimeout, clearTimeout };
  m.loaded = true;
  requireCjs.cache[path] = m;
}

/** Connect to the broker at `url` (mqtt://, mqtts://, ws://, wss://); like mqtt.js's `connect(url, options)`. */
export function connectMqtt(url: string, options: IClientOptions): MqttClient {
  const u = new URL(url);
  let protocol = u.protocol.slice(0, -1);
  // mqtt.js upgrades a plain URL to TLS when a client certificate is given; so do we.
  if (protocol === 'mqtt' && options.cert && options.key) protocol = 'mqtts';
  if (protocol !== 'mqtt' && protocol !== 'mqtts') {
    return (requireCjs('mqtt') as typeof Mqtt).connect(url, options);
  }
  // URL keeps IPv6 literals in brackets; sockets want them bare.
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost';
  const port = u.port ? Number(u.port) : DEFAULT_PORT[protocol];
  const opts: IClientOptions = {
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...options,
    protocol,
    host,
    hostname: host,
    port,
  };
  const build: StreamBuilder =
    protocol === 'mqtts'
      ? (requireCjs('mqtt/lib/connect/tls') as { default: StreamBuilder }).default
      : () => createConnection({ host, port });
  standInForWorkerTimers();
  const Client = (requireCjs('mqtt/lib/client') as { default: typeof Mqtt.MqttClient }).default;
  const client = new Client((c) => build(c, opts), opts);
  // As mqtt.js's connect() does: an 'error' without a listener of the caller's would throw.
  client.on('error', () => {});
  return client;
}
