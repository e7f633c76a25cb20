//! Writes the engine fuzz targets' seed corpora: the blobs of the test suite's sample models, in f32 and
//! with int8 weights (`open_blob`); the same blobs followed by inputs, NaN, infinities and huge values
//! among them (`open_and_step`); and real saved states of the models `restore_state` runs
//! (`restore_state`). `fuzz/seed-corpus.sh` runs this and copies the importers' seeds.
//!
//! `cargo run -p tinyrnn-conformance --example fuzz_corpus -- fuzz/corpus`

use std::path::{Path, PathBuf};

use tinyrnn::{Forecaster, Mode, Model};

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let dir = |name: &str| -> anyhow::Result<PathBuf> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    };
    let (blobs, steps, states) = (
        dir("open_blob")?,
        dir("open_and_step")?,
        dir("restore_state")?,
    );
    let models = tinyrnn_conformance::sample_models(42).into_iter().chain(
        tinyrnn_conformance::quantized_sample_models(43, tinyrnn_converter::quantize::Mode::I8w),
    );
    let inputs: Vec<f32> = [
        0.5,
        -1.0,
        2.0,
        f32::NAN,
        1e30,
        -f32::INFINITY,
        1e-40,
        0.0,
        3.0,
    ]
    .into_iter()
    .cycle()
    .take(48)
    .collect();
    for (index, (spec, _)) in models.enumerate() {
        let blob = tinyrnn_converter::write::to_blob(&spec)?;
        let name = spec.name.replace(' ', "-");
        std::fs::write(blobs.join(format!("{index:02}-{name}.trnn")), &blob)?;
        let mut seed = (blob.len() as u16).to_le_bytes().to_vec();
        seed.extend_from_slice(&blob);
        inputs
            .iter()
            .for_each(|v| seed.extend_from_slice(&v.to_le_bytes()));
        std::fs::write(steps.join(format!("{index:02}-{name}")), seed)?;
    }
    // Saved states of the three streams `restore_state` runs (its first byte picks the stream).
    let kpi = std::fs::read("firmware/models/kpi_forecaster.trnn")?;
    let stacked = std::fs::read(blobs.join("00-stacked-0.trnn"))?;
    let stacked_i8w = std::fs::read(blobs.join("37-stacked-0-i8w.trnn"))?;
    for (which, blob) in [kpi, stacked, stacked_i8w].iter().enumerate() {
        for pushes in [0, 2, 9] {
            let state = saved_state(blob, pushes)?;
            let mut seed = vec![which as u8];
            seed.extend_from_slice(&state);
            write(&states, &format!("{which}-after-{pushes}"), &seed)?;
        }
    }
    println!("wrote the engine seed corpora under {}", root.display());
    Ok(())
}

/// The state bytes of a forecaster of `blob` after `pushes` samples.
fn saved_state(blob: &[u8], pushes: usize) -> anyhow::Result<Vec<u8>> {
    let blob = tinyrnn_converter::run::AlignedBlob::new(blob);
    let model = Model::open(blob.bytes()).map_err(anyhow::Error::msg)?;
    let mode = Mode::of(&model).map_err(anyhow::Error::msg)?;
    let words = Forecaster::<64>::memory_words(&model, mode).map_err(anyhow::Error::msg)?;
    let mut memory = vec![0.0f32; words];
    let mut stream = Forecaster::<64>::new(&model, &mut memory).map_err(anyhow::Error::msg)?;
    for k in 0..pushes {
        let sample: Vec<f32> = (0..model.input_width())
            .map(|f| (k + f) as f32 / 4.0)
            .collect();
        stream.push(&sample).map_err(anyhow::Error::msg)?;
    }
    let mut state = vec![0u8; stream.state_len()];
    stream.save_state(&mut state).map_err(anyhow::Error::msg)?;
    Ok(state)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}
