//! The SubtractLast and Residual layers (window normalisation and the skip path): hand-computed
//! outputs, validation of malformed models, and the i8w mode.

use tinyrnn::format::{
    Activation, Dense, Input, InputKind, InputLayout, IoLayout, Layer, OutputLayout, Residual,
};
use tinyrnn::{Error, Runtime};
use tinyrnn_converter::quantize::{quantize, Mode};
use tinyrnn_converter::run::AlignedBlob;
use tinyrnn_converter::spec::{IntegerTensor, ModelSpec, Tensor};
use tinyrnn_converter::write::to_blob;

/// Window of 3 steps × 2 features.
const WINDOW: [f32; 6] = [1.0, 10.0, 2.0, 20.0, 4.0, 50.0];

fn spec(layers: Vec<Layer<Tensor>>) -> ModelSpec {
    ModelSpec {
        input: Input {
            kind: InputKind::Features(2),
            steps: Some(3),
        },
        layers,
        io: IoLayout {
            input: InputLayout::BatchFirst,
            output: OutputLayout::BatchFirst,
        },
        name: "window layers".into(),
        source: "hand-built".into(),
        vocabulary: None,
        scaling: Default::default(),
        annotations: Default::default(),
        fixed: None,
    }
}

fn dense(rows: usize, cols: usize, weight: Vec<f32>) -> Layer<Tensor> {
    Layer::Dense(Dense {
        weight: Tensor::matrix(rows, cols, weight).unwrap(),
        bias: None,
        activation: Activation::Linear,
    })
}

fn residual(
    inputs: &[u16],
    add_last: bool,
    skip: Option<Tensor>,
    bias: Option<Tensor>,
) -> Layer<Tensor> {
    Layer::Residual(Residual {
        inputs: heapless::Vec::from_slice(inputs).unwrap(),
        add_last,
        skip,
        skip_bias: bias,
    })
}

fn run(spec: &ModelSpec, window: &[f32]) -> Result<Vec<f32>, Error> {
    let blob = AlignedBlob::new(&to_blob(spec).unwrap());
    let model = tinyrnn::Model::open(blob.bytes())?;
    let mut memory = vec![0.0; model.window_memory(3)?.total()];
    let mut runtime = Runtime::new(&model, &mut memory)?;
    let mut out = vec![0.0; model.output_len(3)?];
    runtime.run_window(window, &mut out)?;
    Ok(out)
}

fn open(spec: &ModelSpec) -> Result<(), Error> {
    let blob = AlignedBlob::new(&to_blob(spec).unwrap());
    tinyrnn::Model::open(blob.bytes()).map(|_| ())
}

#[test]
fn subtract_last_subtracts_each_features_last_value() {
    let s = spec(vec![
        Layer::SubtractLast,
        dense(2, 2, vec![1.0, 0.0, 0.0, 1.0]),
    ]);
    assert_eq!(
        run(&s, &WINDOW).unwrap(),
        [-3.0, -40.0, -2.0, -30.0, 0.0, 0.0]
    );
}

#[test]
fn residual_adds_last_values_and_the_skip_path() {
    // A Dense head from the last step (4, 50) to a 2-step × 2-target forecast, then the residual:
    // target 0 continues feature 1, target 1 continues feature 0.
    let head = dense(4, 2, vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    let skip = Tensor::matrix(2, 3, vec![1.0, 0.0, 0.0, 0.0, 0.5, 0.5]).unwrap();
    let bias = Tensor::vector(vec![0.25, -1.0]);
    let s = spec(vec![
        Layer::LastStep,
        head,
        residual(&[1, 0], true, Some(skip), Some(bias)),
    ]);
    // Feature 1: series (10, 20, 50) − 50 = (−40, −30, 0); feature 0: (1, 2, 4) − 4 = (−3, −2, 0).
    // y[0,0] = 4 + 50 + (−40) + 0.25;  y[0,1] = 0 + 4 + (−3) + 0.25
    // y[1,0] = 50 + 50 + (−15) − 1;     y[1,1] = 0 + 4 + (−1) − 1
    assert_eq!(run(&s, &WINDOW).unwrap(), [14.25, 1.25, 84.0, 2.0]);
    // Without add_last the skip reads the raw series, and nothing is added back.
    let skip = Tensor::matrix(2, 3, vec![1.0, 0.0, 0.0, 0.0, 0.5, 0.5]).unwrap();
    let s = spec(vec![
        Layer::LastStep,
        dense(4, 2, vec![0.0; 8]),
        residual(&[1, 0], false, Some(skip), None),
    ]);
    assert_eq!(run(&s, &WINDOW).unwrap(), [10.0, 1.0, 35.0, 3.0]);
    // One map per target: rows 0..2 for target 0 (feature 1), rows 2..4 for target 1 (feature 0).
    let skip = Tensor::matrix(
        4,
        3,
        vec![1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 2.0, -1.0, 0.0, 0.0],
    )
    .unwrap();
    let s = spec(vec![
        Layer::LastStep,
        dense(4, 2, vec![0.0; 8]),
        residual(
            &[1, 0],
            false,
            Some(skip),
            Some(Tensor::vector(vec![0.0, 0.0, 0.5, 0.0])),
        ),
    ]);
    // y[0,0] = 10, y[1,0] = 35 (feature 1, rows 0..2); y[0,1] = 2·4 + 0.5, y[1,1] = −1 (feature 0).
    assert_eq!(run(&s, &WINDOW).unwrap(), [10.0, 8.5, 35.0, -1.0]);
    // A sequence forecast (2 steps × 1 target) with add_last only.
    let s = spec(vec![
        Layer::KeepLast { steps: 2 },
        dense(1, 2, vec![1.0, 0.0]),
        residual(&[1], true, None, None),
    ]);
    assert_eq!(run(&s, &WINDOW).unwrap(), [52.0, 54.0]);
}

#[test]
fn malformed_window_layers_are_refused() {
    let head = || dense(4, 2, vec![0.0; 8]);
    let skip = |rows, cols| Some(Tensor::matrix(rows, cols, vec![0.0; rows * cols]).unwrap());
    let mismatch = |layer| Err(Error::LayerMismatch { layer });
    // SubtractLast anywhere but first.
    assert_eq!(
        open(&spec(vec![Layer::LastStep, Layer::SubtractLast, head()])),
        mismatch(1)
    );
    // Residual anywhere but last.
    assert_eq!(
        open(&spec(vec![
            Layer::LastStep,
            residual(&[0, 1], true, None, None),
            head()
        ])),
        mismatch(1)
    );
    // A target feature beyond the input, or a forecast that does not split into the targets.
    assert_eq!(
        open(&spec(vec![
            Layer::LastStep,
            head(),
            residual(&[0, 2], true, None, None)
        ])),
        mismatch(2)
    );
    assert_eq!(
        open(&spec(vec![
            Layer::LastStep,
            head(),
            residual(&[0, 1, 1], true, None, None)
        ])),
        mismatch(2)
    );
    // Skip weights must be horizon × window or horizon·targets × window; a skip bias needs skip
    // weights and the same rows.
    assert_eq!(
        open(&spec(vec![
            Layer::LastStep,
            head(),
            residual(&[0, 1], true, skip(2, 2), None)
        ])),
        Err(Error::TensorShape { layer: 2 })
    );
    assert_eq!(
        open(&spec(vec![
            Layer::LastStep,
            head(),
            residual(&[0, 1], true, skip(3, 3), None)
        ])),
        Err(Error::TensorShape { layer: 2 })
    );
    assert_eq!(
        open(&spec(vec![
            Layer::LastStep,
            head(),
            residual(
                &[0, 1],
                true,
                skip(4, 3),
                Some(Tensor::vector(vec![0.0; 2]))
            )
        ])),
        Err(Error::TensorShape { layer: 2 })
    );
    assert_eq!(
        open(&spec(vec![
            Layer::LastStep,
            head(),
            residual(&[0, 1], true, None, Some(Tensor::vector(vec![0.0; 2])))
        ])),
        Err(Error::UnsupportedLayer { layer: 2 })
    );
    // A skip path needs a fixed window.
    let mut free = spec(vec![
        Layer::LastStep,
        head(),
        residual(&[0, 1], true, skip(2, 3), None),
    ]);
    assert_eq!(open(&free), Ok(()));
    free.input.steps = None;
    assert_eq!(open(&free), mismatch(2));
}

#[test]
fn window_layers_are_windowed_only() {
    let s = spec(vec![
        Layer::SubtractLast,
        Layer::LastStep,
        dense(4, 2, vec![0.0; 8]),
        residual(&[0, 1], true, None, None),
    ]);
    let blob = AlignedBlob::new(&to_blob(&s).unwrap());
    let model = tinyrnn::Model::open(blob.bytes()).unwrap();
    assert!(!model.is_streamable());
    let mut memory = vec![0.0; model.window_memory(3).unwrap().total()];
    let mut runtime = Runtime::new(&model, &mut memory).unwrap();
    let mut out = vec![0.0; 4];
    assert_eq!(
        runtime.step(&[1.0, 2.0], &mut out),
        Err(Error::NotStreamable)
    );
}

#[test]
fn i8w_stores_the_skip_map_in_int16() {
    // Ratios no int16 grid holds either (√2, √3, π), so the quantized forecast must differ a little.
    let skip =
        Tensor::matrix(2, 3, vec![0.3, -0.424_264, 0.942_478, 0.1, 0.173_205, -0.7]).unwrap();
    let s = spec(vec![
        Layer::SubtractLast,
        Layer::LastStep,
        dense(4, 2, vec![0.1, 0.2, -0.3, 0.4, 0.5, -0.6, 0.7, 0.8]),
        residual(
            &[1, 0],
            true,
            Some(skip),
            Some(Tensor::vector(vec![0.1, 0.2])),
        ),
    ]);
    let q = quantize(&s, Mode::I8w).unwrap();
    let Layer::Residual(r) = &q.layers[3] else {
        panic!("the residual layer moved")
    };
    let stored = r.skip.as_ref().unwrap();
    assert!(
        matches!(stored.integer, Some(IntegerTensor::I16Scaled { .. })),
        "{stored:?}"
    );
    // It survives the blob: the engine reads it back as int16 with scales.
    let back =
        ModelSpec::from_model(&AlignedBlob::new(&to_blob(&q).unwrap()).open().unwrap()).unwrap();
    let Layer::Residual(read) = &back.layers[3] else {
        panic!("the residual layer moved")
    };
    assert_eq!(read.skip.as_ref(), Some(stored));
    let (f, i) = (run(&s, &WINDOW).unwrap(), run(&q, &WINDOW).unwrap());
    // At most half an int16 step per weight (≤ 1.5e-5 here) times each input, summed: the skip's
    // deviations reach 46, so ≤ 2e-3 (int8 would allow 0.5).
    for (a, b) in f.iter().zip(&i) {
        assert!((a - b).abs() < 2e-3, "{f:?} vs {i:?}");
    }
    assert_ne!(f, i);
}
