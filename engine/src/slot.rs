//! Replacing the running model the OTA way: a new blob is validated completely before it replaces the
//! running one, and a bad blob leaves the running model in place.
//!
//! ```
//! # fn demo(running: &'static [u8], download: &'static [u8]) -> Result<(), tinyrnn::Error> {
//! let mut slot = tinyrnn::ModelSlot::new(running)?;
//! // ... forecasters borrow slot.model() ...
//! // Every forecaster of the old model is dropped before the swap (the borrow checker insists).
//! match slot.replace(download) {
//!     Ok(id) => { /* model `id` now runs; make new forecasters */ }
//!     Err(_error) => { /* report the error: the old model keeps running */ }
//! }
//! # Ok(())
//! # }
//! ```

use crate::error::Error;
use crate::model::Model;

/// Holds the running model and swaps it only for a blob that opens and fits.
#[derive(Clone, Debug)]
pub struct ModelSlot<'a> {
    model: Model<'a>,
}

impl<'a> ModelSlot<'a> {
    /// Opens the first model ([`Model::open`] checks every byte).
    pub fn new(blob: &'a [u8]) -> Result<Self, Error> {
        Ok(Self {
            model: Model::open(blob)?,
        })
    }

    /// The running model.
    pub fn model(&self) -> &Model<'a> {
        &self.model
    }

    /// Validates `blob` completely, then makes it the running model and returns its [`Model::id`]. The
    /// new model must take the same input (kind, features, fixed window length) and give the same
    /// forecast shape (output width, sequence or vector, streaming output length), so the application
    /// around it keeps working; otherwise [`Error::ModelMismatch`]. On any error the running model is
    /// unchanged.
    pub fn replace(&mut self, blob: &'a [u8]) -> Result<u32, Error> {
        let new = Model::open(blob)?;
        let old = &self.model;
        let fits = new.input() == old.input()
            && new.output_width() == old.output_width()
            && new.output_is_sequence() == old.output_is_sequence()
            && new.step_output_len() == old.step_output_len()
            && new.is_streamable() == old.is_streamable();
        if !fits {
            return Err(Error::ModelMismatch);
        }
        self.model = new;
        Ok(self.model.id())
    }
}
