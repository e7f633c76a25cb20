//! An OTA update interrupted at every byte, simulated on the host: two flash slots, the running model in
//! one, a new blob being written into the other. Wherever the write stops, and whatever the byte it stopped
//! on holds (still erased, zeroed, or half-programmed), `tinyrnn::boot` opens a working model: the old one,
//! or the new one only once the write is complete.

use tinyrnn::slot::{slot_record, SLOT_RECORD_LEN};
use tinyrnn::{boot, Error, Model};
use tinyrnn_converter::run::AlignedBlob;

/// Slot size: a flash partition, 16-byte aligned.
const SLOT: usize = 4096;
/// Erased NOR flash reads as ones.
const ERASED: u8 = 0xff;

/// Two slots in one 16-byte-aligned buffer.
struct Flash {
    words: Vec<u128>,
}

impl Flash {
    fn new() -> Self {
        Self {
            words: vec![u128::MAX; 2 * SLOT / 16],
        }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.words)
    }
    fn slots(&self) -> [&[u8]; 2] {
        let bytes: &[u8] = bytemuck::cast_slice(&self.words);
        let (a, b) = bytes.split_at(SLOT);
        [a, b]
    }
    /// Programs `slot` the OTA way, record last (or first, `record_first`), stopping after `written` bytes;
    /// the byte it stops on is left as `torn` would make it.
    fn program(&mut self, slot: usize, image: &[(usize, Vec<u8>)], written: usize, torn: Torn) {
        let base = slot * SLOT;
        let flash = self.bytes_mut();
        flash[base..base + SLOT].fill(ERASED);
        let mut n = 0;
        for (offset, bytes) in image {
            for (i, &byte) in bytes.iter().enumerate() {
                let at = base + offset + i;
                if n < written {
                    flash[at] = byte;
                } else if n == written {
                    flash[at] = match torn {
                        Torn::Erased => ERASED,
                        Torn::Zero => 0,
                        // NOR programming only clears bits: a half-done byte has some of them cleared.
                        Torn::Half => byte | 0x0f,
                    };
                }
                n += 1;
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Torn {
    Erased,
    Zero,
    Half,
}

/// The write sequence of one update: the blob, then the record that commits it (or the record first).
fn image(sequence: u32, blob: &[u8], record_first: bool) -> Vec<(usize, Vec<u8>)> {
    let record = (0, slot_record(sequence, blob.len() as u32).to_vec());
    let body = (SLOT_RECORD_LEN, blob.to_vec());
    if record_first {
        vec![record, body]
    } else {
        vec![body, record]
    }
}

/// The old model: the first of the test suite's sample models (the fuzz corpus's `00-…` blob).
fn old_blob() -> Vec<u8> {
    let (spec, _) = tinyrnn_conformance::sample_models(42)
        .into_iter()
        .next()
        .unwrap();
    tinyrnn_converter::write::to_blob(&spec).unwrap()
}

fn id(blob: &[u8]) -> u32 {
    Model::open(AlignedBlob::new(blob).bytes()).unwrap().id()
}

#[test]
fn an_update_interrupted_at_any_byte_leaves_a_working_model() {
    // The old model: a test-suite sample; the new one: the firmware's trained KPI forecaster.
    let old = old_blob();
    let new = std::fs::read("../firmware/models/kpi_forecaster.trnn").unwrap();
    let (old_id, new_id) = (id(&old), id(&new));
    assert_ne!(old_id, new_id);
    let mut tried = 0;
    for record_first in [false, true] {
        for (running, target) in [(0usize, 1usize), (1, 0)] {
            let update = image(8, &new, record_first);
            let total: usize = update.iter().map(|(_, b)| b.len()).sum();
            let mut done = Flash::new();
            done.program(target, &update, usize::MAX, Torn::Erased);
            for written in 0..=total {
                for torn in [Torn::Erased, Torn::Zero, Torn::Half] {
                    let mut flash = Flash::new();
                    flash.program(running, &image(7, &old, false), usize::MAX, Torn::Erased);
                    flash.program(target, &update, written, torn);
                    let booted = boot(flash.slots()).unwrap_or_else(|e| {
                        panic!("no model after {written} of {total} bytes ({torn:?}): {e}")
                    });
                    // Complete when every byte landed (a torn last byte may happen to be right).
                    let complete = flash.slots()[target] == done.slots()[target];
                    assert_eq!(
                        complete,
                        written == total || written + 1 == total && complete
                    );
                    let expected = if complete { new_id } else { old_id };
                    assert_eq!(
                        booted.model.id(),
                        expected,
                        "{written} of {total} bytes, {torn:?}, record first: {record_first}"
                    );
                    assert_eq!(booted.slot, if complete { target } else { running });
                    tried += 1;
                }
            }
        }
    }
    eprintln!("{tried} interrupted updates, each booted a working model");
    assert!(tried > 2000);
}

#[test]
fn a_newer_slot_that_does_not_open_falls_back_and_empty_flash_is_an_error() {
    let old = old_blob();
    let mut damaged = std::fs::read("../firmware/models/kpi_forecaster.trnn").unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    let mut flash = Flash::new();
    flash.program(0, &image(1, &old, false), usize::MAX, Torn::Erased);
    // A complete record over a damaged blob, and a higher sequence: still the old model.
    flash.program(1, &image(2, &damaged, false), usize::MAX, Torn::Erased);
    let booted = boot(flash.slots()).unwrap();
    assert_eq!((booted.slot, booted.sequence), (0, 1));
    assert_eq!(
        boot(Flash::new().slots()).err(),
        Some(Error::NoBootableSlot)
    );
}
