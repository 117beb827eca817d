//! wgpu-optim in a web page, on the browser's WebGPU adapter.
//!
//! [`Harness`] opens a device through `navigator.gpu`, replays recorded PyTorch and optax
//! trajectories through [`wgpu_optim::GpuOptimizer`] (the library's own replay and judging
//! rule, `wgpu_optim::case`), and runs an optimizer on a 2-D test function for the page's loss
//! curve. Everything that waits is awaited: the page's one thread never blocks.

use std::path::Path;

use js_sys::{Float32Array, Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use wgpu_optim::case::{self, Backend, Case};
use wgpu_optim::{Adam, Algorithm, GpuContext, GpuOptimizer, Lion, RmsProp, Sgd};

/// A WebGPU device and queue, and what the page asks of them.
#[wasm_bindgen]
pub struct Harness {
    ctx: GpuContext,
}

fn js_error(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

#[wasm_bindgen]
impl Harness {
    /// Opens a device on the adapter `navigator.gpu.requestAdapter()` gives, with its limits.
    pub async fn open() -> Result<Harness, JsValue> {
        console_error_panic_hook();
        let ctx = GpuContext::new_async().await.map_err(js_error)?;
        Ok(Harness { ctx })
    }

    /// The adapter's name, backend and the storage-buffer limit the kernels bind against.
    pub fn adapter(&self) -> String {
        let info = self.ctx.adapter.get_info();
        let limits = self.ctx.device.limits();
        let name = if info.name.is_empty() {
            "unnamed adapter"
        } else {
            &info.name
        };
        format!(
            "{name} ({:?}, {:?}); {} storage buffers per stage, {} bytes per binding",
            info.backend,
            info.device_type,
            limits.max_storage_buffers_per_shader_stage,
            limits.max_storage_buffer_binding_size
        )
    }

    /// Replays the case file `bytes` (named `name`) through `GpuOptimizer` on this device and
    /// judges it against its recorded trajectory with the native replay's rule. Resolves to a
    /// JSON report: `{ name, optimizer, steps, passed, max_lr_rel_err, params: [{ name,
    /// max_abs_err, worst_ratio }] }`, or `{ name, error }` when the case cannot run.
    pub fn replay(&self, name: String, bytes: Vec<u8>) -> Promise {
        let ctx = self.ctx.clone();
        future_to_promise(async move {
            let report = match replay_case(&ctx, &name, &bytes).await {
                Ok(report) => report,
                Err(e) => serde_json::json!({ "name": name, "error": e.to_string() }),
            };
            Ok(JsValue::from_str(&report.to_string()))
        })
    }

    /// Runs `steps` steps of `optimizer` (`adam`, `sgd` with momentum 0.9, `rmsprop` or `lion`)
    /// at rate `lr` on Rosenbrock's function from (-1.5, 2), the gradient computed on the host
    /// from the parameters read back after each step. Calls `progress` with the losses so far
    /// every 10 steps; resolves to every step's loss.
    pub fn descend(&self, optimizer: String, lr: f64, steps: u32, progress: Function) -> Promise {
        let ctx = self.ctx.clone();
        future_to_promise(async move {
            let losses = match optimizer.as_str() {
                "adam" => {
                    descend(
                        &ctx,
                        Adam {
                            lr,
                            ..Adam::default()
                        },
                        steps,
                        &progress,
                    )
                    .await
                }
                "sgd" => {
                    let sgd = Sgd {
                        lr,
                        momentum: 0.9,
                        ..Sgd::default()
                    };
                    descend(&ctx, sgd, steps, &progress).await
                }
                "rmsprop" => {
                    let rmsprop = RmsProp {
                        lr,
                        ..RmsProp::default()
                    };
                    descend(&ctx, rmsprop, steps, &progress).await
                }
                "lion" => {
                    descend(
                        &ctx,
                        Lion {
                            lr,
                            ..Lion::default()
                        },
                        steps,
                        &progress,
                    )
                    .await
                }
                other => Err(format!("no demo for optimizer {other:?}")),
            }
            .map_err(js_error)?;
            Ok(Float32Array::from(losses.as_slice()).into())
        })
    }
}

/// Parses, replays and judges one case.
async fn replay_case(
    ctx: &GpuContext,
    name: &str,
    bytes: &[u8],
) -> Result<serde_json::Value, String> {
    let case = Case::from_bytes(bytes, Path::new(name)).map_err(|e| e.to_string())?;
    let ours = case::replay_async(&case, Backend::Gpu, Some(ctx))
        .await
        .map_err(|e| e.to_string())?;
    let report = case::compare(&case, &ours);
    let params: Vec<_> = report
        .params
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.name,
                "max_abs_err": p.max_abs_err,
                "worst_ratio": p.worst_ratio,
            })
        })
        .collect();
    Ok(serde_json::json!({
        "name": name,
        "optimizer": case.optimizer_name(),
        "steps": case.steps,
        "passed": report.within_tolerance(),
        "max_lr_rel_err": report.max_lr_rel_err,
        "params": params,
    }))
}

/// Rosenbrock's function `(1 − x)² + 100 (y − x²)²` and its gradient.
fn rosenbrock([x, y]: [f32; 2]) -> (f32, [f32; 2]) {
    let (a, b) = (1.0 - x, y - x * x);
    (a * a + 100.0 * b * b, [-2.0 * a - 400.0 * x * b, 200.0 * b])
}

/// `steps` steps of `config` on [`rosenbrock`]: each step writes the gradient, records the
/// optimizer's step into an encoder, submits, and reads the point back (awaited).
async fn descend<O: Algorithm>(
    ctx: &GpuContext,
    config: O,
    steps: u32,
    progress: &Function,
) -> Result<Vec<f32>, String> {
    let start = [-1.5_f32, 2.0];
    let param = ctx.upload("point", &start);
    let grad = ctx.upload("gradient", &[0.0, 0.0]);
    let mut opt = GpuOptimizer::new_async(&ctx.device, &ctx.queue, config)
        .await
        .map_err(|e| e.to_string())?;
    let group = opt.default_group();
    opt.register_async(group, &param, &grad)
        .await
        .map_err(|e| e.to_string())?;
    let mut point = start;
    let mut losses = Vec::with_capacity(steps as usize + 1);
    for t in 0..steps {
        let (loss, g) = rosenbrock(point);
        losses.push(loss);
        ctx.write(&grad, &g);
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        opt.step(&mut encoder);
        ctx.queue.submit([encoder.finish()]);
        let read = ctx.read_async(&param).await.map_err(|e| e.to_string())?;
        point = [read[0], read[1]];
        if (t + 1) % 10 == 0 {
            let so_far = Float32Array::from(losses.as_slice());
            progress
                .call1(&JsValue::NULL, &so_far)
                .map_err(|e| format!("progress callback failed: {e:?}"))?;
        }
    }
    losses.push(rosenbrock(point).0);
    Ok(losses)
}

/// Panics reach the page's console with their message (wasm's default is a bare trap).
fn console_error_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        web_sys_console_error(&info.to_string());
    }));
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn web_sys_console_error(message: &str);
}
