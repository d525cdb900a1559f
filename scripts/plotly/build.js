// Builds app/static's plotly.js bundle from entry.js with plotly.js's own esbuild settings (its esbuild-config.js):
//   cd scripts/plotly && npm ci && node build.js
const path = require("path");
const esbuild = require("esbuild");
const { environmentPlugin } = require("esbuild-plugin-environment");
const InlineCSSPlugin = require("esbuild-plugin-inline-css");
const version = require("plotly.js/package.json").version;

esbuild.build({
  entryPoints: [path.join(__dirname, "entry.js")],
  outfile: path.join(__dirname, "..", "..", "app", "static", `plotly-gram-${version}.min.js`),
  banner: { js: `/* plotly.js v${version} (MIT, LICENSE.plotly.js): core + bar, heatmap, image; scripts/plotly */` },
  format: "iife", globalName: "Plotly", bundle: true, minify: true, target: "es2016", logLevel: "info",
  plugins: [InlineCSSPlugin(), environmentPlugin({ NODE_DEBUG: false })],
  alias: { stream: "stream-browserify" },
  define: { global: "window", "define.amd": "false" },
}).catch(() => process.exit(1));
