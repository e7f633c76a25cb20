//! Activation functions, exact to f32 rounding through `libm`.

use crate::format::Activation;

/// `1 / (1 + e^-x)`.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + libm::expf(-x))
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
    use super::*;

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
