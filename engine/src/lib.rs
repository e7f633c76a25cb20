//! tinyrnn: a `no_std`, allocation-free engine for recurrent networks on microcontrollers.
//!
//! A model arrives as a blob written by the `tinyrnn` converter. [`Model::open`] checks it completely
//! once; a [`Runtime`] then runs it in memory the caller owns, one timestep at a time
//! ([`Runtime::step`]) or a whole window at a time ([`Runtime::run_window`]).
//!
//! ```
//! # fn demo(blob: &[u8]) -> Result<(), tinyrnn::Error> {
//! let model = tinyrnn::Model::open(blob)?;
//! let mut memory = [0.0f32; 512];
//! let mut runtime = tinyrnn::Runtime::new(&model, &mut memory)?;
//! let mut forecast = [0.0f32; 4];
//! runtime.step(&[0.1, 0.2, 0.3], &mut forecast)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Bad numbers
//!
//! A sensor can send garbage; the state must survive it.
//!
//! - An input holding a NaN or an infinity is refused with [`Error::NonFiniteInput`] (the index of the first
//!   one) before anything changes: a [`Runtime`]'s state, and a [`Forecaster`]'s window, are as they were.
//! - Finite inputs run whatever their size: activations saturate, and a windowed run starts from the
//!   initial state each time, so nothing carries over from one window to the next.
//! - If a streaming step still leaves a NaN or an infinity in the state (finite inputs too large for a
//!   linear or ReLU recurrence), the step returns [`Error::StateOverflow`] and the state is reset to its
//!   initial value: the stream starts over with the next sample.
//! - A state to restore that holds a NaN or an infinity is refused ([`Error::StateCorrupt`]).
//!
//! So the state never holds a NaN or an infinity, and [`Runtime::reset`] always recovers a stream.
//!
//! # No panics
//!
//! Outside its tests the crate denies the lints of every panic path clippy knows (`unwrap`, `expect`,
//! `panic!`, `unreachable!`, indexing and slicing) and integer arithmetic that can overflow. The
//! arithmetic lint is lifted, with its reason, only for the numeric modules whose sizes were bounded when
//! the model was opened; `firmware/check-no-panic.sh` then proves on the release build that no panic call
//! site from the engine is linked.
#![no_std]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]
// With a cell or a numeric mode compiled out (the `lstm`, `gru`, `simple-rnn`, `f32`, `i8x16`
// features), helpers only it used and step arguments only it read go unused; the default (everything)
// build keeps these lints in full.
#![cfg_attr(
    not(all(
        feature = "lstm",
        feature = "gru",
        feature = "simple-rnn",
        feature = "f32",
        feature = "i8x16"
    )),
    allow(dead_code, unused_imports, unused_variables)
)]

pub mod activation;
#[allow(
    clippy::arithmetic_side_effects,
    reason = "offsets and lengths within tensors whose shapes `Model::open` checked against the blob"
)]
pub mod cell;
pub mod error;
pub mod format;
#[allow(
    clippy::arithmetic_side_effects,
    reason = "index arithmetic within validated shapes; value arithmetic saturates explicitly"
)]
mod integer;
#[allow(
    clippy::arithmetic_side_effects,
    reason = "hot loops over validated shapes; fixed-point accumulation saturates explicitly"
)]
pub mod kernels;
pub mod model;
#[allow(
    clippy::arithmetic_side_effects,
    reason = "offsets into memory whose size `Runtime::new` checked against the model's needs"
)]
pub mod runtime;
pub mod selftest;
#[allow(
    clippy::arithmetic_side_effects,
    reason = "offsets within the compile-time sizes `I` and `H`, checked against the blob at open"
)]
pub mod sized;
pub mod slot;
pub mod stream;
pub mod text;

pub use error::Error;
pub use model::{Memory, Model};
pub use runtime::{Runtime, Status};
pub use selftest::Outcome as SelfTestOutcome;
pub use slot::{boot, ModelSlot};
pub use stream::{Forecaster, Identity, Mode, ModelScaler, Scaler};
