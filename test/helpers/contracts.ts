/** Validation against the published contracts (firmware-protocol/contracts/*.schema.json), as a console app or cloud would. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import formats from 'ajv-formats';

const DIR = join(import.meta.dirname, '..', '..', 'firmware-protocol', 'contracts');
const read = (f: string): Record<string, unknown> => JSON.parse(readFileSync(join(DIR, f), 'utf8')) as Record<string, unknown>;

/** ajv over the published files: `check(doc#definition, value)` throws with ajv's reasons. */
export function contractChecker(): (ref: string, value: unknown) => void {
  const ajv = new Ajv({ allErrors: true, strict: false });
  // ajv-formats is CommonJS: its plugin is the module's default export.
  (formats as unknown as { default: (a: Ajv) => void }).default(ajv);
  for (const f of ['health.schema.json', 'api.schema.json', 'mqtt.schema.json']) ajv.addSchema(read(f));
  const cache = new Map<string, ValidateFunction>();
  return (ref, value) => {
    const [file, def] = ref.split('#');
    const id = `https://schemas.bike-telemetry.invalid/${file}${def ? `#/definitions/${def}` : ''}`;
    let v = cache.get(id);
    if (!v) {
      v = ajv.getSchema(id);
      if (!v) throw new Error(`no schema ${id}`);
      cache.set(id, v);
    }
    if (!v(value)) throw new Error(`${ref}: ${ajv.errorsText(v.errors)}\n${JSON.stringify(value).slice(0, 2000)}`);
  };
}
