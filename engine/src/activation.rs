//! Activation functions, exact to f32 rounding through `libm`, and fast approximations of sigmoid and
//! tanh ([`sigmoid_fast`], [`tanh_fast`]) with a documented, tested maximum error, which a
//! [`crate::Runtime`] uses in its recurrent cells when asked to
//! ([`crate::Runtime::set_fast_activations`]).

use crate::format::Activation;

/// `1 / (1 + e^-x)`.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + libm::expf(-x))
}

/// Largest absolute error of [`sigmoid_fast`] against the exact `1 / (1 + e^-x)`, for any finite input.
/// The test `fast_activations_stay_within_their_bounds` measures it over a dense sweep of `[-20, 20]`
/// (every 2^-12) and over every f32 exponent up to the largest finite values; measured: 1.1e-7.
pub const SIGMOID_FAST_MAX_ERROR: f32 = 2e-7;

/// Largest absolute error of [`tanh_fast`] against the exact `tanh x`, for any finite input; checked as
/// [`SIGMOID_FAST_MAX_ERROR`] is; measured: 1.8e-7.
pub const TANH_FAST_MAX_ERROR: f32 = 4e-7;

/// `2^t` for `t` in `[-126, 126]`: `2^n · p(f)` with `n = round(t)`, `f = t − n` in `[-1/2, 1/2]` and `p` the
/// degree-6 Taylor polynomial of `2^f` (relative error below 2e-7 there), `2^n` put into the exponent
/// bits directly. Callers clamp `t`.
#[inline(always)]
fn exp2_reduced(t: f32) -> f32 {
    // Adding 1.5 · 2^23 rounds t to an integer (ties to even) in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let shifted = t + ROUND;
    let n = shifted - ROUND;
    let f = t - n;
    let p = 1.0
        + f * (core::f32::consts::LN_2
            + f * (0.240_226_5
                + f * (0.055_504_11
                    + f * (0.009_618_129 + f * (0.001_333_355_8 + f * 0.000_154_035_3)))));
    // The low bits of `shifted` hold n (two's complement, |n| ≤ 126): add it to p's exponent.
    let n_bits = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    f32::from_bits((p.to_bits() as i32).wrapping_add(n_bits << 23) as u32)
}

/// A fast `1 / (1 + e^-x)`: `e^-x` as `2^t` by range reduction and a degree-6 polynomial, within
/// [`SIGMOID_FAST_MAX_ERROR`] of the exact value. NaN stays NaN; beyond `|x| ≈ 87` the result is the exact one rounded (0 or 1 within 1e-38).
#[inline]
pub fn sigmoid_fast(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let t = (-x * core::f32::consts::LOG2_E).clamp(-126.0, 126.0);
    1.0 / (1.0 + exp2_reduced(t))
}

/// A fast `tanh x = 1 − 2 / (1 + e^2x)`, within [`TANH_FAST_MAX_ERROR`] of the exact value; odd, and
/// exactly 0 at 0. NaN stays NaN.
#[inline]
pub fn tanh_fast(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let t = (2.0 * core::f32::consts::LOG2_E * x).clamp(-126.0, 126.0);
    1.0 - 2.0 / (1.0 + exp2_reduced(t))
}

/// [`scalar`], with the fast sigmoid and tanh when `fast` is set.
#[inline]
pub(crate) fn scalar_with(activation: Activation, x: f32, fast: bool) -> f32 {
    match (activation, fast) {
        (Activation::Sigmoid, true) => sigmoid_fast(x),
        (Activation::Tanh, true) => tanh_fast(x),
        _ => scalar(activation, x),
    }
}

/// [`apply`], with the fast sigmoid and tanh when `fast` is set.
pub(crate) fn apply_with(activation: Activation, values: &mut [f32], fast: bool) {
    match (activation, fast) {
        (Activation::Sigmoid | Activation::Tanh, true) => values
            .iter_mut()
            .for_each(|v| *v = scalar_with(activation, *v, true)),
        _ => apply(activation, values),
    }
}

/// Applies an element-wise activation to one value. Softmax is not element-wise and is handled by
/// [`apply`]; here it is the identity.
#[inline]
pub fn scalar(activation: Activation, x: f32) -> f32 {
    match activation {
        Activation::Linear | Activation::Softmax => x,
        Activation::Relu => {
            if x > 0.0 {
                x
            } else {
                0.0
            }
        }
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => libm::tanhf(x),
    }
}

/// Applies `activation` to a vector in place; softmax normalises over the whole slice.
pub fn apply(activation: Activation, values: &mut [f32]) {
    match activation {
        Activation::Linear => {}
        Activation::Softmax => softmax(values),
        _ => values.iter_mut().for_each(|v| *v = scalar(activation, *v)),
    }
}

/// `e^(x_i - max) / Σ e^(x_j - max)`: subtracting the maximum keeps every exponent ≤ 0.
fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in values.iter_mut() {
        *v = libm::expf(*v - max);
        sum += *v;
    }
    if sum > 0.0 {
        values.iter_mut().for_each(|v| *v /= sum);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// Largest absolute error of `fast` against `exact` (in f64) over a dense sweep of `[-20, 20]` and
    /// over every binade of both signs up to the largest finite f32.
    fn max_error(fast: fn(f32) -> f32, exact: fn(f64) -> f64) -> f64 {
        let step = if cfg!(miri) { 1.0 / 16.0 } else { 1.0 / 4096.0 };
        let sweep = (0..=(40.0 / step) as i32).map(|i| -20.0 + i as f32 * step);
        let binades = (-149..=127).flat_map(|e| {
            let v = libm::ldexpf(1.5, e).min(f32::MAX);
            [v, -v]
        });
        sweep
            .chain(binades)
            .chain([0.0, -0.0, f32::MAX, f32::MIN, f32::MIN_POSITIVE])
            .map(|x| {
                let y = fast(x);
                assert!(y.is_finite(), "{x} -> {y}");
                (f64::from(y) - exact(f64::from(x))).abs()
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn fast_activations_stay_within_their_bounds() {
        let sigmoid_error = max_error(sigmoid_fast, |x| 1.0 / (1.0 + libm::exp(-x)));
        let tanh_error = max_error(tanh_fast, libm::tanh);
        std::println!("measured: sigmoid {sigmoid_error:e}, tanh {tanh_error:e}");
        assert!(
            sigmoid_error <= f64::from(SIGMOID_FAST_MAX_ERROR),
            "sigmoid {sigmoid_error:e}"
        );
        assert!(
            tanh_error <= f64::from(TANH_FAST_MAX_ERROR),
            "tanh {tanh_error:e}"
        );
        assert!(sigmoid_fast(f32::NAN).is_nan() && tanh_fast(f32::NAN).is_nan());
        assert_eq!(tanh_fast(0.0), 0.0);
        assert_eq!(sigmoid_fast(0.0), 0.5);
        assert_eq!(scalar_with(Activation::Relu, -1.0, true), 0.0);
    }

    #[test]
    fn sigmoid_saturates_without_nan() {
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn softmax_sums_to_one_for_large_inputs() {
        let mut v = [1000.0, 1001.0, 999.0];
        apply(Activation::Softmax, &mut v);
        let sum: f32 = v.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
        assert!(v[1] > v[0] && v[0] > v[2]);
    }

    #[test]
    fn relu_and_linear() {
        assert_eq!(scalar(Activation::Relu, -3.0), 0.0);
        assert_eq!(scalar(Activation::Relu, 2.5), 2.5);
        assert_eq!(scalar(Activation::Linear, -3.0), -3.0);
    }
}
