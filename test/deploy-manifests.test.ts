// deploy/: the Kubernetes manifests and the compose file match the contract (DESIGN "Contract" and
// "Fleet mode"): the port aam serves on, /healthz and /readyz probes, the four shared values
// (database, Redis, master key, admin token) and a config that validates.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, parse } from 'yaml';
import { ROOT, runCli } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';

const SHARED = ['AAM_DATABASE_URL', 'AAM_REDIS_URL', 'AAM_MASTER_KEY', 'AAM_ADMIN_TOKEN'];
type Obj = Record<string, any>;

const k8s = (file: string): Obj[] => parseAllDocuments(readFileSync(join(ROOT, 'deploy/kubernetes', file), 'utf8')).map((d) => {
  assert.deepEqual(d.errors, [], `${file} parses`);
  return d.toJS() as Obj;
});
const [deployment] = k8s('deployment.yaml');
const [service] = k8s('service.yaml');
const [configMap] = k8s('configmap.yaml');
const [secret] = k8s('secret.yaml');
const container = deployment.spec.template.spec.containers[0] as Obj;
const envOf = (list: Obj[]) => Object.fromEntries(list.map((e) => [e.name, e.value]));

const dir = tempDir('aam-deploy-');
after(() => rmSync(dir, { recursive: true, force: true }));

test('the Deployment serves on AAM_PORT with /healthz liveness and /readyz readiness probes; the Service targets that port', () => {
  assert.equal(deployment.kind, 'Deployment');
  const env = envOf(container.env);
  const port = container.ports.find((p: Obj) => p.name === 'http');
  assert.equal(String(port.containerPort), env.AAM_PORT);
  assert.equal(container.livenessProbe.httpGet.path, '/healthz');
  assert.equal(container.readinessProbe.httpGet.path, '/readyz');
  for (const probe of [container.livenessProbe, container.readinessProbe]) assert.equal(probe.httpGet.port, 'http');
  assert.equal(service.kind, 'Service');
  assert.equal(service.spec.ports[0].targetPort, 'http');
  assert.deepEqual(service.spec.selector, deployment.spec.selector.matchLabels);
});

test('the config comes from the ConfigMap at AAM_CONFIG, the data dir is ephemeral, and the config validates', async () => {
  const env = envOf(container.env);
  const mounts = container.volumeMounts as Obj[];
  const cfg = mounts.find((m) => m.mountPath === env.AAM_CONFIG);
  assert.ok(cfg, 'AAM_CONFIG is a mounted file');
  const volumes = deployment.spec.template.spec.volumes as Obj[];
  assert.equal(volumes.find((v) => v.name === cfg.name)!.configMap.name, configMap.metadata.name);
  assert.ok(configMap.data[cfg.subPath], 'the ConfigMap holds the mounted key');
  const data = mounts.find((m) => m.mountPath === env.AAM_DATA_DIR)!;
  assert.ok(volumes.find((v) => v.name === data.name)!.emptyDir, 'the data dir is an emptyDir (fleet state is in PostgreSQL/Redis)');
  const file = join(dir, 'aam.yaml');
  writeFileSync(file, configMap.data[cfg.subPath]);
  const r = await runCli(['validate', file]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
});

test('the four shared values come from Secret files, never literal env in the pod spec', () => {
  const env = envOf(container.env);
  for (const name of SHARED) assert.equal(env[name], undefined, `${name} is not a literal env var`);
  const script = container.args.join(' ');
  const secretsMount = (container.volumeMounts as Obj[]).find((m) => (deployment.spec.template.spec.volumes as Obj[]).find((v) => v.name === m.name)?.secret)!;
  for (const name of SHARED) {
    const m = new RegExp(`${name}="\\$\\(cat ${secretsMount.mountPath}/([\\w-]+)\\)"`).exec(script);
    assert.ok(m, `${name} is read from a file under ${secretsMount.mountPath}`);
    assert.ok(m[1] in secret.stringData, `the Secret has ${m[1]}`);
  }
  assert.match(script, /exec node bin\/aam\.js serve/);
});

test('compose: PostgreSQL, Redis and two replicas with the shared values, each published on the container port', () => {
  const c = parse(readFileSync(join(ROOT, 'deploy/compose.yaml'), 'utf8'), { merge: true }) as Obj;
  assert.ok(c.services.postgres && c.services.redis);
  const replicas = Object.keys(c.services).filter((s) => s.startsWith('aam-'));
  assert.equal(replicas.length, 2);
  for (const name of replicas) {
    const s = c.services[name] as Obj;
    for (const v of SHARED) assert.ok(s.environment[v], `${name} sets ${v}`);
    assert.match(s.environment.AAM_DATABASE_URL, /^postgres:\/\/[^@]+@postgres:5432\//);
    assert.match(s.environment.AAM_REDIS_URL, /^redis:\/\/:[^@]+@redis:6379$/);
    assert.ok(s.ports.some((p: string) => p.endsWith(`:${s.environment.AAM_PORT}`)), `${name} publishes AAM_PORT`);
    assert.match(s.healthcheck.test.join(' '), /\/readyz/);
    assert.ok(s.volumes.some((v: string) => v.endsWith(`:${s.environment.AAM_CONFIG}:ro`)), `${name} mounts the config at AAM_CONFIG`);
  }
});
