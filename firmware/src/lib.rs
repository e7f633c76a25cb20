//! The tinyrnn firmware library: a streaming forecaster loop that is generic over where samples come
//! from (any [`SampleSource`], for example text lines over an `embedded-io` serial port) and over an
//! embedded-hal 1.0 delay that paces it. The binaries in `src/bin/` are thin: they pick a blob, a source
//! and a delay for their machine.
#![no_std]
#![deny(missing_docs)]

#[macro_use]
mod fmt;

pub mod source;

pub use source::{LineError, LineSource, NbError, NbReader, SampleSource};

use embedded_hal::delay::DelayNs;
use tinyrnn::{Forecaster, Scaler};

/// Most input features a sample may have.
pub const MAX_FEATURES: usize = 32;

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
