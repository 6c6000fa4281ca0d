#!/usr/bin/env node
// Writes the published contracts (JSON Schema) to firmware-protocol/contracts/ from the zod schemas in
// src/contracts/ (built to dist/ first: `npm run contracts`). Refuses when a document changed under the same
// version and revision: raise the version (contracts/*.ts) with the change.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { contractText, publishedContracts, versionProblems, versionsFile } from '../dist/contracts/publish.js';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'firmware-protocol', 'contracts');
mkdirSync(dir, { recursive: true });
let recorded = {};
try {
  recorded = JSON.parse(readFileSync(join(dir, 'versions.json'), 'utf8'));
} catch {
  // first run
}
const contracts = publishedContracts();
const problems = versionProblems(contracts, recorded);
if (problems.length) {
  for (const p of problems) console.error(p);
  process.exit(1);
}
for (const c of contracts) writeFileSync(join(dir, c.file), contractText(c));
writeFileSync(join(dir, 'versions.json'), `${JSON.stringify(versionsFile(contracts), null, 2)}\n`);
console.log(`wrote ${contracts.map((c) => c.file).join(', ')} and versions.json to ${dir}`);
