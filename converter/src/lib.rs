//! The tinyrnn desktop converter: imports trained models, writes, inspects and runs model blobs.
#![deny(missing_docs)]

pub mod calibrate;
pub mod compare;
pub mod import;
pub mod npy;
pub mod plot;
pub mod quantize;
pub mod report;
pub mod run;
pub mod spec;
pub mod stdout;
pub mod text;
pub mod train;
pub mod trainer;
pub mod vocab;
pub mod write;
