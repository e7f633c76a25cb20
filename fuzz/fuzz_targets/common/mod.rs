//! Helpers shared by the fuzz targets.
#![allow(dead_code)]

use tinyrnn::format::{CRC, CRC_LEN};

/// Bytes copied to a 16-byte-aligned buffer: the engine reads tensors in place and needs an aligned blob.
pub struct AlignedBytes {
    words: Vec<u128>,
    len: usize,
}

impl AlignedBytes {
    pub fn new(data: &[u8]) -> Self {
        let mut words = vec![0u128; data.len().div_ceil(16).max(1)];
        as_bytes_mut(&mut words)[..data.len()].copy_from_slice(data);
        Self {
            words,
            len: data.len(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &as_bytes(&self.words)[..self.len]
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut as_bytes_mut(&mut self.words)[..len]
    }

    /// Rewrites the closing CRC-32 so that the checksum passes and the fuzzer reaches what is behind it.
    pub fn repair_crc(&mut self) {
        repair_crc(self.bytes_mut());
    }
}

/// Rewrites the last four bytes as the CRC-32 of the bytes before them (blobs and saved states both end so).
pub fn repair_crc(bytes: &mut [u8]) {
    if bytes.len() >= CRC_LEN {
        let n = bytes.len() - CRC_LEN;
        let crc = CRC.checksum(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
    }
}

fn as_bytes(words: &[u128]) -> &[u8] {
    // SAFETY: u8 has no alignment or validity requirements and the view covers exactly the words' bytes.
    unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 16) }
}

fn as_bytes_mut(words: &mut [u128]) -> &mut [u8] {
    // SAFETY: as above, borrowed mutably for the view's lifetime.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 16) }
}

/// `f32`s from raw bytes, four at a time (any bit pattern: NaN, infinities, subnormals included).
pub fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
