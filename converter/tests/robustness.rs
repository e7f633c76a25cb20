//! Truncated and hostile model files give clear errors: never a panic, a hang or a huge allocation (a hang
//! would keep the test from finishing; the 600 MiB zip bomb would take seconds and the memory to inflate
//! were it not capped). The hostile ONNX and `.h5` files are written by `tests/fixtures/gen_malicious.py`;
//! zips and `.npy` files are built here.

use std::io::Write;
use std::path::{Path, PathBuf};

use tinyrnn_converter::import::{keras, onnx};
use tinyrnn_converter::npy;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// The error chain as one line, for matching.
fn message(result: anyhow::Result<impl std::fmt::Debug>) -> String {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => format!("{error:#}"),
    }
}

fn zip_with(members: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer = zip::ZipWriter::new(&mut out);
    for (name, bytes) in members {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(method)
            .large_file(bytes.len() > u32::MAX as usize);
        writer.start_file(*name, options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap();
    out.into_inner()
}

#[test]
fn keras_zip_bomb_is_refused_without_inflating_it() {
    // 600 MiB of zeros deflate to well under a megabyte; the importer caps what it inflates at 512 MiB.
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(false);
    writer.start_file("config.json", options).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..600 {
        writer.write_all(&zeros).unwrap();
    }
    writer.finish().unwrap();
    let bomb = out.into_inner();
    assert!(bomb.len() < 4 << 20, "{}", bomb.len());
    let error = message(keras::import_keras_zip(Path::new("bomb.keras"), &bomb));
    assert!(
        error.contains("config.json in the archive is larger than"),
        "{error}"
    );
    assert!(error.contains("bomb.keras"), "{error}");
}

#[test]
fn keras_archives_with_hostile_members_are_refused() {
    let deep = "[".repeat(100_000);
    let huge_string = format!("{{\"class_name\": \"{}\"}}", "x".repeat(50 << 20));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not a zip",
            b"PK\x03\x04 nothing else".to_vec(),
            "not a readable zip",
        ),
        (
            "no config",
            zip_with(&[("a.txt", b"hi")], zip::CompressionMethod::Stored),
            "no config.json",
        ),
        (
            "deep JSON",
            zip_with(
                &[("config.json", deep.as_bytes())],
                zip::CompressionMethod::Deflated,
            ),
            "config.json is not valid JSON",
        ),
        (
            "huge JSON",
            zip_with(
                &[("config.json", huge_string.as_bytes())],
                zip::CompressionMethod::Deflated,
            ),
            "",
        ),
        (
            "no weights",
            zip_with(&[("config.json", b"{}")], zip::CompressionMethod::Stored),
            "",
        ),
    ];
    for (what, bytes, expected) in cases {
        let error = message(keras::import_keras_zip(Path::new("m.keras"), &bytes));
        assert!(error.contains(expected), "{what}: {error}");
        assert!(error.starts_with("m.keras: "), "{what}: {error}");
    }
}

type Importer = fn(&Path, &[u8]) -> anyhow::Result<tinyrnn_converter::spec::ModelSpec>;

#[test]
fn every_truncation_of_a_keras_archive_and_h5_file_is_an_error() {
    let importers: [(&str, Importer); 2] = [
        ("keras/lstm_cell_rnn_seq.keras", keras::import_keras_zip),
        ("keras/dense_on_sequence.h5", keras::import_keras_h5),
    ];
    for (file, import) in importers {
        let path = fixtures().join(file);
        let bytes = std::fs::read(&path).unwrap();
        import(&path, &bytes).unwrap();
        let step = (bytes.len() / 200).max(1);
        for n in (0..bytes.len()).step_by(step) {
            assert!(import(&path, &bytes[..n]).is_err(), "{file} cut at {n}");
        }
    }
}

#[test]
fn h5_files_declaring_huge_datasets_are_refused() {
    for (name, expected) in [
        ("h5_huge_dataset.h5", "must be between 1 and 4096"),
        ("h5_dataset_larger_than_declared_layer.h5", "has shape"),
    ] {
        let path = fixtures().join("malicious").join(name);
        let bytes = std::fs::read(&path).unwrap();
        let error = message(keras::import_keras_h5(&path, &bytes));
        assert!(error.contains(expected), "{name}: {error}");
    }
}

#[test]
fn hostile_onnx_graphs_are_refused() {
    for (name, expected) in [
        (
            "onnx_cyclic.onnx",
            "the graph has a cycle through node 'a' (Add), node 'b'",
        ),
        (
            "onnx_self_loop.onnx",
            "the graph has a cycle through node 'self' (Relu)",
        ),
        (
            "onnx_huge_dims.onnx",
            "is too large (at most 67108864 elements)",
        ),
        ("onnx_overflowing_dims.onnx", "is too large"),
        ("onnx_mismatched_shapes.onnx", "needs [1, 4·hidden, hidden]"),
        (
            "onnx_short_raw_data.onnx",
            "needs 48 values, the file has 10",
        ),
    ] {
        let path = fixtures().join("malicious").join(name);
        let bytes = std::fs::read(&path).unwrap();
        let error = message(onnx::import_onnx(&path, &bytes));
        assert!(
            error.contains(expected) && error.contains(name),
            "{name}: {error}"
        );
    }
}

/// An `.npy` header followed by `data`.
fn npy_with(header: &str, data: &[u8]) -> Vec<u8> {
    let mut header = header.to_string();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn npy_files_declaring_more_than_they_hold_are_refused() {
    let cases = [
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }",
            "overflows",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 64), }",
            "truncated",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }",
            "truncated",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, -4), }",
            "",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4",
            "",
        ),
        (
            "{'descr': '<f99999999999999999999', 'fortran_order': False, 'shape': (3,), }",
            "",
        ),
    ];
    for (header, expected) in cases {
        let bytes = npy_with(header, &[0u8; 16]);
        let error = message(npy::parse(&bytes));
        assert!(error.contains(expected), "{header}: {error}");
    }
    let good = npy::encode_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    npy::parse(&good).unwrap();
    for n in 0..good.len() {
        assert!(npy::parse(&good[..n]).is_err(), "cut at {n}");
    }
}
