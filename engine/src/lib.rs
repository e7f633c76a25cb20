//! tinyrnn: a `no_std`, allocation-free engine for recurrent networks on microcontrollers.
#![no_std]
#![deny(missing_docs)]

pub mod format;
