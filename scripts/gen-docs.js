#!/usr/bin/env node
// Writes the generated parts of docs/: the configuration reference table in docs/configuration.md, from the
// schema (built to dist/ first: `npm run docs`). test/docs/docs.test.ts checks the file is current.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configReference, REFERENCE_BEGIN, REFERENCE_END } from '../dist/config/reference.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const file = join(root, 'docs', 'configuration.md');
const text = readFileSync(file, 'utf8');
const a = text.indexOf(REFERENCE_BEGIN);
const b = text.indexOf(REFERENCE_END);
if (a < 0 || b < a) {
  console.error(`${file}: the generated table's markers are missing`);
  process.exit(1);
}
const next = text.slice(0, a) + configReference(join(root, 'src', 'config', 'schema.ts')) + text.slice(b + REFERENCE_END.length);
writeFileSync(file, next);
console.log(next === text ? `${file}: current` : `${file}: table rewritten`);
