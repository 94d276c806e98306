#!/usr/bin/env node
// OpenRPC documents checked by @open-rpc/schema-utils-js, a validator independent of the
// project's Python checks:
// - the document against the OpenRPC meta-schema (validateOpenRPCDocument);
// - the specification's prose on a method's params: names unique, every required param
//   before every optional one;
// - every example's params: named params of the method, each named once, and valid against
//   the param schemas (MethodCallValidator, params by name as the examples give them).
//
//   node tests/conformance/validate_openrpc.js DOCUMENT...
//
// prints {"DOCUMENT": ["problem", ...], ...} as JSON; exit status 1 when any has a problem.
"use strict";

const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const fromOpenrpc = createRequire(path.join(__dirname, "..", "..", "openrpc", "package.json"));
const {
  MethodCallValidator,
  dereferenceDocument,
  validateOpenRPCDocument,
} = fromOpenrpc("@open-rpc/schema-utils-js");

function paramOrder(method) {
  const problems = [];
  const seen = new Set();
  let optional = null;
  for (const param of method.params) {
    if (seen.has(param.name)) problems.push(`${method.name}: param ${param.name} twice`);
    seen.add(param.name);
    if (!param.required) optional = optional || param.name;
    else if (optional) {
      problems.push(`${method.name}: required param ${param.name} after optional ${optional}`);
    }
  }
  return problems;
}

function exampleParams(validator, method) {
  const problems = [];
  const names = new Set(method.params.map((p) => p.name));
  for (const example of method.examples || []) {
    const where = `${method.name} example ${example.name}`;
    const given = {};
    for (const param of example.params) {
      if (!names.has(param.name)) problems.push(`${where}: ${param.name} is not a param`);
      if (param.name in given) problems.push(`${where}: ${param.name} given twice`);
      given[param.name] = param.value;
    }
    const errors = validator.validate(method.name, given);
    for (const error of Array.isArray(errors) ? errors : [errors]) {
      problems.push(`${where}: ${describe(error)}`);
    }
  }
  return problems;
}

function describe(error) {
  if (error.name !== "ParameterValidationError") return error.message;
  // ajv's errors are only in the message, as JSON after this line
  const ajv = JSON.parse(error.message.split("The Validation errors: \n")[1] || "[]") || [];
  const why = ajv.map((e) => `${e.dataPath || ""} ${e.message}`.trim());
  const value = JSON.stringify(error.receievedParam); // sic: the library's spelling
  return `${error.paramIndex} = ${value}: ${why.join("; ") || "does not match its schema"}`;
}

async function check(document) {
  const valid = validateOpenRPCDocument(document);
  if (valid !== true) return [`not a valid OpenRPC document: ${valid.message}`];
  const plain = await dereferenceDocument(JSON.parse(JSON.stringify(document)));
  const validator = new MethodCallValidator(plain);
  return plain.methods.flatMap((m) => [...paramOrder(m), ...exampleParams(validator, m)]);
}

async function main(files) {
  const report = {};
  for (const file of files) {
    report[file] = await check(JSON.parse(fs.readFileSync(file, "utf8")));
  }
  process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  return Object.values(report).some((p) => p.length) ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (status) => process.exit(status),
  (error) => {
    console.error(error);
    process.exit(2);
  },
);
