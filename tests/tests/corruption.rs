//! A damaged blob is always refused with a typed error, never a panic: every truncation, thousands of
//! random bit flips, and the same flips with the checksum repaired so that header and tensor validation
//! are exercised rather than the CRC alone. The sample models are checked in f32, with int8 weights,
//! integer-only (`i8x16`), and (feature models) with raw-unit scalers and names.

use tinyrnn::format::{InputKind, Scaling};
use tinyrnn::format::{CRC, CRC_LEN};
use tinyrnn::{Error, Model, ModelScaler, Runtime, Scaler};
use tinyrnn_conformance::{quantized_sample_models, sample_models, Rng};
use tinyrnn_converter::quantize::Mode;
use tinyrnn_converter::spec::affine_map;
use tinyrnn_converter::{run::AlignedBlob, write::to_blob};

fn blobs() -> Vec<Vec<u8>> {
    let scaled = sample_models(23).into_iter().filter_map(|(mut spec, x)| {
        let InputKind::Features(n) = spec.input.kind else {
            return None;
        };
        let pairs: Vec<(f32, f32)> = (0..n).map(|i| (i as f32 - 1.0, 0.5 + i as f32)).collect();
        spec.scaling = Scaling {
            input: Some(affine_map(&pairs)),
            output: Some(affine_map(&[(3.0, -2.0)])),
        };
        spec.annotations.inputs = (0..n).map(|i| format!("feature {i}")).collect();
        spec.annotations.info = "{\"k\": 1}".into();
        Some((spec, x))
    });
    sample_models(21)
        .into_iter()
        .chain(quantized_sample_models(22, Mode::I8w))
        .chain(scaled)
        .map(|(spec, _)| to_blob(&spec).unwrap())
        .chain(integer_blobs())
        .collect()
}

/// The feature-input sample models in `i8x16`, calibrated on random windows, and the integer reference
/// model.
fn integer_blobs() -> Vec<Vec<u8>> {
    use tinyrnn::format::{InputKind, InputLayout};
    use tinyrnn_converter::npy::Array;
    let mut rng = Rng::new(23);
    let mut out = vec![tinyrnn_conformance::integer_reference_blob()];
    for (spec, _) in sample_models(24) {
        let InputKind::Features(n) = spec.input.kind else {
            continue;
        };
        let (n, steps) = (n as usize, spec.input.steps.map_or(6, |s| s as usize));
        let shape = match spec.io.input {
            InputLayout::BatchFirst => vec![2, steps, n],
            InputLayout::TimeFirst => vec![steps, 2, n],
        };
        let x = Array::float(shape, rng.values(2 * steps * n, 1.0)).unwrap();
        if let Ok(q) = tinyrnn_converter::quantize::quantize_with(&spec, Mode::I8x16, Some(&x)) {
            out.push(to_blob(&q).unwrap());
        }
    }
    assert!(out.len() > 5, "{} integer blobs", out.len());
    out
}

fn open(bytes: &[u8]) -> Result<(), Error> {
    let aligned = AlignedBlob::new(bytes);
    let model = Model::open(aligned.bytes())?;
    // A blob that opens must also run without panicking.
    // A flipped header may declare a long window; running it would only test the allocator.
    let steps = model.input().steps.map_or(4, |s| s as usize).min(64);
    let scaler = ModelScaler::of(&model);
    let _ = (scaler.scale_input(0, 1.0), scaler.unscale_output(7, 1.0));
    let _ = model.meta().input_names().count();
    let memory = model.window_memory(steps)?;
    let mut buffer = vec![0.0; memory.total()];
    let mut runtime = Runtime::new(&model, &mut buffer)?;
    let mut out = vec![0.0; model.output_len(steps)?];
    match model.input().kind {
        tinyrnn::format::InputKind::Tokens => {
            runtime.run_window_tokens(&vec![0; steps], &mut out)?
        }
        _ => runtime.run_window(&vec![0.25; steps * model.input_width()], &mut out)?,
    };
    if model.is_integer() {
        let mut out = vec![0i16; model.output_len(steps)?];
        match model.input().kind {
            tinyrnn::format::InputKind::Tokens => {
                runtime.run_window_tokens_i16(&vec![0; steps], &mut out)?
            }
            _ => runtime.run_window_i16(&vec![i16::MAX; steps * model.input_width()], &mut out)?,
        };
    }
    Ok(())
}

fn repair_crc(bytes: &mut [u8]) {
    let n = bytes.len() - CRC_LEN;
    let crc = CRC.checksum(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn every_truncation_is_refused() {
    let mut checked = 0;
    for blob in blobs() {
        assert_eq!(open(&blob), Ok(()));
        for len in 0..blob.len() {
            let err = open(&blob[..len]).expect_err("a truncated blob opened");
            assert!(
                matches!(
                    err,
                    Error::Truncated { .. } | Error::Checksum { .. } | Error::BadMagic
                ),
                "length {len}: {err:?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 10_000, "{checked}");
}

#[test]
fn random_bit_flips_are_refused_by_the_checksum() {
    let mut rng = Rng::new(99);
    for blob in blobs() {
        for _ in 0..200 {
            let mut damaged = blob.clone();
            let bit = rng.below(damaged.len() * 8);
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(open(&damaged).is_err(), "flip of bit {bit} went unnoticed");
        }
    }
}

#[test]
fn bit_flips_behind_a_repaired_checksum_never_panic() {
    let mut rng = Rng::new(1234);
    let mut refused = 0;
    let mut total = 0;
    for blob in blobs() {
        // Flips in the preamble and header: the part the validator must defend.
        let header_end = 16 + u32::from_le_bytes(blob[8..12].try_into().unwrap()) as usize;
        for round in 0..400 {
            let mut damaged = blob.clone();
            let flips = 1 + round % 3;
            for _ in 0..flips {
                let bit = rng.below(header_end * 8);
                damaged[bit / 8] ^= 1 << (bit % 8);
            }
            repair_crc(&mut damaged);
            total += 1;
            if open(&damaged).is_err() {
                refused += 1;
            }
        }
    }
    // Most header flips must be caught; the rest change a value that is still valid (a dimension that
    // still fits, a different activation) and run without panicking.
    assert!(refused * 2 > total, "only {refused} of {total} refused");
}

#[test]
fn misaligned_blobs_are_refused() {
    let blob = &blobs()[0];
    let mut shifted = vec![0u8; blob.len() + 1];
    shifted[1..].copy_from_slice(blob);
    // The AlignedBlob copy puts byte 0 on a 16-byte boundary, so offset 1 is misaligned.
    let holder = AlignedBlob::new(&shifted);
    assert_eq!(
        Model::open(&holder.bytes()[1..]).err(),
        Some(Error::Misaligned)
    );
}

#[test]
fn wrong_magic_and_version_are_named() {
    let mut blob = blobs()[0].clone();
    blob[0] = b'X';
    assert_eq!(open(&blob), Err(Error::BadMagic));
    let mut blob = blobs()[0].clone();
    blob[4] = 9;
    assert_eq!(open(&blob), Err(Error::UnsupportedVersion { found: 9 }));
}
