//! Replacing the running model the OTA way: a new blob is validated completely before it replaces the
//! running one, and a bad blob leaves the running model in place. At boot, [`boot`] chooses between two
//! flash slots so that an update interrupted at any byte still leaves a working model.
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
use crate::format::CRC;
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

/// The four bytes a flash slot's record starts with.
pub const SLOT_MAGIC: [u8; 4] = *b"TSLT";
/// Length of a slot record; the blob follows it, so a 16-byte-aligned slot keeps the blob aligned.
pub const SLOT_RECORD_LEN: usize = 16;

/// The record at the start of a flash slot: `TSLT`, a sequence number (`u32`, higher is newer), the blob's
/// length (`u32`) and the CRC-32 of those twelve bytes, all little-endian. An OTA update writes the blob
/// after the record's place, then the record: until the record is complete the slot does not count, and
/// [`boot`] validates the blob completely anyway, so a write interrupted at any byte leaves the other
/// slot's model running.
pub fn slot_record(sequence: u32, blob_len: u32) -> [u8; SLOT_RECORD_LEN] {
    let mut record = [0u8; SLOT_RECORD_LEN];
    let fields = [
        u32::from_le_bytes(SLOT_MAGIC),
        sequence,
        blob_len,
        0, // the CRC, below
    ];
    for (chunk, field) in record.chunks_exact_mut(4).zip(fields) {
        chunk
            .iter_mut()
            .zip(field.to_le_bytes())
            .for_each(|(d, s)| *d = s);
    }
    let (covered, crc) = record.split_at_mut(12);
    let sum = CRC.checksum(covered).to_le_bytes();
    crc.iter_mut().zip(sum).for_each(|(d, s)| *d = s);
    record
}

/// Reads a slot: its sequence number and blob, if its record is intact and the blob fits in the slot.
fn read_slot(slot: &[u8]) -> Option<(u32, &[u8])> {
    let word = |i: usize| {
        let mut bytes = [0u8; 4];
        bytes
            .iter_mut()
            .zip(slot.get(i.checked_mul(4)?..)?)
            .for_each(|(d, s)| *d = *s);
        Some(u32::from_le_bytes(bytes))
    };
    if slot.len() < SLOT_RECORD_LEN
        || word(0)? != u32::from_le_bytes(SLOT_MAGIC)
        || CRC.checksum(slot.get(..12)?) != word(3)?
    {
        return None;
    }
    let blob = slot.get(SLOT_RECORD_LEN..SLOT_RECORD_LEN.checked_add(word(2)? as usize)?)?;
    Some((word(1)?, blob))
}

/// What [`boot`] chose.
#[derive(Debug)]
pub struct Boot<'a> {
    /// The slot the model runs from (0 or 1).
    pub slot: usize,
    /// Its sequence number.
    pub sequence: u32,
    /// The model, validated completely.
    pub model: Model<'a>,
}

/// Chooses the model to run from two flash slots (each a [`slot_record`] followed by a blob): the slot
/// with the higher sequence number whose record is intact and whose blob opens completely, else the
/// other one. [`Error::NoBootableSlot`] if neither holds a model.
pub fn boot(slots: [&[u8]; 2]) -> Result<Boot<'_>, Error> {
    let [a, b] = slots.map(read_slot);
    let newest_first = match (a, b) {
        (Some((sa, _)), Some((sb, _))) if sb > sa => [1, 0],
        _ => [0, 1],
    };
    for slot in newest_first {
        let Some((sequence, blob)) = (if slot == 0 { a } else { b }) else {
            continue;
        };
        if let Ok(model) = Model::open(blob) {
            return Ok(Boot {
                slot,
                sequence,
                model,
            });
        }
    }
    Err(Error::NoBootableSlot)
}
