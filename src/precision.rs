//! Storage precisions: how a registered tensor's parameter, gradient and optimizer state are
//! held, and the exact rounding between them and f32.
//!
//! Every step loads each value to f32, computes in f32 and rounds once when storing, as
//! PyTorch's fused kernels do on bf16 and f16 tensors. The rounding is round to nearest, ties
//! to even, computed with integer operations on the f32 bits on both sides (the WGSL is in
//! `shaders/dtype.wgsl`), so the GPU stores exactly what [`Dtype::round`] gives for the same
//! f32 value:
//!
//! - **bf16**: the upper 16 bits of the f32, rounded; a NaN stays a NaN (quiet, its sign
//!   kept); values past the largest bf16 round to infinity, as in PyTorch.
//! - **f16**: IEEE binary16, with subnormals; values of magnitude 65520 and above become
//!   infinity (65520 is the tie between 65504 and 2^16, and ties go to even); a NaN becomes
//!   the quiet NaN `0x7e00` with its sign.
//!
//! 16-bit values are stored two per `u32`, element `2k` in the low half of word `k`, so a
//! tensor of `len` values takes `len * 2` bytes rounded up to a multiple of 4.
//!
//! Where GPU and CPU agree bit for bit: the conversions always; the stored result of a step
//! wherever the adapter's f32 arithmetic rounds as the CPU's (WGSL lets `/` and `sqrt` be a
//! few ULP off and `a * b + c` be fused, so on such adapters a stored 16-bit value can differ
//! by one unit where the f32 result falls within that error of a rounding boundary). A bf16
//! or f16 subnormal is an f32 subnormal, or smaller: adapters that flush f32 subnormals to
//! zero compute with zero there.

use crate::error::{Error, Result};
pub use crate::quant::Quant;

/// How the values of a parameter, a gradient or a state are stored.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// IEEE binary32.
    #[default]
    F32,
    /// bfloat16: f32's sign and exponent with 7 mantissa bits.
    Bf16,
    /// IEEE binary16.
    F16,
}

impl Dtype {
    /// Every dtype, in declaration order.
    pub const ALL: [Dtype; 3] = [Dtype::F32, Dtype::Bf16, Dtype::F16];

    /// Bytes per value.
    pub const fn bytes(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::Bf16 | Dtype::F16 => 2,
        }
    }

    /// Its name, as PyTorch spells the suffix (`f32`, `bf16`, `f16`).
    pub const fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
        }
    }

    /// The dtype named `name` (`f32`, `bf16`, `f16`; `float32`, `bfloat16`, `float16` too).
    pub fn parse(name: &str) -> Option<Dtype> {
        match name {
            "f32" | "float32" => Some(Dtype::F32),
            "bf16" | "bfloat16" => Some(Dtype::Bf16),
            "f16" | "float16" => Some(Dtype::F16),
            _ => None,
        }
    }

    /// Bytes `len` values take in a buffer: whole `u32` words.
    pub const fn buffer_bytes(self, len: u64) -> u64 {
        (len * self.bytes()).div_ceil(4) * 4
    }

    /// The stored bits of `x` in this dtype (the low 16 bits for bf16 and f16), rounded to
    /// nearest, ties to even.
    pub fn to_bits(self, x: f32) -> u32 {
        match self {
            Dtype::F32 => x.to_bits(),
            Dtype::Bf16 => u32::from(bf16_bits(x)),
            Dtype::F16 => u32::from(f16_bits(x)),
        }
    }

    /// The value stored as `bits` (the low 16 bits for bf16 and f16).
    pub fn from_bits(self, bits: u32) -> f32 {
        match self {
            Dtype::F32 => f32::from_bits(bits),
            Dtype::Bf16 => bf16_value(bits as u16),
            Dtype::F16 => f16_value(bits as u16),
        }
    }

    /// `x` rounded to this dtype, as the value it stores.
    pub fn round(self, x: f32) -> f32 {
        self.from_bits(self.to_bits(x))
    }

    /// Whether this dtype holds `x` exactly (a NaN counts as held).
    pub fn holds(self, x: f32) -> bool {
        let r = self.round(x);
        r.to_bits() == x.to_bits() || (r.is_nan() && x.is_nan())
    }

    /// Rounds every value of `values` to this dtype, in place.
    pub fn round_all(self, values: &mut [f32]) {
        if self != Dtype::F32 {
            for v in values {
                *v = self.round(*v);
            }
        }
    }

    /// `values` as this dtype stores them in a buffer (little-endian; 16-bit values two per
    /// word, a zero half after an odd count).
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            Dtype::F32 => bytemuck::cast_slice(values).to_vec(),
            Dtype::Bf16 | Dtype::F16 => {
                let mut out = Vec::with_capacity(self.buffer_bytes(values.len() as u64) as usize);
                for &v in values {
                    out.extend_from_slice(&(self.to_bits(v) as u16).to_le_bytes());
                }
                out.resize(self.buffer_bytes(values.len() as u64) as usize, 0);
                out
            }
        }
    }

    /// The first `len` values of `bytes`, stored as this dtype; `None` when `bytes` is short.
    pub fn decode(self, bytes: &[u8], len: usize) -> Option<Vec<f32>> {
        let size = self.bytes() as usize;
        let bytes = bytes.get(..len.checked_mul(size)?)?;
        Some(match self {
            Dtype::F32 => bytemuck::pod_collect_to_vec(bytes),
            Dtype::Bf16 | Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| self.from_bits(u32::from(u16::from_le_bytes([b[0], b[1]]))))
                .collect(),
        })
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a bf16 parameter is rounded when a step stores it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// To nearest, ties to even, as everything else is.
    #[default]
    Nearest,
    /// torchao's stochastic rounding (`_fp32_to_bf16_sr`): 16 random bits are added below the
    /// bf16 mantissa, then the f32 is truncated, so a value rounds away from zero with the
    /// probability of its distance from the value below. The random bits are a counter-based
    /// hash of (`seed`, the step, the element's index in its tensor) ([`stochastic_bits`]), so
    /// the CPU reference reproduces the GPU bit for bit, and a resumed run the uninterrupted
    /// one. Small updates then move the parameter on average, where rounding to nearest drops
    /// every update smaller than half a bf16 unit.
    Stochastic {
        /// The stream's seed.
        seed: u32,
    },
}

/// The dtypes of one registered tensor: its parameter, its gradient and its optimizer state
/// (every state buffer alike), and how its parameter is rounded. All f32 by default.
///
/// f32 parameters with 16-bit gradients are mixed-precision training's master weights: the
/// update runs on the f32 copy, reading the low-precision gradient exactly. A 16-bit parameter
/// is rounded once per step, when the update stores it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Precision {
    /// The parameter's dtype.
    pub param: Dtype,
    /// The gradient's dtype.
    pub grad: Dtype,
    /// Every state buffer's dtype (with [`Precision::quant`], the dtype of the states it leaves
    /// unquantized).
    pub state: Dtype,
    /// How the parameter is rounded when stored ([`Rounding::Stochastic`] for bf16 parameters
    /// only).
    #[serde(default)]
    pub rounding: Rounding,
    /// The dtype of a copy of the parameter the step also writes (master weights: f32
    /// parameters, and a bf16 or f16 copy for the next forward pass, rounded to nearest even;
    /// see [`crate::GpuOptimizer::register_master`]).
    #[serde(default)]
    pub copy: Option<Dtype>,
    /// Quantized moments ([`crate::quant`]): the states of optimizers that have a map for them
    /// ([`crate::Algorithm::QUANT_MAPS`]) are held as codes and block scales, in tensors of
    /// [`Quant::MIN_LEN`] values or more that are whole blocks; the others keep `state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quant: Option<Quant>,
}

impl Precision {
    /// Everything f32.
    pub const F32: Precision = Precision::uniform(Dtype::F32);

    /// A parameter of `param`, a gradient of `grad` and state of `state`, rounded to nearest.
    pub const fn new(param: Dtype, grad: Dtype, state: Dtype) -> Precision {
        Precision {
            param,
            grad,
            state,
            rounding: Rounding::Nearest,
            copy: None,
            quant: None,
        }
    }

    /// The same dtypes, with the moments quantized as `quant` (torchao's `AdamW8bit` or
    /// `AdamW4bit`) where the tensor is large enough: see [`Precision::quant`].
    pub const fn quantized(self, quant: Quant) -> Precision {
        Precision {
            quant: Some(quant),
            ..self
        }
    }

    /// What a tensor of `len` values is stored as: the same, without quantization when `len`
    /// is under [`Quant::MIN_LEN`] or not a whole number of blocks (its state then `state`).
    pub fn for_len(self, len: u64) -> Precision {
        match self.quant {
            Some(q) if !q.applies(len) => Precision {
                quant: None,
                ..self
            },
            _ => self,
        }
    }

    /// The same dtypes, with a `dtype` copy of the parameter written by each step.
    pub const fn with_copy(self, dtype: Dtype) -> Precision {
        Precision {
            copy: Some(dtype),
            ..self
        }
    }

    /// Parameter, gradient and state all of `dtype` (PyTorch's fused AdamW on bf16 tensors:
    /// the state takes the parameter's dtype).
    pub const fn uniform(dtype: Dtype) -> Precision {
        Precision::new(dtype, dtype, dtype)
    }

    /// The same dtypes, the parameter rounded stochastically from `seed`
    /// ([`Rounding::Stochastic`]).
    pub const fn stochastic(self, seed: u32) -> Precision {
        Precision {
            rounding: Rounding::Stochastic { seed },
            ..self
        }
    }

    /// The same precision with a stochastic seed of 0: what the kernels are compiled for (the
    /// seed travels in a uniform, so tensors of different seeds share pipelines).
    pub(crate) fn kernel_key(self) -> Precision {
        match self.rounding {
            Rounding::Stochastic { .. } => Precision {
                rounding: Rounding::Stochastic { seed: 0 },
                ..self
            },
            Rounding::Nearest => self,
        }
    }

    /// Rounds a parameter's f32 values to its dtype as a step stores them: `step` is the
    /// optimizer's step count (1 at the first step), the values those of the whole tensor.
    pub fn round_param(&self, values: &mut [f32], step: u64) {
        match self.rounding {
            Rounding::Stochastic { seed } if self.param == Dtype::Bf16 => {
                let key = stream_key(seed, step);
                for (i, v) in values.iter_mut().enumerate() {
                    *v = bf16_value(bf16_bits_stochastic(*v, element_bits(key, i as u32)));
                }
            }
            _ => self.param.round_all(values),
        }
    }

    /// Whether everything is f32.
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// The dtypes of the parameter, the gradient and the state, by the names used in errors
    /// and files.
    pub fn parts(&self) -> [(&'static str, Dtype); 3] {
        [
            ("param", self.param),
            ("grad", self.grad),
            ("state", self.state),
        ]
    }

    /// Checks that a host slice `which` (`param` or `grad`) of dtype `dtype` holds only values
    /// that dtype represents (the CPU reference takes 16-bit tensors as their f32 values).
    pub(crate) fn check_held(which: &'static str, dtype: Dtype, values: &[f32]) -> Result<()> {
        if dtype == Dtype::F32 {
            return Ok(());
        }
        match values.iter().position(|&v| !dtype.holds(v)) {
            Some(index) => Err(Error::NotRepresentable {
                which,
                dtype,
                index,
                value: values[index],
            }),
            None => Ok(()),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "param {}, grad {}, state ", self.param, self.grad)?;
        match self.quant {
            Some(q) => write!(f, "{q} ({} below {} values)", self.state, Quant::MIN_LEN)?,
            None => write!(f, "{}", self.state)?,
        }
        if let Rounding::Stochastic { seed } = self.rounding {
            write!(f, ", stochastic rounding (seed {seed})")?;
        }
        match self.copy {
            Some(d) => write!(f, ", a {d} copy"),
            None => Ok(()),
        }
    }
}

/// lowbias32 (Chris Wellons' 32-bit integer hash), `mix32` in `shaders/dtype.wgsl`.
fn mix32(x: u32) -> u32 {
    let mut h = x;
    h = (h ^ (h >> 16)).wrapping_mul(0x7feb_352d);
    h = (h ^ (h >> 15)).wrapping_mul(0x846c_a68b);
    h ^ (h >> 16)
}

/// One step's key of the stochastic-rounding stream: `mix32(mix32(mix32(seed) ^ step_low) ^
/// step_high)`.
fn stream_key(seed: u32, step: u64) -> u32 {
    mix32(mix32(mix32(seed) ^ step as u32) ^ (step >> 32) as u32)
}

/// The 16 random bits of element `index` under `key`: the high half of
/// `mix32(mix32(index) ^ key)`.
fn element_bits(key: u32, index: u32) -> u32 {
    mix32(mix32(index) ^ key) >> 16
}

/// The 16 random bits stochastic rounding adds below element `index`'s bf16 mantissa at
/// optimizer step `step` of a stream seeded `seed` (the kernels compute the same).
pub fn stochastic_bits(seed: u32, step: u64, index: u32) -> u32 {
    element_bits(stream_key(seed, step), index)
}

/// bf16 bits of `x` with `r` (below 2^16) added below the mantissa, then truncated; a NaN stays
/// a NaN, as in [`Dtype::to_bits`].
fn bf16_bits_stochastic(x: f32, r: u32) -> u16 {
    let b = x.to_bits();
    if b & 0x7fff_ffff > 0x7f80_0000 {
        return ((b >> 16) | 0x40) as u16;
    }
    ((b + r) >> 16) as u16
}

/// bf16 bits of `x`, rounded to nearest, ties to even (`bf16_bits` in `shaders/dtype.wgsl`).
fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if b & 0x7fff_ffff > 0x7f80_0000 {
        return ((b >> 16) | 0x40) as u16;
    }
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

fn bf16_value(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// f16 bits of `x`, rounded to nearest, ties to even (`f16_bits` in `shaders/dtype.wgsl`,
/// written with the same integer steps).
fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = (b >> 16) & 0x8000;
    let a = b & 0x7fff_ffff;
    let h = if a > 0x7f80_0000 {
        0x7e00
    } else if a >= 0x477f_f000 {
        0x7c00
    } else if a >= 0x3880_0000 {
        // Normal: rebias the exponent (127 - 15), round the 23-bit mantissa to 10.
        let r = a - 0x3800_0000;
        (r + 0x0fff + ((r >> 13) & 1)) >> 13
    } else if (a >> 23) < 102 {
        // Below 2^-25, or exactly 2^-25 (a tie, to even): zero.
        0
    } else {
        // Subnormal: the value in units of 2^-24 is m · 2^(e - 126), shifted right by 14..24.
        let e = a >> 23;
        let m = (a & 0x7f_ffff) | 0x80_0000;
        let shift = 126 - e;
        let q = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let half = 1 << (shift - 1);
        q + u32::from(rem > half || (rem == half && q & 1 == 1))
    };
    (sign | h) as u16
}

fn f16_value(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let e = (h >> 10) & 0x1f;
    let m = h & 0x3ff;
    let bits = match e {
        0 => sign | (m as f32 * 2f32.powi(-24)).to_bits(),
        31 => sign | 0x7f80_0000 | (m << 13),
        _ => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact value of a finite f16 or bf16 bit pattern, computed independently of the
    /// conversions (f64 arithmetic on the fields).
    fn exact(dtype: Dtype, bits: u32) -> f64 {
        let (mant_bits, bias, exp_bits) = match dtype {
            Dtype::Bf16 => (7, 127, 8),
            Dtype::F16 => (10, 15, 5),
            Dtype::F32 => unreachable!(),
        };
        let sign = if bits >> (mant_bits + exp_bits) & 1 == 1 {
            -1.0
        } else {
            1.0
        };
        let e = (bits >> mant_bits) & ((1 << exp_bits) - 1);
        let m = f64::from(bits & ((1 << mant_bits) - 1));
        let scale = 2f64.powi(mant_bits);
        if e == 0 {
            sign * m / scale * 2f64.powi(1 - bias)
        } else {
            sign * (1.0 + m / scale) * 2f64.powi(e as i32 - bias)
        }
    }

    #[test]
    fn every_16_bit_pattern_round_trips() {
        for dtype in [Dtype::Bf16, Dtype::F16] {
            for bits in 0..=0xffffu32 {
                let v = dtype.from_bits(bits);
                if v.is_nan() {
                    assert!(dtype.from_bits(dtype.to_bits(v)).is_nan());
                    continue;
                }
                assert_eq!(dtype.to_bits(v), bits, "{dtype} {bits:#06x} = {v}");
                if v.is_finite() {
                    assert_eq!(f64::from(v), exact(dtype, bits), "{dtype} {bits:#06x}");
                }
            }
        }
    }

    /// Rounding to nearest, ties to even, checked against the neighbours in f64: for f32
    /// values on a grid through every binade, the result is the nearer of the two values
    /// around it, the even one on a tie, infinity past the largest finite value's half-unit.
    #[test]
    fn rounding_is_to_nearest_ties_to_even() {
        let mut checked = 0;
        for dtype in [Dtype::Bf16, Dtype::F16] {
            for bits in (0..0x7f80_0000u32).step_by(4093).chain([
                0x477f_f000,
                0x477f_efff,
                0x3300_0000,
                0x3300_0001,
                0x3380_0000,
                0x387f_f000,
                0x7f7f_8000,
                0x7f7f_7fff,
            ]) {
                for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                    let got = dtype.round(x);
                    let h = dtype.to_bits(x);
                    let x64 = f64::from(x);
                    if got.is_infinite() {
                        let max = exact(dtype, if dtype == Dtype::F16 { 0x7bff } else { 0x7f7f });
                        let half_ulp =
                            max - exact(dtype, if dtype == Dtype::F16 { 0x7bfe } else { 0x7f7e });
                        assert!(x64.abs() >= max + half_ulp / 2.0, "{dtype} {x} -> inf");
                        continue;
                    }
                    let g = f64::from(got);
                    // The neighbours of the result one unit away, same sign.
                    let mag = h & 0x7fff;
                    let up = exact(dtype, mag + 1).copysign(g);
                    let down = if mag == 0 {
                        0.0
                    } else {
                        exact(dtype, mag - 1).copysign(g)
                    };
                    let err = (x64 - g).abs();
                    for n in [up, down] {
                        let other = (x64 - n).abs();
                        assert!(
                            err < other || (err == other && mag & 1 == 0),
                            "{dtype} {x:e} -> {got:e}, {n:e} is nearer or the even tie"
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 1_000_000);
    }

    #[test]
    fn nan_stays_nan_with_its_sign() {
        for dtype in [Dtype::Bf16, Dtype::F16] {
            for x in [f32::NAN, -f32::NAN, f32::from_bits(0x7f80_0001)] {
                let r = dtype.round(x);
                assert!(r.is_nan());
                assert_eq!(r.is_sign_negative(), x.is_sign_negative());
            }
        }
    }

    #[test]
    fn encode_packs_two_per_word_and_decode_inverts() {
        let v = [1.0f32, -2.0, 0.5];
        let b = Dtype::Bf16.encode(&v);
        assert_eq!(b.len(), 8);
        assert_eq!(&b[..4], &[0x80, 0x3f, 0x00, 0xc0]);
        assert_eq!(&b[6..], &[0, 0]);
        assert_eq!(Dtype::Bf16.decode(&b, 3).unwrap(), v);
        assert_eq!(Dtype::F16.decode(&Dtype::F16.encode(&v), 3).unwrap(), v);
        assert_eq!(Dtype::F32.decode(&Dtype::F32.encode(&v), 3).unwrap(), v);
        assert!(Dtype::F16.decode(&b, 5).is_none());
    }
}
