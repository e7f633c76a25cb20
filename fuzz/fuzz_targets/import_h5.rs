//! The legacy Keras `.h5` importer (HDF5 with a `model_config` attribute) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tinyrnn_converter::import::keras::import_keras_h5(std::path::Path::new("fuzz.h5"), data);
});
