/**
 * The Kubernetes manifests as kustomize renders them (deploy/kubernetes/overlays/example): every
 * object valid against the Kubernetes schemas, and the invariants the relay's promises rest on.
 * Needs kubectl (`kubectl kustomize` renders offline); CI installs it, so this never skips.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseSize, SECRET_SETTINGS } from '../../src/kernel/config';
import { UPLOAD_OVERHEAD_BYTES } from '../../src/kernel/sizes';

const ROOT = join(__dirname, '../..');
const OVERLAY = join(ROOT, 'deploy/kubernetes/overlays/example');
const VALIDATE = join(ROOT, 'test/kubernetes/validate.mjs');

/* eslint-disable @typescript-eslint/no-explicit-any -- rendered YAML is untyped by nature */
type K8sObject = { apiVersion: string; kind: string; metadata: { name: string }; [k: string]: any };

function render(dir: string): string {
  try {
    return execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', stdio: 'pipe' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new Error(
        "kubectl is not installed: these tests render deploy/kubernetes with `kubectl kustomize` (no cluster needed). Install kubectl (any recent release; this project's machines have the one that comes with google-cloud-cli, Debian 12 has no package of its own) and run them again.",
        { cause: err },
      );
    throw err;
  }
}

const objects: K8sObject[] = parseAllDocuments(render(OVERLAY))
  .map((d) => d.toJS() as K8sObject)
  .filter(Boolean);

function one(kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (!name || o.metadata.name === name));
  expect(found).toHaveLength(1);
  return found[0]!;
}

const deployment = () => one('Deployment', 'upload-relay');
const relay = () => deployment().spec.template.spec.containers[0];
const env = () =>
  Object.fromEntries(
    (relay().env as Array<{ name: string; value?: string }>).map((e) => [e.name, e.value]),
  );
const podSpecs = () =>
  objects
    .filter((o) => ['Deployment', 'StatefulSet'].includes(o.kind))
    .map((o) => [`${o.kind}/${o.metadata.name}`, o.spec.template.spec] as const);

/** "1Gi", "512Mi", "2G" → bytes. */
function quantity(text: string): number {
  const m = /^(\d+)(Ki|Mi|Gi|k|M|G)?$/.exec(text);
  if (!m) throw new Error(`unreadable quantity ${text}`);
  const unit = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, k: 1e3, M: 1e6, G: 1e9 }[m[2] as 'Ki'];
  return Number(m[1]) * (unit ?? 1);
}

function labelsMatch(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

describe('schema validation (kubernetes-models)', () => {
  test('every rendered object of every overlay is valid', () => {
    const run = spawnSync(process.execPath, [VALIDATE], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/overlays\/example: \d+ objects valid/);
    // The optional components too, each on the example overlay (PrometheusRule against its CRD).
    expect(run.stdout).toMatch(
      /overlays\/example \+ deploy\/kubernetes\/components\/prometheus-rules: \d+ objects valid \(.*PrometheusRule\/upload-relay/,
    );
  });

  test('without kubectl the validator fails and says what to install', () => {
    const run = spawnSync(process.execPath, [VALIDATE], {
      encoding: 'utf8',
      env: { PATH: '/nonexistent' },
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/^kubectl is not installed: .*Install kubectl/);
  });

  test('the validator refuses a broken object, naming the path', () => {
    const broken = render(OVERLAY).replace('replicas: 2', 'replicas: "two"');
    const file = join(tmpdir(), `relay-k8s-${process.pid}.yaml`);
    writeFileSync(file, broken);
    try {
      const run = spawnSync(process.execPath, [VALIDATE, '--file', file], { encoding: 'utf8' });
      expect(run.status).toBe(1);
      expect(run.stderr).toContain('Deployment/upload-relay: data/spec/replicas must be integer');
    } finally {
      rmSync(file, { force: true });
    }
  });
});

test('the example renders the relay, its Service, PDB, HPA, NetworkPolicies and Redis', () => {
  expect(objects.map((o) => o.kind).sort()).toEqual(
    expect.arrayContaining([
      'ConfigMap',
      'Deployment',
      'HorizontalPodAutoscaler',
      'Namespace',
      'NetworkPolicy',
      'NetworkPolicy',
      'PodDisruptionBudget',
      'Secret',
      'Service',
      'Service',
      'StatefulSet',
    ]),
  );
});

test('terminationGracePeriodSeconds > SHUTDOWN_GRACE_MS + the preStop pause', () => {
  const spec = deployment().spec.template.spec;
  const preStop = relay().lifecycle.preStop;
  const pauseSeconds = preStop.sleep
    ? Number(preStop.sleep.seconds)
    : Number(/^sleep$/.test(preStop.exec.command[0]) && preStop.exec.command[1]);
  expect(pauseSeconds).toBeGreaterThanOrEqual(5);
  const graceMs = Number(env().SHUTDOWN_GRACE_MS ?? 60_000);
  expect(spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(graceMs + pauseSeconds * 1000);
});

test('liveness on /healthz and readiness on /readyz, on the port the relay listens on', () => {
  const container = relay();
  const port = container.ports.find((p: any) => p.name === 'http');
  expect(String(port.containerPort)).toBe(env().PORT);
  expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
  expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
  const service = one('Service', 'upload-relay');
  expect(service.spec.ports[0].targetPort).toBe('http');
  expect(labelsMatch(service.spec.selector, deployment().spec.template.metadata.labels)).toBe(true);
});

test.each(['Deployment/upload-relay', 'StatefulSet/upload-relay-redis'])(
  '%s: not root, no privilege escalation, read-only root filesystem, no capabilities',
  (name) => {
    const [, spec] = podSpecs().find(([n]) => n === name)!;
    expect(spec.securityContext.runAsNonRoot).toBe(true);
    expect(spec.securityContext.runAsUser).toBeGreaterThan(0);
    expect(spec.automountServiceAccountToken).toBe(false);
    for (const c of spec.containers) {
      expect(c.securityContext).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
      expect(c.securityContext.privileged).not.toBe(true);
      expect(c.securityContext.runAsUser ?? 1).toBeGreaterThan(0);
    }
  },
);

test('every secret comes from a file in a mounted Secret, never from a value in the environment', () => {
  const spec = deployment().spec.template.spec;
  const entries = relay().env as Array<{ name: string; value?: string; valueFrom?: unknown }>;
  const secretNames = SECRET_SETTINGS as readonly string[];
  for (const e of entries) {
    // REDIS_URL may be a plain value only without a password (the in-cluster Redis).
    if (e.name === 'REDIS_URL') expect(new URL(e.value!).password).toBe('');
    else expect(secretNames).not.toContain(e.name);
    expect(e.valueFrom).toBeUndefined();
  }
  expect(relay().envFrom).toBeUndefined();
  const mount = relay().volumeMounts.find((m: any) => m.name === 'secrets');
  expect(mount.readOnly).toBe(true);
  const volume = spec.volumes.find((v: any) => v.name === 'secrets');
  const secret = one('Secret', volume.secret.secretName);
  const files = entries.filter((e) => e.name.endsWith('_FILE'));
  expect(files.map((e) => e.name)).toEqual(
    expect.arrayContaining([
      'APIVIDEO_API_KEY_FILE',
      'RELAY_API_TOKENS_FILE',
      'METRICS_TOKEN_FILE',
    ]),
  );
  for (const e of files) {
    // The setting's file is a key of the mounted Secret.
    expect(e.value).toBe(`${mount.mountPath}/${e.name.replace(/_FILE$/, '')}`);
    expect(Object.keys(secret.data)).toContain(e.name.replace(/_FILE$/, ''));
  }
  // Group-readable only (fsGroup), not world-readable.
  expect(volume.secret.defaultMode & 0o007).toBe(0);
});

test('memory: request = limit, UPLOAD_MEMORY_BUDGET at most 75 % of it, and RSS at a full budget fits', () => {
  const { requests, limits } = relay().resources;
  expect(requests.memory).toBe(limits.memory);
  const limit = quantity(limits.memory);
  const budget = parseSize(env().UPLOAD_MEMORY_BUDGET!)!;
  expect(budget).toBeGreaterThan(0);
  expect(budget).toBeLessThanOrEqual(0.75 * limit);
  // docs/operations.md, "Sizing memory": ~90 MiB idle + the budget (the uploads' own costs inside it) + what
  // it does not count: up to 2 × min(64 MiB, budget / 8) of pooled blocks, V8's young generation
  // (32 MiB at a 1 GiB limit), and the overdraft of uploads that arrive while parts fill the
  // budget (their costs, until parts drain).
  const MiB = 2 ** 20;
  const pooled = 2 * Math.min(64 * MiB, budget / 8);
  const maxUploads = Number(env().UPLOAD_MAX_CONCURRENT ?? 1000); // config's default
  const partSize = parseSize(env().UPLOAD_PART_SIZE ?? '16MiB')!; // config's default
  const overdraft = Math.min(maxUploads * UPLOAD_OVERHEAD_BYTES, budget - 2 * partSize);
  expect(90 * MiB + budget + pooled + 32 * MiB + overdraft).toBeLessThanOrEqual(limit);
  // Every upload UPLOAD_MAX_CONCURRENT lets in has its own cost counted (none beyond the cap).
  expect(budget - 2 * partSize).toBeGreaterThanOrEqual(maxUploads * UPLOAD_OVERHEAD_BYTES);
  expect(requests.cpu).toBeDefined();
});

test('docs/operations.md gives the memory and drain figures the manifests set', () => {
  const doc = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
  const section = doc
    .slice(doc.indexOf('\n## Kubernetes\n'))
    .split(/\n## /)[1]!
    .replace(/\s+/g, ' ');
  const MiB = 2 ** 20;
  const GiB = 2 ** 30;
  const human = (bytes: number) =>
    bytes % GiB === 0 ? `${bytes / GiB} GiB` : `${bytes / MiB} MiB`;
  const { limits } = relay().resources;
  expect(section).toContain(`request and limit are both ${human(quantity(limits.memory))}`);
  expect(section).toContain(
    `\`UPLOAD_MEMORY_BUDGET\` is ${human(parseSize(env().UPLOAD_MEMORY_BUDGET!)!)}`,
  );
  const preStop = relay().lifecycle.preStop;
  const pauseSeconds = preStop.sleep
    ? Number(preStop.sleep.seconds)
    : Number(preStop.exec.command[1]);
  expect(section).toContain(`\`preStop\` pause (${pauseSeconds} s)`);
  expect(section).toContain(`(\`SHUTDOWN_GRACE_MS\`, ${Number(env().SHUTDOWN_GRACE_MS) / 1000} s)`);
  const grace = deployment().spec.template.spec.terminationGracePeriodSeconds;
  expect(section).toContain(`\`terminationGracePeriodSeconds\` is ${grace} s`);
});

test('the relay NetworkPolicy: ingress on the relay port only; egress to Redis, DNS and 443 outside the cluster only', () => {
  const policy = one('NetworkPolicy', 'upload-relay');
  const relayLabels = deployment().spec.template.metadata.labels;
  const redisLabels = one('StatefulSet', 'upload-relay-redis').spec.template.metadata.labels;
  expect(labelsMatch(policy.spec.podSelector.matchLabels, relayLabels)).toBe(true);
  expect(policy.spec.policyTypes.sort()).toEqual(['Egress', 'Ingress']);
  for (const rule of policy.spec.ingress)
    expect(rule.ports).toEqual([{ protocol: 'TCP', port: 3000 }]);
  const egress = policy.spec.egress as Array<{ to: any[]; ports: any[] }>;
  expect(egress).toHaveLength(3);
  for (const rule of egress) {
    // A rule without `to` or `ports` would open everything.
    expect(rule.to.length).toBeGreaterThan(0);
    expect(rule.ports.length).toBeGreaterThan(0);
  }
  const [toRedis, toDns, outside] = egress;
  expect(toRedis!.to).toHaveLength(1);
  expect(labelsMatch(toRedis!.to[0].podSelector.matchLabels, redisLabels)).toBe(true);
  expect(toRedis!.ports).toEqual([{ protocol: 'TCP', port: 6379 }]);
  expect(toDns!.to[0].podSelector.matchLabels).toEqual({ 'k8s-app': 'kube-dns' });
  expect(toDns!.ports.map((p: any) => p.port)).toEqual([53, 53]);
  expect(outside!.ports).toEqual([{ protocol: 'TCP', port: 443 }]);
  for (const peer of outside!.to) {
    expect(Object.keys(peer)).toEqual(['ipBlock']);
    expect(peer.ipBlock.except.length).toBeGreaterThan(0);
  }
  const v4 = outside!.to.find((p: any) => p.ipBlock.cidr === '0.0.0.0/0');
  expect(v4.ipBlock.except).toEqual(
    expect.arrayContaining(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16']),
  );
});

test('the Redis NetworkPolicy: only relay pods reach it, and it reaches nothing', () => {
  const policy = one('NetworkPolicy', 'upload-relay-redis');
  const relayLabels = deployment().spec.template.metadata.labels;
  expect(policy.spec.policyTypes.sort()).toEqual(['Egress', 'Ingress']);
  expect(policy.spec.egress ?? []).toEqual([]);
  expect(policy.spec.ingress).toHaveLength(1);
  const [rule] = policy.spec.ingress;
  expect(rule.from).toHaveLength(1);
  expect(labelsMatch(rule.from[0].podSelector.matchLabels, relayLabels)).toBe(true);
  expect(rule.ports).toEqual([{ protocol: 'TCP', port: 6379 }]);
});

test('Redis keeps sessions across restarts: AOF fsynced every second, on a volume, no eviction', () => {
  const statefulSet = one('StatefulSet', 'upload-relay-redis');
  const spec = statefulSet.spec.template.spec;
  const container = spec.containers[0];
  const configVolume = spec.volumes.find((v: any) => v.configMap);
  const configMap = one('ConfigMap', configVolume.configMap.name);
  const conf = configMap.data['redis.conf'] as string;
  const directive = (name: string) => new RegExp(`^${name}\\s+(.+)$`, 'm').exec(conf)?.[1]?.trim();
  expect(directive('appendonly')).toBe('yes');
  expect(directive('appendfsync')).toBe('everysec');
  expect(directive('maxmemory-policy')).toBe('noeviction');
  // The config file is the one Redis runs with.
  const configMount = container.volumeMounts.find((m: any) => m.name === configVolume.name);
  expect(container.command).toEqual(['redis-server', `${configMount.mountPath}/redis.conf`]);
  // Its data directory is a PersistentVolumeClaim of the StatefulSet.
  const dataMount = container.volumeMounts.find((m: any) => m.mountPath === directive('dir'));
  expect(statefulSet.spec.volumeClaimTemplates.map((t: any) => t.metadata.name)).toContain(
    dataMount.name,
  );
  // maxmemory below the container's limit.
  expect(parseSize(directive('maxmemory')!.replace(/mb$/i, 'MiB'))).toBeLessThan(
    quantity(container.resources.limits.memory),
  );
  // The relay's REDIS_URL names this Redis's Service.
  const service = one('Service', statefulSet.spec.serviceName);
  expect(new URL(env().REDIS_URL!).hostname).toBe(service.metadata.name);
});

test('PodDisruptionBudget and HorizontalPodAutoscaler cover the relay Deployment', () => {
  const pdb = one('PodDisruptionBudget', 'upload-relay');
  expect(
    labelsMatch(pdb.spec.selector.matchLabels, deployment().spec.template.metadata.labels),
  ).toBe(true);
  expect(pdb.spec.maxUnavailable ?? 0).toBeGreaterThan(0); // a PDB that allows nothing blocks drains
  const hpa = one('HorizontalPodAutoscaler', 'upload-relay');
  expect(hpa.spec.scaleTargetRef).toEqual({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    name: deployment().metadata.name,
  });
  expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
  expect(hpa.spec.metrics[0].resource.name).toBe('cpu');
  // CPU utilisation is measured against the request: there must be one.
  expect(relay().resources.requests.cpu).toBeDefined();
  expect(deployment().spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
});

describe('the managed-redis overlay', () => {
  const managed: K8sObject[] = parseAllDocuments(
    render(join(ROOT, 'deploy/kubernetes/overlays/managed-redis')),
  )
    .map((d) => d.toJS() as K8sObject)
    .filter(Boolean);

  test('no Redis in the cluster; the URL and the CA come from secret files; egress to that address only', () => {
    expect(managed.filter((o) => o.metadata.name.startsWith('upload-relay-redis'))).toEqual([]);
    const dep = managed.find((o) => o.kind === 'Deployment')!;
    const container = dep.spec.template.spec.containers[0];
    const envOf = Object.fromEntries(
      (container.env as Array<{ name: string; value?: string }>).map((e) => [e.name, e.value]),
    );
    expect(envOf).not.toHaveProperty('REDIS_URL');
    const secretName = dep.spec.template.spec.volumes.find((v: any) => v.name === 'secrets').secret
      .secretName;
    const secret = managed.find((o) => o.kind === 'Secret' && o.metadata.name === secretName)!;
    expect(envOf.REDIS_URL_FILE).toBe('/var/run/secrets/upload-relay/REDIS_URL');
    expect(envOf.REDIS_CA_FILE).toBe('/var/run/secrets/upload-relay/redis-ca.pem');
    expect(Object.keys(secret.data)).toEqual(expect.arrayContaining(['REDIS_URL', 'redis-ca.pem']));
    const url = Buffer.from(String(secret.data.REDIS_URL).replace(/\s+/g, ''), 'base64')
      .toString()
      .trim();
    expect(url).toMatch(/^rediss:\/\//);
    const policy = managed.find((o) => o.kind === 'NetworkPolicy')!;
    const toRedis = policy.spec.egress[0];
    expect(toRedis.to).toEqual([{ ipBlock: { cidr: expect.stringMatching(/\/32$/) } }]);
    expect(toRedis.ports).toEqual([{ protocol: 'TCP', port: Number(new URL(url).port) }]);
  });
});

describe('the optional prometheus-rules component', () => {
  const COMPONENT = join(ROOT, 'deploy/kubernetes/components/prometheus-rules');
  /** The example overlay with the component added, as validate.mjs renders it. */
  const renderWithRules = () =>
    execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { renderWithComponent } from ${JSON.stringify(VALIDATE)};
         process.stdout.write(renderWithComponent(${JSON.stringify(OVERLAY)}, ${JSON.stringify(COMPONENT)}));`,
      ],
      { encoding: 'utf8' },
    );
  const withRules: K8sObject[] = parseAllDocuments(renderWithRules())
    .map((d) => d.toJS() as K8sObject)
    .filter(Boolean);

  test("adds one PrometheusRule, in the overlay's namespace, and nothing else", () => {
    const name = (o: K8sObject) => `${o.kind}/${o.metadata.name}`;
    expect(withRules.map(name).sort()).toEqual(
      [...objects.map(name), 'PrometheusRule/upload-relay'].sort(),
    );
    const rule = withRules.find((o) => o.kind === 'PrometheusRule')!;
    expect((rule.metadata as { namespace?: string }).namespace).toBe(
      one('Namespace').metadata.name,
    );
    expect(rule.spec.groups[0].rules.length).toBeGreaterThan(0);
  });

  test("is optional: the example overlay alone has no PrometheusRule (it needs the operator's CRDs)", () => {
    expect(objects.filter((o) => o.kind === 'PrometheusRule')).toEqual([]);
  });

  test('the validator refuses a PrometheusRule the CRD would refuse, naming the path', () => {
    const rendered = parseAllDocuments(renderWithRules());
    const rule = rendered.find((d) => d.get('kind') === 'PrometheusRule')!;
    rule.setIn(['spec', 'groups', 0, 'rules', 0, 'for'], 'five minutes');
    const file = join(tmpdir(), `relay-k8s-rule-${process.pid}.yaml`);
    writeFileSync(file, rendered.map((d) => d.toString()).join('---\n'));
    try {
      const run = spawnSync(process.execPath, [VALIDATE, '--file', file], { encoding: 'utf8' });
      expect(run.status).toBe(1);
      expect(run.stderr).toContain(
        'PrometheusRule/upload-relay: data/spec/groups/0/rules/0/for must match pattern',
      );
    } finally {
      rmSync(file, { force: true });
    }
  });
});
