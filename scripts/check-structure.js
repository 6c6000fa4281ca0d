#!/usr/bin/env node
// The project's shape, checked (CI runs it with lint and format): which module may load which, and how long a
// source file may grow. Rules, each with its reason:
//
// 1. No loops between the folders of src/ (type-only imports count too: a loop of types is a loop of meaning).
// 2. The CLI's entry, and every command that only talks to a running agent, never load the pipeline (src/agent/,
//    serialport, better-sqlite3, mqtt) at start: `--help` and `status` must stay light. Commands that run a pipeline
//    of their own load it when they run (dynamic import), listed in PIPELINE_USERS.
// 3. The updater never loads the pipeline, not even lazily: a broken agent must not take the updater down with it.
// 4. Only protocol/ (and the boards of sim/, and firmware/ which speaks fwp's update operations) name a protocol's
//    modules; everything else goes through protocol/registry.ts.
// 5. A source file over 400 lines says why in its header ("Over 400 lines: ...").
// 6. An eslint-disable comment says why ("-- reason").
// 7. Developer tools (package.json devOnlyModules: left out of device bundles) are loaded by nothing a bike runs;
//    the CLI reaches fleet-sim lazily and says so when a bundle lacks it.
// 8. The CommonJS packages the agent runs on are loaded with requireCjs (src/util/require-cjs.ts), never with a value
//    `import`: Node 20's ESM loader costs about 13 MB of peak RSS and 75 ms more for the same packages. A
//    `requireCjs('...')` call counts as an import of that package for the rules above.
//
// Prints one line per breach and exits 1 if there is any; `--json` prints the folder graph for the architecture page.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');

/** The heavy parts of the pipeline: packages no light command may load. */
const PIPELINE_PACKAGES = ['serialport', '@serialport/', 'better-sqlite3', 'mqtt'];
/** CLI modules that run a pipeline of their own (each loaded by main.ts only when its command runs). */
const PIPELINE_USERS = new Set([
  'cli/run.ts',
  'cli/selftest.ts',
  'cli/capture-cmd.ts',
  'cli/simulate.ts',
  'cli/spool-cmd.ts',
  'cli/ride-cmd.ts',
  'cli/fleet-sim-cmd.ts',
  'cli/ports.ts',
  'cli/board-cmd.ts',
  'cli/updater-cmd.ts',
]);
const UPDATER_ENTRIES = ['ota/updater.ts', 'ota/updater-service.ts', 'cli/updater-cmd.ts'];
/** Folders that may import a protocol's own modules (protocol/fwp/..., protocol/peloton/...). */
const PROTOCOL_NAMERS = new Set(['protocol', 'sim', 'firmware']);
const MAX_LINES = 400;
/** CommonJS packages (cbor-x: its CommonJS build) that src/ loads through requireCjs only (rule 8). */
const CJS_PACKAGES = ['mqtt', 'serialport', '@serialport/', 'better-sqlite3', 'pino', 'cbor-x', 'unix-dgram'];
const isCjsPkg = (p) => CJS_PACKAGES.some((x) => (x.endsWith('/') ? p.startsWith(x) : p === x || p.startsWith(`${x}/`)));

function walk(dir, out = []) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Every import of a module: { spec, kind: 'value' | 'type' | 'dynamic', line }. */
function importsOf(file, text) {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const out = [];
  const line = (node) => sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
  const visit = (node) => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      const typeOnly = ts.isImportDeclaration(node)
        ? node.importClause?.isTypeOnly === true ||
          (node.importClause?.namedBindings &&
            ts.isNamedImports(node.importClause.namedBindings) &&
            !node.importClause.name &&
            node.importClause.namedBindings.elements.length > 0 &&
            node.importClause.namedBindings.elements.every((e) => e.isTypeOnly))
        : node.isTypeOnly;
      out.push({ spec: node.moduleSpecifier.text, kind: typeOnly ? 'type' : 'value', line: line(node) });
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      out.push({ spec: node.arguments[0].text, kind: 'dynamic', line: line(node) });
    } else if (
      ts.isCallExpression(node) &&
      ts.isIdentifier(node.expression) &&
      (node.expression.text === 'requireCjs' || node.expression.text === 'require') &&
      node.arguments[0] &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      // Loaded when the statement runs: at start when it is at the top of a module, which is where src/ puts it.
      out.push({ spec: node.arguments[0].text, kind: 'value', line: line(node), required: true });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

const files = walk(src).map((abs) => {
  const text = readFileSync(abs, 'utf8');
  const rel = relative(src, abs).split('\\').join('/');
  const imports = importsOf(abs, text).map((i) => {
    if (!i.spec.startsWith('.')) return { ...i, target: null, pkg: i.spec };
    const target = relative(src, normalize(join(dirname(abs), i.spec)))
      .split('\\')
      .join('/')
      .replace(/\.js$/, '.ts');
    return { ...i, target, pkg: null };
  });
  return { rel, text, imports };
});
const byRel = new Map(files.map((f) => [f.rel, f]));
const folderOf = (rel) => (rel.includes('/') ? rel.slice(0, rel.indexOf('/')) : rel.replace(/\.ts$/, ''));

const breaches = [];

// 1. Folder graph without loops.
const graph = new Map();
for (const f of files) {
  const a = folderOf(f.rel);
  if (!graph.has(a)) graph.set(a, new Map());
  for (const i of f.imports) {
    if (!i.target) continue;
    const b = folderOf(i.target);
    if (a === b) continue;
    if (!graph.get(a).has(b)) graph.get(a).set(b, `${f.rel}:${i.line}`);
  }
}
{
  const state = new Map();
  const stack = [];
  const dfs = (n) => {
    state.set(n, 1);
    stack.push(n);
    for (const m of graph.get(n)?.keys() ?? []) {
      if (state.get(m) === 1) {
        const loop = [...stack.slice(stack.indexOf(m)), m];
        const via = loop.slice(0, -1).map((x, k) => graph.get(x).get(loop[k + 1]));
        breaches.push(`folder loop: ${loop.join(' -> ')} (${via.join(', ')})`);
      } else if (!state.has(m)) dfs(m);
    }
    stack.pop();
    state.set(n, 2);
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) dfs(n);
}

/** Modules reachable from `entry` (value imports; with `dynamic`, lazy ones too), with the path that reached each. */
function reach(entry, { dynamic }) {
  const seen = new Map([[entry, [entry]]]);
  const queue = [entry];
  const pkgs = new Map();
  while (queue.length) {
    const rel = queue.shift();
    const f = byRel.get(rel);
    if (!f) continue;
    for (const i of f.imports) {
      if (i.kind === 'type' || (i.kind === 'dynamic' && !dynamic)) continue;
      if (i.pkg) {
        if (!pkgs.has(i.pkg)) pkgs.set(i.pkg, [...seen.get(rel), i.pkg]);
      } else if (!seen.has(i.target)) {
        seen.set(i.target, [...seen.get(rel), i.target]);
        queue.push(i.target);
      }
    }
  }
  return { modules: seen, pkgs };
}
const isPipelinePkg = (p) => PIPELINE_PACKAGES.some((x) => (x.endsWith('/') ? p.startsWith(x) : p === x || p.startsWith(`${x}/`)));

// 2. The CLI's light start.
{
  const light = [
    'cli/main.ts',
    ...files.filter((f) => f.rel.startsWith('cli/') && f.rel !== 'cli/main.ts' && !PIPELINE_USERS.has(f.rel)).map((f) => f.rel),
  ];
  for (const entry of light) {
    // The agent's pipeline: never, not even lazily (main.ts loads each command lazily, so it is checked statically).
    const { modules } = reach(entry, { dynamic: entry !== 'cli/main.ts' });
    for (const [m, path] of modules) if (m.startsWith('agent/')) breaches.push(`${entry} loads the pipeline: ${path.join(' -> ')}`);
    // The heavy packages: not at start (status reads a stopped agent's spool through a lazy import, for one).
    const { pkgs } = reach(entry, { dynamic: false });
    for (const [p, path] of pkgs) if (isPipelinePkg(p)) breaches.push(`${entry} loads ${p} at start: ${path.join(' -> ')}`);
  }
}

// 3. The updater never loads the pipeline.
for (const entry of UPDATER_ENTRIES) {
  if (!byRel.has(entry)) continue;
  const { modules } = reach(entry, { dynamic: true });
  for (const [m, path] of modules)
    if (m.startsWith('agent/')) breaches.push(`the updater (${entry}) loads the pipeline: ${path.join(' -> ')}`);
}

// 4. Protocols are named only where they live.
for (const f of files) {
  if (PROTOCOL_NAMERS.has(folderOf(f.rel))) continue;
  for (const i of f.imports) {
    if (i.target && /^protocol\/[^/]+\//.test(i.target)) {
      breaches.push(`${f.rel}:${i.line} names a protocol's module (${i.target}); use protocol/registry.ts`);
    }
  }
}

// 5 and 6, over src/, test/ and scripts/ for the disable comments.
for (const f of files) {
  const lines = f.text.split('\n').length;
  const header = f.text.slice(0, f.text.indexOf('*/') + 2);
  if (lines > MAX_LINES && !/Over 400 lines:/.test(header)) {
    breaches.push(`src/${f.rel}: ${lines} lines and no "Over 400 lines:" reason in its header`);
  }
}
function eslintDisables(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && e.name !== 'dist') out.push(...eslintDisables(p));
    } else if (/\.(ts|js)$/.test(p)) {
      readFileSync(p, 'utf8')
        .split('\n')
        .forEach((l, k) => {
          if (/(\/\/|\/\*)\s*eslint-disable/.test(l) && !/eslint-disable[^*]*--\s*\S/.test(l)) out.push(`${relative(root, p)}:${k + 1}`);
        });
    }
  }
  return out;
}
for (const where of ['src', 'test', 'scripts']) {
  for (const at of eslintDisables(join(root, where))) breaches.push(`${at}: eslint-disable without "-- reason"`);
}

// 7. Developer tools stay out of what a bike runs.
{
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const dev = (pkg.devOnlyModules ?? []).map((m) => m.replace(/^dist\//, '').replace(/\.js$/, '.ts'));
  const isDev = (rel) => dev.some((d) => rel === d || rel.startsWith(`${d}/`));
  for (const f of files) {
    if (isDev(f.rel)) continue;
    for (const i of f.imports) {
      if (!i.target || !isDev(i.target)) continue;
      if (f.rel === 'cli/main.ts' && i.kind === 'dynamic') continue;
      breaches.push(`${f.rel}:${i.line} loads a developer tool (${i.target}) that device bundles leave out`);
    }
  }
}

// 8. CommonJS packages through requireCjs.
for (const f of files) {
  for (const i of f.imports) {
    if (i.pkg && isCjsPkg(i.pkg) && i.kind !== 'type' && !i.required) {
      breaches.push(`${f.rel}:${i.line} imports the CommonJS package ${i.pkg}: load it with requireCjs (util/require-cjs.ts)`);
    }
  }
}

if (process.argv.includes('--json')) {
  const folders = Object.fromEntries([...graph].sort().map(([a, m]) => [a, [...m.keys()].sort()]));
  console.log(JSON.stringify({ folders, breaches }));
} else {
  for (const b of breaches) console.log(b);
  console.log(
    breaches.length ? `structure: ${breaches.length} breaches` : `structure: ok (${files.length} modules, ${graph.size} folders)`,
  );
}
process.exit(breaches.length ? 1 : 0);
