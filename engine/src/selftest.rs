//! The boot self-test: a blob may carry one input and the output the converter's engine computed for it
//! ([`SelfTest`]). Firmware runs it once after [`Model::open`] to learn that this build of the engine, on
//! this core, computes what the host computed: a wrong engine version, a miscompiled kernel or a faulty
//! FPU setting shows up before the first real forecast.
//!
//! Feature models run the input as one window ([`Runtime::run_window`]); token models feed it one token
//! at a time ([`Runtime::step_token`]) after a reset and compare the last step's output, so they must be
//! streamable.

use crate::cell::{Mat, Values};
use crate::error::Error;
use crate::format::{DType, InputKind, SelfTest, TensorRef, MAX_VOCAB};
use crate::model::{floats_at, Model, MAX_STEPS};
use crate::runtime::Runtime;

/// What running the self-test found.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome {
    /// The blob carries no self-test vector.
    Absent,
    /// Every output value is within the tolerance.
    Passed {
        /// Largest absolute difference from the expected output.
        max_error: f32,
    },
    /// An output value differs from the expected one by more than the tolerance (or is not a number).
    Failed {
        /// Index of the first such value.
        index: usize,
        /// The value the converter computed.
        expected: f32,
        /// The value computed here.
        actual: f32,
    },
}

impl Outcome {
    /// Whether the model may be trusted: the test passed, or there was none.
    pub fn is_ok(&self) -> bool {
        !matches!(self, Outcome::Failed { .. })
    }
}

impl<'a> Model<'a> {
    /// `f32` words of memory [`Model::self_test`] needs: the expected output's length plus the runtime's
    /// memory for the test input. 0 when the blob carries no self-test.
    pub fn self_test_memory(&self) -> usize {
        let Some(vector) = self.self_test_vector() else {
            return 0;
        };
        let runtime = match self.input().kind {
            InputKind::Features(_) => self
                .window_memory(vector.input.rows)
                .map_or(0, |m| m.total()),
            InputKind::Tokens => self.memory().total(),
        };
        vector.output.rows.saturating_add(runtime)
    }

    /// Runs the blob's self-test vector in `memory` (at least [`Model::self_test_memory`] words) and
    /// compares the result with the expected output.
    pub fn self_test(&self, memory: &mut [f32]) -> Result<Outcome, Error> {
        let Some(vector) = self.self_test_vector() else {
            return Ok(Outcome::Absent);
        };
        let (Values::F32(input), Values::F32(expected)) =
            (vector.input.values, vector.output.values)
        else {
            return Err(Error::BadSelfTest);
        };
        let needed = self.self_test_memory();
        if memory.len() < needed {
            return Err(Error::BufferTooSmall {
                needed,
                got: memory.len(),
            });
        }
        let too_small = Error::BufferTooSmall {
            needed,
            got: memory.len(),
        };
        let (output, rest) = memory
            .split_at_mut_checked(expected.len())
            .ok_or(too_small)?;
        let mut runtime = Runtime::new(self, rest)?;
        match self.input().kind {
            InputKind::Features(_) => {
                runtime.run_window(input, output)?;
            }
            InputKind::Tokens => {
                for &token in input {
                    // Token ids were checked at open to be whole numbers below the vocabulary.
                    runtime.step_token(token as u32, output)?;
                }
            }
        }
        Ok(compare(expected, output, vector.tolerance))
    }
}

fn compare(expected: &[f32], actual: &[f32], tolerance: f32) -> Outcome {
    let mut max_error = 0.0f32;
    for (index, (&e, &a)) in expected.iter().zip(actual).enumerate() {
        let error = (e - a).abs();
        // A NaN computed on the device fails too.
        if error.is_nan() || error > tolerance {
            return Outcome::Failed {
                index,
                expected: e,
                actual: a,
            };
        }
        max_error = max_error.max(error);
    }
    Outcome::Passed { max_error }
}

/// Views a blob's self-test vector and checks it against the opened model.
pub(crate) fn resolve<'a>(
    model: &Model<'a>,
    floats: &'a [f32],
    vector: SelfTest<TensorRef>,
) -> Result<SelfTest<Mat<'a>>, Error> {
    let view = |t: TensorRef| -> Result<Mat<'a>, Error> {
        if t.dtype != DType::F32 || t.scale.is_some() {
            return Err(Error::BadSelfTest);
        }
        let (rows, cols) = (t.rows as usize, t.cols as usize);
        let len = rows.checked_mul(cols).ok_or(Error::BadSelfTest)?;
        let values = floats_at(floats, t.offset as usize, len).ok_or(Error::BadSelfTest)?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::BadSelfTest);
        }
        Ok(Mat {
            values: Values::F32(values),
            rows,
            cols,
        })
    };
    let input = view(vector.input)?;
    let output = view(vector.output)?;
    let tolerance = vector.tolerance;
    // Bit tests, not float compares: opening a model links no soft-float routine on an FPU-less core.
    // Negative and non-zero: above the bits of -0.0.
    if !tolerance.is_finite() || tolerance.to_bits() > 0x8000_0000 {
        return Err(Error::BadSelfTest);
    }
    if input.rows == 0 || input.rows > MAX_STEPS as usize || input.cols != model.input_width() {
        return Err(Error::BadSelfTest);
    }
    let expected_len = match model.input().kind {
        InputKind::Features(_) => model
            .output_len(input.rows)
            .map_err(|_| Error::BadSelfTest)?,
        InputKind::Tokens => {
            if !model.is_streamable() {
                return Err(Error::BadSelfTest);
            }
            let vocab = model
                .layers()
                .next()
                .and_then(|layer| match layer {
                    crate::format::Layer::Embedding(e) => Some(e.table.rows),
                    _ => None,
                })
                .unwrap_or(0)
                .min(MAX_VOCAB as usize);
            if let Values::F32(ids) = input.values {
                if !ids.iter().all(|&id| whole_below(id, vocab)) {
                    return Err(Error::BadSelfTest);
                }
            }
            model.step_output_len()
        }
    };
    if output.rows != expected_len || output.cols != 1 {
        return Err(Error::BadSelfTest);
    }
    Ok(SelfTest {
        input,
        output,
        tolerance,
    })
}

/// Whether `v` is a whole number in `0..n`, by its bits alone (no float operation).
fn whole_below(v: f32, n: usize) -> bool {
    let bits = v.to_bits();
    if bits == 0 {
        return n > 0;
    }
    if bits >> 31 != 0 {
        return false;
    }
    let exponent = (bits >> 23) & 0xff;
    // Below 1 (and not 0) is a fraction; 2^24 and above exceeds any vocabulary.
    // The value is `mantissa × 2^-shift` with `shift = 23 - (exponent - 127)`.
    let Some(shift) = 150u32.checked_sub(exponent).filter(|&s| s <= 23) else {
        return false;
    };
    let mantissa = (bits & 0x7f_ffff) | 0x80_0000;
    // Whole when no set bit lies below the binary point.
    mantissa.trailing_zeros() >= shift
        && mantissa
            .checked_shr(shift)
            .is_some_and(|whole| (whole as usize) < n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_are_recognised_by_their_bits() {
        for (v, n, want) in [
            (0.0f32, 1, true),
            (0.0, 0, false),
            (1.0, 2, true),
            (1.0, 1, false),
            (3.0, 4, true),
            (2.5, 4, false),
            (0.5, 4, false),
            (-1.0, 4, false),
            (-0.0, 4, false),
            (1_048_575.0, 1 << 20, true),
            (16_777_216.0, usize::MAX, false),
            (f32::NAN, 4, false),
            (f32::INFINITY, 4, false),
        ] {
            assert_eq!(whole_below(v, n), want, "{v} < {n}");
        }
    }

    #[test]
    fn compare_reports_the_first_value_out_of_tolerance() {
        assert_eq!(
            compare(&[1.0, 2.0, 3.0], &[1.0, 2.5, 9.0], 0.1),
            Outcome::Failed {
                index: 1,
                expected: 2.0,
                actual: 2.5
            }
        );
        assert_eq!(
            compare(&[1.0, 2.0], &[1.0, 2.05], 0.1),
            Outcome::Passed {
                max_error: (2.0f32 - 2.05).abs()
            }
        );
    }

    #[test]
    fn a_nan_on_the_device_fails() {
        assert!(!compare(&[1.0], &[f32::NAN], 1.0).is_ok());
    }
}
