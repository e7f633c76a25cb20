//! Writes the blobs of the test suite's sample models, in f32 and with int8 weights, as the fuzzer's seed
//! corpus.
//!
//! `cargo run -p tinyrnn-conformance --example fuzz_corpus -- fuzz/corpus/open_blob`

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus/open_blob".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let models = tinyrnn_conformance::sample_models(42).into_iter().chain(
        tinyrnn_conformance::quantized_sample_models(43, tinyrnn_converter::quantize::Mode::I8w),
    );
    for (index, (spec, _)) in models.enumerate() {
        let blob = tinyrnn_converter::write::to_blob(&spec)?;
        let name = spec.name.replace(' ', "-");
        std::fs::write(dir.join(format!("{index:02}-{name}.trnn")), blob)?;
    }
    println!("wrote the seed corpus to {}", dir.display());
    Ok(())
}
