// Opens a WebGPU device through the wasm build of wgpu-optim, draws an optimizer's loss curve
// on Rosenbrock's function as it runs, then replays every case listed in cases.json (written
// by scripts/browser-test) and judges it with the library's own rule. The results are left
// on `window.wgpuOptim` for the test harness.
import init, { Harness } from './pkg/wgpu_optim_web.js';

const state = { done: false, error: null, adapter: null, descent: [], cases: [] };
window.wgpuOptim = state;
// A panic in the wasm module traps inside a promise that then never settles: end the run
// with the error rather than leave the harness waiting.
function fail(e) {
  state.error = state.error ?? String(e && e.stack ? e.stack : e);
  state.done = true;
}
window.addEventListener('error', (event) => fail(event.error ?? event.message));
window.addEventListener('unhandledrejection', (event) => fail(event.reason));

const CURVES = [
  { optimizer: 'adam', lr: 0.1, color: '#1f77b4' },
  { optimizer: 'sgd', lr: 0.001, color: '#ff7f0e' },
  { optimizer: 'rmsprop', lr: 0.01, color: '#2ca02c' },
  { optimizer: 'lion', lr: 0.01, color: '#d62728' },
];
const STEPS = 500;

function draw(canvas, curves) {
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, canvas.width, canvas.height);
  const all = curves.flatMap((c) => Array.from(c.losses)).filter((v) => v > 0 && isFinite(v));
  if (all.length === 0) return;
  const lo = Math.log10(Math.min(...all)), hi = Math.log10(Math.max(...all));
  const pad = 30, w = canvas.width - 2 * pad, h = canvas.height - 2 * pad;
  g.strokeStyle = '#999';
  g.strokeRect(pad, pad, w, h);
  g.fillStyle = '#333';
  g.fillText(`1e${hi.toFixed(1)}`, 2, pad + 4);
  g.fillText(`1e${lo.toFixed(1)}`, 2, pad + h);
  g.fillText(`${STEPS} steps`, pad + w - 50, pad + h + 15);
  for (const c of curves) {
    g.strokeStyle = c.color;
    g.beginPath();
    Array.from(c.losses).forEach((v, i) => {
      const x = pad + (i / STEPS) * w;
      const y = pad + h - ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo || 1)) * h;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
}

async function main() {
  await init();
  if (!navigator.gpu) throw new Error('this browser offers no WebGPU (navigator.gpu is undefined)');
  const harness = await Harness.open();
  state.adapter = harness.adapter();
  document.getElementById('adapter').textContent = `Adapter: ${state.adapter}`;

  const canvas = document.getElementById('curve');
  const curves = [];
  for (const c of CURVES) {
    const curve = { ...c, losses: new Float32Array() };
    curves.push(curve);
    const losses = await harness.descend(c.optimizer, c.lr, STEPS, (soFar) => {
      curve.losses = soFar;
      draw(canvas, curves);
    });
    curve.losses = losses;
    draw(canvas, curves);
    state.descent.push({ optimizer: c.optimizer, first: losses[0], last: losses[losses.length - 1] });
  }
  document.getElementById('legend').innerHTML = CURVES.map(
    (c) => `<span style="color:${c.color}">■ ${c.optimizer} (lr ${c.lr})</span>`).join(' ');

  const list = await (await fetch('cases.json')).json();
  const body = document.getElementById('cases');
  for (const path of list) {
    const response = await fetch(path);
    const report = response.ok
      ? JSON.parse(await harness.replay(path, new Uint8Array(await response.arrayBuffer())))
      : { name: path, error: `fetch failed: HTTP ${response.status}` };
    state.cases.push(report);
    // serde_json writes a non-finite ratio (a short replay) as null: count it as failing.
    const worst = report.params
      ? Math.max(0, ...report.params.map((p) => p.worst_ratio ?? Infinity)) : NaN;
    const ok = report.passed === true;
    const row = document.createElement('tr');
    row.innerHTML = `<td>${report.name}</td><td>${report.optimizer ?? ''}</td>` +
      `<td>${report.steps ?? ''}</td><td>${report.error ?? worst.toFixed(3)}</td>` +
      `<td class="${ok ? 'pass' : 'fail'}">${ok ? 'pass' : 'FAIL'}</td>`;
    body.appendChild(row);
    const passed = state.cases.filter((c) => c.passed === true).length;
    document.getElementById('summary').textContent =
      `${passed} of ${state.cases.length} within tolerance (of ${list.length})`;
  }
}

main()
  .catch((e) => {
    fail(e);
    document.getElementById('adapter').textContent = `Error: ${state.error}`;
  })
  .finally(() => { state.done = true; });
