//! Quantized optimizer state: torchao's `AdamW8bit` and `AdamW4bit` moments, block by block.
//!
//! A quantized state of `len` values is cut into blocks of [`Quant::block`] values (256 for
//! [`Quant::Q8`], 128 for [`Quant::Q4`]). Each block keeps one f32 scale, its largest magnitude
//! (at least `1e-12`, as torchao clips it), and one code per value: the index of the map entry
//! nearest `value / scale`. The value a code stands for is `map[code] * scale`, an f32 product
//! on both backends.
//!
//! The maps are bitsandbytes' dynamic maps as torchao builds them
//! (`torchao/optim/quant_utils.py`, `create_dynamic_map`), written once as exact f32 constants:
//!
//! | state | q8 (256 entries) | q4 (16 entries) |
//! | --- | --- | --- |
//! | signed ([`QMap::Signed`]: first moments, SGD's momentum) | `create_dynamic_map(signed=True)` | `create_dynamic_map(True, 3, 4)` |
//! | unsigned ([`QMap::Unsigned`]: second moments) | `create_dynamic_map(signed=False)` | `linspace(0, 1, 17)[1:]`, no zero |
//!
//! They follow torch's `linspace` formula (`start + step * i` below the middle, `end - step *
//! (steps - 1 - i)` from it, in f32). torch's vectorized CPU kernel computes some lanes as
//! `base + k * step` instead, which changes the last bit of up to about 50 of the 256 entries,
//! by the CPU's vector width; the scalar formula is the reference here.
//!
//! **Codes without division.** WGSL's `/` is not correctly rounded, so neither backend divides:
//! the code of `x` is the number of thresholds `t[k] = map[k] + (map[k + 1] - map[k]) * 0.5`
//! with `scale * t[k] <= x` (one f32 product, correctly rounded everywhere, and a comparison),
//! found by a binary search. So the GPU and the CPU agree bit for bit. **Ties go up**: a value
//! exactly at `scale * t[k]` takes the upper code, as torchao's `residual >= (up - down) * 0.5`
//! does. torchao compares `x / scale` with `t[k]` instead: the two differ only where the
//! product or the quotient rounds across a threshold, a code apart, which the recorded cases'
//! rule allows for.
//!
//! **Packing**, as torchao's `codes` tensors: q8, one byte per value; q4, two values per byte,
//! value `2j` in the high nibble of byte `j` and value `2j + 1` in the low one. Bytes are
//! little-endian in the GPU's `u32` words.
//!
//! A tensor of fewer than [`Quant::MIN_LEN`] values, or not a whole number of blocks, keeps its
//! state unquantized ([`Quant::applies`]), as torchao does.
//!
//! Non-finite moments have no code: a NaN or infinite state value gives an undefined scale and
//! codes (the two backends may then differ).

mod maps;

/// The smallest block scale (torchao's `clip(1e-12)`): a block of zeros keeps it.
pub const SCALE_MIN: f32 = 1e-12;

/// How many bits each quantized state value takes, and the block its scale covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quant {
    /// 8-bit codes in blocks of 256 (torchao's `AdamW8bit`).
    Q8,
    /// 4-bit codes in blocks of 128 (torchao's `AdamW4bit`).
    Q4,
}

/// Which map a state's codes index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QMap {
    /// Symmetric about zero: values that change sign (first moments, momentum).
    Signed,
    /// Zero and above: second moments.
    Unsigned,
}

impl Quant {
    /// Both, in declaration order.
    pub const ALL: [Quant; 2] = [Quant::Q8, Quant::Q4];

    /// The fewest values a quantized tensor has (torchao's threshold).
    pub const MIN_LEN: u64 = 4096;

    /// Values under one scale.
    pub const fn block(self) -> u64 {
        match self {
            Quant::Q8 => 256,
            Quant::Q4 => 128,
        }
    }

    /// Bits per code.
    pub const fn bits(self) -> u64 {
        match self {
            Quant::Q8 => 8,
            Quant::Q4 => 4,
        }
    }

    /// Entries in each map (`2^bits`).
    pub const fn levels(self) -> usize {
        1 << self.bits()
    }

    /// Its name (`q8`, `q4`).
    pub const fn name(self) -> &'static str {
        match self {
            Quant::Q8 => "q8",
            Quant::Q4 => "q4",
        }
    }

    /// The quantization named `name` (`q8`, `q4`).
    pub fn parse(name: &str) -> Option<Quant> {
        Quant::ALL.into_iter().find(|q| q.name() == name)
    }

    /// Whether a tensor of `len` values is quantized: at least [`Quant::MIN_LEN`] values and a
    /// whole number of blocks.
    pub const fn applies(self, len: u64) -> bool {
        len >= Self::MIN_LEN && len.is_multiple_of(self.block())
    }

    /// Bytes of the codes of `len` values (whole blocks, so whole words).
    pub const fn code_bytes(self, len: u64) -> u64 {
        len * self.bits() / 8
    }

    /// Bytes of the scales of `len` values (one f32 per block).
    pub const fn scale_bytes(self, len: u64) -> u64 {
        len / self.block() * 4
    }

    /// The map `which`, as f32 values in increasing order.
    pub fn map(self, which: QMap) -> Vec<f32> {
        let bits: &[u32] = match (self, which) {
            (Quant::Q8, QMap::Signed) => &maps::Q8_SIGNED,
            (Quant::Q8, QMap::Unsigned) => &maps::Q8_UNSIGNED,
            (Quant::Q4, QMap::Signed) => &maps::Q4_SIGNED,
            (Quant::Q4, QMap::Unsigned) => &maps::Q4_UNSIGNED,
        };
        bits.iter().map(|&b| f32::from_bits(b)).collect()
    }

    /// The code thresholds of map `which`: entry `k` (below `levels - 1`) is the midpoint
    /// `map[k] + (map[k + 1] - map[k]) * 0.5` in f32; the last, never compared, is the map's
    /// last entry.
    pub fn thresholds(self, which: QMap) -> Vec<f32> {
        let map = self.map(which);
        let mut t: Vec<f32> = map.windows(2).map(|w| w[0] + (w[1] - w[0]) * 0.5).collect();
        t.push(map[map.len() - 1]);
        t
    }

    /// The map uniform the kernels bind (`qmaps` in the generated storage layer): the signed
    /// map, its thresholds, the unsigned map, its thresholds, each `levels` f32 values.
    pub(crate) fn uniform_bytes(self) -> Vec<u8> {
        let mut all = Vec::with_capacity(4 * self.levels());
        for which in [QMap::Signed, QMap::Unsigned] {
            all.extend(self.map(which));
            all.extend(self.thresholds(which));
        }
        bytemuck::cast_slice(&all).to_vec()
    }
}

impl std::fmt::Display for Quant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A quantized state as stored: packed codes and one scale per block.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocks {
    /// The codes, packed as the module documentation says ([`Quant::code_bytes`] bytes).
    pub codes: Vec<u8>,
    /// One f32 scale per block.
    pub scales: Vec<f32>,
}

impl Blocks {
    /// The state of `len` values before any step: every code and scale zero (every value
    /// `map[0] * 0`, a zero), as a zero-filled buffer holds.
    pub fn zeros(q: Quant, len: u64) -> Blocks {
        Blocks {
            codes: vec![0; q.code_bytes(len) as usize],
            scales: vec![0.0; (len / q.block()) as usize],
        }
    }

    /// Values these blocks hold under `q`, if their sizes agree (codes for as many values as
    /// the scales' blocks cover).
    pub fn len(&self, q: Quant) -> Option<u64> {
        let len = self.scales.len() as u64 * q.block();
        (self.codes.len() as u64 == q.code_bytes(len)).then_some(len)
    }
}

/// The code of `x` under `scale`: how many of `thresholds` (all but the last) have
/// `scale * t <= x`, by a binary search (`q_code` in the kernels, step for step).
fn code(x: f32, scale: f32, thresholds: &[f32]) -> u8 {
    let mut code = 0usize;
    let mut step = thresholds.len() / 2;
    while step > 0 {
        if scale * thresholds[code + step - 1] <= x {
            code += step;
        }
        step /= 2;
    }
    code as u8
}

/// `values` (a whole number of `q`'s blocks) quantized with map `which`.
pub fn quantize(q: Quant, which: QMap, values: &[f32]) -> Blocks {
    let thresholds = q.thresholds(which);
    let block = q.block() as usize;
    let mut codes = Vec::with_capacity(values.len());
    let scales = values
        .chunks(block)
        .map(|b| {
            let absmax = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = absmax.max(SCALE_MIN);
            codes.extend(b.iter().map(|&x| code(x, scale, &thresholds)));
            scale
        })
        .collect();
    let codes = match q {
        Quant::Q8 => codes,
        Quant::Q4 => codes.chunks(2).map(|c| (c[0] << 4) | c[1]).collect(),
    };
    Blocks { codes, scales }
}

/// The values `blocks` stand for under `q` and map `which`: `map[code] * scale`.
pub fn dequantize(q: Quant, which: QMap, blocks: &Blocks) -> Vec<f32> {
    let map = &q.map(which);
    let per_block = q.block() as usize;
    let codes: Vec<u8> = match q {
        Quant::Q8 => blocks.codes.clone(),
        Quant::Q4 => blocks
            .codes
            .iter()
            .flat_map(|&b| [b >> 4, b & 15])
            .collect(),
    };
    codes
        .chunks(per_block)
        .zip(&blocks.scales)
        .flat_map(|(c, &s)| c.iter().map(move |&k| map[usize::from(k)] * s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// torch.linspace's formula in f32 (its scalar CPU path).
    fn linspace(start: f32, end: f32, steps: usize) -> Vec<f32> {
        let step = (end - start) / (steps - 1) as f32;
        (0..steps)
            .map(|i| {
                if i < steps / 2 {
                    start + step * i as f32
                } else {
                    end - step * (steps - i - 1) as f32
                }
            })
            .collect()
    }

    /// torchao's `create_dynamic_map`, step for step: each mean in f32, scaled by the power of
    /// ten cast to f32, collected as Python floats, sorted, and cast back.
    fn construction(signed: bool, max_exponent_bits: i32, total_bits: i32) -> Vec<f32> {
        let non_sign_bits = total_bits - 1;
        let additional = (1 << (non_sign_bits - max_exponent_bits)) - 1;
        let mut data: Vec<f64> = Vec::new();
        let push = |power: i32, items: usize, data: &mut Vec<f64>| {
            let b = linspace(0.1, 1.0, items);
            let p = 10f64.powi(power) as f32;
            for k in 0..items - 1 {
                let mean = (b[k] + b[k + 1]) / 2.0;
                data.push(f64::from(p * mean));
                if signed {
                    data.push(f64::from(-p * mean));
                }
            }
        };
        for i in 0..max_exponent_bits {
            let extra = if signed { 0 } else { 1 };
            let items = (1usize << (i + non_sign_bits - max_exponent_bits + extra)) + 1;
            push(-(max_exponent_bits - 1) + i, items, &mut data);
        }
        if additional > 0 {
            let i = max_exponent_bits - 1;
            push(-(max_exponent_bits - 1) + i, additional + 1, &mut data);
        }
        data.push(0.0);
        data.push(1.0);
        assert_eq!(data.len(), 1 << total_bits);
        data.sort_by(f64::total_cmp);
        data.into_iter().map(|x| x as f32).collect()
    }

    #[test]
    fn the_constants_are_the_construction() {
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        assert_eq!(
            bits(Quant::Q8.map(QMap::Signed)),
            bits(construction(true, 7, 8))
        );
        assert_eq!(
            bits(Quant::Q8.map(QMap::Unsigned)),
            bits(construction(false, 7, 8))
        );
        assert_eq!(
            bits(Quant::Q4.map(QMap::Signed)),
            bits(construction(true, 3, 4))
        );
        assert_eq!(
            bits(Quant::Q4.map(QMap::Unsigned)),
            bits(linspace(0.0, 1.0, 17)[1..].to_vec())
        );
        for q in Quant::ALL {
            for m in [QMap::Signed, QMap::Unsigned] {
                let map = q.map(m);
                assert_eq!(map.len(), q.levels());
                assert!(map.windows(2).all(|w| w[0] < w[1]), "{q} {m:?} is sorted");
                assert_eq!(map[map.len() - 1], 1.0);
            }
        }
        assert_eq!(Quant::Q8.map(QMap::Signed)[127], 0.0);
        assert_eq!(Quant::Q8.map(QMap::Unsigned)[0], 0.0);
        assert_eq!(Quant::Q4.map(QMap::Unsigned)[0], 0.0625);
    }

    /// The code is the nearest map entry of `x / scale` (in f64), the upper one on a tie,
    /// wherever `x / scale` is not within rounding of a threshold.
    #[test]
    fn codes_are_the_nearest_entry() {
        let mut checked = 0;
        for q in Quant::ALL {
            for m in [QMap::Signed, QMap::Unsigned] {
                let map = q.map(m);
                let t = q.thresholds(m);
                let scale = 0.37f32;
                let lo = if m == QMap::Signed { -1.0 } else { 0.0 };
                for k in 0..=20_000 {
                    let u = lo + (1.0 - lo) * k as f64 / 20_000.0;
                    let x = (u * f64::from(scale)) as f32;
                    let c = usize::from(code(x, scale, &t));
                    let r = f64::from(x) / f64::from(scale);
                    let near = t[..t.len() - 1]
                        .iter()
                        .any(|&th| (r - f64::from(th)).abs() < 1e-6 * th.abs().max(1e-7) as f64);
                    if near {
                        continue;
                    }
                    let best = (0..map.len())
                        .min_by(|&a, &b| {
                            let (da, db) =
                                ((f64::from(map[a]) - r).abs(), (f64::from(map[b]) - r).abs());
                            da.total_cmp(&db).then(b.cmp(&a))
                        })
                        .unwrap();
                    assert_eq!(c, best, "{q} {m:?} x/scale {r}");
                    checked += 1;
                }
                // A value exactly on a threshold takes the upper code.
                let s = 1.0f32;
                for k in 0..t.len() - 1 {
                    assert_eq!(usize::from(code(t[k], s, &t)), k + 1, "{q} {m:?} tie {k}");
                }
            }
        }
        assert!(checked > 70_000);
    }

    #[test]
    fn blocks_pack_as_torchao_and_round_trip() {
        for q in Quant::ALL {
            let n = 2 * q.block() as usize;
            let values: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin() * 3.0).collect();
            let b = quantize(q, QMap::Signed, &values);
            assert_eq!(b.codes.len() as u64, q.code_bytes(n as u64));
            assert_eq!(b.len(q), Some(n as u64));
            let absmax = values[..q.block() as usize]
                .iter()
                .fold(0.0f32, |m, v| m.max(v.abs()));
            assert_eq!(b.scales[0], absmax);
            let back = dequantize(q, QMap::Signed, &b);
            // Requantizing what the codes stand for gives the same codes.
            assert_eq!(quantize(q, QMap::Signed, &back).codes, b.codes, "{q}");
            let map = q.map(QMap::Signed);
            let t = q.thresholds(QMap::Signed);
            let first = code(values[0], b.scales[0], &t);
            let second = code(values[1], b.scales[0], &t);
            match q {
                Quant::Q8 => assert_eq!(b.codes[0], first),
                Quant::Q4 => assert_eq!(b.codes[0], (first << 4) | second),
            }
            assert_eq!(back[0], map[usize::from(first)] * b.scales[0]);
        }
        let zeros = Blocks::zeros(Quant::Q4, 4096);
        assert!(
            dequantize(Quant::Q4, QMap::Unsigned, &zeros)
                .iter()
                .all(|&v| v == 0.0)
        );
        assert_eq!(
            Quant::Q8.code_bytes(4096) + Quant::Q8.scale_bytes(4096),
            4096 + 64
        );
        assert!(
            Quant::Q8.applies(4096) && !Quant::Q8.applies(4095 + 256) && !Quant::Q4.applies(4000)
        );
    }
}
