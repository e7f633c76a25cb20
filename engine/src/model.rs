//! Opening a blob: every byte is checked once here, so the runtime can trust what it reads.

use crate::cell::{self, Mat, Values};
use crate::error::Error;
use crate::format::{
    self, Activation, Cell, CellWeights, DType, Direction, Input, InputKind, IoLayout, Layer,
    Merge, Meta, Recurrent, TensorRef, CRC, CRC_LEN, FORMAT_VERSION, MAGIC, MAX_LAYERS,
    MAX_TENSORS, MAX_VOCAB, MAX_WIDTH, PREAMBLE_LEN, TENSOR_ALIGN,
};

/// Longest fixed window a blob may declare.
pub const MAX_STEPS: u32 = 1 << 20;

/// Memory a model needs from its caller, in `f32` words.
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
///
/// The model keeps its layers compactly, their tensors as indices into one table of offsets and shapes
/// ([`Model::layers`] resolves them to views as it goes). A fully resolved layer is ~0.4 kB, and sixteen
/// of them, copied a few times while opening, took tens of kB of stack; this way the model is ~2 kB and
/// opening it stays shallow, so a 16 KiB part can open a model.
#[derive(Clone, Debug)]
pub struct Model<'a> {
    input: Input,
    io: IoLayout,
    meta: Meta<'a>,
    /// The layers, their tensors as indices into `tensors`.
    layers: heapless::Vec<Layer<u8>, MAX_LAYERS>,
    tensors: heapless::Vec<Stored, MAX_TENSORS>,
    data: Data<'a>,
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
}

impl<'a> Model<'a> {
    /// Validates a blob completely (preamble, checksum, header, every tensor and every layer) and returns a
    /// view of it. The blob must stay where it is: tensors are read in place, so its data section must be
    /// 4-byte aligned in memory (`include_bytes!` into an aligned static, or a flash partition).
    ///
    /// The model is ~1.9 kB (on 32-bit targets) and is returned by value, which in practice costs about
    /// twice that in stack; [`Model::open_in`] opens it in place instead.
    pub fn open(blob: &'a [u8]) -> Result<Self, Error> {
        let mut place = None;
        Self::open_in(&mut place, blob)?;
        place.ok_or(Error::NoLayers)
    }

    /// [`Model::open`] into `place`, without moving the model: the stack it takes is that of
    /// validation (a few hundred bytes) plus the model wherever `place` lives. On error `place` is `None`.
    #[inline(never)]
    pub fn open_in<'p>(place: &'p mut Option<Self>, blob: &'a [u8]) -> Result<&'p Self, Error> {
        *place = None;
        let (header, data) = parse(blob)?;
        // `parse` has checked the closing CRC-32, so the last four bytes are there and trusted.
        let mut crc = [0u8; 4];
        if let Some(tail) = blob.get(blob.len().saturating_sub(CRC_LEN)..) {
            crc.iter_mut().zip(tail).for_each(|(d, s)| *d = *s);
        }
        let model = place.insert(Self {
            input: Input {
                kind: InputKind::Tokens,
                steps: None,
            },
            io: IoLayout {
                input: format::InputLayout::BatchFirst,
                output: format::OutputLayout::BatchFirst,
            },
            meta: Meta {
                name: "",
                source: "",
                producer: "",
            },
            layers: heapless::Vec::new(),
            tensors: heapless::Vec::new(),
            data,
            plans: heapless::Vec::new(),
            recurrent_state: 0,
            cell_scratch: 0,
            max_width: 0,
            stream_keep: None,
            streamable: false,
            id: u32::from_le_bytes(crc),
        });
        if let Err(error) = model.load(header) {
            *place = None;
            return Err(error);
        }
        place.as_ref().ok_or(Error::NoLayers)
    }

    /// Decodes the header field by field and validates each layer as it comes, so no more than one
    /// decoded layer is alive at a time.
    #[inline(never)]
    fn load(&mut self, header: &'a [u8]) -> Result<(), Error> {
        let (input, rest) =
            postcard::take_from_bytes::<Input>(header).map_err(|_| Error::BadHeader)?;
        let (count, layer_bytes) = take_length(rest).ok_or(Error::BadHeader)?;
        if count > MAX_LAYERS {
            return Err(Error::BadHeader);
        }
        if count == 0 {
            return Err(Error::NoLayers);
        }
        let input_width = match input.kind {
            InputKind::Features(n) => check_width(n, u8::MAX)?,
            InputKind::Tokens => 0,
        };
        if let Some(steps) = input.steps {
            if steps == 0 || steps > MAX_STEPS {
                return Err(Error::TooLarge { layer: u8::MAX });
            }
        }

        let mut walk = Walk {
            kind: input.kind,
            width: input_width,
            sequence: true,
            state: 0,
            cell_scratch: 0,
            max_width: input_width.max(1),
            streamable: true,
            stream_keep: None,
            fixed_steps: input.steps.map(|s| s as usize),
        };
        let mut rest = layer_bytes;
        for index in 0..count {
            let id = index as u8;
            let (compact, plan, after) =
                store_layer(rest, &mut self.tensors, self.data, &mut walk, id)?;
            rest = after;
            self.layers
                .push(compact)
                .map_err(|_| Error::TooLarge { layer: id })?;
            self.plans
                .push(plan)
                .map_err(|_| Error::TooLarge { layer: id })?;
        }
        let (io, rest) =
            postcard::take_from_bytes::<IoLayout>(rest).map_err(|_| Error::BadHeader)?;
        check_io(&io)?;
        let (meta, rest) =
            postcard::take_from_bytes::<Meta<'a>>(rest).map_err(|_| Error::BadHeader)?;
        if !rest.is_empty() {
            return Err(Error::BadHeader);
        }
        if input.kind == InputKind::Tokens
            && !matches!(self.layers.first(), Some(Layer::Embedding(_)))
        {
            return Err(Error::LayerMismatch { layer: 0 });
        }
        self.input = input;
        self.io = io;
        self.meta = meta;
        self.recurrent_state = walk.state;
        self.cell_scratch = walk.cell_scratch;
        self.max_width = walk.max_width;
        self.stream_keep = walk.stream_keep;
        self.streamable = walk.streamable;
        Ok(())
    }

    /// An identity for the model: the CRC-32 that closes its blob. Two blobs with the same bytes have the
    /// same identity; saved stream states carry it so they are only restored into the model that wrote them.
    pub fn id(&self) -> u32 {
        self.id
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

    /// The layers, first to last, with their tensors resolved to views into the blob.
    pub fn layers(&self) -> Layers<'_, 'a> {
        Layers {
            layers: self.layers.iter(),
            tensors: &self.tensors,
            data: self.data,
        }
    }

    /// The layers with their tensors as indices (see [`Model::weights`]); cheaper to walk than
    /// [`Model::layers`] where few tensors are needed.
    pub(crate) fn compact_layers(&self) -> &[Layer<u8>] {
        &self.layers
    }

    /// The tensors of one direction of a compact recurrent layer.
    pub(crate) fn weights(&self, weights: &CellWeights<u8>) -> CellWeights<Mat<'a>> {
        resolve_weights(weights, &self.tensors, self.data)
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

    /// Memory for streaming: state, and the scratch of one step.
    pub fn memory(&self) -> Memory {
        let history = if self.streamable {
            self.step_output_len()
        } else {
            0
        };
        Memory {
            state: self.recurrent_state + history,
            scratch: 2 * self.max_width + self.cell_scratch,
        }
    }

    /// Memory for [`crate::Runtime::run_window`] over `steps` timesteps. The state is the same as for
    /// streaming; the scratch holds two whole sequences.
    pub fn window_memory(&self, steps: usize) -> Result<Memory, Error> {
        self.output_steps(steps)?;
        let sequence = steps
            .checked_mul(self.max_width)
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
        self.layers()
            .map(|layer| match layer {
                Layer::Recurrent(r) => {
                    let one = r.forward.kernel.len()
                        + r.forward.recurrent.len()
                        + r.forward.peephole.map_or(0, |p| p.len());
                    one * if r.backward.is_some() { 2 } else { 1 }
                }
                Layer::Dense(d) => d.weight.len(),
                _ => 0,
            })
            .sum()
    }
}

/// What opening has learnt from the layers so far.
struct Walk {
    kind: InputKind,
    /// Width of the data leaving the last layer seen.
    width: usize,
    /// Whether that data is a sequence.
    sequence: bool,
    /// State words so far.
    state: usize,
    cell_scratch: usize,
    max_width: usize,
    streamable: bool,
    stream_keep: Option<usize>,
    /// Timesteps of the data, when they are known before a window arrives.
    fixed_steps: Option<usize>,
}

impl Walk {
    /// Checks layer `index` against what came before it and returns its plan.
    fn check(&mut self, index: usize, layer: &Layer<u8>, pool: Pool<'_>) -> Result<Plan, Error> {
        let id = index as u8;
        check_dtypes(layer, pool, id)?;
        let plan_in = self.width;
        let state_offset = self.state;
        match layer {
            Layer::Embedding(e) => {
                if index != 0 || self.kind != InputKind::Tokens {
                    return Err(Error::LayerMismatch { layer: id });
                }
                let table = pool.get(e.table);
                if table.rows == 0 || table.rows > MAX_VOCAB {
                    return Err(Error::TooLarge { layer: id });
                }
                self.width = check_width(table.cols, id)?;
            }
            Layer::Recurrent(r) => {
                if !self.sequence || (index == 0 && self.kind == InputKind::Tokens) {
                    return Err(Error::LayerMismatch { layer: id });
                }
                if self.stream_keep.is_some() {
                    // A recurrent layer after a crop re-reads a window: windowed only.
                    self.streamable = false;
                }
                let hidden = check_recurrent(r, pool, self.width, id)?;
                let directions = if r.backward.is_some() { 2 } else { 1 };
                if !matches!(r.direction, Direction::Forward) {
                    self.streamable = false;
                }
                self.state += directions * cell::state_words(r.cell, hidden);
                self.cell_scratch = self.cell_scratch.max(cell::scratch_words(r.cell, hidden));
                self.width = match r.direction {
                    Direction::Bidirectional(Merge::Concat) => 2 * hidden,
                    _ => hidden,
                };
                self.sequence = r.return_sequences;
                if !self.sequence {
                    self.fixed_steps = Some(1);
                }
            }
            Layer::Dense(d) => {
                if index == 0 && self.kind == InputKind::Tokens {
                    return Err(Error::LayerMismatch { layer: id });
                }
                let weight = pool.get(d.weight);
                if weight.cols as usize != self.width {
                    return Err(Error::LayerMismatch { layer: id });
                }
                let units = check_width(weight.rows, id)?;
                if let Some(b) = d.bias {
                    check_shape(pool.get(b), units, 1, id)?;
                }
                self.width = units;
            }
            Layer::Crop { start, end } => {
                if !self.sequence || index == 0 && self.kind == InputKind::Tokens {
                    return Err(Error::LayerMismatch { layer: id });
                }
                let (start, end) = (*start as usize, *end as usize);
                let kept = match self.fixed_steps {
                    Some(steps) => {
                        let kept = steps.saturating_sub(start).saturating_sub(end);
                        if kept == 0 {
                            return Err(Error::LayerMismatch { layer: id });
                        }
                        Some(kept)
                    }
                    None => None,
                };
                self.fixed_steps = kept;
                match (end, kept, self.stream_keep) {
                    (0, Some(kept), None) => self.stream_keep = Some(kept),
                    _ => self.streamable = false,
                }
            }
            Layer::LastStep => {
                if !self.sequence || index == 0 && self.kind == InputKind::Tokens {
                    return Err(Error::LayerMismatch { layer: id });
                }
                if self.stream_keep.is_some() {
                    self.streamable = false;
                }
                self.sequence = false;
                self.fixed_steps = Some(1);
            }
            Layer::KeepLast { steps } => {
                if !self.sequence || *steps == 0 || *steps > MAX_STEPS {
                    return Err(Error::LayerMismatch { layer: id });
                }
                let steps = *steps as usize;
                if let Some(fixed) = self.fixed_steps {
                    if fixed < steps {
                        return Err(Error::LayerMismatch { layer: id });
                    }
                }
                self.fixed_steps = Some(steps);
                match self.stream_keep {
                    None => self.stream_keep = Some(steps),
                    Some(_) => self.streamable = false,
                }
            }
        }
        self.max_width = self.max_width.max(self.width);
        Ok(Plan {
            input_width: plan_in,
            output_width: self.width,
            sequence_out: self.sequence,
            state_offset,
        })
    }
}

/// A tensor of a validated model, compactly: where it lies in the data section and its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stored {
    /// Byte offset of the values in the data section.
    offset: u32,
    /// Byte offset of an int8 tensor's row scales, or [`Stored::F32`] for an f32 tensor.
    scale: u32,
    rows: u32,
    cols: u32,
}

impl Stored {
    /// The `scale` of an f32 tensor (no valid scale offset is `u32::MAX`: it is not a multiple of 16).
    const F32: u32 = u32::MAX;

    /// Views the tensor in the data section; `None` if it lies outside.
    #[inline]
    fn view<'a>(&self, data: Data<'a>) -> Option<Mat<'a>> {
        let (rows, cols) = (self.rows as usize, self.cols as usize);
        let len = rows.checked_mul(cols)?;
        let start = self.offset as usize;
        let values = if self.scale == Self::F32 {
            Values::F32(floats(data, start, len)?)
        } else {
            Values::I8 {
                values: data.bytes.get(start..start.checked_add(len)?)?,
                scales: floats(data, self.scale as usize, rows)?,
            }
        };
        Some(Mat { values, rows, cols })
    }
}

/// The layers of a [`Model`], first to last, each resolved to views into the blob as it is reached.
#[derive(Clone, Debug)]
pub struct Layers<'m, 'a> {
    layers: core::slice::Iter<'m, Layer<u8>>,
    tensors: &'m [Stored],
    data: Data<'a>,
}

impl<'a> Iterator for Layers<'_, 'a> {
    type Item = Layer<Mat<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let layer = self.layers.next()?;
        Some(resolve(layer, self.tensors, self.data))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.layers.size_hint()
    }
}

/// Views the tensors of a compact layer in the data section. `Model::open` has resolved every one of
/// them, so no lookup fails; were one to, it would read as an empty matrix (which the kernels treat as
/// zeros) rather than panic. Built field by field rather than through [`Layer::try_map`], whose
/// by-value moves of a ~0.4 kB layer cost more than the lookups.
fn resolve<'a>(layer: &Layer<u8>, tensors: &[Stored], data: Data<'a>) -> Layer<Mat<'a>> {
    let mat = |i: u8| view(i, tensors, data);
    let weights = |w: &CellWeights<u8>| resolve_weights(w, tensors, data);
    match layer {
        Layer::Recurrent(r) => Layer::Recurrent(Recurrent {
            cell: r.cell,
            hidden: r.hidden,
            activation: r.activation,
            gate_activation: r.gate_activation,
            clip: r.clip,
            direction: r.direction,
            return_sequences: r.return_sequences,
            forward: weights(&r.forward),
            backward: r.backward.as_ref().map(weights),
        }),
        Layer::Dense(d) => Layer::Dense(format::Dense {
            weight: mat(d.weight),
            bias: d.bias.map(mat),
            activation: d.activation,
        }),
        Layer::Embedding(e) => Layer::Embedding(format::Embedding {
            table: mat(e.table),
        }),
        Layer::Crop { start, end } => Layer::Crop {
            start: *start,
            end: *end,
        },
        Layer::KeepLast { steps } => Layer::KeepLast { steps: *steps },
        Layer::LastStep => Layer::LastStep,
    }
}

/// Tensor `i` viewed in the data section (an empty matrix if it were missing; see [`resolve`]).
#[inline]
fn view<'a>(i: u8, tensors: &[Stored], data: Data<'a>) -> Mat<'a> {
    tensors
        .get(usize::from(i))
        .and_then(|t| t.view(data))
        .unwrap_or(Mat {
            values: Values::F32(&[]),
            rows: 0,
            cols: 0,
        })
}

fn resolve_weights<'a>(
    w: &CellWeights<u8>,
    tensors: &[Stored],
    data: Data<'a>,
) -> CellWeights<Mat<'a>> {
    let mat = |i: u8| view(i, tensors, data);
    CellWeights {
        kernel: mat(w.kernel),
        recurrent: mat(w.recurrent),
        bias: w.bias.map(mat),
        recurrent_bias: w.recurrent_bias.map(mat),
        peephole: w.peephole.map(mat),
        initial_h: w.initial_h.map(mat),
        initial_c: w.initial_c.map(mat),
    }
}

/// The data section, as bytes and as the same bytes viewed as `f32`s.
#[derive(Clone, Copy, Debug)]
struct Data<'a> {
    bytes: &'a [u8],
    floats: &'a [f32],
}

/// Checks the preamble and checksum; returns the postcard header bytes and the data section.
fn parse(blob: &[u8]) -> Result<(&[u8], Data<'_>), Error> {
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
    let data = body.get(data_offset..).ok_or(Error::BadPreamble)?;
    Ok((
        header_bytes,
        Data {
            bytes: data,
            floats: as_f32(data)?,
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

/// Reads a postcard sequence length (an unsigned LEB128 varint of at most 5 bytes here).
fn take_length(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut value = 0usize;
    for (i, &byte) in bytes.iter().enumerate().take(5) {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, bytes.get(i + 1..)?));
        }
    }
    None
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

/// Decodes the next layer from the header bytes, checking every tensor of it as it comes (bounds,
/// alignment, element type, finite int8 scales) and adding it to `tensors`; then checks the layer against
/// what came before (`walk`). Returns the layer with its tensors as indices into `tensors`, its plan, and
/// the bytes after it.
#[inline(never)]
fn store_layer<'h>(
    bytes: &'h [u8],
    tensors: &mut heapless::Vec<Stored, MAX_TENSORS>,
    data: Data<'_>,
    walk: &mut Walk,
    id: u8,
) -> Result<(Layer<u8>, Plan, &'h [u8]), Error> {
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let mut store = |t: TensorRef| -> Result<u8, Error> {
        let stored = check_tensor(data, &t, id)?;
        let index = u8::try_from(tensors.len()).map_err(|_| Error::TooLarge { layer: id })?;
        tensors
            .push(stored)
            .map_err(|_| Error::TooLarge { layer: id })?;
        Ok(index)
    };
    let layer = wire::layer(&mut de, &mut store)?;
    let rest = de.finalize().map_err(|_| Error::BadHeader)?;
    let plan = walk.check(usize::from(id), &layer, Pool(tensors))?;
    Ok((layer, plan, rest))
}

/// The tensors of a model being opened, looked up by index.
#[derive(Clone, Copy)]
struct Pool<'t>(&'t [Stored]);

impl Pool<'_> {
    /// Tensor `i`; an index not (yet) in the table reads as an empty f32 tensor, which no shape check
    /// accepts.
    fn get(self, i: u8) -> Stored {
        self.0.get(usize::from(i)).copied().unwrap_or(Stored {
            offset: 0,
            scale: Stored::F32,
            rows: 0,
            cols: 0,
        })
    }
}

/// Decoding a [`Layer`] with serde's derived code takes ~2 kB of stack on Cortex-M (a
/// `Layer<TensorRef>` is ~350 bytes and the derived visitors move it several times). These functions
/// decode the same postcard bytes field by field instead, and hand each tensor reference to `store` as
/// soon as it is read, so the layer is built with one-byte tensor indices. The leaf types (cells,
/// activations, tensor references) still go through serde; the test `wire_decoding_matches_serde`
/// checks every layer kind against the derived decoder, so a change to the schema in `format.rs` that is
/// not mirrored here fails it.
mod wire {
    use serde::Deserialize;

    use crate::error::Error;
    use crate::format::{CellWeights, Dense, Embedding, Layer, Recurrent, TensorRef};

    type De<'a, 'b> = &'a mut postcard::Deserializer<'b, postcard::de_flavors::Slice<'b>>;
    type Store<'s> = &'s mut dyn FnMut(TensorRef) -> Result<u8, Error>;

    fn take<'b, T: Deserialize<'b>>(de: De<'_, 'b>) -> Result<T, Error> {
        T::deserialize(de).map_err(|_| Error::BadHeader)
    }

    fn tensor(de: De<'_, '_>, store: Store<'_>) -> Result<u8, Error> {
        store(take(de)?)
    }

    fn optional(de: De<'_, '_>, store: Store<'_>) -> Result<Option<u8>, Error> {
        take::<Option<TensorRef>>(de)?.map(store).transpose()
    }

    /// A layer: a varint variant index, then the variant's fields in declaration order.
    pub(super) fn layer(de: De<'_, '_>, store: Store<'_>) -> Result<Layer<u8>, Error> {
        Ok(match take::<u32>(de)? {
            0 => Layer::Recurrent(Recurrent {
                cell: take(de)?,
                hidden: take(de)?,
                activation: take(de)?,
                gate_activation: take(de)?,
                clip: take(de)?,
                direction: take(de)?,
                return_sequences: take(de)?,
                forward: cell_weights(de, store)?,
                // An option: a 0 or 1 byte, then the value.
                backward: match take::<u8>(de)? {
                    0 => None,
                    1 => Some(cell_weights(de, store)?),
                    _ => return Err(Error::BadHeader),
                },
            }),
            1 => Layer::Dense(Dense {
                weight: tensor(de, store)?,
                bias: optional(de, store)?,
                activation: take(de)?,
            }),
            2 => Layer::Embedding(Embedding {
                table: tensor(de, store)?,
            }),
            3 => Layer::Crop {
                start: take(de)?,
                end: take(de)?,
            },
            4 => Layer::KeepLast { steps: take(de)? },
            5 => Layer::LastStep,
            _ => return Err(Error::BadHeader),
        })
    }

    fn cell_weights(de: De<'_, '_>, store: Store<'_>) -> Result<CellWeights<u8>, Error> {
        Ok(CellWeights {
            kernel: tensor(de, store)?,
            recurrent: tensor(de, store)?,
            bias: optional(de, store)?,
            recurrent_bias: optional(de, store)?,
            peephole: optional(de, store)?,
            initial_h: optional(de, store)?,
            initial_c: optional(de, store)?,
        })
    }
}

/// Bounds- and alignment-checks one tensor (and the scales of an int8 one).
fn check_tensor(data: Data<'_>, t: &TensorRef, layer: u8) -> Result<Stored, Error> {
    let bad = Error::BadTensor { layer };
    if t.offset as usize % TENSOR_ALIGN != 0 {
        return Err(bad);
    }
    let scale = match (t.dtype, t.scale) {
        (DType::F32, None) => Stored::F32,
        (DType::I8, Some(scale)) => {
            if scale as usize % TENSOR_ALIGN != 0
                || !floats(data, scale as usize, t.rows as usize)
                    .is_some_and(|s| s.iter().all(|v| v.is_finite()))
            {
                return Err(Error::BadScale { layer });
            }
            scale
        }
        (DType::I8, None) => return Err(Error::BadScale { layer }),
        (DType::F32, Some(_)) => return Err(bad),
    };
    let stored = Stored {
        offset: t.offset,
        scale,
        rows: t.rows,
        cols: t.cols,
    };
    // A NaN or an infinity in a weight or an initial state would poison every state it touches.
    match stored.view(data).ok_or(bad)?.values {
        Values::F32(values) if values.iter().any(|v| !v.is_finite()) => Err(bad),
        _ => Ok(stored),
    }
}

/// `len` f32 values from byte `offset` (a multiple of 16) of the data section.
fn floats(data: Data<'_>, offset: usize, len: usize) -> Option<&[f32]> {
    let start = offset / DType::F32.size();
    data.floats.get(start..start.checked_add(len)?)
}

/// Int8 is for weight matrices and embedding tables; every vector (bias, peephole, initial state) stays
/// f32.
fn check_dtypes(layer: &Layer<u8>, pool: Pool<'_>, id: u8) -> Result<(), Error> {
    let vector = |t: &Option<u8>| t.is_some_and(|i| pool.get(i).scale != Stored::F32);
    let bad = match layer {
        Layer::Recurrent(r) => [Some(&r.forward), r.backward.as_ref()]
            .into_iter()
            .flatten()
            .any(|w| {
                vector(&w.bias)
                    || vector(&w.recurrent_bias)
                    || vector(&w.peephole)
                    || vector(&w.initial_h)
                    || vector(&w.initial_c)
            }),
        Layer::Dense(d) => vector(&d.bias),
        _ => false,
    };
    if bad {
        Err(Error::BadTensor { layer: id })
    } else {
        Ok(())
    }
}

fn check_shape(m: Stored, rows: usize, cols: usize, layer: u8) -> Result<(), Error> {
    if m.rows as usize == rows && m.cols as usize == cols {
        Ok(())
    } else {
        Err(Error::TensorShape { layer })
    }
}

/// Checks a recurrent layer against its input width; returns its hidden size.
fn check_recurrent(
    r: &Recurrent<u8>,
    pool: Pool<'_>,
    input: usize,
    layer: u8,
) -> Result<usize, Error> {
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
            check_cell(r.cell, backward, pool, input, hidden, layer)?
        }
        (Direction::Forward | Direction::Reverse, None) => {}
        _ => return Err(Error::LayerMismatch { layer }),
    }
    check_cell(r.cell, &r.forward, pool, input, hidden, layer)?;
    Ok(hidden)
}

fn check_cell(
    cell: Cell,
    w: &CellWeights<u8>,
    pool: Pool<'_>,
    input: usize,
    hidden: usize,
    layer: u8,
) -> Result<(), Error> {
    let rows = cell.gates() * hidden;
    if pool.get(w.kernel).cols as usize != input {
        return Err(Error::LayerMismatch { layer });
    }
    check_shape(pool.get(w.kernel), rows, input, layer)?;
    check_shape(pool.get(w.recurrent), rows, hidden, layer)?;
    if let Some(b) = w.bias {
        check_shape(pool.get(b), rows, 1, layer)?;
    }
    let unsupported = Error::UnsupportedLayer { layer };
    match (&w.recurrent_bias, cell) {
        (None, _) => {}
        (Some(b), Cell::Gru { reset_after: true }) => check_shape(pool.get(*b), rows, 1, layer)?,
        (Some(_), _) => return Err(unsupported),
    }
    match (&w.peephole, cell) {
        (None, _) => {}
        (Some(p), Cell::Lstm { .. }) => check_shape(pool.get(*p), 3 * hidden, 1, layer)?,
        (Some(_), _) => return Err(unsupported),
    }
    if let Some(h) = w.initial_h {
        check_shape(pool.get(h), hidden, 1, layer)?;
    }
    match (&w.initial_c, cell) {
        (None, _) => {}
        (Some(c), Cell::Lstm { .. }) => check_shape(pool.get(*c), hidden, 1, layer)?,
        (Some(_), _) => return Err(unsupported),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::format::{Dense, Header, InputLayout, OutputLayout, TENSOR_ALIGN};
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
            meta: Meta {
                name: "dense",
                source: "hand-built",
                producer: "engine tests",
            },
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

    /// Found by the `open_and_step` fuzz target: a blob whose f32 tensor (here an initial state) held a
    /// NaN opened, and its state started poisoned. Every f32 value must be finite.
    #[test]
    fn non_finite_f32_values_are_refused() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut data = Vec::new();
            for v in [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0, 0.5, bad] {
                data.extend_from_slice(&v.to_le_bytes());
            }
            let blob = dense_blob_with(
                tensor(DType::F32, 2, 3, 0, None),
                Some(tensor(DType::F32, 2, 1, 32, None)),
                &data,
            );
            assert_eq!(open_placed(&blob), Err(Error::BadTensor { layer: 0 }));
        }
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

    /// Every layer kind, with every optional tensor present and absent.
    fn all_layer_kinds() -> Vec<Layer<TensorRef>> {
        let t = |n: u32| tensor(DType::F32, n, n + 1, 16 * n, None);
        let q = |n: u32| tensor(DType::I8, n, 3, 16 * n, Some(32 * n));
        let full = CellWeights {
            kernel: t(1),
            recurrent: q(2),
            bias: Some(t(3)),
            recurrent_bias: Some(t(4)),
            peephole: Some(t(5)),
            initial_h: Some(t(6)),
            initial_c: Some(t(7)),
        };
        let bare = CellWeights {
            kernel: q(8),
            recurrent: t(9),
            bias: None,
            recurrent_bias: None,
            peephole: None,
            initial_h: None,
            initial_c: None,
        };
        let recurrent = |forward, backward, direction| {
            Layer::Recurrent(Recurrent {
                cell: Cell::Gru { reset_after: true },
                hidden: 300,
                activation: Activation::Tanh,
                gate_activation: Activation::Sigmoid,
                clip: Some(2.5),
                direction,
                return_sequences: false,
                forward,
                backward,
            })
        };
        std::vec![
            recurrent(
                full.clone(),
                Some(bare.clone()),
                Direction::Bidirectional(Merge::Ave)
            ),
            recurrent(bare, None, Direction::Reverse),
            Layer::Dense(Dense {
                weight: t(10),
                bias: None,
                activation: Activation::Softmax,
            }),
            Layer::Dense(Dense {
                weight: q(11),
                bias: Some(t(12)),
                activation: Activation::Relu,
            }),
            Layer::Embedding(format::Embedding { table: t(200) }),
            Layer::Crop {
                start: 3,
                end: 70000
            },
            Layer::KeepLast { steps: 129 },
            Layer::LastStep,
        ]
    }

    #[test]
    fn wire_decoding_matches_serde() {
        for layer in all_layer_kinds() {
            let bytes = postcard::to_allocvec(&layer).unwrap();
            let mut seen = Vec::new();
            let mut de = postcard::Deserializer::from_bytes(&bytes);
            let compact = wire::layer(&mut de, &mut |t| {
                seen.push(t);
                Ok((seen.len() - 1) as u8)
            })
            .unwrap();
            assert!(de.finalize().unwrap().is_empty(), "{layer:?}");
            let back = compact
                .try_map(|i| seen.get(usize::from(i)).copied().ok_or(()))
                .unwrap();
            assert_eq!(back, layer);
            // Truncated encodings are errors.
            for n in 0..bytes.len() {
                let mut de = postcard::Deserializer::from_bytes(&bytes[..n]);
                assert!(
                    wire::layer(&mut de, &mut |_| Ok(0)).is_err(),
                    "{layer:?} at {n}"
                );
            }
        }
    }

    /// What lets a small part open a model: the model is a few compact tables, not sixteen resolved
    /// layers (~7 kB on a 32-bit target before). The bound is for 64-bit hosts, where pointers and
    /// `usize` are twice as wide; `firmware/` measures the Cortex-M figure.
    #[test]
    fn a_model_stays_small() {
        let size = core::mem::size_of::<Model<'static>>();
        assert!(size <= 2600, "Model is {size} bytes");
    }

    #[test]
    fn open_in_fills_the_place_or_leaves_it_empty() {
        let blob = dense_blob();
        let (words, len) = placed(&blob, 0);
        let bytes = view(&words, 0, len);
        let mut place = None;
        let id = Model::open_in(&mut place, bytes).unwrap().id();
        assert_eq!(id, Model::open(bytes).unwrap().id());
        assert!(place.is_some());
        assert_eq!(
            Model::open_in(&mut place, &bytes[..len - 1]).err(),
            Some(Error::Checksum {
                stored: u32::from_le_bytes([
                    bytes[len - 5],
                    bytes[len - 4],
                    bytes[len - 3],
                    bytes[len - 2]
                ]),
                computed: CRC.checksum(&bytes[..len - 5]),
            })
        );
        assert!(place.is_none());
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
}
