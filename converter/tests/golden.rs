//! Golden bytes of the blob format: a change to the layout breaks this test and must bump the format
//! version (docs/FORMAT.md).

use tinyrnn::format::Scaling;
use tinyrnn::format::{
    Activation, Dense, FixedLayer, FixedPoint, Input, InputKind, InputLayout, IoLayout, Layer,
    OutputLayout,
};
use tinyrnn::Runtime;
use tinyrnn_converter::run::AlignedBlob;
use tinyrnn_converter::spec::{
    affine_map, Annotations, IntegerTensor, ModelSpec, Quantized, Tensor,
};
use tinyrnn_converter::write::{to_blob, PRODUCER};

fn dense_model() -> ModelSpec {
    ModelSpec {
        input: Input {
            kind: InputKind::Features(2),
            steps: Some(1),
        },
        layers: vec![Layer::Dense(Dense {
            weight: Tensor::matrix(1, 2, vec![1.0, -2.0]).unwrap(),
            bias: Some(Tensor::vector(vec![0.5])),
            activation: Activation::Relu,
        })],
        io: IoLayout {
            input: InputLayout::BatchFirst,
            output: OutputLayout::BatchFirst,
        },
        name: "g".into(),
        source: "s".into(),
        scaling: Default::default(),
        annotations: Default::default(),
        vocabulary: None,
        fixed: None,
    }
}

/// A version-3 blob around `layers` (the header bytes from the layer count through the last layer) and
/// `tensors`, each placed at its offset in the data section: the fixed input, io and meta of the golden
/// model (no scalers, no names, no info, no self-test, no vocabulary, no fixed-point formats), preamble,
/// padding and CRC.
fn assemble(layers: &[u8], tensors: &[(usize, Vec<u8>)]) -> Vec<u8> {
    assemble_with(layers, NO_SCALING, NO_META_TAIL, NO_FIXED, tensors)
}

/// `scaling: { input: None, output: None }`.
const NO_SCALING: &[u8] = &[0x00, 0x00];
/// Empty `inputs`, `outputs` and `info` meta fields.
const NO_META_TAIL: &[u8] = &[0x00, 0x00, 0x00];
/// `fixed: None`.
const NO_FIXED: &[u8] = &[0x00];

/// The same with the header bytes of `scaling`, of the meta fields after the producer (`inputs`,
/// `outputs`, `info`) and of the last field, `fixed`.
fn assemble_with(
    layers: &[u8],
    scaling: &[u8],
    meta_tail: &[u8],
    fixed: &[u8],
    tensors: &[(usize, Vec<u8>)],
) -> Vec<u8> {
    let mut header = vec![0x00, 0x02, 0x01, 0x01]; // Input { kind: Features(2), steps: Some(1) }
    header.extend_from_slice(layers);
    header.extend_from_slice(&[0x00, 0x00]); // io: { input: BatchFirst, output: BatchFirst }
    header.extend_from_slice(scaling);
    header.extend_from_slice(&[0x01, b'g', 0x01, b's']); // meta: name "g", source "s",
    header.push(PRODUCER.len() as u8); // producer
    header.extend_from_slice(PRODUCER.as_bytes());
    header.extend_from_slice(meta_tail);
    header.push(0x00); // selftest: None
    header.push(0x00); // vocabulary: None
    header.extend_from_slice(fixed);
    let data_offset = (16 + header.len()).div_ceil(16) * 16;
    let mut blob = b"TRNN".to_vec();
    blob.extend_from_slice(&[3, 0, 0, 0]);
    blob.extend_from_slice(&(header.len() as u32).to_le_bytes());
    blob.extend_from_slice(&(data_offset as u32).to_le_bytes());
    blob.extend_from_slice(&header);
    for (offset, bytes) in tensors {
        blob.resize(data_offset + offset, 0);
        blob.extend_from_slice(bytes);
    }
    let crc = tinyrnn::format::CRC.checksum(&blob);
    blob.extend_from_slice(&crc.to_le_bytes());
    blob
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[rustfmt::skip]
fn expected_bytes() -> Vec<u8> {
    let layers = [
        0x01,                   // layers: 1 element
        0x01,                   // Layer::Dense
        0x00, 0x01, 0x02, 0x00, 0x00, //   weight: TensorRef { F32, rows 1, cols 2, offset 0, scale: None }
        0x01, 0x00, 0x01, 0x01, 0x10, 0x00, //   bias: Some(TensorRef { F32, rows 1, cols 1, offset 16, scale: None })
        0x01,                   //   activation: Relu
    ];
    assemble(&layers, &[(0, f32_bytes(&[1.0, -2.0])), (16, f32_bytes(&[0.5]))])
}

#[test]
fn writer_produces_the_specified_bytes() {
    assert_eq!(to_blob(&dense_model()).unwrap(), expected_bytes());
}

#[test]
fn engine_reads_the_specified_bytes() {
    let blob = AlignedBlob::new(&expected_bytes());
    let model = blob.open().unwrap();
    assert_eq!(model.meta().name, "g");
    let mut memory = vec![0.0; model.memory().total()];
    let mut runtime = Runtime::new(&model, &mut memory).unwrap();
    let mut y = [0.0];
    runtime.step(&[3.0, 1.0], &mut y).unwrap();
    assert_eq!(y, [3.0 - 2.0 + 0.5]);
    runtime.step(&[0.0, 1.0], &mut y).unwrap();
    assert_eq!(y, [0.0]);
}

/// The same layer with its weight stored as int8: values `[64, -127]`, row scale `2/127`.
fn quantized_dense_model() -> ModelSpec {
    let scale = 2.0f32 / 127.0;
    let mut spec = dense_model();
    if let Layer::Dense(d) = &mut spec.layers[0] {
        d.weight = Tensor {
            rows: 1,
            cols: 2,
            data: vec![64.0 * scale, -127.0 * scale],
            quant: Some(Quantized {
                values: vec![64, -127],
                scales: vec![scale],
            }),
            integer: None,
        };
    }
    spec
}

#[rustfmt::skip]
fn expected_quantized_bytes() -> Vec<u8> {
    let layers = [
        0x01,                   // layers: 1 element
        0x01,                   // Layer::Dense
        0x01, 0x01, 0x02, 0x00, 0x01, 0x10, //   weight: TensorRef { I8, rows 1, cols 2, offset 0, scale: Some(16) }
        0x01, 0x00, 0x01, 0x01, 0x20, 0x00, //   bias: Some(TensorRef { F32, rows 1, cols 1, offset 32, scale: None })
        0x01,                   //   activation: Relu
    ];
    assemble(
        &layers,
        &[
            (0, vec![64, (-127i8) as u8]),
            (16, f32_bytes(&[2.0 / 127.0])),
            (32, f32_bytes(&[0.5])),
        ],
    )
}

#[test]
fn writer_produces_the_specified_int8_bytes() {
    assert_eq!(
        to_blob(&quantized_dense_model()).unwrap(),
        expected_quantized_bytes()
    );
}

#[test]
fn engine_reads_the_specified_int8_bytes() {
    let blob = AlignedBlob::new(&expected_quantized_bytes());
    let model = blob.open().unwrap();
    let mut memory = vec![0.0; model.memory().total()];
    let mut runtime = Runtime::new(&model, &mut memory).unwrap();
    let mut y = [0.0];
    runtime.step(&[3.0, 1.0], &mut y).unwrap();
    let scale = 2.0f32 / 127.0;
    assert_eq!(y, [scale * (64.0 * 3.0 - 127.0) + 0.5]);
    // The blob reads back into the same spec, int8 form included.
    let spec = ModelSpec::from_model(&model).unwrap();
    assert_eq!(spec.layers, quantized_dense_model().layers);
}

/// The golden model with scalers (input `[(1, 2), (-1, 4)]`, output `[(10, 0.5)]`) and names.
fn scaled_dense_model() -> ModelSpec {
    let mut spec = dense_model();
    spec.scaling = Scaling {
        input: Some(affine_map(&[(1.0, 2.0), (-1.0, 4.0)])),
        output: Some(affine_map(&[(10.0, 0.5)])),
    };
    spec.annotations = Annotations {
        inputs: vec!["a".into(), "b".into()],
        outputs: vec!["y".into()],
        info: "{}".into(),
    };
    spec
}

/// The golden Dense layer as an integer-only (`i8x16`) model: int8 weights `[64, -127]` with the
/// requantization pair `(2^30, 32)` (× 1/4), an `i32` bias of 512 (0.5 in Q·.10), input in Q·.8 and
/// output in Q·.10.
fn integer_dense_model() -> ModelSpec {
    let mut spec = dense_model();
    if let Layer::Dense(d) = &mut spec.layers[0] {
        d.weight = Tensor {
            integer: Some(IntegerTensor::I8Requant {
                values: vec![64, -127],
                requant: vec![(1 << 30, 32)],
            }),
            ..Tensor::matrix(1, 2, vec![4.0, -7.9375]).unwrap()
        };
        d.bias = Some(Tensor {
            integer: Some(IntegerTensor::I32(vec![512])),
            ..Tensor::vector(vec![0.5])
        });
    }
    let mut layers = heapless::Vec::new();
    layers
        .push(FixedLayer {
            output_frac: 10,
            state_frac: 0,
            cell_frac: 0,
            clip: 0,
        })
        .unwrap();
    spec.fixed = Some(FixedPoint {
        input_frac: 8,
        layers,
    });
    spec
}

#[rustfmt::skip]
fn expected_scaled_bytes() -> Vec<u8> {
    let layers = [
        0x01, 0x01,             // layers: 1 element, Layer::Dense
        0x00, 0x01, 0x02, 0x00, 0x00, //   weight: TensorRef { F32, rows 1, cols 2, offset 0, scale: None }
        0x01, 0x00, 0x01, 0x01, 0x10, 0x00, //   bias: Some(TensorRef { F32, rows 1, cols 1, offset 16, scale: None })
        0x01,                   //   activation: Relu
    ];
    let scaling = [
        0x01, 0x00, 0x02, 0x02, 0x20, 0x00, // input: Some(TensorRef { F32, rows 2, cols 2, offset 32, None })
        0x01, 0x00, 0x01, 0x02, 0x30, 0x00, // output: Some(TensorRef { F32, rows 1, cols 2, offset 48, None })
    ];
    let meta_tail = [
        0x03, b'a', b'\n', b'b', // inputs "a\nb"
        0x01, b'y',             // outputs "y"
        0x02, b'{', b'}',       // info "{}"
    ];
    assemble_with(
        &layers,
        &scaling,
        &meta_tail,
        NO_FIXED,
        &[
            (0, f32_bytes(&[1.0, -2.0])),
            (16, f32_bytes(&[0.5])),
            (32, f32_bytes(&[1.0, 2.0, -1.0, 4.0])),
            (48, f32_bytes(&[10.0, 0.5])),
        ],
    )
}

#[rustfmt::skip]
fn expected_integer_bytes() -> Vec<u8> {
    let layers = [
        0x01,                   // layers: 1 element
        0x01,                   // Layer::Dense
        0x02, 0x01, 0x02, 0x00, 0x01, 0x10, //   weight: TensorRef { I8Requant, rows 1, cols 2, offset 0, scale: Some(16) }
        0x01, 0x04, 0x01, 0x01, 0x20, 0x00, //   bias: Some(TensorRef { I32, rows 1, cols 1, offset 32, scale: None })
        0x01,                   //   activation: Relu
    ];
    let fixed = [
        0x01,                   // fixed: Some(FixedPoint {
        0x08,                   //   input_frac: 8,
        0x01,                   //   layers: 1 element
        0x0a, 0x00, 0x00, 0x00, //   FixedLayer { output_frac 10, state_frac 0, cell_frac 0, clip 0 } })
    ];
    let mut pair = (1i32 << 30).to_le_bytes().to_vec();
    pair.extend_from_slice(&32i32.to_le_bytes());
    assemble_with(
        &layers,
        NO_SCALING,
        NO_META_TAIL,
        &fixed,
        &[(0, vec![64, (-127i8) as u8]), (16, pair), (32, 512i32.to_le_bytes().to_vec())],
    )
}

#[test]
fn writer_produces_the_specified_scaler_and_name_bytes() {
    assert_eq!(
        to_blob(&scaled_dense_model()).unwrap(),
        expected_scaled_bytes()
    );
}

#[test]
fn writer_produces_the_specified_integer_bytes() {
    assert_eq!(
        to_blob(&integer_dense_model()).unwrap(),
        expected_integer_bytes()
    );
}

#[test]
fn engine_reads_the_specified_scalers_raw_in_raw_out() {
    let blob = AlignedBlob::new(&expected_scaled_bytes());
    let model = blob.open().unwrap();
    assert_eq!(model.meta().input_names().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(model.meta().info, "{}");
    let mut memory =
        vec![
            0.0;
            tinyrnn::Forecaster::<2>::memory_words(&model, tinyrnn::Mode::of(&model).unwrap())
                .unwrap()
        ];
    let mut forecaster = tinyrnn::Forecaster::<2>::new(&model, &mut memory).unwrap();
    // Raw (7, 3) is model ((7 - 1) / 2, (3 + 1) / 4) = (3, 1); relu(3 - 2 + 0.5) = 1.5; raw 1.5·0.5 + 10.
    assert_eq!(forecaster.push(&[7.0, 3.0]).unwrap().unwrap(), [10.75]);
    // The blob reads back into the same spec.
    assert_eq!(ModelSpec::from_model(&model).unwrap(), {
        let mut spec = scaled_dense_model();
        spec.source = "s".into();
        spec
    });
}

#[test]
fn engine_reads_the_specified_integer_bytes() {
    let blob = AlignedBlob::new(&expected_integer_bytes());
    let model = blob.open().unwrap();
    assert!(model.is_integer());
    let mut memory = vec![0.0; model.memory().total()];
    let mut runtime = Runtime::new(&model, &mut memory).unwrap();
    // x = [3, 1] in Q·.8 is [768, 256]; (64·768 − 127·256) / 4 + 512 = 4672, in Q·.10.
    let mut y = [0i16];
    runtime.step_i16(&[768, 256], &mut y).unwrap();
    assert_eq!(y, [4672]);
    let mut y = [0.0f32];
    runtime.step(&[3.0, 1.0], &mut y).unwrap();
    assert_eq!(y, [4.0 * 3.0 - 7.9375 + 0.5]);
    let spec = ModelSpec::from_model(&model).unwrap();
    assert_eq!(spec.fixed, integer_dense_model().fixed);
}
