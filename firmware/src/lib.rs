//! The tinyrnn firmware library: a streaming forecaster loop that is generic over where samples come
//! from (any [`SampleSource`], for example text lines over an `embedded-io` serial port) and over an
//! embedded-hal 1.0 delay that paces it. The binaries in `src/bin/` are thin: they pick a blob, a source
//! and a delay for their machine.
#![no_std]
#![deny(missing_docs)]

#[macro_use]
mod fmt;

#[cfg(target_arch = "arm")]
pub mod markers;
pub mod source;

pub use source::{LineError, LineSource, NbError, NbReader, SampleSource};

use embedded_hal::delay::DelayNs;
use tinyrnn::{Forecaster, Runtime, Scaler};

/// Most input features a sample may have.
pub const MAX_FEATURES: usize = 32;

/// Most output values one step of an integer-only model may give to [`step_stream_i16`].
pub const MAX_OUTPUTS: usize = 32;

/// Ends a run under QEMU's semihosting: exits 0 after `Ok`, or prints `FAILED: <error>` and exits 1.
pub fn exit_with(result: Result<(), impl core::fmt::Display>) -> ! {
    let code = match result {
        Ok(()) => cortex_m_semihosting::debug::EXIT_SUCCESS,
        Err(error) => {
            cortex_m_semihosting::hprintln!("FAILED: {}", error);
            cortex_m_semihosting::debug::EXIT_FAILURE
        }
    };
    cortex_m_semihosting::debug::exit(code);
    // Without a debugger attached, `exit` returns.
    loop {
        cortex_m::asm::bkpt();
    }
}

/// Bytes aligned to 16, the alignment a blob's data section needs in memory. Used by [`include_blob!`].
#[repr(C, align(16))]
pub struct Aligned<B: ?Sized>(pub B);

/// Includes a model blob (a `.trnn` file) as a 16-byte-aligned `&'static [u8]`, ready for
/// `tinyrnn::Model::open`.
#[macro_export]
macro_rules! include_blob {
    ($path:expr) => {{
        static BLOB: &$crate::Aligned<[u8]> = &$crate::Aligned(*include_bytes!($path));
        &BLOB.0
    }};
}

/// Why the forecasting loop stopped early.
#[derive(Debug)]
pub enum RunError<E> {
    /// The sample source failed.
    Source(E),
    /// The engine refused a sample.
    Engine(tinyrnn::Error),
}

/// Reads samples from `source` until it runs out, pushes each through `forecaster`, calls `on_forecast`
/// with the sample's index and each forecast, and waits `period_us` microseconds on `delay` after each
/// sample. Returns the number of samples read.
pub fn forecast_stream<S, D, Sc, const W: usize>(
    forecaster: &mut Forecaster<'_, '_, W, Sc>,
    source: &mut S,
    delay: &mut D,
    period_us: u32,
    mut on_forecast: impl FnMut(usize, &[f32]),
) -> Result<usize, RunError<S::Error>>
where
    S: SampleSource,
    D: DelayNs,
    Sc: Scaler,
{
    let width = forecaster.model().input_width().min(MAX_FEATURES);
    let mut sample = [0.0f32; MAX_FEATURES];
    let sample = &mut sample[..width];
    let mut index = 0;
    while source.next_sample(sample).map_err(RunError::Source)? {
        match forecaster.push(sample) {
            Ok(Some(forecast)) => on_forecast(index, forecast),
            Ok(None) => info!("sample {}: window filling", index),
            Err(error) => {
                warn!("sample {}: {}", index, error);
                return Err(RunError::Engine(error));
            }
        }
        index += 1;
        if period_us > 0 {
            delay.delay_us(period_us);
        }
    }
    Ok(index)
}

/// Reads rows of `i16` (an integer-only model's input, in its fixed-point format) from `source` until it
/// runs out, steps `runtime` with each ([`Runtime::step_i16`], no floating point), calls `on_output` with
/// the row's index and the step's `i16` output (in the model's output format), and waits `period_us`
/// microseconds on `delay` after each row. Returns the number of rows read.
pub fn step_stream_i16<R, D, const N: usize>(
    runtime: &mut Runtime<'_, '_>,
    source: &mut LineSource<R, N>,
    delay: &mut D,
    period_us: u32,
    mut on_output: impl FnMut(usize, &[i16]),
) -> Result<usize, RunError<LineError<R::Error>>>
where
    R: embedded_io::Read,
    D: DelayNs,
{
    let model = runtime.model();
    let (width, outputs) = (model.input_width(), model.step_output_len());
    let mut row = [0i16; MAX_FEATURES];
    let mut output = [0i16; MAX_OUTPUTS];
    let (Some(row), Some(output)) = (row.get_mut(..width), output.get_mut(..outputs)) else {
        return Err(RunError::Engine(tinyrnn::Error::BufferTooSmall {
            needed: width.max(outputs),
            got: MAX_FEATURES.min(MAX_OUTPUTS),
        }));
    };
    let mut index = 0;
    while source.next_values(row).map_err(RunError::Source)? {
        if let Err(error) = runtime.step_i16(row, output) {
            warn!("row {}: {}", index, error);
            return Err(RunError::Engine(error));
        }
        on_output(index, output);
        index += 1;
        if period_us > 0 {
            delay.delay_us(period_us);
        }
    }
    Ok(index)
}

/// Why [`known_answer_i16`] failed.
#[derive(Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KnownAnswerError {
    /// A line of the input text is bad.
    Input(LineError<core::convert::Infallible>),
    /// A line of the expected-output text is bad.
    Expected(LineError<core::convert::Infallible>),
    /// The engine refused a step.
    Engine(tinyrnn::Error),
    /// A step gave another value than the expected one.
    Mismatch {
        /// Step, from 0.
        step: usize,
        /// Output value within the step, from 0.
        output: usize,
        /// The value the host engine computed.
        expected: i16,
        /// The value computed here.
        actual: i16,
    },
    /// The input and the expected output have different numbers of rows.
    Rows {
        /// Rows of input.
        input: usize,
        /// Rows of expected output.
        expected: usize,
    },
}

/// A boot self-test for integer-only models, with no floating point: streams `input` (rows of `i16` as
/// text) through `runtime` from its initial state and compares every step's output, bit for bit, with
/// `expected` (rows of `i16` as text, as the host engine wrote them). The runtime is reset before and
/// after. Returns the number of steps compared.
///
/// A blob's own self-test vector ([`tinyrnn::Model::self_test`]) is compared in `f32`, which on a core
/// without an FPU would link the soft-float routines an integer-only build avoids.
pub fn known_answer_i16(
    runtime: &mut Runtime<'_, '_>,
    input: &str,
    expected: &str,
) -> Result<usize, KnownAnswerError> {
    runtime.reset();
    let mut wanted = LineSource::<_, 256>::new(expected.as_bytes());
    let mut want = [0i16; MAX_OUTPUTS];
    let outputs = runtime.model().step_output_len();
    let want = want.get_mut(..outputs).ok_or(KnownAnswerError::Engine(
        tinyrnn::Error::BufferTooSmall {
            needed: outputs,
            got: MAX_OUTPUTS,
        },
    ))?;
    let mut mismatch = None;
    let mut bad_expected = None;
    let mut expected_rows = 0;
    let mut source = LineSource::<_, 256>::new(input.as_bytes());
    let steps = step_stream_i16(
        runtime,
        &mut source,
        &mut SpinDelay { hz: 1 },
        0,
        |step, got| {
            if mismatch.is_some() || bad_expected.is_some() {
                return;
            }
            match wanted.next_values(want) {
                Ok(true) => expected_rows += 1,
                Ok(false) => return,
                Err(error) => {
                    bad_expected = Some(error);
                    return;
                }
            }
            let first_difference = want.iter().zip(got).position(|(w, g)| w != g);
            if let Some(output) = first_difference {
                mismatch = Some(KnownAnswerError::Mismatch {
                    step,
                    output,
                    expected: want.get(output).copied().unwrap_or(0),
                    actual: got.get(output).copied().unwrap_or(0),
                });
            }
        },
    );
    runtime.reset();
    let steps = steps.map_err(|error| match error {
        RunError::Source(error) => KnownAnswerError::Input(error),
        RunError::Engine(error) => KnownAnswerError::Engine(error),
    })?;
    if let Some(error) = bad_expected {
        return Err(KnownAnswerError::Expected(error));
    }
    if let Some(mismatch) = mismatch {
        return Err(mismatch);
    }
    while wanted
        .next_values(want)
        .map_err(KnownAnswerError::Expected)?
    {
        expected_rows += 1;
    }
    if steps != expected_rows {
        return Err(KnownAnswerError::Rows {
            input: steps,
            expected: expected_rows,
        });
    }
    Ok(steps)
}

/// A delay that spins the core for a number of cycles, for machines without a timer driver (QEMU) or
/// before one is set up.
pub struct SpinDelay {
    /// Core clock in Hz.
    pub hz: u32,
}

impl DelayNs for SpinDelay {
    fn delay_ns(&mut self, ns: u32) {
        let cycles = (u64::from(ns) * u64::from(self.hz) / 1_000_000_000) as u32;
        cortex_m::asm::delay(cycles.max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyrnn::Model;

    /// The i8x16 reference model and the input and outputs the host engine wrote for it.
    static MODEL: &[u8] = include_blob!("../../tests/data/integer/model.trnn");
    static INPUT: &str = include_str!("../../tests/data/integer/input.csv");
    static EXPECTED: &str = include_str!("../../tests/data/integer/expected.csv");

    #[test]
    fn the_known_answer_test_passes_on_the_host_engines_outputs() {
        let model = Model::open(MODEL).unwrap();
        let mut memory = [0.0f32; 128];
        let mut runtime = Runtime::new(&model, &mut memory).unwrap();
        assert_eq!(known_answer_i16(&mut runtime, INPUT, EXPECTED), Ok(64));
    }

    #[test]
    fn the_known_answer_test_names_the_first_wrong_value_and_missing_rows() {
        let model = Model::open(MODEL).unwrap();
        let mut memory = [0.0f32; 128];
        let mut runtime = Runtime::new(&model, &mut memory).unwrap();
        // One output of step 2 off by one bit.
        let mut line = heapless::String::<16>::new();
        let mut lines: heapless::Vec<&str, 64> = EXPECTED.lines().collect();
        let (a, b) = lines[2].split_once(',').unwrap();
        let changed: i16 = b.parse::<i16>().unwrap() ^ 1;
        core::fmt::write(&mut line, format_args!("{a},{changed}")).unwrap();
        lines[2] = &line;
        let mut text = heapless::String::<1024>::new();
        for l in &lines {
            text.push_str(l).unwrap();
            text.push('\n').unwrap();
        }
        assert_eq!(
            known_answer_i16(&mut runtime, INPUT, &text),
            Err(KnownAnswerError::Mismatch {
                step: 2,
                output: 1,
                expected: changed,
                actual: b.parse().unwrap(),
            })
        );
        // The expected output stops a row early.
        let short = EXPECTED.rsplitn(3, '\n').nth(2).unwrap();
        assert_eq!(
            known_answer_i16(&mut runtime, INPUT, short),
            Err(KnownAnswerError::Rows {
                input: 64,
                expected: 63
            })
        );
    }

    #[test]
    fn the_integer_stream_matches_the_host_row_by_row() {
        let model = Model::open(MODEL).unwrap();
        let mut memory = [0.0f32; 128];
        let mut runtime = Runtime::new(&model, &mut memory).unwrap();
        let mut source = LineSource::<_, 64>::new(INPUT.as_bytes());
        let mut expected = LineSource::<_, 64>::new(EXPECTED.as_bytes());
        let mut rows = 0;
        let n = step_stream_i16(
            &mut runtime,
            &mut source,
            &mut SpinDelay { hz: 1 },
            0,
            |i, y| {
                let mut want = [0i16; 2];
                assert!(expected.next_values(&mut want).unwrap());
                assert_eq!(y, want, "row {i}");
                rows += 1;
            },
        )
        .unwrap();
        assert_eq!((n, rows), (64, 64));
    }
}
