// deploy/: the Kubernetes manifests and the compose file match the contract (DESIGN "Contract" and
// "Fleet mode"): the port aam serves on, /healthz and /readyz probes, the four shared values
// (database, Redis, master key, admin token), a config that validates, and TLS to both stores
// (rediss://, sslmode=verify-full, CA and client certificate files mounted from Secrets) with
// settings aam's own parser accepts, fed the certificates deploy/tls/make-certs.sh makes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parseAllDocuments, parse } from 'yaml';
import { ROOT, runCli } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { fleetEnv } from '../src/store/fleet-lazy.ts';
import { drainTimeoutMs } from '../src/cli/serve.ts';

const SHARED = ['AAM_DATABASE_URL', 'AAM_REDIS_URL', 'AAM_MASTER_KEY', 'AAM_ADMIN_TOKEN'];
const TLS_FILES = ['AAM_DATABASE_CA_FILE', 'AAM_DATABASE_CERT_FILE', 'AAM_DATABASE_KEY_FILE', 'AAM_REDIS_CA_FILE', 'AAM_REDIS_CERT_FILE', 'AAM_REDIS_KEY_FILE'];
type Obj = Record<string, any>;

const k8s = (file: string): Obj[] => parseAllDocuments(readFileSync(join(ROOT, 'deploy/kubernetes', file), 'utf8')).map((d) => {
  assert.deepEqual(d.errors, [], `${file} parses`);
  return d.toJS() as Obj;
});
const [deployment] = k8s('deployment.yaml');
const [service] = k8s('service.yaml');
const [configMap] = k8s('configmap.yaml');
const [secret, storeTls] = k8s('secret.yaml');
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

test('a startup probe holds liveness off while a replica connects and migrates (it listens only after)', () => {
  const probe = container.startupProbe as Obj;
  assert.ok(probe, 'a startupProbe: liveness alone kills a replica whose migration takes over ~30 s');
  assert.equal(probe.httpGet.path, '/healthz');
  assert.equal(probe.httpGet.port, 'http');
  // Kubernetes defaults: periodSeconds 10, failureThreshold 3.
  const windowS = (probe.periodSeconds ?? 10) * (probe.failureThreshold ?? 3);
  assert.ok(windowS >= 300, `startup window ${windowS} s covers a migration that rewrites a big table (>= 5 min)`);
  // The README says how to widen it, with the manifest's own numbers.
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const said = /`failureThreshold` × `periodSeconds`: `deploy\/kubernetes\/deployment\.yaml` has (\d+) × (\d+) s = (\d+) min/.exec(readme.replace(/\s+/g, ' '));
  assert.ok(said, 'README: how long a replica may take to start, and how to change it');
  assert.deepEqual(said.slice(1).map(Number), [probe.failureThreshold, probe.periodSeconds, windowS / 60]);
});

test('shutdown: a preStop sleep keeps the pod serving while Kubernetes takes it out of the Service; the grace period covers it, the drain and the sinks', () => {
  const env = envOf(container.env);
  const [cmd, seconds] = container.lifecycle.preStop.exec.command as string[];
  assert.equal(cmd, 'sleep');
  assert.ok(Number(seconds) >= 3, 'long enough for kube-proxy and ingresses to let go');
  // The grace period starts with preStop; then SIGTERM: the drain, the handlers' 2 s, the sinks' final checkpoint, margin.
  const needMs = Number(seconds) * 1000 + drainTimeoutMs(env.AAM_DRAIN_TIMEOUT_MS) + 2000 + Number(env.AAM_AUDIT_SINK_SHUTDOWN_MS ?? 5000) + 3000;
  const grace = deployment.spec.template.spec.terminationGracePeriodSeconds as number;
  assert.ok(grace * 1000 >= needMs, `terminationGracePeriodSeconds ${grace} s < ${needMs} ms`);
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
    assert.match(s.environment.AAM_REDIS_URL, /^rediss:\/\/:[^@]+@redis:6380$/);
    assert.ok(s.ports.some((p: string) => p.endsWith(`:${s.environment.AAM_PORT}`)), `${name} publishes AAM_PORT`);
    assert.match(s.healthcheck.test.join(' '), /\/readyz/);
    assert.ok(s.volumes.some((v: string) => v.endsWith(`:${s.environment.AAM_CONFIG}:ro`)), `${name} mounts the config at AAM_CONFIG`);
  }
});

test('the image: the data dir it names (AAM_DATA_DIR) is made and given to its USER before it switches (compose mounts no volume there)', () => {
  const lines = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8').split('\n').filter((l) => !l.startsWith('#'));
  const user = lines.find((l) => l.startsWith('USER '))!.slice(5).trim();
  const data = /AAM_DATA_DIR=(\S+)/.exec(lines.find((l) => l.startsWith('ENV ') && l.includes('AAM_DATA_DIR='))!)![1];
  const userAt = lines.findIndex((l) => l.startsWith('USER '));
  const made = lines.slice(0, userAt).some((l) => l.startsWith('RUN ') && l.includes(`mkdir -p ${data}`) && l.includes(`chown ${user}:${user} ${data}`));
  assert.ok(made, `a RUN before USER ${user} makes ${data} and gives it to ${user}`);
  const c = parse(readFileSync(join(ROOT, 'deploy/compose.yaml'), 'utf8'), { merge: true }) as Obj;
  for (const [name, s] of Object.entries(c.services as Record<string, Obj>).filter(([n]) => n.startsWith('aam-'))) {
    assert.equal(s.environment.AAM_DATA_DIR, data, `${name} uses the image's data dir`);
  }
});

/** deploy/tls/make-certs.sh run in a temp dir (never in the repo): file name -> path. */
function madeCerts(): (file: string) => string {
  const d = join(dir, 'tls');
  spawnSync('mkdir', ['-p', d]);
  copyFileSync(join(ROOT, 'deploy/tls/make-certs.sh'), join(d, 'make-certs.sh'));
  const r = spawnSync('sh', [join(d, 'make-certs.sh')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return (file) => join(d, file);
}

/** What a file variable points at holds what it must: a CA or certificate, or a private key. */
const pemKind = (name: string) => (name.endsWith('_KEY_FILE') ? /-----BEGIN [A-Z ]*PRIVATE KEY-----/ : /-----BEGIN CERTIFICATE-----/);

test('Kubernetes: TLS to both stores (rediss://, sslmode=verify-full), the CA and client certificate mounted from a Secret as files; aam accepts the settings', () => {
  assert.match(secret.stringData['database-url'], /^postgres:\/\/[^@]+@postgres:5432\/\w+\?sslmode=verify-full$/);
  assert.match(secret.stringData['redis-url'], /^rediss:\/\/:[^@]+@redis:\d+$/);
  const env = envOf(container.env);
  const mounts = container.volumeMounts as Obj[];
  const volumes = deployment.spec.template.spec.volumes as Obj[];
  assert.equal(storeTls.kind, 'Secret');
  const files: Record<string, string> = {};
  const made = madeCerts();
  const fromMade: Record<string, string> = { 'store-ca.pem': 'ca.pem', 'client.crt': 'aam-client.crt', 'client.key': 'aam-client.key' };
  for (const name of TLS_FILES) {
    const path = env[name];
    assert.ok(path, `the Deployment sets ${name}`);
    const m = mounts.find((x) => x.mountPath === dirname(path));
    assert.ok(m?.readOnly, `${name} is under a read-only mount`);
    const v = volumes.find((x) => x.name === m.name)!;
    assert.equal(v.secret?.secretName, storeTls.metadata.name, `${name} comes from the ${storeTls.metadata.name} Secret`);
    assert.match(storeTls.stringData[basename(path)], pemKind(name), `the Secret's ${basename(path)} is the kind ${name} wants`);
    files[name] = made(fromMade[basename(path)]);
  }
  // The same values as the pod gets them, with real certificates at the mounted paths.
  const fleet = fleetEnv({ AAM_DATABASE_URL: secret.stringData['database-url'], AAM_REDIS_URL: secret.stringData['redis-url'], ...files });
  assert.deepEqual(Object.keys(fleet?.databaseTls ?? {}).sort(), ['ca', 'cert', 'key']);
  assert.deepEqual(Object.keys(fleet?.redisTls ?? {}).sort(), ['ca', 'cert', 'key']);
});

test('compose: both stores TLS only and asking for aam\'s client certificate; the replicas get the CA and certificate as secrets; the certificates make-certs.sh makes name the hosts and check out', () => {
  const c = parse(readFileSync(join(ROOT, 'deploy/compose.yaml'), 'utf8'), { merge: true }) as Obj;
  const made = madeCerts();
  const ca = new X509Certificate(readFileSync(made('ca.pem')));
  const secretFile = (name: string) => made(basename(c.secrets[name].file as string));
  for (const replica of Object.keys(c.services).filter((s) => s.startsWith('aam-'))) {
    const s = c.services[replica] as Obj;
    assert.match(s.environment.AAM_DATABASE_URL, /\?sslmode=verify-full$/);
    assert.match(s.environment.AAM_REDIS_URL, /^rediss:\/\/:[^@]+@redis:\d+$/);
    const files: Record<string, string> = {};
    for (const name of TLS_FILES) {
      const m = /^\/run\/secrets\/([\w-]+)$/.exec(s.environment[name] ?? '');
      assert.ok(m, `${replica}: ${name} is a secret's file`);
      assert.ok((s.secrets as string[]).includes(m[1]), `${replica} mounts the ${m[1]} secret`);
      files[name] = secretFile(m[1]);
      assert.match(readFileSync(files[name], 'utf8'), pemKind(name), `${m[1]} is the kind ${name} wants`);
    }
    const fleet = fleetEnv({ ...s.environment, ...files });
    assert.deepEqual(Object.keys(fleet?.databaseTls ?? {}).sort(), ['ca', 'cert', 'key']);
    assert.deepEqual(Object.keys(fleet?.redisTls ?? {}).sort(), ['ca', 'cert', 'key']);
    const client = new X509Certificate(readFileSync(files.AAM_DATABASE_CERT_FILE));
    assert.equal(client.subject, `CN=${new URL(s.environment.AAM_DATABASE_URL).username}`, 'the client certificate names the PostgreSQL role (clientcert=verify-full)');
  }
  // The servers: TLS only, client certificates required, certificates that name the hosts aam reaches.
  const pgCommand = (c.services.postgres.command as string[]).join(' ');
  assert.match(pgCommand, /ssl=on/);
  assert.match(pgCommand, /ssl_ca_file=\/run\/secrets\/store-ca/);
  const hba = readFileSync(join(ROOT, 'deploy/tls/pg_hba.conf'), 'utf8').split('\n').filter((l) => l.trim() && !l.startsWith('#'));
  for (const line of hba.filter((l) => !l.startsWith('local'))) assert.match(line, /^hostssl .*clientcert=verify-full$/);
  const redisCommand = (c.services.redis.command as string[]).join(' ');
  assert.match(redisCommand, /--port 0 --tls-port 6380/);
  assert.match(redisCommand, /--tls-auth-clients yes/);
  for (const [host, file] of [['postgres', 'postgres.crt'], ['redis', 'redis.crt']]) {
    const cert = new X509Certificate(readFileSync(made(file)));
    assert.equal(cert.checkHost(host), host, `${file} names ${host}`);
    assert.ok(cert.verify(ca.publicKey), `${file} is signed by the CA`);
  }
});
