// Validates Kubernetes objects against the API's schemas (the npm package
// kubernetes-models: JSON schemas generated from Kubernetes' OpenAPI, with
// types, required fields, enums and formats such as quantities).
//
// stdin: a JSON array of objects. stdout: a JSON array, one entry per object,
// in order: {"status": "valid"}, {"status": "invalid", "errors": "..."} or
// {"status": "no-schema", "reason": "..."} for a kind the package does not
// model (custom resources). Exit status 0 whatever the verdicts; 2 on bad input.
import { readFileSync } from "node:fs";

async function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    return { reason: "apiVersion and kind must be strings" };
  }
  // "v1" is the core group; "apps/v1" is kubernetes-models/apps/v1.
  let module;
  try {
    module = await import(`kubernetes-models/${apiVersion}`);
  } catch {
    return { reason: `no schemas for apiVersion ${apiVersion}` };
  }
  const model = module[kind];
  if (typeof model !== "function") return { reason: `no schema for ${kind} in ${apiVersion}` };
  return { model };
}

let objects;
try {
  objects = JSON.parse(readFileSync(0, "utf8"));
  if (!Array.isArray(objects)) throw new Error("expected a JSON array of objects");
} catch (e) {
  process.stderr.write(`validate.mjs: ${e.message}\n`);
  process.exit(2);
}

const results = [];
for (const object of objects) {
  const { model, reason } = await modelFor(object?.apiVersion, object?.kind);
  if (!model) {
    results.push({ status: "no-schema", reason });
    continue;
  }
  try {
    new model(object).validate();
    results.push({ status: "valid" });
  } catch (e) {
    results.push({ status: "invalid", errors: String(e.message ?? e) });
  }
}
process.stdout.write(JSON.stringify(results) + "\n");
