//! The forecaster on an STM32F411 board (Nucleo-F411RE; a "Black Pill" with a USB-serial adapter on the
//! same pins). Samples arrive as text lines on USART2 (PA2 TX, PA3 RX, 115200 8N1: the Nucleo's ST-LINK
//! virtual COM port), one sample per line in model units, values separated by commas or spaces. Each
//! forecast goes back on the same port as `forecast <index> <values…>`; logs go through defmt over RTT.
//!
//! At boot it runs the blob's self-test and stops (with a defmt panic) if it fails.
//!
//! Build with `cargo build --release --bin stm32f411 --features stm32f411` in `firmware/`, then flash,
//! run and read the defmt logs with
//! `probe-rs run --chip STM32F411RETx target/thumbv7em-none-eabihf/release/stm32f411`.
#![no_std]
#![no_main]

use core::fmt::Write as _;

use defmt_rtt as _;
use panic_probe as _;
use stm32f4xx_hal::{pac, prelude::*, serial::Config};
use tinyrnn::{Forecaster, Mode, ModelSlot};
use tinyrnn_firmware::{forecast_stream, include_blob, LineSource, NbReader, RunError};

/// The bundled KPI forecaster; `models/README.md` says how it is made.
static MODEL: &[u8] = include_blob!("../../models/kpi_forecaster.trnn");
/// Window buffer capacity in values.
const W: usize = 64;
/// Engine memory of the stream, in `f32` words.
const WORDS: usize = 256;

#[cortex_m_rt::entry]
fn main() -> ! {
    let (Some(dp), Some(cp)) = (pac::Peripherals::take(), cortex_m::Peripherals::take()) else {
        defmt::panic!("peripherals already taken");
    };
    let rcc = dp.RCC.constrain();
    let clocks = rcc.cfgr.sysclk(84.MHz()).freeze();
    let mut delay = cp.SYST.delay(&clocks);
    let gpioa = dp.GPIOA.split();
    let config = Config::default().baudrate(115_200.bps());
    let Ok(serial) = dp.USART2.serial((gpioa.pa2, gpioa.pa3), config, &clocks) else {
        defmt::panic!("USART2 configuration refused");
    };
    let (mut tx, rx) = serial.split();

    let slot = match ModelSlot::new(MODEL) {
        Ok(slot) => slot,
        Err(error) => defmt::panic!("model refused: {}", error),
    };
    let model = slot.model();
    let mode = match Mode::of(model) {
        Ok(mode) => mode,
        Err(error) => defmt::panic!("model cannot forecast a stream: {}", error),
    };
    defmt::info!(
        "model {=u32:08x}: {} features in, {:?}, {} f32 words per stream",
        model.id(),
        model.input_width(),
        mode,
        Forecaster::<W>::memory_words(model, mode).unwrap_or(0)
    );
    let mut memory = [0.0f32; WORDS];
    // The boot self-test: the blob's known input must give, here, the output the host computed.
    match model.self_test(&mut memory) {
        Ok(outcome) if outcome.is_ok() => defmt::info!("self-test: {}", outcome),
        Ok(outcome) => defmt::panic!("self-test failed: {}", outcome),
        Err(error) => defmt::panic!("self-test could not run: {}", error),
    }
    let mut stream = match Forecaster::<W>::new(model, &mut memory) {
        Ok(stream) => stream,
        Err(error) => defmt::panic!("stream: {}", error),
    };
    let mut source = LineSource::<_, 128>::new(NbReader(rx));
    let mut base = 0;
    loop {
        let result = forecast_stream(&mut stream, &mut source, &mut delay, 0, |i, forecast| {
            let _ = write!(tx, "forecast {}", base + i);
            for v in forecast {
                let _ = write!(tx, " {:e}", v);
            }
            let _ = write!(tx, "\r\n");
        });
        // A UART never runs out; a bad line or a receive error ends one run, and the stream goes on.
        match result {
            Ok(n) => base += n,
            Err(RunError::Source(error)) => defmt::warn!("bad input: {}", error),
            Err(RunError::Engine(error)) => defmt::warn!("engine: {}", error),
        }
    }
}
