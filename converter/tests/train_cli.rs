//! `tinyrnn train`, `eval` and `run --csv` through the command line, on the bundled KPI CSV.

mod common;

use std::path::{Path, PathBuf};

use common::{eval_mse, kpi_csv, tinyrnn, train_kpis};

use tinyrnn::{Forecaster, Mode, Runtime};
use tinyrnn_converter::run::AlignedBlob;
use tinyrnn_converter::spec::{ModelSpec, Tensor};
use tinyrnn_converter::train::Table;
use tinyrnn_converter::trainer::TrainInfo;

fn scratch(name: &str) -> PathBuf {
    common::scratch("train-cli", name)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A short training run of the seed's KPI setup (3 KPIs with physical ranges, window 5 → 2 steps of
/// 2 KPIs) writing into `dir`; returns the blob path and train's stdout.
fn train_kpi(dir: &Path, head: &str) -> (PathBuf, String) {
    let blob = dir.join("kpi.trnn");
    let stdout = train_kpis(
        "CQI,DL_PRB_USAGE_RATE",
        &[
            "--window",
            "5",
            "--horizon",
            "2",
            "--range",
            "CQI=0:15",
            "--range",
            "UE_TX_POWER=-17:23",
            "--range",
            "DL_PRB_USAGE_RATE=0:100",
            "--cell",
            "gru",
            "--hidden",
            "4",
            "--head",
            head,
            "--epochs",
            "3",
            "--seed",
            "1",
            "-o",
            blob.to_str().unwrap(),
            "--plots",
            dir.to_str().unwrap(),
        ],
    );
    (blob, stdout)
}

/// The metric rows of the `test` block of train's summary: `target MSE MAE MSE MAE` text.
fn printed_test_rows(stdout: &str) -> Vec<String> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first() {
            Some(&"test") => inside = true,
            Some(&"persist.") => inside = false,
            Some(&"val") | Some(&"train") => inside = false,
            _ => {}
        }
        if inside {
            let f = if fields[0] == "test" {
                &fields[1..]
            } else {
                &fields[..]
            };
            rows.push(f.join(" "));
        }
    }
    rows
}

#[test]
fn eval_reproduces_the_printed_test_metrics_and_plots_are_written() {
    let dir = scratch("eval");
    let (blob, stdout) = train_kpi(&dir, "dense");
    let printed = printed_test_rows(&stdout);
    assert_eq!(
        printed.len(),
        3,
        "CQI, DL_PRB_USAGE_RATE and all:\n{stdout}"
    );

    let csv = kpi_csv();
    let out = tinyrnn(&[
        "eval",
        blob.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    let eval_out = text(&out.stdout);
    assert!(
        out.status.success(),
        "eval failed: {}{eval_out}",
        text(&out.stderr)
    );
    let recomputed: Vec<String> = eval_out
        .lines()
        .filter(|l| l.ends_with("identical"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[..5].join(" ")
        })
        .collect();
    assert_eq!(recomputed, printed, "{eval_out}");

    // The stored record holds the same numbers and the settings eval used.
    let bytes = std::fs::read(&blob).unwrap();
    let aligned = AlignedBlob::new(&bytes);
    let model = aligned.open().unwrap();
    let info = TrainInfo::parse(model.meta().info).expect("a training record");
    assert_eq!(info.settings.window, 5);
    assert_eq!(info.settings.targets, ["CQI", "DL_PRB_USAGE_RATE"]);
    assert_eq!(info.outcome.test.normalized.len(), 3);
    assert!(info.outcome.epochs_run >= 1 && info.outcome.best_epoch >= 1);

    for plot in ["kpi-loss.png", "kpi-forecast.png"] {
        let png = std::fs::read(dir.join(plot)).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{plot}");
        assert!(stdout.contains(plot), "train names {plot} in its output");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Raw samples through `Forecaster::new` (the blob's scalers) equal the model's own output on the scaled
/// window, de-scaled by hand; and `run --csv` prints the same values.
#[test]
fn scalers_round_trip_raw_in_raw_out() {
    let dir = scratch("scalers");
    let (blob, _) = train_kpi(&dir, "keep-last");
    let bytes = std::fs::read(&blob).unwrap();
    let aligned = AlignedBlob::new(&bytes);
    let model = aligned.open().unwrap();
    let scaling = model.scaling();
    let (input_map, output_map) = (scaling.input.unwrap(), scaling.output.unwrap());
    assert_eq!(input_map, [0.0, 15.0, -17.0, 40.0, 0.0, 100.0]);
    assert_eq!(output_map, [0.0, 15.0, 0.0, 100.0]);

    let table = Table::read_csv(&kpi_csv(), None).unwrap();
    let row = 1234;
    let raw: Vec<f32> = (row - 4..=row)
        .flat_map(|r| (0..3).map(move |c| (r, c)))
        .map(|(r, c)| table.value(r, c))
        .collect();

    // By hand: scale, run the window in model units, de-scale output k with row k mod 2.
    let scaled: Vec<f32> = raw
        .iter()
        .enumerate()
        .map(|(i, v)| (v - input_map[2 * (i % 3)]) / input_map[2 * (i % 3) + 1])
        .collect();
    let mut memory = vec![0.0f32; model.window_memory(5).unwrap().total()];
    let mut runtime = Runtime::new(&model, &mut memory).unwrap();
    let mut y = vec![0.0f32; model.output_len(5).unwrap()];
    runtime.run_window(&scaled, &mut y).unwrap();
    let expected: Vec<f32> = y
        .iter()
        .enumerate()
        .map(|(k, v)| v * output_map[2 * (k % 2) + 1] + output_map[2 * (k % 2)])
        .collect();
    assert_eq!(expected.len(), 4);

    // The device path: raw samples pushed one by one.
    let mut memory =
        vec![0.0f32; Forecaster::<64>::memory_words(&model, Mode::of(&model).unwrap()).unwrap()];
    let mut forecaster = Forecaster::<64>::new(&model, &mut memory).unwrap();
    let mut got = None;
    for sample in raw.chunks_exact(3) {
        got = forecaster.push(sample).unwrap().map(<[f32]>::to_vec);
    }
    assert_eq!(got.as_deref(), Some(&expected[..]));

    // The CLI path: run --csv prints the forecast made at that row.
    let out_csv = dir.join("forecasts.csv");
    let csv = kpi_csv();
    let out = tinyrnn(&[
        "run",
        blob.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "-o",
        out_csv.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&out_csv).unwrap();
    let mut lines = written.lines();
    assert_eq!(
        lines.next(),
        Some("row,timestamp,CQI+1,DL_PRB_USAGE_RATE+1,CQI+2,DL_PRB_USAGE_RATE+2")
    );
    let line = lines
        .find(|l| l.starts_with(&format!("{row},")))
        .expect("a forecast at the row");
    let values: Vec<f32> = line
        .split(',')
        .skip(2)
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(values, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn train_error(csv_text: &str, inputs: &str, window: &str) -> String {
    let dir = scratch(&format!("bad-{}", csv_text.len()));
    let csv = dir.join("bad.csv");
    std::fs::write(&csv, csv_text).unwrap();
    let out = tinyrnn(&[
        "train",
        "--csv",
        csv.to_str().unwrap(),
        "--inputs",
        inputs,
        "--targets",
        "b",
        "--window",
        window,
        "--horizon",
        "1",
        "--split",
        "4,4,4",
        "-o",
        dir.join("x.trnn").to_str().unwrap(),
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!out.status.success(), "train accepted bad input");
    text(&out.stderr)
}

fn rows(n: usize) -> String {
    let mut s = "time,a,b\n".to_string();
    for i in 0..n {
        s.push_str(&format!("{i},{}.5,{}\n", i, i * 2));
    }
    s
}

#[test]
fn bad_csv_errors_name_the_row_and_column() {
    let mut text = rows(12);
    text = text.replacen("3,3.5,6", "3,3.5,six", 1);
    let err = train_error(&text, "a,b", "2");
    assert!(
        err.contains("bad.csv")
            && err.contains("line 5")
            && err.contains("column 3 ('b')")
            && err.contains("'six' is not a number"),
        "{err}"
    );

    let text = rows(12).replacen("7,7.5,14", "7,NaN,14", 1);
    let err = train_error(&text, "a,b", "2");
    assert!(
        err.contains("line 9")
            && err.contains("column 2 ('a')")
            && err.contains("not a finite number"),
        "{err}"
    );

    let err = train_error(&rows(12), "a,pressure", "2");
    assert!(
        err.contains("no column 'pressure'") && err.contains("available columns: a, b"),
        "{err}"
    );

    // 12 rows split 4,4,4: validation holds 4 + 3 rows, too few for a window of 8 plus 1.
    let err = train_error(&rows(12), "a,b", "8");
    assert!(err.contains("rows") && err.contains("window of 8"), "{err}");

    let err = train_error("time,a,b\n", "a,b", "2");
    assert!(err.contains("no data rows"), "{err}");
}

#[test]
fn bad_flags_are_explained() {
    let csv = kpi_csv();
    let base = [
        "train",
        "--csv",
        csv.to_str().unwrap(),
        "--inputs",
        "CQI",
        "--targets",
        "CQI",
        "--window",
        "5",
        "--horizon",
        "1",
        "-o",
        "x.trnn",
    ];
    let with = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        let out = tinyrnn(&args);
        assert!(!out.status.success());
        text(&out.stderr)
    };
    assert!(with(&["--range", "CQI=15:0"]).contains("MIN < MAX"));
    assert!(
        with(&["--range", "CQI"]).contains("COL=MIN:MAX")
            || with(&["--range", "CQI"]).contains("COLUMN=MIN:MAX")
    );
    assert!(with(&["--split", "0.7,0.2"]).contains("TRAIN,VAL,TEST"));
    assert!(with(&["--split", "0.7,0.2,0.3"]).contains("add up to at most 1"));
    assert!(with(&["--range", "PRESSURE=0:1"]).contains("neither an input nor a target"));
}

#[test]
fn eval_refuses_a_blob_without_a_training_record() {
    let keras = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/kpi/kpi_forecaster.keras");
    let dir = scratch("imported");
    let blob = dir.join("imported.trnn");
    let out = tinyrnn(&[
        "import",
        keras.to_str().unwrap(),
        "-o",
        blob.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = kpi_csv();
    let out = tinyrnn(&[
        "eval",
        blob.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not written by `tinyrnn train`"),
        "{}",
        text(&out.stderr)
    );
    // run --csv needs input names, which an imported blob lacks.
    let out = tinyrnn(&[
        "run",
        blob.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("does not name its 3 input features"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `train --quantize`: the quantized blob is written beside the f32 one, calibrated on the training
/// windows, integer-only for i8x16, and its test MSE stays within the 2 % the integer issue allows.
#[test]
fn train_quantize_writes_a_calibrated_integer_model() {
    let dir = scratch("quantize");
    let (blob, quantized) = train_i8x16(&dir, &["--window", "5"]);
    let bytes = std::fs::read(&quantized).expect("the quantized blob is written");
    let aligned = AlignedBlob::new(&bytes);
    assert!(aligned.open().unwrap().is_integer());
    let csv = kpi_csv();
    let (f32_mse, int_mse) = (eval_mse(&blob, &csv), eval_mse(&quantized, &csv));
    assert!(
        int_mse <= f32_mse * 1.02,
        "i8x16 test MSE {int_mse} against f32 {f32_mse}"
    );
}

/// `train --quantize i8x16` of a GRU(4) on the KPI CSV (2 steps of 2 KPIs ahead) with `extra` flags,
/// into `dir`; returns the f32 blob and the integer one written beside it.
fn train_i8x16(dir: &Path, extra: &[&str]) -> (PathBuf, PathBuf) {
    let blob = dir.join("kpi.trnn");
    let mut args = vec![
        "--horizon",
        "2",
        "--cell",
        "gru",
        "--hidden",
        "4",
        "--epochs",
        "3",
        "--seed",
        "1",
        "--quantize",
        "i8x16",
        "-o",
        blob.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    train_kpis("CQI,DL_PRB_USAGE_RATE", &args);
    (blob.clone(), dir.join("kpi-i8x16.trnn"))
}

/// Window normalisation and the skip path run integer-only too: `--window-norm --skip --quantize i8x16`
/// writes an integer model whose test MSE is within 2 % of the f32 model's.
#[test]
fn train_quantize_i8x16_runs_window_norm_and_skip() {
    let dir = scratch("quantize-window-norm");
    let (blob, quantized) = train_i8x16(&dir, &["--window", "8", "--window-norm", "--skip"]);
    let bytes = std::fs::read(&quantized).expect("the quantized blob is written");
    let aligned = AlignedBlob::new(&bytes);
    let model = aligned.open().unwrap();
    assert!(model.is_integer());
    assert!(model
        .layers()
        .any(|l| matches!(l, tinyrnn::format::Layer::SubtractLast)));
    assert!(model
        .layers()
        .any(|l| matches!(l, tinyrnn::format::Layer::Residual(_))));
    let csv = kpi_csv();
    let (f32_mse, int_mse) = (eval_mse(&blob, &csv), eval_mse(&quantized, &csv));
    println!("window-norm + skip: test MSE f32 {f32_mse}, i8x16 {int_mse}");
    assert!(
        int_mse <= f32_mse * 1.02,
        "i8x16 test MSE {int_mse} against f32 {f32_mse}"
    );
}

/// The quantizer's flags reach `train --quantize` and `import --quantize` as they reach `quantize`:
/// `--no-bias-correction` changes an i8w blob calibrated on data, and a bad `--calibration` rule is
/// refused by name.
#[test]
fn train_and_import_take_the_quantizer_flags() {
    let dir = scratch("quantizer-flags");
    // The layers of the i8w blob (the blob itself also records the training time).
    let train = |name: &str, extra: &[&str]| -> Vec<tinyrnn::format::Layer<Tensor>> {
        let blob = dir.join(format!("{name}.trnn"));
        let mut args = vec![
            "--window",
            "5",
            "--horizon",
            "1",
            "--cell",
            "rnn",
            "--hidden",
            "4",
            "--epochs",
            "2",
            "--seed",
            "3",
            "--quantize",
            "i8w",
            "-o",
            blob.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        train_kpis("CQI", &args);
        let bytes = std::fs::read(dir.join(format!("{name}-i8w.trnn"))).expect("the i8w blob");
        let aligned = AlignedBlob::new(&bytes);
        ModelSpec::from_model(&aligned.open().unwrap())
            .unwrap()
            .layers
    };
    let corrected = train("corrected", &[]);
    let plain = train("plain", &["--no-bias-correction"]);
    assert_ne!(corrected, plain, "bias correction changed nothing");
    assert_eq!(plain, train("plain-again", &["--no-bias-correction"]));

    let keras = common::repo("tests/fixtures/keras/lstm_stacked.keras");
    let data = common::repo("tests/fixtures/keras/lstm_stacked.input.npy");
    let import = |extra: &[&str]| {
        let mut args = vec![
            "import",
            keras.to_str().unwrap(),
            "--quantize",
            "i8x16",
            "--calibrate",
            data.to_str().unwrap(),
            "-o",
        ];
        let out = dir.join("imported.trnn");
        args.push(out.to_str().unwrap());
        args.extend_from_slice(extra);
        tinyrnn(&args)
    };
    let ok = import(&["--calibration", "percentile:99.9"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let bad = import(&["--calibration", "percentile:101"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("'minmax' or 'percentile:P'"),
        "{}",
        text(&bad.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `tinyrnn quantize` on a trained blob reads the CSV it was trained on under the stored protocol:
/// training windows calibrate and test windows measure. Given with `--calibrate` or found beside the
/// blob, the result is the very blob `train --quantize` wrote. Not found, i8x16 names the file to pass
/// and i8w quantizes without data, saying so.
#[test]
fn quantize_reads_a_trained_models_csv_under_its_protocol() {
    let dir = scratch("quantize-trained");
    let (blob, from_train) = train_i8x16(&dir, &["--window", "5"]);
    let quantized = dir.join("q.trnn");
    let quantize = |mode: &str, extra: &[&str]| {
        let mut args = vec![
            "quantize",
            blob.to_str().unwrap(),
            "--mode",
            mode,
            "-o",
            quantized.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        tinyrnn(&args)
    };

    let refused = quantize("i8x16", &[]);
    assert!(!refused.status.success());
    let err = text(&refused.stderr);
    assert!(
        err.contains("trained on kpi.csv") && err.contains("--calibrate PATH/kpi.csv"),
        "{err}"
    );
    let without = quantize("i8w", &[]);
    assert!(without.status.success(), "{}", text(&without.stderr));
    assert!(text(&without.stdout).contains("trained on kpi.csv, which is neither beside"));

    let csv = kpi_csv();
    let given = quantize("i8x16", &["--calibrate", csv.to_str().unwrap()]);
    assert!(given.status.success(), "{}", text(&given.stderr));
    let stdout = text(&given.stdout);
    assert!(stdout.contains("training windows of"), "{stdout}");
    assert!(stdout.contains("test windows of"), "{stdout}");
    // The description is of the file written, self-test vector included.
    assert!(stdout.contains("passes here"), "{stdout}");
    assert_eq!(
        std::fs::read(&quantized).unwrap(),
        std::fs::read(&from_train).unwrap(),
        "quantize and train --quantize calibrate on the same windows"
    );
    // `test MSE q (f32 f, ±x %)`: within the 2 % the integer issue allows.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("test MSE "))
        .expect("a test MSE line");
    let numbers: Vec<f64> = line
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|t| t.parse().ok())
        .collect();
    assert!(numbers[0] <= numbers[1] * 1.02, "{line}");

    std::fs::copy(&csv, dir.join("kpi.csv")).unwrap();
    std::fs::remove_file(&quantized).unwrap();
    let found = quantize("i8x16", &[]);
    assert!(found.status.success(), "{}", text(&found.stderr));
    assert_eq!(
        std::fs::read(&quantized).unwrap(),
        std::fs::read(&from_train).unwrap()
    );

    let inspect = tinyrnn(&[
        "inspect",
        blob.to_str().unwrap(),
        "--data",
        csv.to_str().unwrap(),
    ]);
    let stdout = text(&inspect.stdout);
    assert!(inspect.status.success(), "{}", text(&inspect.stderr));
    for mode in ["i8w", "i8x16"] {
        assert!(
            stdout.contains(&format!("error of {mode} against f32 on the")),
            "{stdout}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs `tinyrnn args` with its standard output a pipe whose reader is gone, as in `tinyrnn … | head`
/// once `head` has read its lines. The reader is dropped as soon as the child has started: before it
/// has read its input files, so before its first line.
fn tinyrnn_into_closed_pipe(args: &[&str]) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tinyrnn"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the tinyrnn binary runs");
    drop(child.stdout.take());
    child.wait_with_output().expect("the tinyrnn binary ends")
}

#[test]
fn a_closed_standard_output_neither_panics_nor_loses_the_blob() {
    let dir = scratch("closed-stdout");
    let blob = dir.join("kpi.trnn");
    let csv = kpi_csv();
    let trained = tinyrnn_into_closed_pipe(&[
        "train",
        "--csv",
        csv.to_str().unwrap(),
        "--inputs",
        common::KPI_INPUTS,
        "--targets",
        "CQI",
        "--window",
        "5",
        "--horizon",
        "1",
        "--hidden",
        "4",
        "--epochs",
        "1",
        "--seed",
        "1",
        "-o",
        blob.to_str().unwrap(),
    ]);
    let stderr = text(&trained.stderr);
    assert!(trained.status.success(), "train failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let bytes = std::fs::read(&blob).expect("train wrote its blob");
    AlignedBlob::new(&bytes).open().expect("the blob is valid");

    let inspected = tinyrnn_into_closed_pipe(&["inspect", blob.to_str().unwrap()]);
    let stderr = text(&inspected.stderr);
    assert!(inspected.status.success(), "inspect failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
