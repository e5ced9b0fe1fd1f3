// Unit tests of the helm/nodewatch chart: render with the real helm binary, parse the manifests,
// validate every object against the Kubernetes (and CRD) schemas and assert the chart's contracts.
//
// Run through tests/helm/run.sh, which provides helm and the npm packages:
//   NODEWATCH_HELM        path of the helm binary
//   NODEWATCH_CHART       chart directory
//   NODEWATCH_TEST_DEPS   deps.mjs in the tool cache (yaml + kubernetes-models)
//   NODEWATCH_KUBE_VERSION  Kubernetes version to render for
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const HELM = process.env.NODEWATCH_HELM;
const CHART = process.env.NODEWATCH_CHART;
const DEPS = process.env.NODEWATCH_TEST_DEPS;
const KUBE_VERSION = process.env.NODEWATCH_KUBE_VERSION ?? '1.31.0';
if (!HELM || !CHART || !DEPS) {
  throw new Error('run these tests through tests/helm/run.sh (NODEWATCH_HELM/CHART/TEST_DEPS unset)');
}
const { parseAllDocuments, modelFor } = await import(pathToFileURL(DEPS).href);

// The release is named like the chart, so every object's name prefix ("fullname") is "nodewatch".
const RELEASE = 'nodewatch';
const NS = 'nodewatch';
const FULL = 'nodewatch';

// The Lease name the aggregator uses by default (docs/configuration.md, --lease-name).
const AGGREGATOR_DEFAULT_LEASE = 'nodewatch-aggregator';

// Contract (docs/operations.md "Remediation"): the ClusterRole grants exactly these, nothing more.
const CLUSTER_RULES = [
  ['', 'nodes', ['get', 'list', 'watch', 'patch', 'update']],
  ['', 'nodes/status', ['patch']],
  ['', 'pods', ['get', 'list', 'watch', 'delete']],
  ['', 'pods/eviction', ['create']],
  ['apps', 'daemonsets', ['get']],
  ['', 'events', ['create', 'patch']],
];
// ... and the namespaced Role exactly these on the leader-election Lease.
const LEASE_RULES = [['coordination.k8s.io', 'leases', ['get', 'create', 'update']]];

const CI_FILES = readdirSync(path.join(CHART, 'ci'))
  .filter((f) => f.endsWith('-values.yaml'))
  .sort();
// Every value set run.sh lints: the defaults and each ci/*-values.yaml.
const VALUE_SETS = [
  ['defaults', []],
  ...CI_FILES.map((f) => [`ci/${f}`, ['-f', path.join(CHART, 'ci', f)]]),
];

// ---------------------------------------------------------------------------------------------
// Rendering helpers

function helmTemplate(args) {
  return spawnSync(
    HELM,
    ['template', RELEASE, CHART, '--namespace', NS, '--kube-version', KUBE_VERSION, ...args],
    { encoding: 'utf8', maxBuffer: 64 << 20 },
  );
}

const rendered = new Map();

// Renders with extra helm arguments (-f FILE, --set k=v) and returns the objects. Parsed as YAML
// 1.1, as the API server's client libraries do (e.g. defaultMode 0440 is octal).
function render(...args) {
  const key = JSON.stringify(args);
  if (!rendered.has(key)) {
    const r = helmTemplate(args);
    if (r.status !== 0) throw new Error(`helm template ${args.join(' ')} failed:\n${r.stderr}`);
    const docs = [];
    for (const doc of parseAllDocuments(r.stdout, { version: '1.1' })) {
      if (doc.errors.length) throw new Error(`invalid YAML from helm: ${doc.errors[0].message}`);
      const obj = doc.toJS();
      if (obj !== null && obj !== undefined) docs.push(obj);
    }
    rendered.set(key, docs);
  }
  return rendered.get(key);
}

// Renders and expects helm to refuse; returns its error output.
function renderError(...args) {
  const r = helmTemplate(args);
  assert.notEqual(r.status, 0, `helm template ${args.join(' ')} should fail but rendered`);
  return r.stderr;
}

const set = (...pairs) => pairs.flatMap((p) => ['--set', p]);

function all(docs, kind) {
  return docs.filter((d) => d.kind === kind);
}

function one(docs, kind, name) {
  const found = docs.filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
  assert.equal(found.length, 1, `expected exactly one ${kind}${name ? ` ${name}` : ''}, got ${found.length}`);
  return found[0];
}

function container(workload, name) {
  const c = workload.spec.template.spec.containers.find((x) => x.name === name);
  assert.ok(c, `${workload.kind} has no container ${name}`);
  return c;
}

// Value of --flag in an args list, accepting --flag=value and --flag value.
function flagValues(args, flag) {
  const out = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i].startsWith(`--${flag}=`)) out.push(args[i].slice(flag.length + 3));
    else if (args[i] === `--${flag}` && i + 1 < args.length) out.push(args[++i]);
  }
  return out;
}

function flagValue(args, flag) {
  const v = flagValues(args, flag);
  assert.equal(v.length, 1, `expected --${flag} exactly once in ${JSON.stringify(args)}`);
  return v[0];
}

// RBAC rules as a sorted list of "group|resource|verb" (one entry per verb).
function ruleTriples(rules) {
  const out = [];
  for (const r of rules) {
    for (const g of r.apiGroups ?? []) {
      for (const res of r.resources ?? []) for (const v of r.verbs ?? []) out.push(`${g}|${res}|${v}`);
    }
  }
  return out.sort();
}

const expectedTriples = (spec) =>
  spec.flatMap(([g, res, verbs]) => verbs.map((v) => `${g}|${res}|${v}`)).sort();

const aggregator = (docs) => one(docs, 'StatefulSet', FULL);
const aggregatorArgs = (docs) => container(aggregator(docs), 'aggregator').args;

// ---------------------------------------------------------------------------------------------

describe('every value set', () => {
  for (const [label, args] of VALUE_SETS) {
    test(`${label}: every object validates against its Kubernetes/CRD schema`, async () => {
      const docs = render(...args);
      assert.ok(docs.length > 0);
      for (const d of docs) {
        const Model = await modelFor(d.apiVersion, d.kind);
        try {
          new Model(d).validate();
        } catch (e) {
          assert.fail(`${d.kind} ${d.metadata?.name} (${label}) is invalid: ${e.message}`);
        }
      }
    });

    test(`${label}: standard labels, namespaces, unique names`, () => {
      const docs = render(...args);
      const seen = new Set();
      for (const d of docs) {
        const id = `${d.kind}/${d.metadata.name}`;
        assert.ok(!seen.has(id), `duplicate ${id}`);
        seen.add(id);
        const l = d.metadata.labels ?? {};
        for (const k of ['helm.sh/chart', 'app.kubernetes.io/name', 'app.kubernetes.io/instance',
          'app.kubernetes.io/managed-by']) {
          assert.ok(l[k], `${id} lacks label ${k}`);
        }
        assert.ok(d.metadata.name.length <= 63, `${id}: name longer than 63`);
        if (!d.kind.startsWith('Cluster')) assert.equal(d.metadata.namespace, NS, `${id} namespace`);
      }
    });

    test(`${label}: RBAC is exactly the remediation's needs`, () => {
      const docs = render(...args);
      const cr = one(docs, 'ClusterRole');
      assert.deepEqual(ruleTriples(cr.rules), expectedTriples(CLUSTER_RULES));
      for (const r of cr.rules) {
        assert.equal(r.resourceNames, undefined, 'ClusterRole rules are not name-limited');
        assert.equal(r.nonResourceURLs, undefined, 'no non-resource URLs');
      }
      const role = one(docs, 'Role');
      assert.equal(role.metadata.namespace, NS, 'the Lease Role lives in the release namespace');
      assert.deepEqual(ruleTriples(role.rules), expectedTriples(LEASE_RULES));
      // get/update only on the aggregator's own Lease; create cannot be limited by name.
      const leaseName = flagValue(aggregatorArgs(docs), 'lease-name');
      for (const r of role.rules) {
        if (r.verbs.includes('create')) assert.deepEqual(r.verbs, ['create']);
        else assert.deepEqual(r.resourceNames, [leaseName]);
      }
      const sa = one(docs, 'ServiceAccount');
      for (const [kind, roleKind, roleName] of [
        ['ClusterRoleBinding', 'ClusterRole', cr.metadata.name],
        ['RoleBinding', 'Role', role.metadata.name],
      ]) {
        const b = one(docs, kind);
        assert.deepEqual(b.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: roleKind, name: roleName });
        assert.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: NS }]);
      }
      assert.equal(aggregator(docs).spec.template.spec.serviceAccountName, sa.metadata.name);
    });

    test(`${label}: aggregator probes, resources, PVC, anti-affinity`, () => {
      const docs = render(...args);
      const sts = aggregator(docs);
      const pod = sts.spec.template.spec;
      const c = container(sts, 'aggregator');
      for (const p of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
        assert.ok(c[p] && (c[p].tcpSocket || c[p].httpGet), `${p} missing`);
      }
      // Probes and Services refer to container ports by name: the names must exist.
      const portNames = new Set(c.ports.map((p) => p.name));
      for (const p of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
        const port = (p.tcpSocket ?? p.httpGet).port;
        assert.ok(portNames.has(port), `probe port ${port} is not a container port`);
      }
      for (const svc of all(docs, 'Service')) {
        for (const p of svc.spec.ports) assert.ok(portNames.has(p.targetPort), `${svc.metadata.name} targetPort`);
      }
      for (const k of ['requests', 'limits']) {
        assert.ok(c.resources?.[k]?.cpu, `resources.${k}.cpu`);
        assert.ok(c.resources?.[k]?.memory, `resources.${k}.memory`);
      }
      const vct = sts.spec.volumeClaimTemplates;
      assert.equal(vct?.length, 1, 'one volumeClaimTemplate');
      assert.equal(vct[0].metadata.name, 'data');
      assert.ok(vct[0].spec.resources.requests.storage);
      assert.ok(c.volumeMounts.some((m) => m.name === 'data' && m.mountPath === '/var/lib/nodewatch'));
      assert.equal(flagValue(c.args, 'data-dir'), '/var/lib/nodewatch');
      const anti = pod.affinity?.podAntiAffinity;
      assert.ok(anti, 'podAntiAffinity');
      const terms = [
        ...(anti.requiredDuringSchedulingIgnoredDuringExecution ?? []),
        ...(anti.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((t) => t.podAffinityTerm),
      ];
      assert.ok(terms.length > 0);
      for (const t of terms) {
        assert.equal(t.topologyKey, 'kubernetes.io/hostname');
        assert.deepEqual(t.labelSelector.matchLabels, sts.spec.selector.matchLabels);
      }
      assert.equal(sts.spec.serviceName, `${FULL}-headless`);
    });

    test(`${label}: restricted security context, service account token mounted`, () => {
      const docs = render(...args);
      const pod = aggregator(docs).spec.template.spec;
      const c = container(aggregator(docs), 'aggregator');
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.equal(pod.securityContext.runAsUser, 65532);
      assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
      assert.equal(c.securityContext.runAsNonRoot, true);
      assert.equal(c.securityContext.runAsUser, 65532);
      assert.equal(c.securityContext.readOnlyRootFilesystem, true);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.equal(c.securityContext.privileged, false);
      assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'] });
      assert.equal(c.securityContext.seccompProfile.type, 'RuntimeDefault');
      // The aggregator reads the projected service account token.
      assert.equal(pod.automountServiceAccountToken, true);
      assert.notEqual(one(docs, 'ServiceAccount').automountServiceAccountToken, false);
      assert.ok(!pod.hostNetwork && !pod.hostPID, 'no host namespaces');
      assert.ok(!pod.volumes.some((v) => v.hostPath), 'no hostPath');
    });
  }
});

describe('aggregator', () => {
  test('defaults: 2 replicas, preferred anti-affinity, chart-owned flags', () => {
    const docs = render();
    const sts = aggregator(docs);
    assert.equal(sts.spec.replicas, 2);
    assert.ok(sts.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution);
    const c = container(sts, 'aggregator');
    assert.equal(c.image, 'ghcr.io/nodewatch/aggregator:0.1.0', 'tag defaults to appVersion');
    assert.deepEqual(c.command, ['/usr/local/bin/nodewatch-aggregator']);
    const a = c.args;
    assert.equal(flagValue(a, 'listen'), '0.0.0.0:7443');
    assert.equal(flagValue(a, 'query-listen'), '0.0.0.0:7444');
    assert.equal(flagValue(a, 'http-listen'), '0.0.0.0:7445');
    assert.equal(flagValue(a, 'metrics-listen'), '0.0.0.0:9464');
    assert.equal(flagValue(a, 'config'), '/etc/nodewatch/aggregator.yaml');
    assert.equal(flagValue(a, 'remediation'), 'on');
    assert.equal(flagValue(a, 'leader-elect'), 'true');
    assert.equal(flagValue(a, 'lease-namespace'), NS);
    assert.equal(flagValue(a, 'tls-ca'), '/etc/nodewatch/tls/ca.crt');
    assert.equal(flagValue(a, 'tls-cert'), '/etc/nodewatch/tls/tls.crt');
    assert.equal(flagValue(a, 'tls-key'), '/etc/nodewatch/tls/tls.key');
    // Identity = pod name through the downward API.
    assert.equal(flagValue(a, 'identity'), '$(POD_NAME)');
    const env = Object.fromEntries(c.env.map((e) => [e.name, e]));
    assert.equal(env.POD_NAME.valueFrom.fieldRef.fieldPath, 'metadata.name');
    assert.deepEqual(flagValues(a, 'operator-token-file'), []);
    assert.deepEqual(flagValues(a, 'webhook-url'), []);
  });

  test('--lease-name equals leaderElection.leaseName (default: the aggregator default)', () => {
    assert.equal(flagValue(aggregatorArgs(render()), 'lease-name'), AGGREGATOR_DEFAULT_LEASE);
    const docs = render(...set('leaderElection.leaseName=nw-custom-lease'));
    assert.equal(flagValue(aggregatorArgs(docs), 'lease-name'), 'nw-custom-lease');
    const getUpdate = one(docs, 'Role').rules.find((r) => r.verbs.includes('update'));
    assert.deepEqual(getUpdate.resourceNames, ['nw-custom-lease']);
    const full = render('-f', path.join(CHART, 'ci', 'full-values.yaml'));
    assert.equal(flagValue(aggregatorArgs(full), 'lease-name'), 'nodewatch-leader-test');
  });

  test('config values become the config file; chart-owned keys stay flags', () => {
    const docs = render('-f', path.join(CHART, 'ci', 'full-values.yaml'));
    const cm = one(docs, 'ConfigMap', FULL);
    const [doc] = parseAllDocuments(cm.data['aggregator.yaml']);
    const cfg = doc.toJS();
    assert.equal(cfg['dry-run'], true);
    assert.equal(cfg['log-level'], 'debug');
    assert.deepEqual(cfg.policy, ['rebalance=cordon', 'freeze=none']);
    for (const owned of ['listen', 'data-dir', 'tls-key', 'remediation', 'lease-name', 'identity']) {
      assert.ok(!(owned in cfg), `${owned} must not be in the config file`);
    }
    const sts = aggregator(docs);
    assert.match(sts.spec.template.metadata.annotations['checksum/config'], /^[0-9a-f]{64}$/);
    const c = container(sts, 'aggregator');
    assert.equal(flagValue(c.args, 'webhook-url'), '$(NODEWATCH_WEBHOOK_URL)');
    const hook = c.env.find((e) => e.name === 'NODEWATCH_WEBHOOK_URL');
    assert.deepEqual(hook.valueFrom.secretKeyRef, { name: 'nodewatch-webhook', key: 'url' });
    assert.equal(flagValue(c.args, 'operator-token-file'), '/etc/nodewatch/operator-token/token');
    assert.equal(flagValue(c.args, 'tls-ca'), '/etc/nodewatch/client-ca/ca.crt');
    assert.equal(sts.spec.replicas, 3);
    assert.ok(sts.spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution);
  });

  test('services: headless, ingest 7443, query 7444 and JSON 7445, metrics 9464; PDB maxUnavailable 1', () => {
    const docs = render();
    const sel = aggregator(docs).spec.selector.matchLabels;
    const ports = (name) => one(docs, 'Service', name).spec.ports.map((p) => [p.name, p.port]);
    assert.equal(one(docs, 'Service', `${FULL}-headless`).spec.clusterIP, 'None');
    assert.deepEqual(ports(`${FULL}-headless`), [['ingest', 7443]]);
    assert.deepEqual(ports(`${FULL}-ingest`), [['ingest', 7443]]);
    assert.deepEqual(ports(`${FULL}-query`), [['query', 7444], ['http', 7445]]);
    assert.deepEqual(ports(`${FULL}-metrics`), [['metrics', 9464]]);
    for (const s of all(docs, 'Service')) assert.deepEqual(s.spec.selector, sel);
    const pdb = one(docs, 'PodDisruptionBudget');
    assert.equal(pdb.spec.maxUnavailable, 1);
    assert.deepEqual(pdb.spec.selector.matchLabels, sel);
  });

  test('per-replica ingest Services select one pod each', () => {
    const docs = render(...set('service.ingest.perReplica=true', 'replicas=3'));
    for (let i = 0; i < 3; i++) {
      const s = one(docs, 'Service', `${FULL}-ingest-${i}`);
      assert.equal(s.spec.selector['statefulset.kubernetes.io/pod-name'], `${FULL}-${i}`);
    }
  });

  test('persistence off: emptyDir instead of a claim', () => {
    const sts = aggregator(render(...set('persistence.enabled=false')));
    assert.equal(sts.spec.volumeClaimTemplates, undefined);
    assert.ok(sts.spec.template.spec.volumes.some((v) => v.name === 'data' && v.emptyDir));
  });

  test('remediation off: no Kubernetes API permissions at all', () => {
    const docs = render(...set('remediation.mode=off'));
    for (const k of ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding']) {
      assert.equal(all(docs, k).length, 0, `${k} rendered with remediation off`);
    }
    assert.equal(flagValue(aggregatorArgs(docs), 'remediation'), 'off');
  });
});

describe('certificates', () => {
  test('default: the pods mount <fullname>-tls; no Certificate', () => {
    const docs = render();
    assert.equal(all(docs, 'Certificate').length, 0);
    const tls = aggregator(docs).spec.template.spec.volumes.find((v) => v.name === 'tls');
    assert.equal(tls.secret.secretName, `${FULL}-tls`);
    assert.equal(tls.secret.defaultMode, 0o440);
  });

  test('tls.existingSecret is mounted', () => {
    const docs = render(...set('tls.existingSecret=my-tls'));
    const tls = aggregator(docs).spec.template.spec.volumes.find((v) => v.name === 'tls');
    assert.equal(tls.secret.secretName, 'my-tls');
  });

  test('cert-manager: Certificate covers every dialled name and feeds the mounted Secret', () => {
    const docs = render('-f', path.join(CHART, 'ci', 'certmanager-values.yaml'));
    const cert = one(docs, 'Certificate');
    const tls = aggregator(docs).spec.template.spec.volumes.find((v) => v.name === 'tls');
    assert.equal(cert.spec.secretName, tls.secret.secretName);
    assert.deepEqual(cert.spec.issuerRef, { name: 'nodewatch-ca', kind: 'Issuer', group: 'cert-manager.io' });
    assert.ok(cert.spec.usages.includes('server auth'));
    for (const name of [
      `${FULL}-ingest.${NS}.svc`,
      `${FULL}-query.${NS}.svc`,
      `${FULL}-0.${FULL}-headless.${NS}.svc`,
      `${FULL}-1.${FULL}-headless.${NS}.svc.cluster.local`,
      'nodewatch.example.internal',
    ]) {
      assert.ok(cert.spec.dnsNames.includes(name), `dnsNames lacks ${name}`);
    }
  });

  test('existingSecret and cert-manager together, or cert-manager without issuer, are refused', () => {
    assert.match(renderError(...set('tls.existingSecret=x', 'tls.certManager.enabled=true',
      'tls.certManager.issuerRef.name=ca')), /not both/);
    assert.match(renderError(...set('tls.certManager.enabled=true')), /issuerRef.name is required/);
  });
});

describe('monitoring toggles', () => {
  test('ServiceMonitor and PrometheusRule are off by default', () => {
    const docs = render();
    assert.equal(all(docs, 'ServiceMonitor').length, 0);
    assert.equal(all(docs, 'PrometheusRule').length, 0);
  });

  test('ServiceMonitor scrapes the metrics Service only', () => {
    const docs = render(...set('serviceMonitor.enabled=true'));
    const sm = one(docs, 'ServiceMonitor');
    assert.equal(all(docs, 'PrometheusRule').length, 0);
    const matching = all(docs, 'Service').filter((s) =>
      Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => s.metadata.labels[k] === v));
    assert.deepEqual(matching.map((s) => s.metadata.name), [`${FULL}-metrics`]);
    assert.equal(sm.spec.endpoints[0].port, 'metrics');
    assert.equal(sm.spec.endpoints[0].path, '/metrics');
  });

  test('PrometheusRule alerts on the documented metrics', () => {
    const docs = render(...set('prometheusRule.enabled=true'));
    assert.equal(all(docs, 'ServiceMonitor').length, 0);
    const rules = one(docs, 'PrometheusRule').spec.groups.flatMap((g) => g.rules);
    const expr = (alert) => rules.find((r) => r.alert === alert)?.expr ?? '';
    assert.match(expr('NodewatchDrainIncomplete'), /nodewatch_remediation_drains_total\{[^}]*result="incomplete"/);
    assert.match(expr('NodewatchPodsRemainingAtDeadline'), /nodewatch_remediation_pods_remaining_at_deadline_total/);
    assert.match(expr('NodewatchIngestLostRecords'), /nodewatch_ingest_lost_records_total/);
    assert.match(expr('NodewatchAgentStreamsRejected'), /nodewatch_agent_streams_rejected_total/);
    assert.match(expr('NodewatchBudgetForecast'), /nodewatch_cost_total_month_forecast_dollars\{[^}]*\}\) > 0\.8 \* .*nodewatch_cost_monthly_budget_dollars/);
    assert.match(expr('NodewatchBudgetExceeded'), /nodewatch_cost_total_month_to_date_dollars/);
    assert.match(expr('NodewatchSpotFallbackHigh'), /nodewatch_spot_on_demand_fallback_ratio/);
    assert.match(expr('NodewatchTransferCostSpike'), /nodewatch_transfer_cost_month_to_date_dollars/);
    assert.match(expr('NodewatchAlertFiring'), /nodewatch_alert_firing\{[^}]*\}\) == 1/);
    const leader = rules.find((r) => r.alert === 'NodewatchNoRemediationLeader');
    assert.match(leader.expr, /sum\(nodewatch_remediation_leader\{[^}]*\}\).*== 0/);
    assert.equal(leader.for, '5m');
    for (const r of rules) assert.ok(r.labels?.severity, `${r.alert} has a severity`);
  });
});

describe('network policy', () => {
  test('off by default', () => {
    assert.equal(all(render(), 'NetworkPolicy').length, 0);
  });

  test('agents from anywhere, query and metrics from the release namespace by default', () => {
    const np = one(render(...set('networkPolicy.enabled=true')), 'NetworkPolicy');
    const byPort = Object.fromEntries(np.spec.ingress.map((r) => [r.ports[0].port, r]));
    assert.deepEqual(Object.keys(byPort).sort(), ['ingest', 'metrics', 'query']);
    assert.equal(byPort.ingest.from, undefined, 'ingest open to all');
    assert.deepEqual(byPort.query.from, [{ podSelector: {} }]);
    assert.deepEqual(byPort.query.ports.map((p) => p.port), ['query', 'http'], 'the JSON API with the query API');
    assert.deepEqual(byPort.metrics.from, [{ podSelector: {} }]);
  });

  test('configured CIDRs and selectors', () => {
    const np = one(render('-f', path.join(CHART, 'ci', 'full-values.yaml')), 'NetworkPolicy');
    const byPort = Object.fromEntries(np.spec.ingress.map((r) => [r.ports[0].port, r]));
    assert.deepEqual(byPort.ingest.from.map((f) => f.ipBlock.cidr), ['10.0.0.0/8', '192.168.0.0/16']);
    assert.ok(byPort.metrics.from[0].namespaceSelector);
  });
});

describe('agent DaemonSet', () => {
  const agent = (docs) => one(docs, 'DaemonSet', `${FULL}-agent`);

  test('absent unless enabled', () => {
    assert.equal(all(render(), 'DaemonSet').length, 0);
  });

  test('enabled: host network, eBPF capabilities, never privileged by default', () => {
    const docs = render(...set('agent.enabled=true'));
    const ds = agent(docs);
    const pod = ds.spec.template.spec;
    const c = container(ds, 'agent');
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet');
    assert.equal(pod.automountServiceAccountToken, false, 'the agent does not use the API');
    assert.equal(c.image, 'ghcr.io/nodewatch/agent:0.1.0');
    assert.deepEqual(c.command, ['/usr/local/bin/nodewatch-agent']);
    assert.equal(c.securityContext.privileged, false);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
    assert.deepEqual([...c.securityContext.capabilities.add].sort(), ['BPF', 'NET_ADMIN', 'PERFMON', 'SYS_RESOURCE']);

    const a = c.args;
    assert.equal(flagValue(a, 'node-name'), '$(NODE_NAME)');
    assert.equal(c.env.find((e) => e.name === 'NODE_NAME').valueFrom.fieldRef.fieldPath, 'spec.nodeName');
    // Records must reach every replica: one endpoint per replica.
    assert.deepEqual(flagValues(a, 'aggregator'), [0, 1].map((i) => `${FULL}-${i}.${FULL}-headless.${NS}.svc:7443`));
    assert.equal(flagValue(a, 'spool-dir'), '/var/lib/nodewatch');
    for (const f of ['tls-ca', 'tls-cert', 'tls-key']) assert.ok(flagValue(a, f).startsWith('/etc/nodewatch/'));

    const vols = Object.fromEntries(pod.volumes.map((v) => [v.name, v]));
    const mounts = Object.fromEntries(c.volumeMounts.map((m) => [m.mountPath, m]));
    const hostMount = (hostPath) => {
      const vol = pod.volumes.find((v) => v.hostPath?.path === hostPath);
      assert.ok(vol, `no hostPath ${hostPath}`);
      return c.volumeMounts.find((m) => m.name === vol.name);
    };
    assert.equal(hostMount('/var/lib/nodewatch').mountPath, '/var/lib/nodewatch');
    assert.ok(!hostMount('/var/lib/nodewatch').readOnly);
    assert.equal(hostMount('/sys/fs/bpf').mountPath, '/sys/fs/bpf');
    assert.equal(hostMount('/sys/kernel/tracing').mountPath, '/sys/kernel/tracing');
    assert.equal(hostMount('/sys/fs/cgroup').readOnly, true);
    assert.equal(hostMount('/sys/kernel/btf').readOnly, true);
    assert.equal(hostMount('/proc').readOnly, true);
    assert.equal(hostMount('/var/log/pods').mountPath, '/var/log/pods');
    assert.equal(hostMount('/var/log/pods').readOnly, true);
    assert.equal(mounts['/etc/nodewatch/client'].readOnly, true);
    // The agent gets the CA from the aggregator's Secret, never the server's private key.
    assert.deepEqual(vols.ca.secret.items, [{ key: 'ca.crt', path: 'ca.crt' }]);
    assert.equal(vols.ca.secret.secretName, `${FULL}-tls`);
  });

  test('agent.privileged=true is the only way to a privileged container', () => {
    const c = container(agent(render(...set('agent.enabled=true', 'agent.privileged=true'))), 'agent');
    assert.equal(c.securityContext.privileged, true);
    assert.equal(c.securityContext.allowPrivilegeEscalation, undefined);
  });

  test('client certificate from a Secret', () => {
    const docs = render(...set('agent.enabled=true', 'agent.tls.client.source=secret',
      'agent.tls.client.existingSecret=node-cert'));
    const ds = agent(docs);
    assert.equal(ds.spec.template.spec.volumes.find((v) => v.name === 'client-cert').secret.secretName, 'node-cert');
    assert.equal(flagValue(container(ds, 'agent').args, 'tls-cert'), '/etc/nodewatch/client/tls.crt');
    assert.match(renderError(...set('agent.enabled=true', 'agent.tls.client.source=secret')),
      /existingSecret is required/);
  });

  test('explicit aggregator endpoints replace the per-replica names', () => {
    const docs = render(...set('agent.enabled=true', 'agent.aggregators={a.example:7443,b.example:7443}'));
    assert.deepEqual(flagValues(container(agent(docs), 'agent').args, 'aggregator'), ['a.example:7443', 'b.example:7443']);
  });
});

describe('documentation', () => {
  test('every value has a row in docs/install-helm.md', () => {
    const docs = readFileSync(path.join(CHART, '..', '..', 'docs', 'install-helm.md'), 'utf8');
    const values = parseAllDocuments(readFileSync(path.join(CHART, 'values.yaml'), 'utf8'))[0].toJS();
    const missing = [];
    // A key is documented by its own row or, for objects documented as a whole (resources,
    // probes, ...), by an ancestor's row.
    const walk = (obj, prefix) => {
      for (const [k, v] of Object.entries(obj)) {
        const key = prefix ? `${prefix}.${k}` : k;
        if (docs.includes(`| \`${key}\` |`)) continue;
        if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length) walk(v, key);
        else missing.push(key);
      }
    };
    walk(values, '');
    assert.deepEqual(missing, [], 'values without a row in the values reference');
  });
});

describe('values schema', () => {
  test('rejects an unknown top-level key', () => {
    assert.match(renderError(...set('bogus=1')), /Additional property bogus is not allowed/);
  });

  test('rejects unknown nested keys and chart-owned config keys', () => {
    assert.match(renderError(...set('image.bogus=1')), /Additional property bogus is not allowed/);
    assert.match(renderError(...set('agent.bogus=1')), /Additional property bogus is not allowed/);
    assert.match(renderError(...set('config.listen=0.0.0.0:1')), /Additional property listen is not allowed/);
    assert.match(renderError(...set('config.lease-name=x')), /Additional property lease-name is not allowed/);
  });

  test('rejects wrong types and values', () => {
    // An unquoted `on` in YAML is a boolean; the aggregator needs the string.
    assert.match(renderError(...set('remediation.mode=true')), /remediation.mode/);
    assert.match(renderError(...set('replicas=0')), /replicas/);
    assert.match(renderError(...set('config.retention=two weeks')), /retention/);
    assert.match(renderError(...set('config.policy={spot-terminate=explode}')), /policy/);
    assert.match(renderError(...set('agent.tls.client.source=somewhere')), /source/);
    assert.match(renderError(...set('agent.config.bpf-flow-entries=8')), /bpf-flow-entries/);
    assert.match(renderError(...set('agent.config.bpf=maybe')), /bpf/);
  });

  test('refuses several acting replicas without leader election', () => {
    assert.match(renderError(...set('leaderElection.enabled=false')), /leader election/);
    // One replica, or remediation off, is fine.
    render(...set('leaderElection.enabled=false', 'replicas=1'));
    render(...set('leaderElection.enabled=false', 'remediation.mode=off'));
  });
});
