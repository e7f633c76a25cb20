//! The ONNX importer (protobuf `ModelProto`) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tinyrnn_converter::import::onnx::import_onnx(std::path::Path::new("fuzz.onnx"), data);
});
