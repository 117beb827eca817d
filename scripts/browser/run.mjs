// Serves the built page (argv[2], a folder) on localhost, opens it in headless Chromium with
// WebGPU on, waits for it to finish, and prints one line per replayed case, the descent
// checks, and last `browser: N passed, M failed`. Exits 1 unless every case passed and every
// optimizer's loss on Rosenbrock's function fell.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const root = resolve(process.argv[2] ?? '.');
const screenshot = process.argv[3];
const TIMEOUT_MS = Number(process.env.BROWSER_TEST_TIMEOUT_S ?? 900) * 1000;
const TYPES = {
  '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm',
  '.json': 'application/json', '.safetensors': 'application/octet-stream',
};

const server = createServer(async (req, res) => {
  try {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    const file = join(root, path.endsWith('/') ? join(path, 'index.html') : path);
    if (!file.startsWith(root) || !(await stat(file)).isFile()) throw new Error('not a file');
    const body = await readFile(file);
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const url = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
    // WebGPU on Chromium's software adapter (SwiftShader, on Vulkan).
    '--enable-unsafe-webgpu', '--enable-features=Vulkan',
  ],
});
let failed = 0;
let passed = 0;
try {
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.log(`console: ${m.text()}`); });
  // A page error (a trap in the wasm module, say) ends the wait at once.
  const crashed = new Promise((_, reject) => page.on('pageerror', (e) => {
    console.log(`page error: ${e.message}`);
    reject(new Error(`page error: ${e.message}`));
  }));
  crashed.catch(() => {});
  await page.goto(url);
  try {
    await Promise.race([
      page.waitForFunction(() => window.wgpuOptim && window.wgpuOptim.done, null,
        { timeout: TIMEOUT_MS, polling: 500 }),
      crashed,
    ]);
  } catch (e) {
    console.log(`the page did not finish: ${e.message}`);
    failed += 1;
  }
  const state = await page.evaluate(() => window.wgpuOptim);
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`adapter: ${state.adapter}`);
  if (state.error) {
    console.log(`error: ${state.error}`);
    failed += 1;
  }
  for (const d of state.descent) {
    const fell = d.last < d.first / 10;
    console.log(`descent ${d.optimizer}: loss ${d.first.toPrecision(4)} -> ${d.last.toPrecision(4)} ${fell ? 'ok' : 'FAILED'}`);
    if (!fell) failed += 1;
  }
  for (const c of state.cases) {
    if (c.passed === true) {
      passed += 1;
    } else {
      failed += 1;
    }
    // serde_json writes non-finite numbers as null.
    const worst = c.params ? Math.max(0, ...c.params.map((p) => p.worst_ratio ?? Infinity)) : NaN;
    const lr = c.max_lr_rel_err ?? Infinity;
    const what = c.error ? `error: ${c.error}` : `worst error/tolerance ${worst.toFixed(3)}, lr rel err ${lr.toExponential(1)}`;
    console.log(`${c.passed ? 'ok    ' : 'FAILED'} ${c.name} (${c.optimizer ?? '?'}): ${what}`);
  }
  const listed = JSON.parse(await readFile(join(root, 'cases.json'), 'utf8'));
  if (state.cases.length < listed.length || listed.length === 0) {
    console.log(`${state.cases.length} of the ${listed.length} listed cases were replayed`);
    failed += Math.max(1, listed.length - state.cases.length);
  }
} finally {
  await browser.close();
  server.close();
}
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
