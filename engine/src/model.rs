//! Opening a blob: every byte is checked once here, so the runtime can trust what it reads.

use crate::cell::{self, Mat, Values};
use crate::error::Error;
use crate::format::{
    self, Activation, Cell, CellWeights, DType, Direction, FixedLayer, FixedPoint, Header, Input,
    InputKind, IoLayout, Layer, Merge, Meta, Recurrent, Scaling, SelfTest, TensorRef, Vocabulary,
    CRC, CRC_LEN, FORMAT_VERSION, MAGIC, MAX_FRAC, MAX_LAYERS, MAX_VOCAB, MAX_WIDTH, PREAMBLE_LEN,
    TENSOR_ALIGN,
};

/// Longest fixed window a blob may declare.
pub const MAX_STEPS: u32 = 1 << 20;

/// Memory a model needs from its caller, in `f32` words. An integer-only (`i8x16`) model uses the same
/// words for `i16` states and activations (two to a word) and `i32` gate sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// State kept between steps: hidden and cell states, and the output history of a keep-last model.
    pub state: usize,
    /// Scratch used within one call.
    pub scratch: usize,
}

impl Memory {
    /// State plus scratch, in `f32` words: the length of the buffer to give [`crate::Runtime::new`].
    pub const fn total(&self) -> usize {
        self.state + self.scratch
    }

    /// State plus scratch, in bytes.
    pub const fn bytes(&self) -> usize {
        self.total() * 4
    }
}

/// What the model does to each layer's data, worked out once at open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Width of one timestep (or of the vector) entering the layer.
    pub input_width: usize,
    /// Width leaving it.
    pub output_width: usize,
    /// Whether the layer's output is a sequence (otherwise one vector).
    pub sequence_out: bool,
    /// Offset of the layer's state in the state area.
    pub state_offset: usize,
}

/// A validated model: a view over a blob, with no copies of its tensors.
#[derive(Clone, Debug)]
pub struct Model<'a> {
    input: Input,
    io: IoLayout,
    meta: Meta<'a>,
    layers: heapless::Vec<Layer<Mat<'a>>, MAX_LAYERS>,
    plans: heapless::Vec<Plan, MAX_LAYERS>,
    /// State words of the recurrent layers (the keep-last history comes after them).
    recurrent_state: usize,
    /// Scratch for one recurrent step, the largest over layers.
    cell_scratch: usize,
    /// Widest activation anywhere in the model.
    max_width: usize,
    /// Timesteps a streaming run keeps of the output, when the model ends in a crop.
    stream_keep: Option<usize>,
    streamable: bool,
    /// The blob's CRC-32, which identifies the model.
    id: u32,
    /// Raw-unit scalers, `[offset, scale]` pairs, checked.
    scaling: Scaling<&'a [f32]>,
    /// The blob's self-test vector, checked against the model's shapes at open.
    selftest: Option<SelfTest<Mat<'a>>>,
    /// What the token ids stand for, checked against the embedding at open.
    vocabulary: Option<Vocabulary<'a>>,
    /// Formats of an integer-only model.
    fixed: Option<FixedPoint>,
}

impl<'a> Model<'a> {
    /// Validates a blob completely (preamble, checksum, header, every tensor and every layer) and returns a
    /// view of it. The blob must stay where it is: tensors are read in place, so its data section must be
    /// 4-byte aligned in memory (`include_bytes!` into an aligned static, or a flash partition).
    pub fn open(blob: &'a [u8]) -> Result<Self, Error> {
        let (header, data) = parse(blob)?;
        let selftest = header.selftest;
        let vocabulary = header.vocabulary;
        let mut model = Self::from_parts(header, data)?;
        if let Some(vocabulary) = vocabulary {
            crate::text::check(&model, &vocabulary)?;
            model.vocabulary = Some(vocabulary);
        }
        if let Some(vector) = selftest {
            model.selftest = Some(crate::selftest::resolve(&model, data.floats, vector)?);
        }
        // `parse` has checked the closing CRC-32, so the last four bytes are there and trusted.
        let mut crc = [0u8; 4];
        if let Some(tail) = blob.get(blob.len().saturating_sub(CRC_LEN)..) {
            crc.iter_mut().zip(tail).for_each(|(d, s)| *d = *s);
        }
        model.id = u32::from_le_bytes(crc);
        Ok(model)
    }

    fn from_parts(header: Header<'a>, data: Data<'a>) -> Result<Self, Error> {
        if header.layers.is_empty() {
            return Err(Error::NoLayers);
        }
        let input_width = match header.input.kind {
            InputKind::Features(n) => check_width(n, u8::MAX)?,
            InputKind::Tokens => 0,
        };
        if let Some(steps) = header.input.steps {
            if steps == 0 || steps > MAX_STEPS {
                return Err(Error::TooLarge { layer: u8::MAX });
            }
        }
        check_io(&header.io)?;

        let mut layers = heapless::Vec::new();
        let mut plans = heapless::Vec::new();
        let mut width = input_width;
        let mut sequence = true;
        let mut state = 0usize;
        let mut cell_scratch = 0usize;
        let mut max_width = input_width.max(1);
        let mut streamable = true;
        let mut stream_keep: Option<usize> = None;
        let mut fixed_steps = header.input.steps.map(|s| s as usize);

        if let Some(fixed) = &header.fixed {
            if fixed.layers.len() != header.layers.len() || fixed.input_frac > MAX_FRAC {
                return Err(Error::BadFixedPoint { layer: u8::MAX });
            }
        }
        let mut frac = header.fixed.as_ref().map_or(0, |f| f.input_frac);
        for (index, layer) in header.layers.iter().enumerate() {
            let id = index as u8;
            let resolved = layer.clone().try_map(|t| resolve(data, &t, id))?;
            let fixed = header.fixed.as_ref().and_then(|f| f.layers.get(index));
            check_dtypes(&resolved, header.fixed.is_some(), id)?;
            if let Some(f) = fixed {
                check_fixed(&resolved, f, frac, id)?;
                frac = f.output_frac;
            }
            let plan_in = width;
            let state_offset = state;
            match &resolved {
                Layer::Embedding(e) => {
                    if index != 0 || header.input.kind != InputKind::Tokens {
                        return Err(Error::LayerMismatch { layer: id });
                    }
                    if e.table.rows == 0 || e.table.rows > MAX_VOCAB as usize {
                        return Err(Error::TooLarge { layer: id });
                    }
                    width = check_width(e.table.cols as u32, id)?;
                }
                Layer::Recurrent(r) => {
                    if !sequence || (index == 0 && header.input.kind == InputKind::Tokens) {
                        return Err(Error::LayerMismatch { layer: id });
                    }
                    if stream_keep.is_some() {
                        // A recurrent layer after a crop re-reads a window: windowed only.
                        streamable = false;
                    }
                    let hidden = check_recurrent(r, width, id)?;
                    let directions = if r.backward.is_some() { 2 } else { 1 };
                    if !matches!(r.direction, Direction::Forward) {
                        streamable = false;
                    }
                    state += directions * cell::state_words(r.cell, hidden);
                    cell_scratch = cell_scratch.max(cell::scratch_words(r.cell, hidden));
                    width = match r.direction {
                        Direction::Bidirectional(Merge::Concat) => 2 * hidden,
                        _ => hidden,
                    };
                    sequence = r.return_sequences;
                    if !sequence {
                        fixed_steps = Some(1);
                    }
                }
                Layer::Dense(d) => {
                    if index == 0 && header.input.kind == InputKind::Tokens {
                        return Err(Error::LayerMismatch { layer: id });
                    }
                    if d.weight.cols != width {
                        return Err(Error::LayerMismatch { layer: id });
                    }
                    let units = check_width(d.weight.rows as u32, id)?;
                    if let Some(b) = &d.bias {
                        check_shape(b, units, 1, id)?;
                    }
                    width = units;
                }
                Layer::Crop { start, end } => {
                    if !sequence || index == 0 && header.input.kind == InputKind::Tokens {
                        return Err(Error::LayerMismatch { layer: id });
                    }
                    let (start, end) = (*start as usize, *end as usize);
                    let kept = match fixed_steps {
                        Some(steps) => {
                            let kept = steps.saturating_sub(start).saturating_sub(end);
                            if kept == 0 {
                                return Err(Error::LayerMismatch { layer: id });
                            }
                            Some(kept)
                        }
                        None => None,
                    };
                    fixed_steps = kept;
                    match (end, kept, stream_keep) {
                        (0, Some(kept), None) => stream_keep = Some(kept),
                        _ => streamable = false,
                    }
                }
                Layer::LastStep => {
                    if !sequence || index == 0 && header.input.kind == InputKind::Tokens {
                        return Err(Error::LayerMismatch { layer: id });
                    }
                    if stream_keep.is_some() {
                        streamable = false;
                    }
                    sequence = false;
                    fixed_steps = Some(1);
                }
                Layer::KeepLast { steps } => {
                    if !sequence || *steps == 0 || *steps > MAX_STEPS {
                        return Err(Error::LayerMismatch { layer: id });
                    }
                    let steps = *steps as usize;
                    if let Some(fixed) = fixed_steps {
                        if fixed < steps {
                            return Err(Error::LayerMismatch { layer: id });
                        }
                    }
                    fixed_steps = Some(steps);
                    match stream_keep {
                        None => stream_keep = Some(steps),
                        Some(_) => streamable = false,
                    }
                }
                Layer::SubtractLast => {
                    if index != 0 || header.input.kind == InputKind::Tokens {
                        return Err(Error::LayerMismatch { layer: id });
                    }
                    streamable = false;
                }
                Layer::Residual(r) => {
                    let last = index + 1 == header.layers.len();
                    let window = header.input.steps.map(|s| s as usize);
                    let scratch = check_residual(
                        r,
                        last,
                        input_width,
                        window,
                        sequence,
                        fixed_steps,
                        width,
                        id,
                    )?;
                    cell_scratch = cell_scratch.max(scratch);
                    streamable = false;
                }
            }
            max_width = max_width.max(width);
            layers
                .push(resolved)
                .map_err(|_| Error::TooLarge { layer: id })?;
            plans
                .push(Plan {
                    input_width: plan_in,
                    output_width: width,
                    sequence_out: sequence,
                    state_offset,
                })
                .map_err(|_| Error::TooLarge { layer: id })?;
        }
        if header.input.kind == InputKind::Tokens
            && !matches!(layers.first(), Some(Layer::Embedding(_)))
        {
            return Err(Error::LayerMismatch { layer: 0 });
        }
        let scaling = check_scaling(&header.scaling, data, input_width, width)?;
        Ok(Self {
            input: header.input,
            io: header.io,
            meta: header.meta,
            layers,
            plans,
            recurrent_state: state,
            cell_scratch,
            max_width,
            stream_keep,
            streamable,
            id: 0,
            scaling,
            selftest: None,
            vocabulary: None,
            fixed: header.fixed,
        })
    }

    /// The formats of an integer-only (`i8x16`) model, or `None` for an f32 or `i8w` model.
    pub fn fixed_point(&self) -> Option<&FixedPoint> {
        self.fixed.as_ref()
    }

    /// Whether the model is integer-only (`i8x16`): it runs through [`crate::Runtime::step_i16`] with no
    /// floating point, and through [`crate::Runtime::step`] with f32 conversion at the edges.
    pub fn is_integer(&self) -> bool {
        self.fixed.is_some()
    }

    /// Format (fraction bits) of an integer-only model's `i16` output.
    pub fn output_frac(&self) -> Option<u8> {
        self.fixed
            .as_ref()
            .and_then(|f| f.layers.last())
            .map(|l| l.output_frac)
    }

    /// An identity for the model: the CRC-32 that closes its blob. Two blobs with the same bytes have the
    /// same identity; saved stream states carry it so they are only restored into the model that wrote them.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The blob's self-test vector, if the converter wrote one; run it with [`Model::self_test`].
    pub fn self_test_vector(&self) -> Option<SelfTest<Mat<'a>>> {
        self.selftest
    }

    /// What the model's token ids stand for, if the blob says ([`crate::text`] turns text into ids and
    /// back).
    pub fn vocabulary(&self) -> Option<Vocabulary<'a>> {
        self.vocabulary
    }

    /// The model's input.
    pub fn input(&self) -> Input {
        self.input
    }

    /// Width of one timestep of input: the number of features, or 1 for a token id.
    pub fn input_width(&self) -> usize {
        match self.input.kind {
            InputKind::Features(n) => n as usize,
            InputKind::Tokens => 1,
        }
    }

    /// How host tools map the source framework's batches onto windows.
    pub fn io(&self) -> IoLayout {
        self.io
    }

    /// Name, source and producer.
    pub fn meta(&self) -> Meta<'a> {
        self.meta
    }

    /// The raw-unit scalers as `[offset, scale]` pairs (see [`Scaling`]), checked at open: the input map
    /// has one pair per input feature, the output map a number of pairs that divides the output width,
    /// every value is finite and every scale non-zero. Absent maps are `None`.
    pub fn scaling(&self) -> Scaling<&'a [f32]> {
        self.scaling
    }

    /// The layers, with their tensors resolved to views into the blob.
    pub fn layers(&self) -> &[Layer<Mat<'a>>] {
        &self.layers
    }

    pub(crate) fn plans(&self) -> &[Plan] {
        &self.plans
    }

    /// Width of one output timestep (or of the output vector).
    pub fn output_width(&self) -> usize {
        self.plans.last().map_or(0, |p| p.output_width)
    }

    /// Whether the model's output is a sequence of timesteps rather than one vector.
    pub fn output_is_sequence(&self) -> bool {
        self.plans.last().is_some_and(|p| p.sequence_out)
    }

    /// Whether [`crate::Runtime::step`] can run this model one timestep at a time.
    pub fn is_streamable(&self) -> bool {
        self.streamable
    }

    /// Timesteps of output a window of `steps` input timesteps produces (1 for a vector output).
    pub fn output_steps(&self, steps: usize) -> Result<usize, Error> {
        if steps == 0 {
            return Err(Error::WindowLength { steps });
        }
        if let Some(fixed) = self.input.steps {
            if steps != fixed as usize {
                return Err(Error::WindowLength { steps });
            }
        }
        let mut t = steps;
        for layer in &self.layers {
            t = match layer {
                Layer::Recurrent(r) if !r.return_sequences => 1,
                Layer::LastStep => 1,
                Layer::Crop { start, end } => t
                    .checked_sub(*start as usize)
                    .and_then(|t| t.checked_sub(*end as usize))
                    .filter(|&t| t > 0)
                    .ok_or(Error::WindowLength { steps })?,
                Layer::KeepLast { steps: keep } => {
                    let keep = *keep as usize;
                    if t < keep {
                        return Err(Error::WindowLength { steps });
                    }
                    keep
                }
                _ => t,
            };
        }
        Ok(t)
    }

    /// Number of output values a window of `steps` timesteps produces.
    pub fn output_len(&self, steps: usize) -> Result<usize, Error> {
        Ok(self.output_steps(steps)? * self.output_width())
    }

    /// Timesteps of output one streaming step produces: the kept history of a cropped model, else 1.
    pub fn step_output_steps(&self) -> usize {
        self.stream_keep.unwrap_or(1)
    }

    /// Number of output values one streaming step produces.
    pub fn step_output_len(&self) -> usize {
        self.step_output_steps() * self.output_width()
    }

    pub(crate) fn recurrent_state(&self) -> usize {
        self.recurrent_state
    }

    pub(crate) fn max_width(&self) -> usize {
        self.max_width
    }

    pub(crate) fn stream_keep(&self) -> Option<usize> {
        self.stream_keep
    }

    /// Memory for streaming: state, and the scratch of one step. An integer-only model keeps its
    /// states and activations as `i16`, two to a word, and its gate sums as `i32`, one to a word.
    pub fn memory(&self) -> Memory {
        let history = if self.streamable {
            self.step_output_len()
        } else {
            0
        };
        let state = self.recurrent_state + history;
        if self.is_integer() {
            Memory {
                state: state.div_ceil(2),
                scratch: 2 * self.max_width.div_ceil(2) + self.cell_scratch,
            }
        } else {
            Memory {
                state,
                scratch: 2 * self.max_width + self.cell_scratch,
            }
        }
    }

    /// Words of one sequence buffer of `values` activations.
    pub(crate) fn activation_words(&self, values: usize) -> usize {
        if self.is_integer() {
            values.div_ceil(2)
        } else {
            values
        }
    }

    /// Memory for [`crate::Runtime::run_window`] over `steps` timesteps. The state is the same as for
    /// streaming; the scratch holds two whole sequences.
    pub fn window_memory(&self, steps: usize) -> Result<Memory, Error> {
        self.output_steps(steps)?;
        let sequence = steps
            .checked_mul(self.max_width)
            .map(|s| self.activation_words(s))
            .and_then(|s| s.checked_mul(2))
            .and_then(|s| s.checked_add(self.cell_scratch))
            .ok_or(Error::WindowLength { steps })?;
        let streaming = self.memory();
        Ok(Memory {
            state: streaming.state,
            scratch: sequence.max(streaming.scratch),
        })
    }

    /// Multiply-accumulates of one streaming step (bidirectional layers counted in both directions).
    pub fn macs_per_step(&self) -> usize {
        self.layers
            .iter()
            .map(|layer| match layer {
                Layer::Recurrent(r) => {
                    let one = r.forward.kernel.len()
                        + r.forward.recurrent.len()
                        + r.forward.peephole.map_or(0, |p| p.len());
                    one * if r.backward.is_some() { 2 } else { 1 }
                }
                Layer::Dense(d) => d.weight.len(),
                Layer::Residual(r) => r.skip.map_or(0, |s| {
                    // Per-target maps (`horizon·targets` rows) run once each; a shared one per target.
                    let forecast = self
                        .input
                        .steps
                        .and_then(|t| self.output_len(t as usize).ok())
                        .unwrap_or(0);
                    if s.rows == forecast {
                        s.len()
                    } else {
                        s.len() * r.inputs.len()
                    }
                }),
                _ => 0,
            })
            .sum()
    }
}

/// The data section, as bytes and as the same bytes viewed as `f32`s, `i32`s and `i16`s.
#[derive(Clone, Copy)]
struct Data<'a> {
    bytes: &'a [u8],
    floats: &'a [f32],
    ints: &'a [i32],
    halves: &'a [i16],
}

/// Checks the preamble, checksum and header; returns the header and the data section.
fn parse(blob: &[u8]) -> Result<(Header<'_>, Data<'_>), Error> {
    let min = PREAMBLE_LEN + CRC_LEN;
    if blob.len() < min {
        return Err(Error::Truncated {
            needed: min,
            got: blob.len(),
        });
    }
    let (body, crc_bytes) = blob.split_at(blob.len() - CRC_LEN);
    if body.get(0..4) != Some(&MAGIC[..]) {
        return Err(Error::BadMagic);
    }
    let version = u16::from_le_bytes([body[4], body[5]]);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion { found: version });
    }
    let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let computed = CRC.checksum(body);
    if stored != computed {
        return Err(Error::Checksum { stored, computed });
    }
    let header_len = u32::from_le_bytes([body[8], body[9], body[10], body[11]]) as usize;
    let data_offset = u32::from_le_bytes([body[12], body[13], body[14], body[15]]) as usize;
    let header_end = PREAMBLE_LEN
        .checked_add(header_len)
        .ok_or(Error::BadPreamble)?;
    if body[6] != 0
        || body[7] != 0
        || data_offset % TENSOR_ALIGN != 0
        || data_offset < header_end
        || data_offset > body.len()
    {
        return Err(Error::BadPreamble);
    }
    let header_bytes = body
        .get(PREAMBLE_LEN..header_end)
        .ok_or(Error::BadPreamble)?;
    if body
        .get(header_end..data_offset)
        .is_none_or(|pad| pad.iter().any(|&b| b != 0))
    {
        return Err(Error::BadPreamble);
    }
    let (header, rest) =
        postcard::take_from_bytes::<Header<'_>>(header_bytes).map_err(|_| Error::BadHeader)?;
    if !rest.is_empty() {
        return Err(Error::BadHeader);
    }
    let data = body.get(data_offset..).ok_or(Error::BadPreamble)?;
    Ok((
        header,
        Data {
            bytes: data,
            floats: as_f32(data)?,
            ints: as_i32(data)?,
            halves: as_i16(data)?,
        },
    ))
}

/// Views little-endian bytes as `f32`s in place.
fn as_f32(bytes: &[u8]) -> Result<&[f32], Error> {
    if cfg!(target_endian = "big") || bytes.len() % 4 != 0 {
        return Err(Error::Misaligned);
    }
    // SAFETY: every bit pattern is a valid f32, and `align_to` only yields the middle part where the
    // address is suitably aligned; a non-empty prefix or suffix means misalignment, which we reject.
    let (prefix, floats, suffix) = unsafe { bytes.align_to::<f32>() };
    if !prefix.is_empty() || !suffix.is_empty() {
        return Err(Error::Misaligned);
    }
    Ok(floats)
}

/// Resolves and checks the raw-unit scalers against the model's input and output widths (a token model
/// has no input scaler).
fn check_scaling<'a>(
    scaling: &Scaling<TensorRef>,
    data: Data<'a>,
    input_width: usize,
    output_width: usize,
) -> Result<Scaling<&'a [f32]>, Error> {
    let one = |t: &Option<TensorRef>, output: bool| -> Result<Option<&'a [f32]>, Error> {
        let Some(t) = t else {
            return Ok(None);
        };
        let bad = Error::BadScaler { output };
        let pairs = t.rows as usize;
        let fits = if output {
            pairs > 0 && output_width % pairs == 0
        } else {
            pairs > 0 && pairs == input_width
        };
        if t.dtype != DType::F32 || t.cols != 2 || !fits {
            return Err(bad);
        }
        let Ok(Mat {
            values: Values::F32(values),
            ..
        }) = resolve(data, t, u8::MAX)
        else {
            return Err(bad);
        };
        let valid = values
            .chunks_exact(2)
            // A bit test for the non-zero scale: opening links no soft-float routine on an FPU-less core.
            .all(|pair| pair[0].is_finite() && pair[1].is_finite() && pair[1].to_bits() << 1 != 0);
        if !valid {
            return Err(bad);
        }
        Ok(Some(values))
    };
    Ok(Scaling {
        input: one(&scaling.input, false)?,
        output: one(&scaling.output, true)?,
    })
}

/// Views little-endian bytes as `i32`s in place.
fn as_i32(bytes: &[u8]) -> Result<&[i32], Error> {
    if cfg!(target_endian = "big") || bytes.len() % 4 != 0 {
        return Err(Error::Misaligned);
    }
    // SAFETY: every bit pattern is a valid i32; a non-empty prefix or suffix (misalignment) is rejected.
    let (prefix, ints, suffix) = unsafe { bytes.align_to::<i32>() };
    if !prefix.is_empty() || !suffix.is_empty() {
        return Err(Error::Misaligned);
    }
    Ok(ints)
}

/// Views little-endian bytes as `i16`s in place.
fn as_i16(bytes: &[u8]) -> Result<&[i16], Error> {
    if cfg!(target_endian = "big") || bytes.len() % 2 != 0 {
        return Err(Error::Misaligned);
    }
    // SAFETY: every bit pattern is a valid i16; a non-empty prefix or suffix (misalignment) is rejected.
    let (prefix, halves, suffix) = unsafe { bytes.align_to::<i16>() };
    if !prefix.is_empty() || !suffix.is_empty() {
        return Err(Error::Misaligned);
    }
    Ok(halves)
}

fn check_width(n: u32, layer: u8) -> Result<usize, Error> {
    if n == 0 || n > MAX_WIDTH {
        return Err(Error::TooLarge { layer });
    }
    Ok(n as usize)
}

fn check_io(io: &IoLayout) -> Result<(), Error> {
    match io.output {
        format::OutputLayout::BatchFirst | format::OutputLayout::TimeFirst => Ok(()),
        format::OutputLayout::OnnxSequence { directions, .. }
        | format::OutputLayout::OnnxFinalState { directions, .. } => {
            if directions == 1 || directions == 2 {
                Ok(())
            } else {
                Err(Error::BadHeader)
            }
        }
    }
}

/// Bounds- and alignment-checks one tensor (and the scales of an int8 one) and views it.
fn resolve<'a>(data: Data<'a>, t: &TensorRef, layer: u8) -> Result<Mat<'a>, Error> {
    let bad = Error::BadTensor { layer };
    if t.offset as usize % TENSOR_ALIGN != 0 {
        return Err(bad);
    }
    let (rows, cols) = (t.rows as usize, t.cols as usize);
    let len = rows.checked_mul(cols).ok_or(bad)?;
    let start = t.offset as usize;
    let values = match (t.dtype, t.scale) {
        (DType::F32, None) => Values::F32(floats(data, start, len).ok_or(bad)?),
        (DType::I8, Some(scale)) => {
            let end = start.checked_add(len).ok_or(bad)?;
            let values = data.bytes.get(start..end).ok_or(bad)?;
            let scale = scale as usize;
            let scales = (scale % TENSOR_ALIGN == 0)
                .then(|| floats(data, scale, rows))
                .flatten()
                .filter(|s| s.iter().all(|v| v.is_finite()))
                .ok_or(Error::BadScale { layer })?;
            Values::I8 { values, scales }
        }
        (DType::I8Requant, Some(scale)) => {
            let end = start.checked_add(len).ok_or(bad)?;
            let values = data.bytes.get(start..end).ok_or(bad)?;
            let scale = scale as usize;
            let requant = (scale % TENSOR_ALIGN == 0)
                .then(|| {
                    let from = scale / 4;
                    data.ints.get(from..from.checked_add(rows.checked_mul(2)?)?)
                })
                .flatten()
                .filter(|pairs| pairs.chunks_exact(2).all(valid_requant))
                .ok_or(Error::BadScale { layer })?;
            Values::I8Requant { values, requant }
        }
        (DType::I16Requant, Some(scale)) => {
            let from = start / 2;
            let values = data
                .halves
                .get(from..from.checked_add(len).ok_or(bad)?)
                .ok_or(bad)?;
            let scale = scale as usize;
            let requant = (scale % TENSOR_ALIGN == 0)
                .then(|| {
                    let from = scale / 4;
                    data.ints.get(from..from.checked_add(rows.checked_mul(2)?)?)
                })
                .flatten()
                .filter(|pairs| pairs.chunks_exact(2).all(valid_requant))
                .ok_or(Error::BadScale { layer })?;
            Values::I16Requant { values, requant }
        }
        (DType::I16, None) => {
            let from = start / 2;
            Values::I16(
                data.halves
                    .get(from..from.checked_add(len).ok_or(bad)?)
                    .ok_or(bad)?,
            )
        }
        (DType::I32, None) => {
            let from = start / 4;
            Values::I32(
                data.ints
                    .get(from..from.checked_add(len).ok_or(bad)?)
                    .ok_or(bad)?,
            )
        }
        (DType::I8 | DType::I8Requant | DType::I16Requant, None) => {
            return Err(Error::BadScale { layer })
        }
        (DType::F32 | DType::I16 | DType::I32, Some(_)) => return Err(bad),
    };
    Ok(Mat { values, rows, cols })
}

/// `len` f32 values from byte `offset` (a multiple of 16) of the data section.
fn floats(data: Data<'_>, offset: usize, len: usize) -> Option<&[f32]> {
    floats_at(data.floats, offset, len)
}

/// `len` f32 values from byte `offset` (a multiple of 16) of a data section viewed as `f32`s.
pub(crate) fn floats_at(floats: &[f32], offset: usize, len: usize) -> Option<&[f32]> {
    if offset % TENSOR_ALIGN != 0 {
        return None;
    }
    let start = offset / DType::F32.size();
    floats.get(start..start.checked_add(len)?)
}

/// A requantization pair: a non-negative multiplier below 2^31 and a shift in `1..=62`.
fn valid_requant(pair: &[i32]) -> bool {
    matches!(pair, [m, s] if *m >= 0 && (1..=62).contains(s))
}

/// In f32 and `i8w` models, int8 is for weight matrices and embedding tables and every vector (bias,
/// peephole, initial state) stays f32. In an integer-only model every matrix is
/// [`DType::I8Requant`], biases and peepholes are [`DType::I32`] and initial states [`DType::I16`].
fn check_dtypes(layer: &Layer<Mat<'_>>, integer: bool, id: u8) -> Result<(), Error> {
    // Window normalisation and the skip path run in f32 and i8w only.
    if integer && matches!(layer, Layer::SubtractLast | Layer::Residual(_)) {
        return Err(Error::UnsupportedLayer { layer: id });
    }
    let (matrix_ok, vector, state): (fn(DType) -> bool, DType, DType) = if integer {
        (
            |d| matches!(d, DType::I8Requant | DType::I16Requant),
            DType::I32,
            DType::I16,
        )
    } else {
        (
            |d| matches!(d, DType::F32 | DType::I8),
            DType::F32,
            DType::F32,
        )
    };
    let is = |t: &Option<Mat<'_>>, want: DType| t.as_ref().is_some_and(|m| m.dtype() != want);
    let bad = match layer {
        Layer::Recurrent(r) => [Some(&r.forward), r.backward.as_ref()]
            .into_iter()
            .flatten()
            .any(|w| {
                !matrix_ok(w.kernel.dtype())
                    || !matrix_ok(w.recurrent.dtype())
                    || is(&w.bias, vector)
                    || is(&w.recurrent_bias, vector)
                    || is(&w.peephole, vector)
                    || is(&w.initial_h, state)
                    || is(&w.initial_c, state)
            }),
        Layer::Dense(d) => !matrix_ok(d.weight.dtype()) || is(&d.bias, vector),
        Layer::Embedding(e) => !matrix_ok(e.table.dtype()),
        Layer::Residual(r) => {
            r.skip.as_ref().is_some_and(|m| !matrix_ok(m.dtype())) || is(&r.skip_bias, vector)
        }
        _ => false,
    };
    if bad {
        Err(Error::BadTensor { layer: id })
    } else {
        Ok(())
    }
}

/// Checks one layer's fixed-point formats; `input_frac` is the format of what enters the layer.
fn check_fixed(
    layer: &Layer<Mat<'_>>,
    f: &FixedLayer,
    input_frac: u8,
    id: u8,
) -> Result<(), Error> {
    let bad = Err(Error::BadFixedPoint { layer: id });
    if f.output_frac > MAX_FRAC || f.state_frac > MAX_FRAC || f.cell_frac > MAX_FRAC {
        return bad;
    }
    match layer {
        Layer::Recurrent(r) => {
            if r.clip.is_some() != (f.clip > 0) || f.clip < 0 {
                return bad;
            }
            if matches!(r.direction, Direction::Bidirectional(Merge::Concat))
                && f.output_frac != f.state_frac
            {
                return bad;
            }
        }
        Layer::Crop { .. } | Layer::KeepLast { .. } | Layer::LastStep
            if f.output_frac != input_frac =>
        {
            return bad;
        }
        _ => {}
    }
    Ok(())
}

fn check_shape(m: &Mat<'_>, rows: usize, cols: usize, layer: u8) -> Result<(), Error> {
    if m.rows == rows && m.cols == cols {
        Ok(())
    } else {
        Err(Error::TensorShape { layer })
    }
}

/// Checks a residual layer: last, over feature input, with a forecast of `horizon × targets` values
/// entering it and skip weights of `horizon × window` (shared) or `horizon·targets × window` (one map per
/// target). Returns the scratch words it needs.
#[allow(clippy::too_many_arguments)]
fn check_residual(
    r: &format::Residual<Mat<'_>>,
    last: bool,
    input_width: usize,
    window: Option<usize>,
    sequence: bool,
    steps: Option<usize>,
    width: usize,
    layer: u8,
) -> Result<usize, Error> {
    let mismatch = Error::LayerMismatch { layer };
    let targets = r.inputs.len();
    if !last || input_width == 0 || targets == 0 || width % targets != 0 {
        return Err(mismatch);
    }
    if r.inputs.iter().any(|&f| f as usize >= input_width) {
        return Err(mismatch);
    }
    let horizon = match (sequence, steps) {
        (false, _) => width / targets,
        (true, Some(steps)) if width == targets => steps,
        _ => return Err(mismatch),
    };
    match (&r.skip, &r.skip_bias) {
        (None, None) => Ok(0),
        (None, Some(_)) => Err(Error::UnsupportedLayer { layer }),
        (Some(skip), bias) => {
            let window = window.ok_or(mismatch)?;
            // One map shared by every target, or one per target stacked by rows.
            let rows = if skip.rows == horizon * targets {
                skip.rows
            } else {
                horizon
            };
            check_shape(skip, rows, window, layer)?;
            if let Some(b) = bias {
                check_shape(b, rows, 1, layer)?;
            }
            Ok(window + horizon)
        }
    }
}

/// Checks a recurrent layer against its input width; returns its hidden size.
fn check_recurrent(r: &Recurrent<Mat<'_>>, input: usize, layer: u8) -> Result<usize, Error> {
    let hidden = check_width(r.hidden, layer)?;
    let unsupported = Error::UnsupportedLayer { layer };
    let elementwise = |a: Activation| !matches!(a, Activation::Softmax);
    if !elementwise(r.activation) || !elementwise(r.gate_activation) {
        return Err(unsupported);
    }
    if let Some(clip) = r.clip {
        if !(clip.is_finite() && clip > 0.0) {
            return Err(unsupported);
        }
    }
    match (r.direction, &r.backward) {
        (Direction::Bidirectional(_), Some(backward)) => {
            check_cell(r.cell, backward, input, hidden, layer)?
        }
        (Direction::Forward | Direction::Reverse, None) => {}
        _ => return Err(Error::LayerMismatch { layer }),
    }
    check_cell(r.cell, &r.forward, input, hidden, layer)?;
    Ok(hidden)
}

fn check_cell(
    cell: Cell,
    w: &CellWeights<Mat<'_>>,
    input: usize,
    hidden: usize,
    layer: u8,
) -> Result<(), Error> {
    let rows = cell.gates() * hidden;
    if w.kernel.cols != input {
        return Err(Error::LayerMismatch { layer });
    }
    check_shape(&w.kernel, rows, input, layer)?;
    check_shape(&w.recurrent, rows, hidden, layer)?;
    if let Some(b) = &w.bias {
        check_shape(b, rows, 1, layer)?;
    }
    let unsupported = Error::UnsupportedLayer { layer };
    match (&w.recurrent_bias, cell) {
        (None, _) => {}
        (Some(b), Cell::Gru { reset_after: true }) => check_shape(b, rows, 1, layer)?,
        (Some(_), _) => return Err(unsupported),
    }
    match (&w.peephole, cell) {
        (None, _) => {}
        (Some(p), Cell::Lstm { .. }) => check_shape(p, 3 * hidden, 1, layer)?,
        (Some(_), _) => return Err(unsupported),
    }
    if let Some(h) = &w.initial_h {
        check_shape(h, hidden, 1, layer)?;
    }
    match (&w.initial_c, cell) {
        (None, _) => {}
        (Some(c), Cell::Lstm { .. }) => check_shape(c, hidden, 1, layer)?,
        (Some(_), _) => return Err(unsupported),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::format::{Dense, InputLayout, OutputLayout, TENSOR_ALIGN};
    use crate::Runtime;

    /// A blob holding one Dense layer `y = W x + b` with `W = [[1, 2, 3], [4, 5, 6]]`, `b = [0.5, -1]`.
    fn dense_blob() -> Vec<u8> {
        let mut data = Vec::new();
        for v in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0, 0.5, -1.0] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        dense_blob_with(
            tensor(DType::F32, 2, 3, 0, None),
            Some(tensor(DType::F32, 2, 1, 32, None)),
            &data,
        )
    }

    fn tensor(dtype: DType, rows: u32, cols: u32, offset: u32, scale: Option<u32>) -> TensorRef {
        TensorRef {
            dtype,
            rows,
            cols,
            offset,
            scale,
        }
    }

    /// A blob holding one Dense layer of 3 inputs with the given tensors over `data`.
    fn dense_blob_with(weight: TensorRef, bias: Option<TensorRef>, data: &[u8]) -> Vec<u8> {
        dense_blob_full(weight, bias, Scaling::default(), data, None)
    }

    /// The same, with raw-unit scalers.
    fn scaled_blob_with(
        weight: TensorRef,
        bias: Option<TensorRef>,
        scaling: Scaling<TensorRef>,
        data: &[u8],
    ) -> Vec<u8> {
        dense_blob_full(weight, bias, scaling, data, None)
    }

    /// [`dense_blob_with`], with the header's fixed-point formats.
    fn dense_blob_fixed(
        weight: TensorRef,
        bias: Option<TensorRef>,
        data: &[u8],
        fixed: Option<FixedPoint>,
    ) -> Vec<u8> {
        dense_blob_full(weight, bias, Scaling::default(), data, fixed)
    }

    /// A one-Dense-layer blob with everything the header can say.
    fn dense_blob_full(
        weight: TensorRef,
        bias: Option<TensorRef>,
        scaling: Scaling<TensorRef>,
        data: &[u8],
        fixed: Option<FixedPoint>,
    ) -> Vec<u8> {
        let mut layers = heapless::Vec::new();
        layers
            .push(Layer::Dense(Dense {
                weight,
                bias,
                activation: Activation::Linear,
            }))
            .unwrap();
        let header = Header {
            input: Input {
                kind: InputKind::Features(3),
                steps: None,
            },
            layers,
            io: IoLayout {
                input: InputLayout::BatchFirst,
                output: OutputLayout::BatchFirst,
            },
            scaling,
            meta: Meta {
                name: "dense",
                source: "hand-built",
                producer: "engine tests",
                inputs: "a\nb\nc",
                outputs: "",
                info: "{}",
            },
            selftest: None,
            vocabulary: None,
            fixed,
        };
        let encoded = postcard::to_allocvec(&header).unwrap();
        let data_offset = format::align_up(PREAMBLE_LEN + encoded.len()).unwrap();
        let mut blob = Vec::new();
        blob.extend_from_slice(&MAGIC);
        blob.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        blob.extend_from_slice(&[0, 0]);
        blob.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        blob.extend_from_slice(&(data_offset as u32).to_le_bytes());
        blob.extend_from_slice(&encoded);
        blob.resize(data_offset, 0);
        blob.extend_from_slice(data);
        let crc = CRC.checksum(&blob);
        blob.extend_from_slice(&crc.to_le_bytes());
        blob
    }

    /// Int8 weights `[[1, 2, 3], [-4, -5, -128]]` with row scales `[0.5, 2]`, then the f32 bias at 32.
    fn int8_data(scale_1: f32) -> Vec<u8> {
        let mut data = std::vec![1u8, 2, 3, 0xfc, 0xfb, 0x80];
        data.resize(16, 0);
        data.extend_from_slice(&0.5f32.to_le_bytes());
        data.extend_from_slice(&scale_1.to_le_bytes());
        data.resize(32, 0);
        data.extend_from_slice(&0.5f32.to_le_bytes());
        data.extend_from_slice(&(-1.0f32).to_le_bytes());
        data
    }

    fn open_placed(blob: &[u8]) -> Result<(), Error> {
        let (words, len) = placed(blob, 0);
        Model::open(view(&words, 0, len)).map(|_| ())
    }

    #[test]
    fn int8_weights_run_scaled_per_row() {
        let blob = dense_blob_with(
            tensor(DType::I8, 2, 3, 0, Some(16)),
            Some(tensor(DType::F32, 2, 1, 32, None)),
            &int8_data(2.0),
        );
        let (words, len) = placed(&blob, 0);
        let model = Model::open(view(&words, 0, len)).unwrap();
        let mut memory = [0.0f32; 16];
        let mut runtime = Runtime::new(&model, &mut memory).unwrap();
        let mut y = [0.0f32; 2];
        runtime.step(&[1.0, 0.0, -1.0], &mut y).unwrap();
        assert_eq!(y, [0.5 * (1.0 - 3.0) + 0.5, 2.0 * (-4.0 + 128.0) - 1.0]);
    }

    #[test]
    fn int8_scales_are_checked() {
        let weight = |scale| tensor(DType::I8, 2, 3, 0, scale);
        let bias = Some(tensor(DType::F32, 2, 1, 32, None));
        let bad_scale = Err(Error::BadScale { layer: 0 });
        // Missing, misaligned, out of bounds, not finite.
        for scale in [None, Some(20), Some(48)] {
            let blob = dense_blob_with(weight(scale), bias, &int8_data(2.0));
            assert_eq!(open_placed(&blob), bad_scale, "{scale:?}");
        }
        for value in [f32::NAN, f32::INFINITY] {
            let blob = dense_blob_with(weight(Some(16)), bias, &int8_data(value));
            assert_eq!(open_placed(&blob), bad_scale);
        }
        // An f32 tensor with scales, and an int8 bias, are refused.
        let blob = dense_blob_with(
            tensor(DType::F32, 2, 1, 32, Some(16)),
            None,
            &int8_data(2.0),
        );
        assert_eq!(open_placed(&blob), Err(Error::BadTensor { layer: 0 }));
        let blob = dense_blob_with(
            weight(Some(16)),
            Some(tensor(DType::I8, 2, 1, 32, Some(16))),
            &int8_data(2.0),
        );
        assert_eq!(open_placed(&blob), Err(Error::BadTensor { layer: 0 }));
    }

    /// Int8 weights `[[1, 2, 3], [-4, -5, -128]]` with the pairs `(2^30, 31)` (× 1/2) at 16, then the
    /// `i32` bias `[100, -100]` at 32.
    fn integer_data(shift: i32) -> Vec<u8> {
        let mut data = std::vec![1u8, 2, 3, 0xfc, 0xfb, 0x80];
        data.resize(16, 0);
        for v in [1 << 30, shift, 1 << 30, shift, 100, -100] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        data
    }

    fn integer_blob(shift: i32, output_frac: u8) -> Vec<u8> {
        let mut layers = heapless::Vec::new();
        layers
            .push(FixedLayer {
                output_frac,
                state_frac: 0,
                cell_frac: 0,
                clip: 0,
            })
            .unwrap();
        dense_blob_fixed(
            tensor(DType::I8Requant, 2, 3, 0, Some(16)),
            Some(tensor(DType::I32, 2, 1, 32, None)),
            &integer_data(shift),
            Some(FixedPoint {
                input_frac: 0,
                layers,
            }),
        )
    }

    #[test]
    fn integer_dense_runs_in_i16() {
        let blob = integer_blob(31, 0);
        let (words, len) = placed(&blob, 0);
        let model = Model::open(view(&words, 0, len)).unwrap();
        assert!(model.is_integer());
        let mut memory = [0.0f32; 16];
        let mut runtime = Runtime::new(&model, &mut memory).unwrap();
        let mut y = [0i16; 2];
        // (10 − 30) / 2 + 100 and (−40 + 1280) / 2 − 100.
        runtime.step_i16(&[10, 0, -10], &mut y).unwrap();
        assert_eq!(y, [90, 520]);
        let mut out = [0i16; 4];
        runtime
            .run_window_i16(&[10, 0, -10, 0, 0, 0], &mut out)
            .unwrap();
        assert_eq!(out, [90, 520, 100, -100]);
        let mut yf = [0.0f32; 2];
        runtime.step(&[10.2, f32::NAN, -9.8], &mut yf).unwrap();
        assert_eq!(yf, [90.0, 520.0]);
        assert_eq!(runtime.state_i16().len(), model.recurrent_state() + 2);
        assert_eq!(
            runtime.step(&[1.0, 2.0], &mut yf),
            Err(Error::InputLength {
                expected: 3,
                got: 2
            })
        );
    }

    #[test]
    fn integer_formats_and_pairs_are_checked() {
        for shift in [0, 63, -1] {
            assert_eq!(
                open_placed(&integer_blob(shift, 0)),
                Err(Error::BadScale { layer: 0 }),
                "{shift}"
            );
        }
        assert_eq!(
            open_placed(&integer_blob(31, MAX_FRAC + 1)),
            Err(Error::BadFixedPoint { layer: 0 })
        );
        // Integer tensors in a float model, and float tensors in an integer model, are refused.
        let blob = dense_blob_with(
            tensor(DType::I8Requant, 2, 3, 0, Some(16)),
            Some(tensor(DType::I32, 2, 1, 32, None)),
            &integer_data(31),
        );
        assert_eq!(open_placed(&blob), Err(Error::BadTensor { layer: 0 }));
        let blob = dense_blob_fixed(
            tensor(DType::I8Requant, 2, 3, 0, Some(16)),
            Some(tensor(DType::F32, 2, 1, 32, None)),
            &integer_data(31),
            Some(FixedPoint {
                input_frac: 0,
                layers: heapless::Vec::new(),
            }),
        );
        assert_eq!(
            open_placed(&blob),
            Err(Error::BadFixedPoint { layer: u8::MAX })
        );
    }

    /// Copies bytes to `offset` bytes past a 16-byte boundary.
    fn placed(bytes: &[u8], offset: usize) -> (Vec<u128>, usize) {
        let mut words = std::vec![0u128; (bytes.len() + offset).div_ceil(TENSOR_ALIGN) + 1];
        let storage: &mut [u8] = bytes_of_mut(&mut words);
        storage[offset..offset + bytes.len()].copy_from_slice(bytes);
        (words, bytes.len())
    }

    fn bytes_of_mut(words: &mut [u128]) -> &mut [u8] {
        // SAFETY: u8 has no alignment or validity requirements, and the view covers exactly the
        // words' bytes for the borrow's lifetime.
        unsafe {
            core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 16)
        }
    }

    fn view(words: &[u128], offset: usize, len: usize) -> &[u8] {
        // SAFETY: as above, read-only.
        let all =
            unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 16) };
        &all[offset..offset + len]
    }

    #[test]
    fn aligned_blob_opens_and_runs_in_place() {
        let blob = dense_blob();
        let (words, len) = placed(&blob, 0);
        let model = Model::open(view(&words, 0, len)).unwrap();
        let mut memory = [0.0f32; 16];
        let mut runtime = Runtime::new(&model, &mut memory).unwrap();
        let mut y = [0.0f32; 2];
        runtime.step(&[1.0, 0.0, -1.0], &mut y).unwrap();
        assert_eq!(y, [1.0 - 3.0 + 0.5, 4.0 - 6.0 - 1.0]);
    }

    #[test]
    fn misaligned_blob_is_refused() {
        let blob = dense_blob();
        for offset in 1..4 {
            let (words, len) = placed(&blob, offset);
            assert_eq!(
                Model::open(view(&words, offset, len)).err(),
                Some(Error::Misaligned)
            );
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let blob = dense_blob();
        let (words, len) = placed(&blob, 0);
        let bytes = view(&words, 0, len);
        for n in 0..len {
            assert!(Model::open(&bytes[..n]).is_err());
        }
    }

    /// The Dense model of `dense_blob` (weights at 0, bias at 32) with an input scaler at 48 and an
    /// output scaler at 80 over `input` and `output` (`[offset, scale]` pairs).
    fn scaled_dense_blob(input: Option<(u32, &[f32])>, output: Option<(u32, &[f32])>) -> Vec<u8> {
        let mut data = Vec::new();
        for v in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0, 0.5, -1.0] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        let mut place = |offset: usize, values: &[f32]| {
            data.resize(offset, 0);
            for v in values {
                data.extend_from_slice(&v.to_le_bytes());
            }
        };
        let input_ref = input.map(|(rows, values)| {
            place(48, values);
            tensor(DType::F32, rows, 2, 48, None)
        });
        let output_ref = output.map(|(rows, values)| {
            place(80, values);
            tensor(DType::F32, rows, 2, 80, None)
        });
        scaled_blob_with(
            tensor(DType::F32, 2, 3, 0, None),
            Some(tensor(DType::F32, 2, 1, 32, None)),
            Scaling {
                input: input_ref,
                output: output_ref,
            },
            &data,
        )
    }

    const INPUT_MAP: [f32; 6] = [1.0, 2.0, -1.0, 0.5, 0.0, 4.0];
    const OUTPUT_MAP: [f32; 4] = [10.0, 3.0, -5.0, 0.25];

    #[test]
    fn scalers_open_and_map_raw_units_both_ways() {
        use crate::stream::{ModelScaler, Scaler};
        let blob = scaled_dense_blob(Some((3, &INPUT_MAP)), Some((2, &OUTPUT_MAP)));
        let (words, len) = placed(&blob, 0);
        let model = Model::open(view(&words, 0, len)).unwrap();
        assert_eq!(model.scaling().input, Some(&INPUT_MAP[..]));
        assert_eq!(model.scaling().output, Some(&OUTPUT_MAP[..]));
        assert_eq!(
            model.meta().input_names().collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(model.meta().output_names().count(), 0);
        let scaler = ModelScaler::of(&model);
        assert!(!scaler.is_identity());
        assert_eq!(scaler.scale_input(0, 5.0), (5.0 - 1.0) / 2.0);
        assert_eq!(scaler.scale_input(2, 8.0), 8.0 / 4.0);
        // Output value k uses row k % 2.
        assert_eq!(scaler.unscale_output(0, 2.0), 2.0 * 3.0 + 10.0);
        assert_eq!(scaler.unscale_output(3, 2.0), 2.0 * 0.25 - 5.0);

        // Raw samples in, raw forecasts out, through a Forecaster.
        let mut memory = [0.0f32; 32];
        let mut forecaster = crate::Forecaster::<1>::new(&model, &mut memory).unwrap();
        let raw = [3.0, 0.0, 4.0];
        let scaled = [(3.0 - 1.0) / 2.0, (0.0 + 1.0) / 0.5, 4.0 / 4.0];
        let model_out = [
            scaled[0] + 2.0 * scaled[1] + 3.0 * scaled[2] + 0.5,
            4.0 * scaled[0] + 5.0 * scaled[1] + 6.0 * scaled[2] - 1.0,
        ];
        let got = forecaster.push(&raw).unwrap().unwrap();
        assert_eq!(got, [model_out[0] * 3.0 + 10.0, model_out[1] * 0.25 - 5.0]);
    }

    #[test]
    fn a_blob_without_scalers_forecasts_in_model_units() {
        let blob = scaled_dense_blob(None, None);
        let (words, len) = placed(&blob, 0);
        let model = Model::open(view(&words, 0, len)).unwrap();
        assert!(crate::stream::ModelScaler::of(&model).is_identity());
        let mut memory = [0.0f32; 32];
        let mut forecaster = crate::Forecaster::<1>::new(&model, &mut memory).unwrap();
        assert_eq!(
            forecaster.push(&[1.0, 0.0, -1.0]).unwrap().unwrap(),
            [1.0 - 3.0 + 0.5, 4.0 - 6.0 - 1.0]
        );
    }

    #[test]
    fn one_output_row_serves_every_output_value() {
        let blob = scaled_dense_blob(None, Some((1, &OUTPUT_MAP[..2])));
        let (words, len) = placed(&blob, 0);
        let model = Model::open(view(&words, 0, len)).unwrap();
        let mut memory = [0.0f32; 32];
        let mut forecaster = crate::Forecaster::<1>::new(&model, &mut memory).unwrap();
        assert_eq!(
            forecaster.push(&[1.0, 0.0, -1.0]).unwrap().unwrap(),
            [
                (1.0 - 3.0 + 0.5) * 3.0 + 10.0,
                (4.0 - 6.0 - 1.0) * 3.0 + 10.0
            ]
        );
    }

    #[test]
    fn bad_scalers_are_refused() {
        let input = Err(Error::BadScaler { output: false });
        let output = Err(Error::BadScaler { output: true });
        let mut zero = INPUT_MAP;
        zero[3] = 0.0;
        let mut nan = INPUT_MAP;
        nan[0] = f32::NAN;
        let mut infinite = OUTPUT_MAP;
        infinite[1] = f32::INFINITY;
        let cases: [(Vec<u8>, Result<(), Error>); 7] = [
            // Two rows for three features; a zero scale; NaN offset.
            (scaled_dense_blob(Some((2, &INPUT_MAP[..4])), None), input),
            (scaled_dense_blob(Some((3, &zero)), None), input),
            (scaled_dense_blob(Some((3, &nan)), None), input),
            // Three rows do not divide an output width of 2; an infinite scale; no rows.
            (scaled_dense_blob(None, Some((3, &INPUT_MAP))), output),
            (scaled_dense_blob(None, Some((2, &infinite))), output),
            (scaled_dense_blob(None, Some((0, &[]))), output),
            // Rows beyond the data section.
            (scaled_dense_blob(None, Some((200, &OUTPUT_MAP))), output),
        ];
        for (index, (blob, expected)) in cases.into_iter().enumerate() {
            assert_eq!(open_placed(&blob), expected, "case {index}");
        }
        // An int8 scaler and a scaler with three columns.
        let mut blob_data = Vec::new();
        for v in [
            1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0, 0.5, -1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0,
        ] {
            blob_data.extend_from_slice(&v.to_le_bytes());
        }
        for bad in [
            tensor(DType::I8, 1, 2, 48, Some(48)),
            tensor(DType::F32, 1, 3, 48, None),
        ] {
            let blob = scaled_blob_with(
                tensor(DType::F32, 2, 3, 0, None),
                Some(tensor(DType::F32, 2, 1, 32, None)),
                Scaling {
                    input: None,
                    output: Some(bad),
                },
                &blob_data,
            );
            assert_eq!(open_placed(&blob), output);
        }
    }
}
