// Renders each kustomize overlay with `kubectl kustomize` (no cluster needed) and validates every
// object against the Kubernetes OpenAPI schemas shipped in the npm package kubernetes-models (and,
// for custom resources, the CRD schemas of its sibling packages such as
// @kubernetes-models/prometheus-operator).
// Usage: node test/kubernetes/validate.mjs [overlay dir…]   (default: every deploy/kubernetes/overlays/*,
//        and the example overlay with each optional component of deploy/kubernetes/components/*)
//        node test/kubernetes/validate.mjs --file manifests.yaml
// Exit 0 when every object is valid; 1 with each problem's JSON-schema path otherwise.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments, stringify } from 'yaml';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');

export function render(dir) {
  try {
    return execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', stdio: 'pipe' });
  } catch (err) {
    if (err.code === 'ENOENT')
      throw new Error(
        "kubectl is not installed: it renders the manifests (`kubectl kustomize`, no cluster needed). Install kubectl (any recent release; this project's machines have the one that comes with google-cloud-cli, Debian 12 has no package of its own), then run this again.",
        { cause: err },
      );
    throw new Error(`kubectl kustomize ${dir} failed:\n${err.stderr}`, { cause: err });
  }
}

/**
 * An overlay of `overlay` that adds `component`, as an operator's own overlay would (kustomize
 * takes neither absolute paths nor a component from the command line, hence the directory).
 */
export function renderWithComponent(overlay, component) {
  const dir = mkdtempSync(join(tmpdir(), 'relay-kustomize-'));
  try {
    const { namespace } = parse(readFileSync(join(overlay, 'kustomization.yaml'), 'utf8'));
    const kustomization = {
      apiVersion: 'kustomize.config.k8s.io/v1beta1',
      kind: 'Kustomization',
      ...(namespace ? { namespace } : {}),
      resources: [relative(dir, overlay)],
      components: [relative(dir, component)],
    };
    writeFileSync(join(dir, 'kustomization.yaml'), stringify(kustomization));
    return render(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Custom resources' models, by API group: kubernetes-models itself has the built-in kinds only. */
const CRD_MODELS = { 'monitoring.coreos.com': '@kubernetes-models/prometheus-operator' };

/** The model for an object: `v1` → kubernetes-models/v1/Kind, `apps/v1` → …/apps/v1/Kind. */
async function modelOf(apiVersion, kind) {
  const group = apiVersion.includes('/') ? apiVersion.split('/')[0] : '';
  try {
    const module = await import(
      `${CRD_MODELS[group] ?? 'kubernetes-models'}/${apiVersion}/${kind}`
    );
    return module[kind];
  } catch {
    return undefined;
  }
}

export async function validateYaml(text) {
  const problems = [];
  const objects = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) {
      problems.push(...doc.errors.map((e) => `YAML: ${e.message}`));
      continue;
    }
    const object = doc.toJS();
    if (object === null) continue;
    const name = `${object.kind}/${object.metadata?.name}`;
    objects.push(name);
    const Model = await modelOf(object.apiVersion, object.kind);
    if (!Model) {
      problems.push(`${name}: no schema for ${object.apiVersion} ${object.kind}`);
      continue;
    }
    // kustomize wraps a long Secret value's base64 over several lines, which the API server (Go's
    // base64 decoder) reads as one; the schema's "byte" format does not, so unwrap it first.
    if (object.kind === 'Secret' && object.data)
      for (const key of Object.keys(object.data))
        object.data[key] = String(object.data[key]).replace(/\s+/g, '');
    try {
      new Model(object).validate();
    } catch (err) {
      problems.push(`${name}: ${err.message}`);
    }
  }
  return { objects, problems };
}

async function main(args) {
  let inputs;
  if (args[0] === '--file') inputs = [[args[1], readFileSync(args[1], 'utf8')]];
  else {
    const overlays = join(root, 'deploy/kubernetes/overlays');
    const dirs = args.length > 0 ? args : readdirSync(overlays).map((d) => join(overlays, d));
    inputs = dirs.map((dir) => [relative(root, dir) || dir, render(dir)]);
    if (args.length === 0) {
      const components = join(root, 'deploy/kubernetes/components');
      const example = join(overlays, 'example');
      for (const name of readdirSync(components)) {
        const component = join(components, name);
        inputs.push([
          `${relative(root, example)} + ${relative(root, component)}`,
          renderWithComponent(example, component),
        ]);
      }
    }
  }
  let failed = false;
  for (const [name, text] of inputs) {
    const { objects, problems } = await validateYaml(text);
    if (objects.length === 0) problems.push('no objects');
    for (const p of problems) console.error(`${name}: ${p}`);
    if (problems.length > 0) failed = true;
    else process.stdout.write(`${name}: ${objects.length} objects valid (${objects.join(', ')})\n`);
  }
  return failed ? 1 : 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      console.error(err.message);
      process.exit(1);
    },
  );
}
