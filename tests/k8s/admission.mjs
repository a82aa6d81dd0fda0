// Evaluates a ValidatingAdmissionPolicy's CEL the way the API server applies
// it to one request, with the CEL implementation @bufbuild/cel (standard CEL:
// macros has/all/exists/filter, startsWith, in, size; no Kubernetes-only
// library functions, which the policy does not use).
//
// stdin: {"spec": <the policy's spec>, "cases": [{"name", "request",
// "object", "oldObject"}]}. stdout: one JSON entry per case:
// {"name", "matched": bool, "allowed": bool, "messages": [...]}.
// As with failurePolicy: Fail, an expression that fails to evaluate denies
// the request (and names the expression).
import { readFileSync } from "node:fs";
import { run } from "@bufbuild/cel";

function evaluate(expression, bindings) {
  try {
    return { value: run(expression, bindings) };
  } catch (e) {
    return { error: `${expression}: ${e.message ?? e}` };
  }
}

function admit(spec, { request, object, oldObject }) {
  const bindings = { request, object, oldObject, variables: {} };
  for (const condition of spec.matchConditions ?? []) {
    const { value, error } = evaluate(condition.expression, bindings);
    if (error) return { matched: true, allowed: false, messages: [`matchCondition ${condition.name}: ${error}`] };
    if (value !== true) return { matched: false, allowed: true, messages: [] };
  }
  // Variables in order; each may use those before it.
  for (const variable of spec.variables ?? []) {
    const { value, error } = evaluate(variable.expression, bindings);
    if (error) return { matched: true, allowed: false, messages: [`variables.${variable.name}: ${error}`] };
    bindings.variables = { ...bindings.variables, [variable.name]: value };
  }
  const messages = [];
  for (const validation of spec.validations ?? []) {
    const { value, error } = evaluate(validation.expression, bindings);
    if (error) {
      messages.push(error);
      continue;
    }
    if (value === true) continue;
    let message = validation.message ?? `failed expression: ${validation.expression}`;
    if (validation.messageExpression) {
      const built = evaluate(validation.messageExpression, bindings);
      if (built.error) messages.push(`messageExpression: ${built.error}`);
      else message = String(built.value);
    }
    messages.push(message);
  }
  return { matched: true, allowed: messages.length === 0, messages };
}

let input;
try {
  input = JSON.parse(readFileSync(0, "utf8"));
  if (!input || typeof input.spec !== "object" || !Array.isArray(input.cases)) {
    throw new Error('expected {"spec": {...}, "cases": [...]}');
  }
} catch (e) {
  process.stderr.write(`admission.mjs: ${e.message}\n`);
  process.exit(2);
}
const results = input.cases.map((c) => ({ name: c.name, ...admit(input.spec, c) }));
process.stdout.write(JSON.stringify(results) + "\n");
