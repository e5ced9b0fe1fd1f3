// Loader for the npm dependencies of chart.test.mjs.
//
// run.sh copies this file next to the node_modules it installs in the tool cache
// (${NODEWATCH_TOOLS:-~/.cache/nodewatch-tools}/helm-test-node), so the bare imports below resolve
// there and nothing is ever installed into the repository.
import { parseAllDocuments } from 'yaml';

export { parseAllDocuments };

// apiVersion group -> npm package that carries its models. Core and built-in groups come from
// kubernetes-models; the CRDs the chart renders come from the @kubernetes-models packages.
const CRD_PACKAGES = {
  'monitoring.coreos.com': '@kubernetes-models/prometheus-operator',
  'cert-manager.io': '@kubernetes-models/cert-manager',
};

// Returns the model class for apiVersion/kind, or throws if no schema is known: every rendered
// object must be validated, so an unknown kind is a test failure, not a skip.
export async function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const pkg = CRD_PACKAGES[group] ?? 'kubernetes-models';
  const path = group ? `${pkg}/${group}/${version}/${kind}` : `${pkg}/${version}/${kind}`;
  const mod = await import(path);
  if (!mod[kind]) throw new Error(`${path} does not export ${kind}`);
  return mod[kind];
}
