// schedule_free_adamw.wgsl: one step of Schedule-Free AdamW (schedulefree.AdamWScheduleFree,
// train mode) over one parameter buffer, and the passes that switch its parameter between the
// training point y and the evaluation point x.
//
// Bindings (group 0 declared, with load_/store_ accessors for the tensor's dtypes, by
// kernel::storage): group 1: 0 ScheduleFreeScalars (uniform, one step's entry of the scalar table);
//           group 0: 1 param (y in train mode, x in eval mode), 2 grad,
//           3 z, 4 exp_avg_sq (read_write).
// Entry points: `main` in elementwise.wgsl, calling update_at for each of its indices, and
// `outside_step` below; each invocation of either stops at the first of its VPI indices past
// arrayLength(&param).
// Mirror: src/cpu/schedule_free.rs.

// schedulefree's single-tensor order: v = v * beta2 + (1 - beta2) * g * g;
// d = sqrt(v / bc2) + eps; u = g / d + decay * y; y = lerp(y, z, ckp1); y = y + y_coef * u;
// z = z - lr * u, with ckp1 and y_coef = lr * (beta1 * (1 - ckp1) - 1) from the host.
alias Scalars = ScheduleFreeScalars;

struct ScheduleFreeScalars {
    beta2: f32,
    one_minus_beta2: f32,
    bias_correction2: f32,
    eps: f32,
    weight_decay: f32,
    ckp1: f32,
    y_coef: f32,
    lr: f32,
    // lerp weights of optimizer.eval() (1 - 1/beta1: y to x) and optimizer.train()
    // (1 - beta1: x to y).
    eval_weight: f32,
    train_weight: f32,
    _pad0: f32,
    _pad1: f32,
}


// One element (one V) of the update.
fn update_at(s: Scalars, i: u32) {
    let y = load_param(i);
    let g = load_grad(i);
    let v = load_exp_avg_sq(i) * s.beta2 + s.one_minus_beta2 * g * g;
    store_exp_avg_sq(i, v);
    let d = sqrt(v / s.bias_correction2) + s.eps;
    let u = g / d + s.weight_decay * y;
    let zi = load_z(i);
    store_param(i, torch_lerp(y, zi, s.ckp1) + s.y_coef * u);
    store_z(i, zi - s.lr * u);
}

// The passes outside a step (Algorithm::EVAL_MODE), one pipeline each, picked by PASS
// (Pass::constant in src/optim/mod.rs): 0, z = y, before a parameter's first step
// (schedulefree clones z from the parameter then); 1, y to x (optimizer.eval()); 2, x to y
// (optimizer.train()).
override PASS: u32 = 0u;

fn pass_at(s: ScheduleFreeScalars, i: u32) {
    switch PASS {
        case 0u: {
            store_z(i, load_param(i));
        }
        case 1u: {
            store_param(i, torch_lerp(load_param(i), load_z(i), s.eval_weight));
        }
        default: {
            store_param(i, torch_lerp(load_param(i), load_z(i), s.train_weight));
        }
    }
}

@compute @workgroup_size(WG)
fn outside_step(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let s = step_uniform.scalars[0];
    let r = update_range(wid, nwg, lid);
    for (var i = r.x; i < r.y; i = i + r.z) {
        pass_at(s, i);
    }
}
