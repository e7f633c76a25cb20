//! The `.npy` reader (calibration and input arrays) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(array) = tinyrnn_converter::npy::parse(data) {
        // A parsed array never claims more values than the file could hold.
        assert!(array.len() <= data.len());
    }
});
