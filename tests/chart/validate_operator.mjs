// Validates Prometheus Operator objects (a JSON list on stdin) with the npm package
// @kubernetes-models/prometheus-operator, whose JSON schemas are generated from the operator's API
// types. Prints "<n> valid" or one line per invalid object and exits 1. ETHWATCH_K8S_MODELS is the
// node_modules directory scripts/tools.sh installed the package into.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.env.ETHWATCH_K8S_MODELS;
if (!modules) throw new Error("ETHWATCH_K8S_MODELS is not set (run scripts/tools.sh)");
const v1 = await import(pathToFileURL(join(modules,
  "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js")).href);

let input = "";
for await (const chunk of process.stdin) input += chunk;
const docs = JSON.parse(input);
let bad = 0;
for (const doc of docs) {
  const Model = v1[doc.kind];
  if (!Model) {
    console.log(`${doc.kind} ${doc.metadata?.name}: no model for this kind`);
    bad++;
    continue;
  }
  try {
    new Model(doc).validate();
  } catch (e) {
    console.log(`${doc.kind} ${doc.metadata?.name}: ${e.message}`);
    bad++;
  }
}
if (bad) process.exit(1);
console.log(`${docs.length} valid`);
