// The generated types: up to date with the catalog, accepted by tsc where used well, and
// refused on every misuse of test/types/misuse.ts (each line marked `// misuse`).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { actiondoBin } from './helpers.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = promisify(execFile);
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const flags = ['--noEmit', '--strict', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--target', 'ES2022', '--lib', 'ES2022,DOM', '--pretty', 'false'];

test('src/actions.generated.ts is what the generator makes of the catalog', async () => {
  await run(process.execPath, [join(root, 'scripts', 'generate-types.mjs'), '--check'], {
    env: { ...process.env, ACTIONDO_BIN: actiondoBin() },
  });
});

test('tsc accepts the well-typed uses', async () => {
  await run(process.execPath, [tsc, ...flags, join(root, 'test', 'types', 'ok.ts')]);
});

test('tsc refuses every misuse, and only those lines', async () => {
  const file = join(root, 'test', 'types', 'misuse.ts');
  const marked = readFileSync(file, 'utf8')
    .split('\n')
    .flatMap((line, i) => (/\/\/ misuse$/.test(line) ? [i + 1] : []));
  assert.ok(marked.length >= 8);
  const failed = await run(process.execPath, [tsc, ...flags, file]).then(
    () => assert.fail('tsc accepted misuse.ts'),
    (e) => e,
  );
  const lines = new Set([...failed.stdout.matchAll(/misuse\.ts\((\d+),\d+\): error TS\d+/g)].map((m) => Number(m[1])));
  assert.deepEqual([...lines].sort((a, b) => a - b), marked, failed.stdout);
});
