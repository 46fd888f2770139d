// Bundles the kitchen display (src/kds.js with automerge-repo and its WebSocket adapter) into
// dist/kds.js, and copies Automerge's wasm beside it. dist/ is committed: `outpost serve`
// embeds it (ws/src/web.rs), so building outpost needs neither npm nor the internet.
// Run `npm ci && npm run build` here after changing src/ or the versions in package.json.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/kds.js"],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: true,
  legalComments: "eof",
  outfile: "dist/kds.js",
  logLevel: "warning",
});
copyFileSync("node_modules/@automerge/automerge/dist/automerge.wasm", "dist/automerge.wasm");
copyFileSync("src/index.html", "dist/index.html");
