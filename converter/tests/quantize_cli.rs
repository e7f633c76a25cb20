//! `tinyrnn quantize`, `import --quantize` and `inspect` on a quantized model, through the CLI.

mod common;

use std::path::{Path, PathBuf};

use common::{printed, tinyrnn};

fn fixture(name: &str) -> PathBuf {
    common::repo("tests/fixtures/keras").join(name)
}

#[test]
fn quantize_reports_error_sizes_and_refuses_to_quantize_twice() {
    let dir = std::env::temp_dir().join(format!("tinyrnn-quantize-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (f32_blob, i8w_blob, imported) = (
        dir.join("f32.trnn"),
        dir.join("i8w.trnn"),
        dir.join("imported.trnn"),
    );
    let model = fixture("lstm_stacked.keras");
    let input = fixture("lstm_stacked.input.npy");

    let o = tinyrnn(&[
        "import".as_ref(),
        model.as_os_str(),
        "-o".as_ref(),
        f32_blob.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", printed(&o));

    let o = tinyrnn(&[
        "quantize".as_ref(),
        f32_blob.as_os_str(),
        "--mode".as_ref(),
        "i8w".as_ref(),
        "--calibrate".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        i8w_blob.as_os_str(),
    ]);
    let out = printed(&o);
    assert!(o.status.success(), "{out}");
    for wanted in [
        "numeric mode       i8w",
        "error of i8w against f32",
        "max |err|",
        "\nf32 ",
        "\ni8w ",
    ] {
        assert!(out.contains(wanted), "lacks {wanted:?}:\n{out}");
    }

    // The quantized blob runs, and quantizing it again is refused with a clear message.
    let o = tinyrnn(&[
        "run".as_ref(),
        i8w_blob.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", printed(&o));
    let o = tinyrnn(&[
        "quantize".as_ref(),
        i8w_blob.as_os_str(),
        "--mode".as_ref(),
        "i8w".as_ref(),
        "-o".as_ref(),
        dir.join("again.trnn").as_os_str(),
    ]);
    assert!(!o.status.success());
    assert!(printed(&o).contains("already quantized"), "{}", printed(&o));

    // Without data, quantize says what to pass.
    let o = tinyrnn(&[
        "import".as_ref(),
        model.as_os_str(),
        "--quantize".as_ref(),
        "i8w".as_ref(),
        "-o".as_ref(),
        imported.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", printed(&o));
    assert!(
        printed(&o).contains("pass --calibrate X.npy"),
        "{}",
        printed(&o)
    );
    // Importing with --quantize (and the same data) gives the same blob as importing, then quantizing.
    let o = tinyrnn(&[
        "import".as_ref(),
        model.as_os_str(),
        "--quantize".as_ref(),
        "i8w".as_ref(),
        "--calibrate".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        imported.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", printed(&o));
    assert_eq!(
        std::fs::read(&imported).unwrap(),
        std::fs::read(&i8w_blob).unwrap()
    );

    // inspect of the f32 blob shows both modes and, with data, the error.
    let o = tinyrnn(&[
        "inspect".as_ref(),
        f32_blob.as_os_str(),
        "--data".as_ref(),
        input.as_os_str(),
    ]);
    let out = printed(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("\ni8w ") && out.contains("error of i8w against f32"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn i8x16_calibrates_from_npy_or_csv_and_says_what_to_pass_without_data() {
    let dir = std::env::temp_dir().join(format!("tinyrnn-i8x16-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (f32_blob, int_blob, csv) = (
        dir.join("f32.trnn"),
        dir.join("i8x16.trnn"),
        dir.join("calibration.csv"),
    );
    let model = fixture("lstm_stacked.keras");

    // Without data: refused, naming the option and both file kinds.
    let o = tinyrnn(&[
        "import".as_ref(),
        model.as_os_str(),
        "--quantize".as_ref(),
        "i8x16".as_ref(),
        "-o".as_ref(),
        int_blob.as_os_str(),
    ]);
    assert!(!o.status.success());
    assert!(
        printed(&o).contains("--calibrate X.npy|X.csv"),
        "{}",
        printed(&o)
    );

    // From .npy, through import.
    let input = fixture("lstm_stacked.input.npy");
    let o = tinyrnn(&[
        "import".as_ref(),
        model.as_os_str(),
        "--quantize".as_ref(),
        "i8x16".as_ref(),
        "--calibrate".as_ref(),
        input.as_os_str(),
        "-o".as_ref(),
        int_blob.as_os_str(),
    ]);
    let out = printed(&o);
    assert!(o.status.success(), "{out}");
    for wanted in [
        "numeric mode       i8x16",
        "fixed point        input Q.",
        "error of i8x16 against f32",
        "\ni8w ",
        "\ni8x16 ",
    ] {
        assert!(out.contains(wanted), "lacks {wanted:?}:\n{out}");
    }
    let o = tinyrnn(&[
        "run".as_ref(),
        int_blob.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", printed(&o));

    // From a CSV (header, one column per feature), through quantize; a bad cell is named.
    let o = tinyrnn(&[
        "import".as_ref(),
        model.as_os_str(),
        "-o".as_ref(),
        f32_blob.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", printed(&o));
    let mut rows = String::from("a,b,c\n");
    for t in 0..40 {
        rows.push_str(&format!(
            "{},{},{}\n",
            t as f32 / 40.0,
            -0.5,
            (t % 7) as f32 / 7.0
        ));
    }
    std::fs::write(&csv, &rows).unwrap();
    let quantize = |csv: &Path| {
        tinyrnn(&[
            "quantize".as_ref(),
            f32_blob.as_os_str(),
            "--mode".as_ref(),
            "i8x16".as_ref(),
            "--calibrate".as_ref(),
            csv.as_os_str(),
            "-o".as_ref(),
            int_blob.as_os_str(),
        ])
    };
    let o = quantize(&csv);
    assert!(o.status.success(), "{}", printed(&o));
    assert!(printed(&o).contains("error of i8x16 against f32 on the held-out windows"));
    std::fs::write(&csv, "a,b,c\n1,2,3\n4,oops,6\n").unwrap();
    let o = quantize(&csv);
    assert!(!o.status.success());
    assert!(
        printed(&o).contains("row 3, column 2 ('oops')"),
        "{}",
        printed(&o)
    );
    std::fs::remove_dir_all(&dir).ok();
}
