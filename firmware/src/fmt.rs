//! Logging shim: with the `defmt` feature the library logs through defmt; without it the log macros
//! compile to nothing (the arguments are still type-checked, so both builds stay in step). Use `{}` and
//! `{:?}` only, which both sides understand.

#[cfg(feature = "defmt")]
macro_rules! info {
    ($($arg:tt)*) => { ::defmt::info!($($arg)*) };
}
#[cfg(not(feature = "defmt"))]
macro_rules! info {
    ($($arg:tt)*) => {{ let _ = ::core::format_args!($($arg)*); }};
}

#[cfg(feature = "defmt")]
macro_rules! warn {
    ($($arg:tt)*) => { ::defmt::warn!($($arg)*) };
}
#[cfg(not(feature = "defmt"))]
macro_rules! warn {
    ($($arg:tt)*) => {{ let _ = ::core::format_args!($($arg)*); }};
}
