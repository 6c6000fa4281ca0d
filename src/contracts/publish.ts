/**
 * The published form of the contracts: JSON Schema documents generated from
 * the zod schemas (a developer tool: `npm run contracts` writes them to
 * firmware-protocol/contracts/, test/contracts checks the files are current
 * and validates real traffic against them). Not part of a device bundle.
 *
 * versions.json records each document's version, revision and sha256: a
 * document whose content changed under the same version and revision is
 * refused, so a contract and its version change together.
 */
import { createHash } from 'node:crypto';
import type { z } from 'zod';
import { zodToJsonSchema } from 'zod-to-json-schema';
import { API_REVISION, API_VERSION, ErrorReplySchema, EVENTS, METHODS, PARAMS, RESULTS, RequestSchema } from './api.js';
import { AgentHealthSchema, HEALTH_REVISION, HEALTH_VERSION } from './health.js';
import * as mqtt from './mqtt.js';

export interface PublishedContract {
  file: string;
  version: number;
  revision: number;
  schema: Record<string, unknown>;
}

const ID_BASE = 'https://schemas.bike-telemetry.invalid/';

/** One schema whole (no cross-references: a reader sees one shape per name), without its own $schema (the document has one). */
function jsonSchemaOf(s: z.ZodTypeAny): Record<string, unknown> {
  const out = zodToJsonSchema(s as z.ZodType, { target: 'jsonSchema7', $refStrategy: 'none' }) as Record<string, unknown>;
  delete out.$schema;
  return out;
}

/** The health document, referred to by the API's health result and event instead of a copy. */
const HEALTH_REF = { $ref: 'health.schema.json' };

function document(name: string, title: string, version: number, revision: number, definitions: Record<string, z.ZodTypeAny>) {
  const defs: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(definitions)) {
    if (s === AgentHealthSchema) {
      defs[k] = HEALTH_REF;
      continue;
    }
    defs[k] = jsonSchemaOf(s);
  }
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: `${ID_BASE}${name}`,
    title,
    'x-version': version,
    'x-revision': revision,
    definitions: defs,
  };
}

export function publishedContracts(): PublishedContract[] {
  const api: Record<string, z.ZodTypeAny> = { request: RequestSchema, error: ErrorReplySchema };
  for (const m of METHODS) {
    api[`params.${m}`] = PARAMS[m];
    api[`result.${m}`] = RESULTS[m];
  }
  for (const [e, s] of Object.entries(EVENTS)) api[`event.${e}`] = s;
  const health = {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: `${ID_BASE}health.schema.json`,
    title: "The agent's health: the local API's health method and stream, `bike-telemetry status --json`",
    'x-version': HEALTH_VERSION,
    'x-revision': HEALTH_REVISION,
    ...jsonSchemaOf(AgentHealthSchema),
  };
  return [
    { file: 'health.schema.json', version: HEALTH_VERSION, revision: HEALTH_REVISION, schema: health },
    {
      file: 'api.schema.json',
      version: API_VERSION,
      revision: API_REVISION,
      schema: document(
        'api.schema.json',
        'The local API: each method as params.<method> and result.<method>, each event as event.<name>',
        API_VERSION,
        API_REVISION,
        api,
      ),
    },
    {
      file: 'mqtt.schema.json',
      version: mqtt.MQTT_CONTRACT_VERSION,
      revision: mqtt.MQTT_CONTRACT_REVISION,
      schema: document(
        'mqtt.schema.json',
        'Messages on MQTT besides telemetry packets (packet.cddl), by name; topics in docs/mqtt.md',
        mqtt.MQTT_CONTRACT_VERSION,
        mqtt.MQTT_CONTRACT_REVISION,
        {
          DeviceStatus: mqtt.DeviceStatusSchema,
          BoardStatusMessage: mqtt.BoardStatusMessageSchema,
          OtaStatusMessage: mqtt.OtaStatusMessageSchema,
          CommandResult: mqtt.CommandResultSchema,
          LimitsMessage: mqtt.LimitsMessageSchema,
          SignedCommand: mqtt.SignedCommandSchema,
          Command: mqtt.CommandSchema,
          ...Object.fromEntries(Object.entries(mqtt.COMMAND_PARAMS).map(([a, s]) => [`CommandParams.${a}`, s])),
          SignedOffer: mqtt.SignedOfferSchema,
          Offer: mqtt.OfferSchema,
        },
      ),
    },
  ];
}

/** The file's text as written: stable key order, two-space indent, final newline. */
export const contractText = (c: PublishedContract): string => `${JSON.stringify(c.schema, null, 2)}\n`;

export const contractHash = (c: PublishedContract): string => createHash('sha256').update(contractText(c)).digest('hex');

export interface VersionEntry {
  version: number;
  revision: number;
  sha256: string;
}

/**
 * Compare with the recorded versions: problems for a document that changed
 * while its version and revision stayed, or whose version went backwards.
 */
export function versionProblems(contracts: PublishedContract[], recorded: Record<string, VersionEntry>): string[] {
  const out: string[] = [];
  for (const c of contracts) {
    const r = recorded[c.file];
    if (!r) continue;
    const hash = contractHash(c);
    const same = c.version === r.version && c.revision === r.revision;
    if (hash !== r.sha256 && same) {
      out.push(`${c.file} changed but its version (${c.version}.${c.revision}) did not: raise the revision (additions) or the version`);
    }
    if (c.version < r.version || (c.version === r.version && c.revision < r.revision)) {
      out.push(`${c.file}: version ${c.version}.${c.revision} is older than the recorded ${r.version}.${r.revision}`);
    }
  }
  return out;
}

export function versionsFile(contracts: PublishedContract[]): Record<string, VersionEntry> {
  return Object.fromEntries(contracts.map((c) => [c.file, { version: c.version, revision: c.revision, sha256: contractHash(c) }]));
}
