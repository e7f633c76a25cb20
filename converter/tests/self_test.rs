//! The self-test vector: every imported fixture gets one that passes on the host; a damaged expected
//! output fails at the value that was changed; a vector that does not fit the model is refused at open.

use std::path::{Path, PathBuf};

use tinyrnn::format::{Header, CRC, CRC_LEN, PREAMBLE_LEN};
use tinyrnn::{Error, SelfTestOutcome};
use tinyrnn_converter::run::AlignedBlob;
use tinyrnn_converter::{import, write};

fn keras(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/keras/{name}.keras"))
}

fn blob_with_self_test(name: &str) -> Vec<u8> {
    let spec = import::import(&keras(name)).expect("import");
    write::to_blob_with_self_test(&spec).expect("blob with self-test")
}

fn run_self_test(blob: &[u8]) -> Result<SelfTestOutcome, Error> {
    let aligned = AlignedBlob::new(blob);
    let model = tinyrnn::Model::open(aligned.bytes())?;
    let mut memory = vec![0.0; model.self_test_memory()];
    model.self_test(&mut memory)
}

/// Re-encodes a blob after `edit` has changed its header, keeping the data section, and re-closes it.
fn rewrite_header(blob: &[u8], edit: impl FnOnce(&mut Header<'_>)) -> Vec<u8> {
    let header_len = u32::from_le_bytes(blob[8..12].try_into().unwrap()) as usize;
    let data_offset = u32::from_le_bytes(blob[12..16].try_into().unwrap()) as usize;
    let (mut header, _) =
        postcard::take_from_bytes::<Header<'_>>(&blob[PREAMBLE_LEN..PREAMBLE_LEN + header_len])
            .unwrap();
    edit(&mut header);
    let header_bytes = postcard::to_allocvec(&header).unwrap();
    let new_offset = (PREAMBLE_LEN + header_bytes.len()).div_ceil(16) * 16;
    let mut out = blob[..8].to_vec();
    out.extend_from_slice(&(header_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&(new_offset as u32).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    out.resize(new_offset, 0);
    out.extend_from_slice(&blob[data_offset..blob.len() - CRC_LEN]);
    let crc = CRC.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[test]
fn feature_and_token_models_get_a_passing_self_test() {
    for name in [
        "seed_kpi",
        "bidir_gru_sum_last",
        "embedding_gru",
        "embedding_lstm",
        "crop_both_ends",
        "lstm_stacked",
    ] {
        let path = keras(name);
        if !path.exists() {
            panic!("fixture {} is missing", path.display());
        }
        let blob = blob_with_self_test(name);
        match run_self_test(&blob) {
            Ok(SelfTestOutcome::Passed { max_error }) => assert_eq!(max_error, 0.0, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn writing_twice_gives_the_same_bytes() {
    assert_eq!(
        blob_with_self_test("bidir_gru_sum_last"),
        blob_with_self_test("bidir_gru_sum_last")
    );
}

#[test]
fn a_changed_expected_value_fails_at_its_index() {
    let blob = blob_with_self_test("bidir_gru_sum_last");
    let aligned = AlignedBlob::new(&blob);
    let model = tinyrnn::Model::open(aligned.bytes()).unwrap();
    let vector = model.self_test_vector().expect("a self-test vector");
    let tinyrnn::cell::Values::F32(expected) = vector.output.values else {
        panic!("f32 output expected");
    };
    let index = expected.len() - 1;
    let original = expected[index];
    // Find the expected value's bytes in the blob: the output tensor is the last one written.
    let data_offset = u32::from_le_bytes(blob[12..16].try_into().unwrap()) as usize;
    let header_len = u32::from_le_bytes(blob[8..12].try_into().unwrap()) as usize;
    let (header, _) =
        postcard::take_from_bytes::<Header<'_>>(&blob[PREAMBLE_LEN..PREAMBLE_LEN + header_len])
            .unwrap();
    let at = data_offset + header.selftest.unwrap().output.offset as usize + 4 * index;
    let changed = original + 10.0 * vector.tolerance.max(1e-3);
    let mut damaged = blob.clone();
    damaged[at..at + 4].copy_from_slice(&changed.to_le_bytes());
    let end = damaged.len() - CRC_LEN;
    let crc = CRC.checksum(&damaged[..end]);
    damaged[end..].copy_from_slice(&crc.to_le_bytes());
    match run_self_test(&damaged) {
        Ok(SelfTestOutcome::Failed {
            index: failed,
            expected,
            actual,
        }) => {
            assert_eq!(failed, index);
            assert_eq!(expected, changed);
            assert_eq!(actual, original);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn a_vector_that_does_not_fit_the_model_is_refused_at_open() {
    let blob = blob_with_self_test("bidir_gru_sum_last");
    type Edit = fn(&mut Header<'_>);
    let edits: [(&str, Edit); 5] = [
        ("output one value short", |h| {
            h.selftest.as_mut().unwrap().output.rows -= 1
        }),
        ("input width off by one", |h| {
            h.selftest.as_mut().unwrap().input.cols += 1
        }),
        ("input outside the data section", |h| {
            h.selftest.as_mut().unwrap().input.offset = 1 << 20
        }),
        ("negative tolerance", |h| {
            h.selftest.as_mut().unwrap().tolerance = -1.0
        }),
        ("NaN tolerance", |h| {
            h.selftest.as_mut().unwrap().tolerance = f32::NAN
        }),
    ];
    for (what, edit) in edits {
        let damaged = rewrite_header(&blob, edit);
        let aligned = AlignedBlob::new(&damaged);
        assert_eq!(
            tinyrnn::Model::open(aligned.bytes()).err(),
            Some(Error::BadSelfTest),
            "{what}"
        );
    }
}

#[test]
fn a_token_id_outside_the_vocabulary_is_refused_at_open() {
    let blob = blob_with_self_test("embedding_gru");
    let aligned = AlignedBlob::new(&blob);
    let model = tinyrnn::Model::open(aligned.bytes()).unwrap();
    let vocab = match model.layers().next() {
        Some(tinyrnn::format::Layer::Embedding(e)) => e.table.rows,
        _ => panic!("an embedding first"),
    };
    let header_len = u32::from_le_bytes(blob[8..12].try_into().unwrap()) as usize;
    let data_offset = u32::from_le_bytes(blob[12..16].try_into().unwrap()) as usize;
    let (header, _) =
        postcard::take_from_bytes::<Header<'_>>(&blob[PREAMBLE_LEN..PREAMBLE_LEN + header_len])
            .unwrap();
    let at = data_offset + header.selftest.unwrap().input.offset as usize;
    for bad in [vocab as f32, -1.0, 0.5] {
        let mut damaged = blob.clone();
        damaged[at..at + 4].copy_from_slice(&bad.to_le_bytes());
        let end = damaged.len() - CRC_LEN;
        let crc = CRC.checksum(&damaged[..end]);
        damaged[end..].copy_from_slice(&crc.to_le_bytes());
        let aligned = AlignedBlob::new(&damaged);
        assert_eq!(
            tinyrnn::Model::open(aligned.bytes()).err(),
            Some(Error::BadSelfTest),
            "token id {bad}"
        );
    }
}

#[test]
fn a_too_small_buffer_is_an_error_not_a_panic() {
    let blob = blob_with_self_test("seed_kpi");
    let aligned = AlignedBlob::new(&blob);
    let model = tinyrnn::Model::open(aligned.bytes()).unwrap();
    let mut memory = vec![0.0; model.self_test_memory() - 1];
    assert!(matches!(
        model.self_test(&mut memory),
        Err(Error::BufferTooSmall { .. })
    ));
}
