//! The Keras 3 `.keras` importer (a zip holding `config.json` and `model.weights.h5`) on arbitrary bytes:
//! errors, never a panic, a hang or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tinyrnn_converter::import::keras::import_keras_zip(std::path::Path::new("fuzz.keras"), data);
});
