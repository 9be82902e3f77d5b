#!/usr/bin/env node
// Validates the Kubernetes manifests (every YAML document under docker/k8s/ by default, or the files
// and directories given as arguments) against the Kubernetes OpenAPI schemas, offline.
//
// Schemas: the `kubernetes-models` devDependency ships the Kubernetes API's OpenAPI definitions
// compiled to JSON-schema validators (ajv); nothing is fetched at run time. On top of the schema
// (which, like Kubernetes' own OpenAPI, allows unknown fields) this script is strict, as
// `kubeconform -strict` is: a field the schema does not declare is an error, because the API server
// would drop or reject it and the setting would silently not apply.
//   Strict mode works by watching which fields the compiled validator reads: it reads every field
//   its schema declares (and every entry of free-form maps such as labels), so a field left unread
//   is one the schema does not know.
// kustomization.yaml is checked for what kustomize needs: every listed resource exists, and every
// manifest next to it is listed (or named *.template.yaml, meant to be copied and filled in).
//
// Usage: node scripts/validate-manifests.mjs [file-or-dir ...]
// Exit: 0 all valid, 1 a document is invalid, 2 the validator itself could not run.

import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_DIR = join(REPO_ROOT, 'docker', 'k8s');
const KUSTOMIZATION_NAMES = new Set(['kustomization.yaml', 'kustomization.yml', 'Kustomization']);

/** @typedef {{ file: string, doc: number, kind: string, name: string, path: string, message: string }} Problem */

async function collectFiles(target) {
  const info = await stat(target);
  if (info.isFile()) return [target];
  const out = [];
  for (const entry of (await readdir(target, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const full = join(target, entry.name);
    if (entry.isDirectory()) out.push(...(await collectFiles(full)));
    else if (/\.ya?ml$/.test(entry.name) || entry.name === 'Kustomization') out.push(full);
  }
  return out;
}

/** JSON pointer segment escaping (RFC 6901), as ajv reports instance paths. */
function pointer(segment) {
  return String(segment).replace(/~/g, '~0').replace(/\//g, '~1');
}

/**
 * Wraps `value` so every own field the validator reads is recorded. Returns the proxy; `nodes`
 * collects one entry per plain object reached ({ path, value, read }).
 */
function track(value, path, nodes) {
  if (value === null || typeof value !== 'object') return value;
  const read = new Set();
  const children = new Map();
  if (!Array.isArray(value)) nodes.push({ path, value, read });
  return new Proxy(value, {
    get(target, prop, receiver) {
      if (typeof prop === 'string' && Object.prototype.hasOwnProperty.call(target, prop)) {
        read.add(prop);
        if (!children.has(prop)) children.set(prop, track(target[prop], `${path}/${pointer(prop)}`, nodes));
        return children.get(prop);
      }
      return Reflect.get(target, prop, receiver);
    },
  });
}

let modelsAvailable;
async function loadModel(apiVersion, kind) {
  // apiVersion is "v1" (core) or "group/version"; kubernetes-models exposes one module per pair.
  if (!/^([a-z0-9.-]+\/)?v[0-9]+((alpha|beta)[0-9]+)?$/.test(apiVersion)) return undefined;
  let mod;
  try {
    mod = await import(`kubernetes-models/${apiVersion}`);
  } catch (err) {
    if (err && (err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'ERR_PACKAGE_PATH_NOT_EXPORTED')) {
      if (modelsAvailable === undefined) {
        try {
          await import('kubernetes-models/v1');
          modelsAvailable = true;
        } catch {
          modelsAvailable = false;
        }
      }
      if (!modelsAvailable) {
        throw new Error('the kubernetes-models package is not installed: run `npm ci` (it is a devDependency)');
      }
      return undefined; // the package is there, this apiVersion is not
    }
    throw err;
  }
  const model = mod[kind];
  return typeof model === 'function' && model.apiVersion === apiVersion && model.kind === kind ? model : undefined;
}

function isUnder(path, parent) {
  return path === parent || path.startsWith(`${parent}/`);
}

/** Schema + strict validation of one Kubernetes object. Returns problems as { path, message }. */
function validateObject(model, object) {
  const nodes = [];
  const proxy = track(object, '', nodes);
  const problems = [];
  try {
    // The model's validate() runs the compiled schema on `this`; calling it on the proxy (rather than
    // on `new Model(object)`, which copies every field) lets us see which fields the schema reads.
    model.prototype.validate.call(proxy);
  } catch (err) {
    if (!Array.isArray(err?.errors)) throw err;
    for (const e of err.errors) {
      const at = e.instancePath || '';
      let message = e.message ?? e.keyword;
      if (e.keyword === 'required') message = `missing required field "${e.params.missingProperty}"`;
      else if (e.keyword === 'enum') message = `${message}: ${JSON.stringify(e.params.allowedValues)}`;
      problems.push({ path: at || '/', message });
    }
  }
  const failed = problems.map((p) => (p.path === '/' ? '' : p.path));
  for (const node of nodes) {
    for (const key of Object.keys(node.value)) {
      if (node.read.has(key)) continue;
      const path = `${node.path}/${pointer(key)}`;
      // Below a value that already failed its schema (wrong type...), nothing was read: say it once.
      if (failed.some((f) => isUnder(path, f) && f !== path)) continue;
      problems.push({ path, message: `unknown field "${key}" (not in the Kubernetes schema for this object)` });
    }
  }
  if (!object.metadata || typeof object.metadata.name !== 'string' || object.metadata.name === '') {
    problems.push({ path: '/metadata/name', message: 'missing required field "name"' });
  }
  return problems;
}

async function checkKustomization(file, doc, problems, index) {
  const dir = dirname(file);
  const push = (path, message) => problems.push({ file, doc: index, kind: 'Kustomization', name: '', path, message });
  const listed = new Set();
  const resources = doc.resources ?? [];
  if (!Array.isArray(resources)) return push('/resources', 'must be a list of paths');
  for (const [i, entry] of resources.entries()) {
    if (typeof entry !== 'string') {
      push(`/resources/${i}`, 'must be a path');
      continue;
    }
    const target = resolve(dir, entry);
    listed.add(target);
    try {
      await stat(target);
    } catch {
      push(`/resources/${i}`, `"${entry}" does not exist`);
    }
  }
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isFile() || !/\.ya?ml$/.test(entry.name) || KUSTOMIZATION_NAMES.has(entry.name)) continue;
    if (entry.name.endsWith('.template.yaml') || entry.name.endsWith('.template.yml')) continue;
    if (!listed.has(join(dir, entry.name))) {
      push('/resources', `"${entry.name}" is next to kustomization.yaml but not listed in resources (name it *.template.yaml if it is meant to be copied)`);
    }
  }
}

async function main(argv) {
  const targets = argv.length > 0 ? argv.map((a) => resolve(a)) : [DEFAULT_DIR];
  const files = [];
  for (const target of targets) {
    try {
      files.push(...(await collectFiles(target)));
    } catch (err) {
      throw new Error(`cannot read ${target}: ${err.message}`);
    }
  }
  if (files.length === 0) throw new Error(`no YAML files found in ${targets.join(', ')}`);

  /** @type {Problem[]} */
  const problems = [];
  let documents = 0;
  for (const file of files) {
    const text = await readFile(file, 'utf8');
    // YAML 1.1, as Kubernetes (sigs.k8s.io/yaml) reads it: `yes`, `on`, `no` are booleans there.
    const docs = parseAllDocuments(text, { version: '1.1', prettyErrors: true });
    for (const [i, parsed] of docs.entries()) {
      const index = i + 1;
      if (parsed.errors.length > 0) {
        for (const e of parsed.errors) problems.push({ file, doc: index, kind: '?', name: '', path: '', message: `YAML: ${e.message}` });
        continue;
      }
      const object = parsed.toJS();
      if (object === null || object === undefined) continue; // empty document (e.g. trailing ---)
      documents++;
      if (typeof object !== 'object' || Array.isArray(object)) {
        problems.push({ file, doc: index, kind: '?', name: '', path: '/', message: 'a manifest must be a mapping' });
        continue;
      }
      const { apiVersion, kind } = object;
      const name = typeof object.metadata?.name === 'string' ? object.metadata.name : '';
      if (typeof apiVersion !== 'string' || typeof kind !== 'string') {
        problems.push({ file, doc: index, kind: String(kind ?? '?'), name, path: '/', message: 'apiVersion and kind must be strings' });
        continue;
      }
      if (kind === 'Kustomization' && apiVersion.startsWith('kustomize.config.k8s.io/')) {
        await checkKustomization(file, object, problems, index);
        continue;
      }
      const model = await loadModel(apiVersion, kind);
      if (!model) {
        problems.push({ file, doc: index, kind, name, path: '/', message: `no Kubernetes schema for apiVersion "${apiVersion}", kind "${kind}"` });
        continue;
      }
      for (const p of validateObject(model, object)) problems.push({ file, doc: index, kind, name, ...p });
    }
  }

  const shown = (f) => relative(process.cwd(), f) || basename(f);
  if (problems.length > 0) {
    for (const p of problems) {
      const what = `${p.kind}${p.name ? ` "${p.name}"` : ''} (document ${p.doc})`;
      process.stderr.write(`${shown(p.file)}: ${what}: ${p.path ? `${p.path}: ` : ''}${p.message}\n`);
    }
    process.stderr.write(`manifest validation failed: ${problems.length} problem(s) in ${documents} document(s)\n`);
    return 1;
  }
  process.stdout.write(`manifest validation ok: ${documents} document(s) in ${files.length} file(s) match the Kubernetes schemas (strict)\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`validate-manifests: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  },
);
