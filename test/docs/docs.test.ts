/**
 * The documentation stays true: the configuration reference is the schema's
 * (generated, current, every key explained), the README stays short, and
 * every relative link in the README and docs/ leads to a file that exists.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configKeys, configReference, REFERENCE_BEGIN, REFERENCE_END } from '../../src/config/reference.js';
import { ConfigSchema } from '../../src/config/schema.js';

const ROOT = join(import.meta.dirname, '..', '..');
const SCHEMA = join(ROOT, 'src', 'config', 'schema.ts');

describe('docs/configuration.md', () => {
  it('holds the reference generated from the schema (npm run docs), unchanged', () => {
    const text = readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8');
    const a = text.indexOf(REFERENCE_BEGIN);
    const b = text.indexOf(REFERENCE_END);
    expect(a).toBeGreaterThanOrEqual(0);
    expect(text.slice(a, b + REFERENCE_END.length), 'stale: run `npm run docs`').toBe(configReference(SCHEMA));
  });

  it('explains every key, and lists exactly the keys the schema accepts', () => {
    const keys = configKeys(SCHEMA);
    expect(keys.filter((k) => k.meaning === '').map((k) => k.key)).toEqual([]);
    // Each listed key is accepted where it is listed (an unknown key would be refused by the strict schema).
    const defaults = ConfigSchema.parse({}) as unknown as Record<string, unknown>;
    for (const k of keys.map((x) => x.key)) {
      const [top] = k.split('.');
      expect(Object.hasOwn(defaults, top), k).toBe(true);
    }
    expect(keys.map((k) => k.key)).toContain('serial.path');
    expect(keys.map((k) => k.key)).toContain('board.update.trustedKeys');
  });
});

describe('README and docs/', () => {
  it('the README is short: what it is, the two commands, where to read on', () => {
    const lines = readFileSync(join(ROOT, 'README.md'), 'utf8').split('\n').length;
    expect(lines).toBeLessThan(150);
  });

  it('every relative link resolves to a file in the repository', () => {
    const pages = ['README.md', ...readdirSync(join(ROOT, 'docs')).map((f) => join('docs', f))];
    const broken: string[] = [];
    for (const page of pages) {
      const text = readFileSync(join(ROOT, page), 'utf8');
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1];
        if (/^(https?:|mailto:|#)/.test(target)) continue;
        const path = join(ROOT, dirname(page), target.replace(/#.*$/, ''));
        if (!existsSync(path)) broken.push(`${page}: ${target}`);
      }
    }
    expect(broken).toEqual([]);
  });
});
