// dtype.wgsl: exact conversions between f32 and the 16-bit storage dtypes, placed after the
// width prelude by `kernel::compose` (src/kernel.rs). Mirror: src/precision.rs.
//
// Each works on one V's lanes (VU, the u32 twin of V), with integer operations only, so every
// adapter rounds alike: round to nearest, ties to even; NaN stays a quiet NaN with its sign;
// bf16 past its largest value and f16 from 65520 on round to infinity. 16-bit values live two
// per u32, element 2k in the low half of word k: `halves` and `join` move between one vec4's
// two words and its four 16-bit values.

fn bf16_value(h: VU) -> V {
    return bitcast<V>(h << VU(16u));
}

fn bf16_bits(x: V) -> VU {
    let b = bitcast<VU>(x);
    let rounded = (b + VU(0x7fffu) + ((b >> VU(16u)) & VU(1u))) >> VU(16u);
    let nan = (b >> VU(16u)) | VU(0x40u);
    return select(rounded, nan, (b & VU(0x7fffffffu)) > VU(0x7f800000u));
}

fn f16_value(h: VU) -> V {
    let sign = (h & VU(0x8000u)) << VU(16u);
    let e = (h >> VU(10u)) & VU(0x1fu);
    let m = h & VU(0x3ffu);
    let normal = sign | ((e + VU(112u)) << VU(23u)) | (m << VU(13u));
    let special = sign | VU(0x7f800000u) | (m << VU(13u));
    // m · 2^-24: a product exactly representable in f32, so exact.
    let subnormal = sign | bitcast<VU>(V(m) * 5.9604644775390625e-8);
    return bitcast<V>(select(select(normal, special, e == VU(31u)), subnormal, e == VU(0u)));
}

fn f16_bits(x: V) -> VU {
    let b = bitcast<VU>(x);
    let sign = (b >> VU(16u)) & VU(0x8000u);
    let a = b & VU(0x7fffffffu);
    // Normal: rebias the exponent (127 - 15) and round the mantissa from 23 bits to 10.
    let r = a - VU(0x38000000u);
    let normal = (r + VU(0x0fffu) + ((r >> VU(13u)) & VU(1u))) >> VU(13u);
    // Subnormal: m · 2^(e - 126) units of 2^-24, a right shift of 14 to 24 bits, rounded.
    let e = a >> VU(23u);
    let m = (a & VU(0x7fffffu)) | VU(0x800000u);
    let shift = VU(126u) - clamp(e, VU(102u), VU(112u));
    let q = m >> shift;
    let rem = m & ((VU(1u) << shift) - VU(1u));
    let half = VU(1u) << (shift - VU(1u));
    let up = (rem > half) | ((rem == half) & ((q & VU(1u)) == VU(1u)));
    var h = select(q + select(VU(0u), VU(1u), up), normal, a >= VU(0x38800000u));
    h = select(h, VU(0u), e < VU(102u));
    h = select(h, VU(0x7c00u), a >= VU(0x477ff000u));
    h = select(h, VU(0x7e00u), a > VU(0x7f800000u));
    return sign | h;
}

// The four 16-bit values of two words, in element order.
fn halves(w: vec2<u32>) -> vec4<u32> {
    return vec4<u32>(w.x & 0xffffu, w.x >> 16u, w.y & 0xffffu, w.y >> 16u);
}

// Two words from four 16-bit values (each below 2^16).
fn join(h: vec4<u32>) -> vec2<u32> {
    return vec2<u32>(h.x | (h.y << 16u), h.z | (h.w << 16u));
}

// lowbias32, Chris Wellons' 32-bit integer hash (precision.rs: mix32), on one value and on
// each lane of a V's worth.
fn mix32(x: u32) -> u32 {
    var h = (x ^ (x >> 16u)) * 0x7feb352du;
    h = (h ^ (h >> 15u)) * 0x846ca68bu;
    return h ^ (h >> 16u);
}

fn mix32_lanes(x: VU) -> VU {
    var h = (x ^ (x >> VU(16u))) * VU(0x7feb352du);
    h = (h ^ (h >> VU(15u))) * VU(0x846ca68bu);
    return h ^ (h >> VU(16u));
}

// Stochastic rounding's random bits (precision.rs: stochastic_bits): the step's key from the
// seed and the step, then 16 bits per element index.
fn stream_key(seed: u32, step: vec2<u32>) -> u32 {
    return mix32(mix32(mix32(seed) ^ step.x) ^ step.y);
}

fn element_bits(key: u32, index: VU) -> VU {
    return mix32_lanes(mix32_lanes(index) ^ VU(key)) >> VU(16u);
}

// bf16 bits of x with r (< 2^16) added below the mantissa, then truncated: torchao's
// stochastic rounding. NaN as bf16_bits.
fn bf16_bits_stochastic(x: V, r: VU) -> VU {
    let b = bitcast<VU>(x);
    let nan = (b >> VU(16u)) | VU(0x40u);
    return select((b + r) >> VU(16u), nan, (b & VU(0x7fffffffu)) > VU(0x7f800000u));
}
