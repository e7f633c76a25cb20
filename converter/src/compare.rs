//! Comparing our outputs with a framework's reference outputs. The tolerance table lives here, once.

use anyhow::{ensure, Result};

use crate::npy::{Array, Data};

/// Absolute tolerance against a framework's output.
pub const ATOL: f32 = 1e-5;
/// Relative tolerance against a framework's output.
pub const RTOL: f32 = 1e-4;

/// How an output compares with a reference.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Largest absolute difference.
    pub max_abs_diff: f32,
    /// The first element outside `ATOL + RTOL·|reference|`: index, ours, reference.
    pub first_mismatch: Option<(usize, f32, f32)>,
}

impl Comparison {
    /// Whether every element is within tolerance.
    pub fn passed(&self) -> bool {
        self.first_mismatch.is_none()
    }
}

/// Compares two float arrays of the same shape element by element; NaN never matches.
pub fn compare(actual: &Array, reference: &Array) -> Result<Comparison> {
    ensure!(
        actual.shape == reference.shape,
        "output shape {:?} differs from the reference's {:?}",
        actual.shape,
        reference.shape
    );
    let (Data::Float(a), Data::Float(r)) = (&actual.data, &reference.data) else {
        anyhow::bail!("comparison needs float arrays");
    };
    let mut max_abs_diff = 0.0f32;
    let mut first_mismatch = None;
    for (i, (&a, &r)) in a.iter().zip(r).enumerate() {
        let diff = (a - r).abs();
        let within = diff <= ATOL + RTOL * r.abs();
        if diff.is_nan() || !within {
            first_mismatch.get_or_insert((i, a, r));
        }
        if diff > max_abs_diff || diff.is_nan() {
            max_abs_diff = diff;
        }
    }
    Ok(Comparison {
        max_abs_diff,
        first_mismatch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(values: Vec<f32>) -> Array {
        Array::float(vec![values.len()], values).unwrap()
    }

    #[test]
    fn tolerance_is_absolute_plus_relative() {
        let reference = array(vec![1000.0, 0.0]);
        assert!(compare(&array(vec![1000.09, 0.000009]), &reference)
            .unwrap()
            .passed());
        let c = compare(&array(vec![1000.2, 0.0]), &reference).unwrap();
        assert_eq!(c.first_mismatch.map(|m| m.0), Some(0));
    }

    #[test]
    fn nan_never_matches() {
        let c = compare(&array(vec![f32::NAN]), &array(vec![f32::NAN])).unwrap();
        assert!(!c.passed());
    }

    #[test]
    fn shapes_must_agree() {
        assert!(compare(&array(vec![1.0]), &array(vec![1.0, 2.0])).is_err());
    }
}
