#!/usr/bin/env node
// Generates src/actions.generated.ts: the TypeScript types of every action's params and
// result, from the catalog's JSON Schemas (`actiondo actions --json`, the body of
// `GET /actions`), so that `execute({ name: 'create-user', params })` is checked at
// compile time.
//
//   node scripts/generate-types.mjs [--check] [--from FILE]
//
// The catalog comes from FILE (a saved `actiondo actions --json` or `GET /actions` body),
// else from the binary $ACTIONDO_BIN, else `actiondo` on PATH, else the workspace's
// target/debug/actiondo. --check writes nothing and fails when the file is out of date.
//
// JSON Schema (draft 2020-12, as schemars writes it) to TypeScript: object → interface
// (properties outside `required` optional; no index signature when
// additionalProperties is false or absent), array → T[], type lists → unions
// (["string", "null"] → string | null), enum/const → literals, oneOf/anyOf → unions,
// allOf → intersections, $ref to #/$defs/X → the named type X, integer → number,
// anything else → unknown. Descriptions become doc comments.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'src', 'actions.generated.ts');

function catalogJson(args) {
  const from = args.indexOf('--from');
  if (from >= 0) return readFileSync(args[from + 1], 'utf8');
  const workspace = join(here, '..', '..', '..', 'target', 'debug', 'actiondo');
  const candidates = [process.env.ACTIONDO_BIN, 'actiondo', workspace].filter(Boolean);
  for (const bin of candidates) {
    if (bin.includes('/') && !existsSync(bin)) continue;
    try {
      return execFileSync(bin, ['actions', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    } catch (e) {
      if (e.code !== 'ENOENT') throw e;
    }
  }
  throw new Error('no actiondo binary: set ACTIONDO_BIN, put actiondo on PATH or build it (cargo build -p actiondo-cli)');
}

const pascal = (s) =>
  s.split(/[^A-Za-z0-9]+/).filter(Boolean).map((w) => w[0].toUpperCase() + w.slice(1)).join('');

const isIdentifier = (s) => /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(s);
const propName = (s) => (isIdentifier(s) ? s : JSON.stringify(s));

function doc(description, indent) {
  if (!description) return '';
  const lines = String(description).replace(/\*\//g, '*\\/').split('\n');
  return `${indent}/**\n${lines.map((l) => `${indent} * ${l}`.trimEnd()).join('\n')}\n${indent} */\n`;
}

/** The TypeScript declarations for one catalog. */
export function generate(catalog) {
  const decls = []; // [name, text]
  const emitted = new Map(); // type name -> canonical JSON of its schema

  // Declare a named type for `schema`, reusing an identical one; answers the name used.
  function declare(wanted, schema, defs, owner) {
    const canonical = JSON.stringify(schema);
    let name = wanted;
    for (let i = 2; emitted.has(name) && emitted.get(name) !== canonical; i++) {
      name = i === 2 ? `${wanted}Of${owner}` : `${wanted}Of${owner}${i}`;
    }
    if (emitted.has(name)) return name;
    emitted.set(name, canonical);
    const slot = decls.push([name, '']) - 1;
    const isObject = schema.type === 'object' && schema.properties;
    const body = isObject
      ? `export interface ${name} ${objectType(schema, defs, '')}\n`
      : `export type ${name} = ${typeOf(schema, defs, '')};\n`;
    decls[slot][1] = doc(schema.description, '') + body;
    return name;
  }

  function objectType(schema, defs, indent) {
    const required = new Set(schema.required ?? []);
    const inner = indent + '  ';
    const props = Object.entries(schema.properties ?? {}).map(
      ([k, v]) =>
        `${doc(v.description, inner)}${inner}${propName(k)}${required.has(k) ? '' : '?'}: ${typeOf(v, defs, inner)};`,
    );
    const extra = schema.additionalProperties;
    if (extra && typeof extra === 'object') props.push(`${inner}[key: string]: ${typeOf(extra, defs, inner)} | undefined;`);
    if (extra === true) props.push(`${inner}[key: string]: unknown;`);
    return props.length ? `{\n${props.join('\n')}\n${indent}}` : 'Record<string, never>';
  }

  function typeOf(schema, defs, indent) {
    if (schema === true || schema === undefined) return 'unknown';
    if (schema === false) return 'never';
    if (schema.$ref) {
      const m = /^#\/\$defs\/(.+)$/.exec(schema.$ref);
      if (!m || !defs.schemas[m[1]]) return 'unknown';
      return defs.names.get(m[1]);
    }
    if ('const' in schema) return JSON.stringify(schema.const);
    if (Array.isArray(schema.enum)) return schema.enum.map((v) => JSON.stringify(v)).join(' | ') || 'never';
    for (const key of ['oneOf', 'anyOf']) {
      if (Array.isArray(schema[key])) {
        return schema[key].map((s) => paren(typeOf(s, defs, indent))).join(' | ') || 'never';
      }
    }
    if (Array.isArray(schema.allOf)) return schema.allOf.map((s) => paren(typeOf(s, defs, indent))).join(' & ');
    const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
    if (types.length === 0) return schema.properties ? objectType(schema, defs, indent) : 'unknown';
    return types
      .map((t) => {
        switch (t) {
          case 'string': return 'string';
          case 'integer':
          case 'number': return 'number';
          case 'boolean': return 'boolean';
          case 'null': return 'null';
          case 'array': return `${paren(typeOf(schema.items, defs, indent))}[]`;
          case 'object':
            if (schema.properties) return objectType(schema, defs, indent);
            if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
              return `Record<string, ${typeOf(schema.additionalProperties, defs, indent)}>`;
            }
            return schema.additionalProperties === false ? 'Record<string, never>' : 'Record<string, unknown>';
          default: return 'unknown';
        }
      })
      .join(' | ');
  }

  const paren = (t) => (/[|&]/.test(t) && !/^[{(]/.test(t) ? `(${t})` : t);

  // Every schema's $defs get names first (a $ref may point forward or to itself).
  function schemaType(schema, wanted, owner) {
    const defs = { schemas: schema.$defs ?? {}, names: new Map() };
    for (const [defName, defSchema] of Object.entries(defs.schemas)) {
      const canonical = JSON.stringify(defSchema);
      let name = defName;
      if (emitted.has(name) && emitted.get(name) !== canonical) name = `${defName}Of${owner}`;
      defs.names.set(defName, name);
    }
    for (const [defName, defSchema] of Object.entries(defs.schemas)) declare(defs.names.get(defName), defSchema, defs, owner);
    const { $defs, $schema, title, ...rest } = schema;
    return declare(wanted, rest, defs, owner);
  }

  const entries = [];
  for (const action of [...catalog.actions].sort((a, b) => a.name.localeCompare(b.name))) {
    const owner = pascal(action.name);
    const params = schemaType(action.inputSchema ?? true, action.inputSchema?.title ?? `${owner}Input`, owner);
    const result = schemaType(action.outputSchema ?? true, action.outputSchema?.title ?? `${owner}Output`, owner);
    entries.push(
      `${doc(`${action.description}\n\nKey policy: ${action.keyPolicy}${action.keyPolicy === 'required' ? ' (pass an idempotencyKey)' : ' (the key defaults to the hash of the params)'}.`, '  ')}` +
        `  ${JSON.stringify(action.name)}: { params: ${params}; result: ${result}; keyPolicy: ${JSON.stringify(action.keyPolicy)} };`,
    );
  }
  return [
    '// Generated by scripts/generate-types.mjs from `actiondo actions --json`. Do not edit:',
    '// run `npm run generate` after changing an action.',
    '/* eslint-disable */',
    '',
    ...decls.map(([, text]) => text),
    '/** Every action of the catalog: its params, its result and its key policy. */',
    'export interface Actions {',
    entries.join('\n'),
    '}',
    '',
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const text = generate(JSON.parse(catalogJson(args)));
  if (args.includes('--check')) {
    const current = existsSync(out) ? readFileSync(out, 'utf8') : '';
    if (current !== text) {
      console.error(`${out} is out of date: run npm run generate`);
      process.exit(1);
    }
  } else if (existsSync(out) && readFileSync(out, 'utf8') === text) {
    console.error(`${out}: up to date`);
  } else {
    writeFileSync(out, text);
    console.error(`${out}: updated from the catalog (commit it with the actions that changed)`);
  }
}
