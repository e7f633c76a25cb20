//! Writes the blobs of the test suite's sample models as the fuzzer's seed corpus.
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
    for (index, (spec, _)) in tinyrnn_conformance::sample_models(42).iter().enumerate() {
        let blob = tinyrnn_converter::write::to_blob(spec)?;
        std::fs::write(dir.join(format!("{index:02}-{}.trnn", spec.name)), blob)?;
    }
    println!("wrote the seed corpus to {}", dir.display());
    Ok(())
}
