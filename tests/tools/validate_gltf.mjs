// Validate one .glb/.gltf with the Khronos glTF-Validator and print its JSON report on stdout.
// Usage: node tests/tools/validate_gltf.mjs FILE
// External resources are rejected: TwinView's outputs must be self-contained.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

// Resolve the package from web_client/, where ./setup.sh installs the npm dependencies.
const require = createRequire(new URL("../../web_client/package.json", import.meta.url));
const validator = require("gltf-validator");

// Report every issue: a truncated report could hide the one error that matters.
const MAX_ISSUES = 0;

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate_gltf.mjs FILE");
  process.exit(2);
}
const report = await validator.validateBytes(new Uint8Array(readFileSync(file)), {
  uri: file,
  maxIssues: MAX_ISSUES,
  externalResourceFunction: (uri) => Promise.reject(new Error(`external resource not allowed: ${uri}`)),
});
process.stdout.write(JSON.stringify(report));
