//! The integer-only engine on a Raspberry Pi Pico (RP2040, Cortex-M0+ at 125 MHz, no FPU), through the
//! `rp2040-hal` HAL and its second-stage bootloader (`rp2040-boot2`, for the Pico's W25Q080 flash).
//!
//! It runs the i8x16 reference model `tests/data/integer/model.trnn` (LSTM(8) → GRU(8) → Dense(2)) with
//! `Runtime::step_i16`: no floating point anywhere, so no soft-float routine is linked. Samples arrive as
//! text lines on UART0 (GP0 TX, GP1 RX, 115200 8N1), one timestep per line: three `i16` in the model's
//! input format (Q.13, so `8192` is 1.0), separated by commas or spaces. Each output goes back on the same
//! port as `forecast <index> <a> <b>` in the model's output format (Q.12); logs go through defmt over RTT.
//!
//! At boot, the self-test streams the reference input (`tests/data/integer/input.csv`) through the model
//! and compares every step, bit for bit, with what the host engine computed
//! (`tests/data/integer/expected.csv`); it stops (with a defmt panic) on the first difference.
//!
//! Build with `cargo build --release --target thumbv6m-none-eabi --bin rp2040 --features rp2040` in
//! `firmware/`, then flash, run and read the defmt logs with
//! `probe-rs run --chip RP2040 target/thumbv6m-none-eabi/release/rp2040` (a debug probe on the SWD pins).
#![no_std]
#![no_main]

use core::fmt::Write as _;

use defmt_rtt as _;
use panic_probe as _;
use rp2040_hal::clocks::init_clocks_and_plls;
use rp2040_hal::fugit::RateExtU32;
use rp2040_hal::gpio::{FunctionUart, Pins};
use rp2040_hal::uart::{DataBits, StopBits, UartConfig, UartPeripheral};
use rp2040_hal::{pac, Clock, Sio, Timer, Watchdog};
use tinyrnn::{Model, Runtime};
use tinyrnn_firmware::{
    include_blob, known_answer_i16, step_stream_i16, LineSource, NbReader, RunError,
};

/// The second-stage bootloader, which the boot ROM runs from the first 256 bytes of flash
/// (`memory/rp2040.x` puts `.boot2` there).
#[link_section = ".boot2"]
#[used]
static BOOT2_FIRMWARE: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// The Pico's crystal.
const XOSC_HZ: u32 = 12_000_000;

/// The integer-only reference model; `tests/examples/integer_reference.rs` writes it.
static MODEL: &[u8] = include_blob!("../../../tests/data/integer/model.trnn");
/// The self-test's input and the outputs the host engine computed for it.
static SELF_TEST_INPUT: &str = include_str!("../../../tests/data/integer/input.csv");
static SELF_TEST_EXPECTED: &str = include_str!("../../../tests/data/integer/expected.csv");

/// Engine memory in words (the model needs 85; `tinyrnn inspect` says 340 bytes).
const WORDS: usize = 128;

#[rp2040_hal::entry]
fn main() -> ! {
    let Some(mut pac) = pac::Peripherals::take() else {
        defmt::panic!("peripherals already taken");
    };
    let mut watchdog = Watchdog::new(pac.WATCHDOG);
    let Ok(clocks) = init_clocks_and_plls(
        XOSC_HZ,
        pac.XOSC,
        pac.CLOCKS,
        pac.PLL_SYS,
        pac.PLL_USB,
        &mut pac.RESETS,
        &mut watchdog,
    ) else {
        defmt::panic!("the crystal oscillator or a PLL did not start");
    };
    let mut timer = Timer::new(pac.TIMER, &mut pac.RESETS, &clocks);
    let sio = Sio::new(pac.SIO);
    let pins = Pins::new(
        pac.IO_BANK0,
        pac.PADS_BANK0,
        sio.gpio_bank0,
        &mut pac.RESETS,
    );
    let uart_pins = (
        pins.gpio0.into_function::<FunctionUart>(),
        pins.gpio1.into_function::<FunctionUart>(),
    );
    let config = UartConfig::new(115_200.Hz(), DataBits::Eight, None, StopBits::One);
    let Ok(uart) = UartPeripheral::new(pac.UART0, uart_pins, &mut pac.RESETS)
        .enable(config, clocks.peripheral_clock.freq())
    else {
        defmt::panic!("UART0 configuration refused");
    };
    let (rx, mut tx) = uart.split();

    let model = match Model::open(MODEL) {
        Ok(model) => model,
        Err(error) => defmt::panic!("model refused: {}", error),
    };
    if !model.is_integer() {
        defmt::panic!("this build runs integer-only (i8x16) models");
    }
    defmt::info!(
        "model {=u32:08x}: {} features in, {} out per step, {} words of engine memory",
        model.id(),
        model.input_width(),
        model.step_output_len(),
        model.memory().total()
    );
    // Zero words: a constant, not a float operation.
    let mut memory = [0.0f32; WORDS];
    let mut runtime = match Runtime::new(&model, &mut memory) {
        Ok(runtime) => runtime,
        Err(error) => defmt::panic!("runtime: {}", error),
    };
    match known_answer_i16(&mut runtime, SELF_TEST_INPUT, SELF_TEST_EXPECTED) {
        Ok(steps) => defmt::info!(
            "self-test: passed, {} steps bit-identical to the host",
            steps
        ),
        Err(error) => defmt::panic!("self-test failed: {}", error),
    }

    let mut source = LineSource::<_, 128>::new(NbReader(rx));
    let mut base = 0;
    loop {
        let result = step_stream_i16(&mut runtime, &mut source, &mut timer, 0, |i, output| {
            let _ = write!(tx, "forecast {}", base + i);
            for v in output {
                let _ = write!(tx, " {}", v);
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
