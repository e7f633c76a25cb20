//! Serialises a [`ModelSpec`] into a blob (`docs/FORMAT.md`).

use anyhow::{anyhow, bail, ensure, Context, Result};
use tinyrnn::format::{
    align_up, DType, Header, InputKind, Layer, Meta, SelfTest, Splitting, TensorRef, Vocabulary,
    CRC, CRC_LEN, FORMAT_VERSION, MAGIC, MAX_LAYERS, MAX_TENSORS, PREAMBLE_LEN,
};
use tinyrnn::{Model, Runtime};

use crate::run::AlignedBlob;
use crate::spec::{IntegerTensor, ModelSpec, Tensor, TokenVocabulary};

/// Identifies this converter in every blob it writes.
pub const PRODUCER: &str = concat!("tinyrnn-converter ", env!("CARGO_PKG_VERSION"));

/// Encodes `spec` as a complete blob, checksum included.
pub fn to_blob(spec: &ModelSpec) -> Result<Vec<u8>> {
    ensure!(
        spec.layers.len() <= MAX_LAYERS,
        "model '{}' has {} layers; a blob holds at most {MAX_LAYERS}",
        spec.name,
        spec.layers.len()
    );
    let tensors: usize = spec
        .layers
        .iter()
        .map(|layer| {
            let mut count = 0;
            let _ = layer.clone().try_map(|_| {
                count += 1;
                Ok::<(), ()>(())
            });
            count
        })
        .sum();
    ensure!(
        tensors <= MAX_TENSORS,
        "model '{}' has {tensors} tensors (weights, biases, initial states); the engine holds at most \
         {MAX_TENSORS}",
        spec.name
    );
    let tokens = spec.vocabulary.as_ref().map(encode_tokens).transpose()?;
    let mut data: Vec<u8> = Vec::new();
    let mut layers = heapless::Vec::<Layer<TensorRef>, MAX_LAYERS>::new();
    for (index, layer) in spec.layers.iter().enumerate() {
        let stored = layer
            .clone()
            .try_map(|t: Tensor| append_tensor(&mut data, &t))
            .with_context(|| format!("layer {index}"))?;
        layers
            .push(stored)
            .map_err(|_| anyhow!("too many layers"))?;
    }
    let scaling = spec
        .scaling
        .clone()
        .try_map(|t: Tensor| {
            ensure!(t.quant.is_none(), "scalers must be f32");
            append_tensor(&mut data, &t)
        })
        .context("scalers")?;
    let names = |kind: &str, names: &[String]| -> Result<String> {
        if let Some(bad) = names.iter().find(|n| n.contains('\n')) {
            bail!("{kind} name {bad:?} contains a line break");
        }
        Ok(names.join("\n"))
    };
    let inputs = names("input", &spec.annotations.inputs)?;
    let outputs = names("output", &spec.annotations.outputs)?;
    let header = Header {
        input: spec.input,
        layers,
        io: spec.io,
        scaling,
        meta: Meta {
            name: &spec.name,
            source: &spec.source,
            producer: PRODUCER,
            inputs: &inputs,
            outputs: &outputs,
            info: &spec.annotations.info,
        },
        selftest: None,
        vocabulary: match (&spec.vocabulary, &tokens) {
            (Some(v), Some(tokens)) => Some(Vocabulary {
                splitting: v.splitting,
                tokens,
                unknown: v.unknown,
            }),
            _ => None,
        },
        fixed: spec.fixed.clone(),
    };
    assemble(&header, &data)
}

/// A vocabulary's tokens as a blob stores them: characters back to back, or words each ended by `\n`.
fn encode_tokens(v: &TokenVocabulary) -> Result<String> {
    let mut out = String::new();
    for (id, token) in v.tokens.iter().enumerate() {
        match v.splitting {
            Splitting::Chars => {
                ensure!(
                    token.chars().count() == 1,
                    "vocabulary token {id} ({token:?}) is not one character, as a character vocabulary needs"
                );
                out.push_str(token);
            }
            Splitting::Words { .. } => {
                ensure!(
                    !token.chars().any(char::is_whitespace) || token.is_empty(),
                    "vocabulary token {id} ({token:?}) holds whitespace; words are split on it"
                );
                out.push_str(token);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// Preamble, postcard header, padding, data section and closing CRC-32.
fn assemble(header: &Header<'_>, data: &[u8]) -> Result<Vec<u8>> {
    let header_bytes = postcard::to_allocvec(header).context("encoding the blob header")?;
    let data_offset =
        align_up(PREAMBLE_LEN + header_bytes.len()).context("header too large for a blob")?;
    let header_len = u32::try_from(header_bytes.len()).context("header too large for a blob")?;
    let data_offset_u32 = u32::try_from(data_offset).context("header too large for a blob")?;

    let mut blob = Vec::with_capacity(data_offset + data.len() + CRC_LEN);
    blob.extend_from_slice(&MAGIC);
    blob.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    blob.extend_from_slice(&0u16.to_le_bytes());
    blob.extend_from_slice(&header_len.to_le_bytes());
    blob.extend_from_slice(&data_offset_u32.to_le_bytes());
    blob.extend_from_slice(&header_bytes);
    blob.resize(data_offset, 0);
    blob.extend_from_slice(data);
    let crc = CRC.checksum(&blob);
    blob.extend_from_slice(&crc.to_le_bytes());
    Ok(blob)
}

/// [`to_blob`] with a self-test vector added ([`with_self_test`]).
pub fn to_blob_with_self_test(spec: &ModelSpec) -> Result<Vec<u8>> {
    with_self_test(&to_blob(spec)?)
}

/// Seed of the self-test input, fixed so that writing the same model twice gives the same bytes.
const SELF_TEST_SEED: u64 = 0x7e57_7e57_7e57_7e57;
/// Window length of the self-test when the model does not fix one.
const SELF_TEST_STEPS: usize = 8;
/// Self-test tolerance relative to the largest expected output magnitude (at least 1). The engine on the
/// device runs the same code as here, so today the results agree bit for bit; the margin leaves room for
/// target-specific kernels that sum in another order.
const SELF_TEST_TOLERANCE: f32 = 1e-5;

/// Adds a self-test vector to a blob (replacing any it has): a deterministic input, run here by the
/// engine, and its output, which firmware re-checks at boot with [`Model::self_test`]. Feature models get
/// one window; streamable token models a sequence of token ids. A token model that cannot stream gets
/// none, and the blob comes back unchanged.
pub fn with_self_test(blob: &[u8]) -> Result<Vec<u8>> {
    let aligned = AlignedBlob::new(blob);
    let model = aligned.open()?;
    let Some((input, output)) = self_test_io(&model)? else {
        return Ok(blob.to_vec());
    };
    let header_len = u32::from_le_bytes(blob[8..12].try_into()?) as usize;
    let data_offset = u32::from_le_bytes(blob[12..16].try_into()?) as usize;
    let (mut header, _) =
        postcard::take_from_bytes::<Header<'_>>(&blob[PREAMBLE_LEN..PREAMBLE_LEN + header_len])
            .context("decoding the blob header")?;
    let mut data = blob[data_offset..blob.len() - CRC_LEN].to_vec();
    let scale = output.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    header.selftest = Some(SelfTest {
        input: append_tensor(&mut data, &input)?,
        output: append_tensor(&mut data, &Tensor::vector(output))?,
        tolerance: SELF_TEST_TOLERANCE * scale,
    });
    let with_test = assemble(&header, &data)?;
    let check = AlignedBlob::new(&with_test);
    let model = check
        .open()
        .context("the blob with its self-test does not open")?;
    let mut memory = vec![0.0; model.self_test_memory()];
    let outcome = model.self_test(&mut memory)?;
    ensure!(
        matches!(outcome, tinyrnn::SelfTestOutcome::Passed { .. }),
        "the self-test just written does not pass on the host: {outcome:?}"
    );
    Ok(with_test)
}

/// The self-test input (`steps × width`) and the output the engine gives for it, or `None` for a token
/// model that cannot stream.
fn self_test_io(model: &Model<'_>) -> Result<Option<(Tensor, Vec<f32>)>> {
    let mut rng = SELF_TEST_SEED;
    let mut uniform = move || {
        // splitmix64: a fixed, portable sequence.
        rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    };
    match model.input().kind {
        InputKind::Features(width) => {
            let width = width as usize;
            let steps = match model.input().steps {
                Some(steps) => steps as usize,
                // A crop may need more than the default window; take the shortest that fits.
                None => (SELF_TEST_STEPS..=SELF_TEST_STEPS * 64)
                    .find(|&s| model.output_len(s).is_ok())
                    .context("no window length up to 512 fits this model")?,
            };
            let input: Vec<f32> = (0..steps * width).map(|_| 2.0 * uniform() - 1.0).collect();
            let mut memory = vec![0.0; model.window_memory(steps)?.total()];
            let mut output = vec![0.0; model.output_len(steps)?];
            Runtime::new(model, &mut memory)?.run_window(&input, &mut output)?;
            Ok(Some((Tensor::matrix(steps, width, input)?, output)))
        }
        InputKind::Tokens => {
            if !model.is_streamable() {
                return Ok(None);
            }
            let vocab = match model.layers().next() {
                Some(Layer::Embedding(e)) => e.table.rows,
                _ => return Ok(None),
            };
            let steps = model.input().steps.map_or(SELF_TEST_STEPS, |s| s as usize);
            let tokens: Vec<u32> = (0..steps)
                .map(|_| ((uniform() * vocab as f32) as usize).min(vocab - 1) as u32)
                .collect();
            let mut memory = vec![0.0; model.memory().total()];
            let mut output = vec![0.0; model.step_output_len()];
            let mut runtime = Runtime::new(model, &mut memory)?;
            for &token in &tokens {
                runtime.step_token(token, &mut output)?;
            }
            let ids = tokens.iter().map(|&t| t as f32).collect();
            Ok(Some((Tensor::matrix(tokens.len(), 1, ids)?, output)))
        }
    }
}

fn append_tensor(data: &mut Vec<u8>, tensor: &Tensor) -> Result<TensorRef> {
    if tensor.rows.checked_mul(tensor.cols) != Some(tensor.data.len()) {
        bail!(
            "tensor declared {}×{} holds {} values",
            tensor.rows,
            tensor.cols,
            tensor.data.len()
        );
    }
    let rows = u32::try_from(tensor.rows).context("tensor too large")?;
    let cols = u32::try_from(tensor.cols).context("tensor too large")?;
    let offset = align_up(data.len()).context("data section too large")?;
    data.resize(offset, 0);
    let offset = u32::try_from(offset).context("data section too large")?;
    if let Some(integer) = &tensor.integer {
        return append_integer(data, tensor, integer, rows, cols, offset);
    }
    let Some(quant) = &tensor.quant else {
        for v in &tensor.data {
            data.extend_from_slice(&v.to_le_bytes());
        }
        return Ok(TensorRef {
            dtype: DType::F32,
            rows,
            cols,
            offset,
            scale: None,
        });
    };
    ensure!(
        quant.values.len() == tensor.data.len() && quant.scales.len() == tensor.rows,
        "int8 tensor of {}×{} holds {} values and {} scales",
        tensor.rows,
        tensor.cols,
        quant.values.len(),
        quant.scales.len()
    );
    let scale = append_values_then_rows(
        data,
        quant.values.iter().map(|&q| q as u8),
        quant.scales.iter().map(|s| s.to_le_bytes()),
    )?;
    Ok(TensorRef {
        dtype: DType::I8,
        rows,
        cols,
        offset,
        scale: Some(scale),
    })
}

/// Appends a matrix's values (as their stored bytes), then, from the next aligned offset, one or more
/// 4-byte words per row (f32 scales or `i32` requantization pairs), which also leaves the data section
/// on a whole word; returns the offset of those words.
fn append_values_then_rows(
    data: &mut Vec<u8>,
    values: impl IntoIterator<Item = u8>,
    rows: impl IntoIterator<Item = [u8; 4]>,
) -> Result<u32> {
    data.extend(values);
    let scale = align_up(data.len()).context("data section too large")?;
    data.resize(scale, 0);
    rows.into_iter().for_each(|w| data.extend_from_slice(&w));
    u32::try_from(scale).context("data section too large")
}

/// A requantization pair's two `i32` as stored.
fn pair_words(&(m, s): &(i32, i32)) -> [[u8; 4]; 2] {
    [m.to_le_bytes(), s.to_le_bytes()]
}

/// Appends the stored form of an integer-only model's tensor at `offset` (already aligned).
fn append_integer(
    data: &mut Vec<u8>,
    tensor: &Tensor,
    integer: &IntegerTensor,
    rows: u32,
    cols: u32,
    offset: u32,
) -> Result<TensorRef> {
    let len = tensor.rows * tensor.cols;
    let (dtype, scale) = match integer {
        IntegerTensor::I16Scaled { values, scales } => {
            ensure!(
                values.len() == len && scales.len() == tensor.rows,
                "int16 tensor of {}×{} holds {} values and {} scales",
                tensor.rows,
                tensor.cols,
                values.len(),
                scales.len()
            );
            let scale = append_values_then_rows(
                data,
                values.iter().flat_map(|v| v.to_le_bytes()),
                scales.iter().map(|s| s.to_le_bytes()),
            )?;
            (DType::I16Scaled, Some(scale))
        }
        IntegerTensor::I8Requant { values, requant } => {
            ensure!(
                values.len() == len && requant.len() == tensor.rows,
                "int8 tensor of {}×{} holds {} values and {} requantization pairs",
                tensor.rows,
                tensor.cols,
                values.len(),
                requant.len()
            );
            let scale = append_values_then_rows(
                data,
                values.iter().map(|&q| q as u8),
                requant.iter().flat_map(pair_words),
            )?;
            (DType::I8Requant, Some(scale))
        }
        IntegerTensor::I16Requant { values, requant } => {
            ensure!(
                values.len() == len && requant.len() == tensor.rows,
                "int16 tensor of {}×{} holds {} values and {} requantization pairs",
                tensor.rows,
                tensor.cols,
                values.len(),
                requant.len()
            );
            let scale = append_values_then_rows(
                data,
                values.iter().flat_map(|v| v.to_le_bytes()),
                requant.iter().flat_map(pair_words),
            )?;
            (DType::I16Requant, Some(scale))
        }
        IntegerTensor::I16(values) => {
            ensure!(
                values.len() == len,
                "i16 tensor of {len} values holds {}",
                values.len()
            );
            values
                .iter()
                .for_each(|v| data.extend_from_slice(&v.to_le_bytes()));
            // Keep the data section a whole number of 4-byte words.
            data.resize(data.len().div_ceil(4) * 4, 0);
            (DType::I16, None)
        }
        IntegerTensor::I32(values) => {
            ensure!(
                values.len() == len,
                "i32 tensor of {len} values holds {}",
                values.len()
            );
            values
                .iter()
                .for_each(|v| data.extend_from_slice(&v.to_le_bytes()));
            (DType::I32, None)
        }
    };
    Ok(TensorRef {
        dtype,
        rows,
        cols,
        offset,
        scale,
    })
}
