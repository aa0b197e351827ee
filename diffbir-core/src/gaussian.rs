//! OpenCV's `getGaussianKernel` (`modules/imgproc/src/smooth.dispatch.cpp`,
//! `getGaussianKernelBitExact`), bit for bit: its values come from OpenCV's own software `exp`,
//! and both the face helper's `GaussianBlur` and BasicSR's SSIM window are built from it.
//!
//! Written by hand: no crate reproduces OpenCV's `softdouble` arithmetic.

/// OpenCV's `softdouble` `exp` (`core/src/softfloat.cpp`, `f64_exp`); libm's differs in the
/// last bits, which moves the kernels.
fn soft_exp(x: f64) -> f64 {
    const TAB: [u64; 64] = [
        0x3ff0000000000000,
        0x3ff02c9a3e778061,
        0x3ff059b0d3158574,
        0x3ff0874518759bc8,
        0x3ff0b5586cf9890f,
        0x3ff0e3ec32d3d1a2,
        0x3ff11301d0125b51,
        0x3ff1429aaea92de0,
        0x3ff172b83c7d517b,
        0x3ff1a35beb6fcb75,
        0x3ff1d4873168b9aa,
        0x3ff2063b88628cd6,
        0x3ff2387a6e756238,
        0x3ff26b4565e27cdd,
        0x3ff29e9df51fdee1,
        0x3ff2d285a6e4030b,
        0x3ff306fe0a31b715,
        0x3ff33c08b26416ff,
        0x3ff371a7373aa9cb,
        0x3ff3a7db34e59ff7,
        0x3ff3dea64c123422,
        0x3ff4160a21f72e2a,
        0x3ff44e086061892d,
        0x3ff486a2b5c13cd0,
        0x3ff4bfdad5362a27,
        0x3ff4f9b2769d2ca7,
        0x3ff5342b569d4f82,
        0x3ff56f4736b527da,
        0x3ff5ab07dd485429,
        0x3ff5e76f15ad2148,
        0x3ff6247eb03a5585,
        0x3ff6623882552225,
        0x3ff6a09e667f3bcd,
        0x3ff6dfb23c651a2f,
        0x3ff71f75e8ec5f74,
        0x3ff75feb564267c9,
        0x3ff7a11473eb0187,
        0x3ff7e2f336cf4e62,
        0x3ff82589994cce13,
        0x3ff868d99b4492ed,
        0x3ff8ace5422aa0db,
        0x3ff8f1ae99157736,
        0x3ff93737b0cdc5e5,
        0x3ff97d829fde4e50,
        0x3ff9c49182a3f090,
        0x3ffa0c667b5de565,
        0x3ffa5503b23e255d,
        0x3ffa9e6b5579fdbf,
        0x3ffae89f995ad3ad,
        0x3ffb33a2b84f15fb,
        0x3ffb7f76f2fb5e47,
        0x3ffbcc1e904bc1d2,
        0x3ffc199bdd85529c,
        0x3ffc67f12e57d14b,
        0x3ffcb720dcef9069,
        0x3ffd072d4a07897c,
        0x3ffd5818dcfba487,
        0x3ffda9e603db3285,
        0x3ffdfc97337b9b5f,
        0x3ffe502ee78b3ff6,
        0x3ffea4afa2a490da,
        0x3ffefa1bee615a27,
        0x3fff50765b6e4540,
        0x3fffa7c1819e90d8,
    ];
    let raw = f64::from_bits;
    let a0c = raw(0x3f83ce0f3e46f431);
    let [a5, a4, a3, a2, a1, a0] = [
        1.0,
        raw(0x3fe62e42fefa39f1),
        raw(0x3fcebfbdff82a45a),
        raw(0x3fac6b08d81fec75),
        raw(0x3f83b2a72b4f3cd3),
        raw(0x3f55e7aa1566c2a4),
    ]
    .map(|v| v / a0c);
    if x.is_nan() {
        return x;
    }
    if x.is_infinite() {
        return if x > 0.0 { x } else { 0.0 };
    }
    let biased = (x.to_bits() >> 52) & 0x7ff;
    let x0 = if biased > 1023 + 10 {
        if x < 0.0 {
            -3000.0 * 64.0
        } else {
            3000.0 * 64.0
        }
    } else {
        x * (raw(0x3ff71547652b82fe) * 64.0)
    };
    let val0 = x0.round_ties_even() as i64;
    let t = ((val0 >> 6) + 1023).clamp(0, 2047) as u64;
    let buf = raw(t << 52);
    let x0 = (x0 - x0.round_ties_even()) * (1.0 / 64.0);
    let poly = ((((a0 * x0 + a1) * x0 + a2) * x0 + a3) * x0 + a4) * x0 + a5;
    buf * a0c * raw(TAB[(val0 & 63) as usize]) * poly
}

/// `getGaussianKernel(n, sigma)` in `f64` (`getGaussianKernelBitExact`): the fixed small
/// kernels for `sigma ≤ 0` and `n ≤ 9`, else `exp(−x²/2σ²)` normalised, with
/// `σ = 0.3·((n − 1)/2 − 1) + 0.8` (as one fused multiply-add) when `sigma ≤ 0`.
pub fn gaussian_kernel(n: usize, sigma: f64) -> Vec<f64> {
    if sigma <= 0.0 {
        let small: Option<&[f64]> = match n {
            1 => Some(&[1.0]),
            3 => Some(&[0.25, 0.5, 0.25]),
            5 => Some(&[0.0625, 0.25, 0.375, 0.25, 0.0625]),
            7 => Some(&[
                0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125,
            ]),
            9 => Some(&[
                4.0 / 256.0,
                13.0 / 256.0,
                30.0 / 256.0,
                51.0 / 256.0,
                60.0 / 256.0,
                51.0 / 256.0,
                30.0 / 256.0,
                13.0 / 256.0,
                4.0 / 256.0,
            ]),
            _ => None,
        };
        if let Some(k) = small {
            return k.to_vec();
        }
    }
    let sigma = if sigma > 0.0 {
        sigma
    } else {
        (n as f64).mul_add(
            f64::from_bits(0x3fc3333333333333),
            f64::from_bits(0x3fd6666666666666),
        )
    };
    let scale = -0.125 / (sigma * sigma);
    let half = (n - 1) / 2;
    let mut values = Vec::with_capacity(half);
    let mut sum = 0.0;
    for i in 0..half {
        let x = 1.0 - n as f64 + 2.0 * i as f64;
        let t = soft_exp(x * x * scale);
        values.push(t);
        sum += t;
    }
    sum = sum * 2.0 + 1.0;
    if n.is_multiple_of(2) {
        sum += 1.0;
    }
    let mul = 1.0 / sum;
    let mut k = vec![0.0; n];
    for (i, v) in values.iter().enumerate() {
        k[i] = v * mul;
        k[n - 1 - i] = v * mul;
    }
    k[half] = mul;
    if n.is_multiple_of(2) {
        k[half + 1] = mul;
    }
    k
}
