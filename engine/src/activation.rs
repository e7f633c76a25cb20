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
/// (every 2^-12) and over every f32 exponent up to the largest finite values; measured: 1.8e-7.
pub const SIGMOID_FAST_MAX_ERROR: f32 = 2e-7;

/// Largest absolute error of [`tanh_fast`] against the exact `tanh x`, for any finite input; checked as
/// [`SIGMOID_FAST_MAX_ERROR`] is; measured: 3.2e-7.
pub const TANH_FAST_MAX_ERROR: f32 = 4e-7;

/// Beyond `±TANH_CLAMP`, `tanh` is within 3.1e-8 of ±1, below the approximation's rounding error; the
/// rational function is fitted on `[0, TANH_CLAMP]` and its input clamped to it.
const TANH_CLAMP: f32 = 9.0;

/// `tanh x ≈ x · P(x²) / Q(x²)` on `[-9, 9]`, P and Q of degree 4: a rational least-maximum-error fit
/// (Lawson iterations on 8,000 Chebyshev points; 2.3e-8 in exact arithmetic, the rest of the error
/// is f32 rounding). About 20 instructions on a Cortex-M4F, no table, no branch but the clamp, so it
/// also vectorises. Exactly odd, and 0 at 0; NaN passes the clamp and stays NaN.
#[inline(always)]
fn tanh_rational(x: f32) -> f32 {
    const P: [f32; 5] = [
        0.999_999_9,
        0.133_745_5,
        0.003_488_135_3,
        2.049_462_1e-5,
        1.320_945_3e-8,
    ];
    const Q: [f32; 5] = [
        1.0,
        0.467_078_48,
        0.025_848_033,
        0.000_327_381_42,
        7.714_387e-7,
    ];
    // Constant bounds: `clamp`'s check of them folds away, no panic path.
    let x = x.clamp(-TANH_CLAMP, TANH_CLAMP);
    let t = x * x;
    let p = P[0] + t * (P[1] + t * (P[2] + t * (P[3] + t * P[4])));
    let q = Q[0] + t * (Q[1] + t * (Q[2] + t * (Q[3] + t * Q[4])));
    x * p / q
}

/// A fast `1 / (1 + e^-x) = 1/2 + tanh(x/2) / 2` through the rational tanh, within
/// [`SIGMOID_FAST_MAX_ERROR`] of the exact value; exactly 1/2 at 0. NaN stays NaN.
#[inline]
pub fn sigmoid_fast(x: f32) -> f32 {
    0.5 + 0.5 * tanh_rational(0.5 * x)
}

/// A fast `tanh x`: a rational function of degree 9 over 8, within [`TANH_FAST_MAX_ERROR`] of the
/// exact value; odd, and exactly 0 at 0. NaN stays NaN.
#[inline]
pub fn tanh_fast(x: f32) -> f32 {
    tanh_rational(x)
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
        (Activation::Sigmoid, true) => values.iter_mut().for_each(|v| *v = sigmoid_fast(*v)),
        (Activation::Tanh, true) => values.iter_mut().for_each(|v| *v = tanh_fast(*v)),
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
        // One loop per function, not a dispatch per value.
        Activation::Sigmoid => values.iter_mut().for_each(|v| *v = sigmoid(*v)),
        Activation::Tanh => values.iter_mut().for_each(|v| *v = libm::tanhf(*v)),
        Activation::Relu => values
            .iter_mut()
            .for_each(|v| *v = scalar(Activation::Relu, *v)),
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
