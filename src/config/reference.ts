/**
 * The configuration reference (docs/configuration.md) generated from the
 * schema itself: every key, its type and limits and its default from the zod
 * schema, its meaning from the doc comment on the key in schema.ts (with an
 * `@default` tag where the default depends on the machine or the protocol).
 * A developer tool (it reads the TypeScript source): `npm run docs` writes the
 * table, a test checks it is current. Not part of a device bundle.
 */
import { readFileSync } from 'node:fs';
import ts from 'typescript';
import { z } from 'zod';
import { ConfigSchema } from './schema.js';

export interface ConfigKeyDoc {
  key: string;
  type: string;
  default: string;
  meaning: string;
}

interface SourceDoc {
  meaning: string;
  default: string | null;
}

/** Doc comments of the schema's keys, by dotted path, read from schema.ts. */
function sourceDocs(file: string): Map<string, SourceDoc> {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const out = new Map<string, SourceDoc>();
  /** The object literal of the first `z.object({...})` in an expression's call chain. */
  const objectLiteralOf = (e: ts.Expression): ts.ObjectLiteralExpression | null => {
    let cur: ts.Node = e;
    for (;;) {
      if (ts.isCallExpression(cur)) {
        const callee = cur.expression;
        if (
          ts.isPropertyAccessExpression(callee) &&
          callee.name.text === 'object' &&
          ts.isIdentifier(callee.expression) &&
          callee.expression.text === 'z'
        ) {
          const arg = cur.arguments[0];
          return arg && ts.isObjectLiteralExpression(arg) ? arg : null;
        }
        cur = callee;
      } else if (ts.isPropertyAccessExpression(cur)) cur = cur.expression;
      else return null;
    }
  };
  const walk = (obj: ts.ObjectLiteralExpression, prefix: string): void => {
    for (const p of obj.properties) {
      if (!ts.isPropertyAssignment(p)) continue;
      const name = ts.isIdentifier(p.name) || ts.isStringLiteral(p.name) ? p.name.text : p.name.getText(sf);
      const key = prefix + name;
      // Every /** */ block before the key (TypeScript's JSDoc API keeps only the last of several).
      const blocks = (ts.getLeadingCommentRanges(sf.text, p.pos) ?? [])
        .map((r) => sf.text.slice(r.pos, r.end))
        .filter((c) => c.startsWith('/**'))
        .map((c) => c.replace(/^\/\*\*|\*\/$/g, '').replace(/^\s*\* ?/gm, ''));
      const all = blocks.join(' ');
      const at = all.indexOf('@default');
      const text = (at >= 0 ? all.slice(0, at) : all).replace(/\s+/g, ' ').trim();
      const def =
        at >= 0
          ? all
              .slice(at + '@default'.length)
              .replace(/\s+/g, ' ')
              .trim()
          : null;
      out.set(key, { meaning: text, default: def });
      const inner = objectLiteralOf(p.initializer);
      if (inner) walk(inner, `${key}.`);
    }
  };
  const visit = (n: ts.Node): void => {
    if (ts.isVariableDeclaration(n) && ts.isIdentifier(n.name) && n.name.text === 'ConfigSchema' && n.initializer) {
      const obj = objectLiteralOf(n.initializer);
      if (obj) walk(obj, '');
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** Unwrap defaults, optionals and refinements: the type underneath and the default, if any. */
function unwrap(t: z.ZodTypeAny): { inner: z.ZodTypeAny; def: unknown; hasDefault: boolean } {
  let cur = t;
  let def: unknown;
  let hasDefault = false;
  for (;;) {
    if (cur instanceof z.ZodDefault) {
      if (!hasDefault) {
        def = (cur._def as { defaultValue: () => unknown }).defaultValue();
        hasDefault = true;
      }
      cur = (cur._def as { innerType: z.ZodTypeAny }).innerType;
    } else if (cur instanceof z.ZodOptional || cur instanceof z.ZodNullable) cur = cur.unwrap() as z.ZodTypeAny;
    else if (cur instanceof z.ZodEffects) cur = cur.innerType() as z.ZodTypeAny;
    else return { inner: cur, def, hasDefault };
  }
}

function typeText(t: z.ZodTypeAny): string {
  const { inner } = unwrap(t);
  if (inner instanceof z.ZodString) return 'string';
  if (inner instanceof z.ZodBoolean) return 'boolean';
  if (inner instanceof z.ZodEnum) return (inner.options as string[]).map((o) => `\`${o}\``).join(' \\| ');
  if (inner instanceof z.ZodNumber) {
    const kind = inner.isInt ? 'integer' : 'number';
    // positive() is a minimum of 0, exclusive: the least integer is 1.
    const exclusiveMin = inner._def.checks.some((c) => c.kind === 'min' && !c.inclusive);
    const min = inner.minValue === null ? null : inner.minValue + (exclusiveMin && inner.isInt ? 1 : 0);
    const max = inner.maxValue;
    const fmt = (v: number): string => (Math.abs(v) >= 1e6 && Number.isInteger(Math.log2(v)) ? `2^${Math.log2(v)}` : String(v));
    if (min !== null && max !== null) return `${kind} ${fmt(min)}–${fmt(max)}`;
    if (min !== null) return `${kind} ≥ ${fmt(min)}`;
    return kind;
  }
  if (inner instanceof z.ZodArray) {
    const el = unwrap(inner.element as z.ZodTypeAny).inner;
    if (el instanceof z.ZodObject) return `array of {${Object.keys(el.shape as object).join(', ')}}`;
    return `array of ${typeText(el)}`;
  }
  if (inner instanceof z.ZodObject) return 'object';
  return inner.constructor.name.replace(/^Zod/, '').toLowerCase();
}

function defaultText(def: unknown, hasDefault: boolean): string {
  if (!hasDefault || def === undefined) return '–';
  return `\`${JSON.stringify(def)}\``;
}

/** Every configuration key (leaves; an array is one key), in schema order. */
export function configKeys(schemaFile: string): ConfigKeyDoc[] {
  const docs = sourceDocs(schemaFile);
  const out: ConfigKeyDoc[] = [];
  const walk = (shape: Record<string, z.ZodTypeAny>, prefix: string): void => {
    for (const [name, t] of Object.entries(shape)) {
      const key = prefix + name;
      const { inner, def, hasDefault } = unwrap(t);
      if (inner instanceof z.ZodObject) {
        walk(inner.shape as Record<string, z.ZodTypeAny>, `${key}.`);
        continue;
      }
      const d = docs.get(key);
      out.push({
        key,
        type: typeText(t),
        default: d?.default ? d.default : defaultText(def, hasDefault),
        meaning: d?.meaning ?? '',
      });
    }
  };
  walk(ConfigSchema.innerType().shape as Record<string, z.ZodTypeAny>, '');
  return out;
}

export const REFERENCE_BEGIN =
  '<!-- configuration reference: generated from src/config/schema.ts by `npm run docs`; edit the schema, not this table -->';
export const REFERENCE_END = '<!-- end of generated configuration reference -->';

/** The table, between its markers. */
export function configReference(schemaFile: string): string {
  const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const rows = configKeys(schemaFile).map((k) => `| \`${k.key}\` | ${k.type} | ${cell(k.default)} | ${cell(k.meaning)} |`);
  return [REFERENCE_BEGIN, '', '| key | type | default | meaning |', '|---|---|---|---|', ...rows, '', REFERENCE_END].join('\n');
}
