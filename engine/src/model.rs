//! Opening a blob: every byte is checked once here, so the runtime can trust what it reads.

use crate::cell::{self, Mat, Values};
use crate::error::Error;
use crate::format::{
    self, Activation, Cell, CellWeights, DType, Direction, FixedLayer, FixedPoint, Input,
    InputKind, IoLayout, Layer, Merge, Meta, Recurrent, Scaling, SelfTest, TensorRef, Vocabulary,
    CRC, CRC_LEN, FORMAT_VERSION, MAGIC, MAX_FRAC, MAX_LAYERS, MAX_RESIDUAL_TARGETS, MAX_TENSORS,
    MAX_VOCAB, MAX_WIDTH, PREAMBLE_LEN, TENSOR_ALIGN,
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
        self.state.saturating_add(self.scratch)
    }

    /// State plus scratch, in bytes.
    pub const fn bytes(&self) -> usize {
        self.total().saturating_mul(4)
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
/// of them, copied a few times while opening, took tens of kB of stack; this way the model is ~2.4 kB and
/// opening it stays shallow, so a 16 KiB part can open a model.
#[derive(Clone, Debug)]
pub struct Model<'a> {
    input: Input,
    io: IoLayout,
    meta: Meta<'a>,
    /// The layers, their tensors as indices into `tensors`.
    layers: heapless::Vec<Stage, MAX_LAYERS>,
    /// The targets of the residual layer, if the model ends in one.
    residual_inputs: heapless::Vec<u16, MAX_RESIDUAL_TARGETS>,
    tensors: heapless::Vec<Stored, MAX_TENSORS>,
    data: Data<'a>,
    plans: heapless::Vec<Plan, MAX_LAYERS>,
    /// State words of the recurrent layers (the keep-last history comes after them).
    recurrent_state: usize,
    /// Scratch for one recurrent step, the largest over layers.
    cell_scratch: usize,
    /// The least scratch one recurrent step can run in ([`Model::memory_compact`]).
    compact_cell_scratch: usize,
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
    ///
    /// The model is ~2.4 kB (on 32-bit targets) and is returned by value, which in practice costs about
    /// twice that in stack; [`Model::open_in`] opens it in place instead.
    pub fn open(blob: &'a [u8]) -> Result<Self, Error> {
        let mut place = None;
        Self::open_in(&mut place, blob)?;
        place.ok_or(Error::NoLayers)
    }

    /// [`Model::open`] into `place`, without moving the model: the stack it takes is that of
    /// validation (~2.3 kB on Cortex-M) plus the model wherever `place` lives. On error `place` is `None`.
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
                inputs: "",
                outputs: "",
                info: "",
            },
            layers: heapless::Vec::new(),
            residual_inputs: heapless::Vec::new(),
            tensors: heapless::Vec::new(),
            data,
            plans: heapless::Vec::new(),
            recurrent_state: 0,
            cell_scratch: 0,
            compact_cell_scratch: 0,
            max_width: 0,
            stream_keep: None,
            streamable: false,
            id: u32::from_le_bytes(crc),
            scaling: Scaling::default(),
            selftest: None,
            vocabulary: None,
            fixed: None,
        });
        if let Err(error) = model.load(header) {
            *place = None;
            return Err(error);
        }
        place.as_ref().ok_or(Error::NoLayers)
    }

    /// Decodes the header field by field. Each layer's tensors are checked (bounds, alignment, scales,
    /// finite values) and stored as the layer is read, so no decoded layer is held whole; the rest of the
    /// header follows; then every layer is checked against what came before it and against its integer
    /// formats, one resolved layer alive at a time.
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

        let mut rest = layer_bytes;
        // A layer's tensors are stored together: layer `k`'s end at `tensor_ends[k]`.
        let mut tensor_ends = [0u8; MAX_LAYERS];
        for (index, end) in tensor_ends.iter_mut().enumerate().take(count) {
            let id = index as u8;
            let (compact, after) = store_layer(rest, &mut self.tensors, self.data, id)?;
            rest = after;
            self.layers
                .push(Stage::new(compact, &mut self.residual_inputs))
                .map_err(|_| Error::TooLarge { layer: id })?;
            *end = self.tensors.len() as u8;
        }
        let (io, rest) =
            postcard::take_from_bytes::<IoLayout>(rest).map_err(|_| Error::BadHeader)?;
        check_io(&io)?;
        let (scaling, rest) =
            postcard::take_from_bytes::<Scaling<TensorRef>>(rest).map_err(|_| Error::BadHeader)?;
        let (meta, rest) =
            postcard::take_from_bytes::<Meta<'a>>(rest).map_err(|_| Error::BadHeader)?;
        let (selftest, rest) = postcard::take_from_bytes::<Option<SelfTest<TensorRef>>>(rest)
            .map_err(|_| Error::BadHeader)?;
        let (vocabulary, rest) = postcard::take_from_bytes::<Option<Vocabulary<'a>>>(rest)
            .map_err(|_| Error::BadHeader)?;
        let (fixed, rest) =
            postcard::take_from_bytes::<Option<FixedPoint>>(rest).map_err(|_| Error::BadHeader)?;
        if !rest.is_empty() {
            return Err(Error::BadHeader);
        }
        if let Some(fixed) = &fixed {
            if fixed.layers.len() != count || fixed.input_frac > MAX_FRAC {
                return Err(Error::BadFixedPoint { layer: u8::MAX });
            }
        }

        let mut walk = Walk {
            kind: input.kind,
            integer: fixed.is_some(),
            input_width,
            window: input.steps.map(|s| s as usize),
            layers: count,
            width: input_width,
            sequence: true,
            state: 0,
            cell_scratch: 0,
            compact_cell_scratch: 0,
            max_width: input_width.max(1),
            streamable: true,
            stream_keep: None,
            fixed_steps: input.steps.map(|s| s as usize),
        };
        check_mode_compiled_in(fixed.is_some())?;
        let mut frac = fixed.as_ref().map_or(0, |f| f.input_frac);
        let mut tensor_start = 0;
        for ((index, compact), &tensor_end) in self.layers.iter().enumerate().zip(&tensor_ends) {
            let id = index as u8;
            let layer = resolve(compact, &self.residual_inputs, &self.tensors, self.data);
            check_dtypes(&layer, fixed.is_some(), id)?;
            if let Some(f) = fixed.as_ref().and_then(|f| f.layers.get(index)) {
                check_fixed(&layer, f, frac, id)?;
                frac = f.output_frac;
            }
            let own = self
                .tensors
                .get(usize::from(tensor_start)..usize::from(tensor_end))
                .unwrap_or(&[]);
            check_finite(own, self.data, id)?;
            tensor_start = tensor_end;
            let plan = walk.check(index, &layer)?;
            self.plans
                .push(plan)
                .map_err(|_| Error::TooLarge { layer: id })?;
        }
        if input.kind == InputKind::Tokens
            && !matches!(self.layers.first(), Some(Stage::Embedding(_)))
        {
            return Err(Error::LayerMismatch { layer: 0 });
        }
        self.scaling = check_scaling(&scaling, self.data, input_width, walk.width)?;
        self.input = input;
        self.io = io;
        self.meta = meta;
        self.fixed = fixed;
        self.recurrent_state = walk.state;
        self.cell_scratch = walk.cell_scratch;
        self.compact_cell_scratch = walk.compact_cell_scratch;
        self.max_width = walk.max_width;
        self.stream_keep = walk.stream_keep;
        self.streamable = walk.streamable;
        if let Some(vocabulary) = vocabulary {
            crate::text::check(self, &vocabulary)?;
            self.vocabulary = Some(vocabulary);
        }
        if let Some(vector) = selftest {
            self.selftest = Some(crate::selftest::resolve(self, self.data.floats, vector)?);
        }
        Ok(())
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

    /// The layers, first to last, with their tensors resolved to views into the blob.
    pub fn layers(&self) -> Layers<'_, 'a> {
        Layers {
            layers: self.layers.iter(),
            residual_inputs: &self.residual_inputs,
            tensors: &self.tensors,
            data: self.data,
        }
    }

    /// The layers with their tensors as indices (see [`Model::weights`]); cheaper to walk than
    /// [`Model::layers`] where few tensors are needed.
    pub(crate) fn compact_layers(&self) -> &[Stage] {
        &self.layers
    }

    /// The tensors of one direction of a compact recurrent layer.
    pub(crate) fn weights(&self, weights: &CellWeights<u8>) -> CellWeights<Mat<'a>> {
        resolve_weights(weights, &self.tensors, self.data)
    }

    /// One compact layer with its tensors viewed in the blob (what [`Model::layers`] yields for it).
    #[inline]
    pub(crate) fn resolve(&self, stage: &Stage) -> Layer<Mat<'a>> {
        resolve(stage, &self.residual_inputs, &self.tensors, self.data)
    }

    /// Tensor `i` of the model's table, viewed in the blob.
    #[inline]
    pub(crate) fn mat(&self, i: u8) -> Mat<'a> {
        view(i, &self.tensors, self.data)
    }

    /// The tensors of a compact dense layer.
    #[inline]
    pub(crate) fn dense(&self, d: &format::Dense<u8>) -> format::Dense<Mat<'a>> {
        format::Dense {
            weight: self.mat(d.weight),
            bias: d.bias.map(|b| self.mat(b)),
            activation: d.activation,
        }
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
        self.walk_window(steps).map(|(out_steps, _)| out_steps)
    }

    /// One walk over the layers for a window of `steps`: its output timesteps, and the most values the
    /// window's input or any layer's output takes where the layer sits in the window (one row after a
    /// layer that keeps only its last step, the kept rows after `KeepLast` and `Crop`; what a layer
    /// reads is what the one before it wrote).
    fn walk_window(&self, steps: usize) -> Result<(usize, usize), Error> {
        let bad = Error::WindowLength { steps };
        if steps == 0 {
            return Err(bad);
        }
        if let Some(fixed) = self.input.steps {
            if steps != fixed as usize {
                return Err(bad);
            }
        }
        let mut t = steps;
        let mut most = steps.checked_mul(self.input_width()).ok_or(bad)?;
        for (layer, plan) in self.layers.iter().zip(&self.plans) {
            t = match layer {
                Stage::Recurrent(r) if !r.return_sequences => 1,
                Stage::LastStep => 1,
                Stage::Crop { start, end } => t
                    .checked_sub(*start as usize)
                    .and_then(|t| t.checked_sub(*end as usize))
                    .filter(|&t| t > 0)
                    .ok_or(bad)?,
                Stage::KeepLast { steps: keep } => {
                    let keep = *keep as usize;
                    if t < keep {
                        return Err(bad);
                    }
                    keep
                }
                _ => t,
            };
            most = most.max(t.checked_mul(plan.output_width).ok_or(bad)?);
        }
        Ok((t, most))
    }

    /// Number of output values a window of `steps` timesteps produces.
    pub fn output_len(&self, steps: usize) -> Result<usize, Error> {
        self.output_steps(steps)?
            .checked_mul(self.output_width())
            .ok_or(Error::WindowLength { steps })
    }

    /// Timesteps of output one streaming step produces: the kept history of a cropped model, else 1.
    pub fn step_output_steps(&self) -> usize {
        self.stream_keep.unwrap_or(1)
    }

    /// Number of output values one streaming step produces.
    pub fn step_output_len(&self) -> usize {
        // Both were bounded at open (a kept history is at most a window of validated widths).
        self.step_output_steps().saturating_mul(self.output_width())
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
        self.streaming_memory(self.cell_scratch)
    }

    /// The least memory for streaming: [`Model::memory`], or less for an integer-only model with LSTM
    /// layers (and no GRU, whose step needs its whole scratch either way). Given a buffer of at least
    /// this many words, [`crate::Runtime::step_i16`] runs an integer LSTM unit by unit, keeping `4·H`
    /// bytes of working memory instead of the gate sums (`32·H` bytes); the outputs are the same, bit for
    /// bit, for about half again as many instructions (45–75 % more, measured on Cortex-M0 and M4). Given [`Model::memory`] or more, it runs the faster
    /// whole-matrix form. Windows always need [`Model::window_memory`].
    pub fn memory_compact(&self) -> Memory {
        self.streaming_memory(self.compact_cell_scratch)
    }

    fn streaming_memory(&self, cell_scratch: usize) -> Memory {
        let history = if self.streamable {
            self.step_output_len()
        } else {
            0
        };
        let state = self.recurrent_state.saturating_add(history);
        if self.is_integer() {
            Memory {
                state: state.div_ceil(2),
                scratch: self
                    .max_width
                    .div_ceil(2)
                    .saturating_mul(2)
                    .saturating_add(cell_scratch),
            }
        } else {
            Memory {
                state,
                scratch: self
                    .max_width
                    .saturating_mul(2)
                    .saturating_add(cell_scratch),
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
    /// streaming; the scratch holds two sequence buffers, each sized for the most values the window's
    /// input or any layer's output takes where the layer sits in the window (after a layer that keeps
    /// only its last step, one row: not `steps` rows of the widest layer).
    pub fn window_memory(&self, steps: usize) -> Result<Memory, Error> {
        self.window_plan(steps).map(|plan| plan.memory)
    }

    /// [`Model::window_memory`], the output timesteps and the words of one sequence buffer, in one walk
    /// over the layers.
    pub(crate) fn window_plan(&self, steps: usize) -> Result<WindowPlan, Error> {
        let (out_steps, values) = self.walk_window(steps)?;
        let sequence = self.activation_words(values);
        let scratch = sequence
            .checked_mul(2)
            .and_then(|s| s.checked_add(self.cell_scratch))
            .ok_or(Error::WindowLength { steps })?;
        let streaming = self.memory();
        Ok(WindowPlan {
            memory: Memory {
                state: streaming.state,
                scratch: scratch.max(streaming.scratch),
            },
            out_steps,
            sequence,
        })
    }

    /// Multiply-accumulates of one streaming step (bidirectional layers counted in both directions).
    /// Saturates rather than wraps: the figure is a report, never a size to allocate.
    pub fn macs_per_step(&self) -> usize {
        self.layers()
            .map(|layer| match layer {
                Layer::Recurrent(r) => {
                    let one = r
                        .forward
                        .kernel
                        .len()
                        .saturating_add(r.forward.recurrent.len())
                        .saturating_add(r.forward.peephole.map_or(0, |p| p.len()));
                    one.saturating_mul(if r.backward.is_some() { 2 } else { 1 })
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
                        s.len().saturating_mul(r.inputs.len())
                    }
                }),
                _ => 0,
            })
            .fold(0, usize::saturating_add)
    }
}

/// What a window of a given length needs ([`Model::window_plan`]).
pub(crate) struct WindowPlan {
    /// The memory it runs in.
    pub memory: Memory,
    /// Timesteps of its output.
    pub out_steps: usize,
    /// Words of each of its two sequence buffers.
    pub sequence: usize,
}

/// What opening has learnt from the layers so far.
struct Walk {
    kind: InputKind,
    /// Whether the model is integer-only (its LSTM cells can run in less scratch).
    integer: bool,
    /// Width of one timestep of the model's input (0 for tokens).
    input_width: usize,
    /// The model's fixed window length, if it has one.
    window: Option<usize>,
    /// Number of layers in the model.
    layers: usize,
    /// Width of the data leaving the last layer seen.
    width: usize,
    /// Whether that data is a sequence.
    sequence: bool,
    /// State words so far.
    state: usize,
    cell_scratch: usize,
    compact_cell_scratch: usize,
    max_width: usize,
    streamable: bool,
    stream_keep: Option<usize>,
    /// Timesteps of the data, when they are known before a window arrives.
    fixed_steps: Option<usize>,
}

impl Walk {
    /// Checks layer `index` against what came before it and returns its plan.
    fn check(&mut self, index: usize, layer: &Layer<Mat<'_>>) -> Result<Plan, Error> {
        let id = index as u8;
        let plan_in = self.width;
        let state_offset = self.state;
        match layer {
            Layer::Embedding(e) => {
                if index != 0 || self.kind != InputKind::Tokens {
                    return Err(Error::LayerMismatch { layer: id });
                }
                if e.table.rows == 0 || e.table.rows > MAX_VOCAB as usize {
                    return Err(Error::TooLarge { layer: id });
                }
                self.width = check_width(e.table.cols as u32, id)?;
            }
            Layer::Recurrent(r) => {
                if !self.sequence || (index == 0 && self.kind == InputKind::Tokens) {
                    return Err(Error::LayerMismatch { layer: id });
                }
                if self.stream_keep.is_some() {
                    // A recurrent layer after a crop re-reads a window: windowed only.
                    self.streamable = false;
                }
                let hidden = check_recurrent(r, self.width, id)?;
                let directions = if r.backward.is_some() { 2 } else { 1 };
                if !matches!(r.direction, Direction::Forward) {
                    self.streamable = false;
                }
                self.state = cell::state_words(r.cell, hidden)
                    .checked_mul(directions)
                    .and_then(|words| words.checked_add(self.state))
                    .ok_or(Error::TooLarge { layer: id })?;
                self.cell_scratch = self.cell_scratch.max(cell::scratch_words(r.cell, hidden));
                let compact = if self.integer {
                    crate::integer::compact_scratch_words(r.cell, hidden)
                } else {
                    cell::scratch_words(r.cell, hidden)
                };
                self.compact_cell_scratch = self.compact_cell_scratch.max(compact);
                self.width = match r.direction {
                    // `hidden` is at most `MAX_WIDTH`.
                    Direction::Bidirectional(Merge::Concat) => hidden.saturating_mul(2),
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
                if d.weight.cols != self.width {
                    return Err(Error::LayerMismatch { layer: id });
                }
                let units = check_width(d.weight.rows as u32, id)?;
                if let Some(b) = &d.bias {
                    check_shape(b, units, 1, id)?;
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
            Layer::SubtractLast => {
                if index != 0 || self.kind == InputKind::Tokens {
                    return Err(Error::LayerMismatch { layer: id });
                }
                self.streamable = false;
            }
            Layer::Residual(r) => {
                let scratch = check_residual(
                    r,
                    index.checked_add(1) == Some(self.layers),
                    self.input_width,
                    self.window,
                    self.sequence,
                    self.fixed_steps,
                    self.width,
                    id,
                )?;
                self.cell_scratch = self.cell_scratch.max(scratch);
                self.compact_cell_scratch = self.compact_cell_scratch.max(scratch);
                self.streamable = false;
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

/// A tensor of a validated model, compactly: its element type, where it lies in the data section (with
/// its row scales or requantization pairs) and its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stored {
    dtype: DType,
    /// Byte offset of the values in the data section.
    offset: u32,
    /// Byte offset of the row scales ([`DType::I8`]) or requantization pairs ([`DType::I8Requant`],
    /// [`DType::I16Requant`]); 0 and unused for the other types.
    scale: u32,
    rows: u32,
    cols: u32,
}

impl Stored {
    /// Views the tensor in the data section: [`Error::BadTensor`] if its values lie outside,
    /// [`Error::BadScale`] if its scales or requantization pairs do. Checks no values.
    #[inline]
    fn view<'a>(&self, data: Data<'a>, layer: u8) -> Result<Mat<'a>, Error> {
        let bad = Error::BadTensor { layer };
        let bad_scale = Error::BadScale { layer };
        let (rows, cols) = (self.rows as usize, self.cols as usize);
        let len = rows.checked_mul(cols).ok_or(bad)?;
        let start = self.offset as usize;
        let scale = self.scale as usize;
        let pairs = || -> Option<&'a [i32]> {
            let from = scale / 4;
            data.ints.get(from..from.checked_add(rows.checked_mul(2)?)?)
        };
        let values = match self.dtype {
            DType::F32 => Values::F32(floats(data, start, len).ok_or(bad)?),
            DType::I8 => Values::I8 {
                values: bytes(data, start, len).ok_or(bad)?,
                scales: floats(data, scale, rows).ok_or(bad_scale)?,
            },
            DType::I16Scaled => Values::I16Scaled {
                values: halves(data, start, len).ok_or(bad)?,
                scales: floats(data, scale, rows).ok_or(bad_scale)?,
            },
            DType::I8Requant => Values::I8Requant {
                values: bytes(data, start, len).ok_or(bad)?,
                requant: pairs().ok_or(bad_scale)?,
            },
            DType::I16Requant => Values::I16Requant {
                values: halves(data, start, len).ok_or(bad)?,
                requant: pairs().ok_or(bad_scale)?,
            },
            DType::I16 => Values::I16(halves(data, start, len).ok_or(bad)?),
            DType::I32 => Values::I32(ints(data, start, len).ok_or(bad)?),
        };
        Ok(Mat { values, rows, cols })
    }
}

/// The layers of a [`Model`], first to last, each resolved to views into the blob as it is reached.
#[derive(Clone, Debug)]
pub struct Layers<'m, 'a> {
    layers: core::slice::Iter<'m, Stage>,
    residual_inputs: &'m heapless::Vec<u16, MAX_RESIDUAL_TARGETS>,
    tensors: &'m [Stored],
    data: Data<'a>,
}

impl<'a> Iterator for Layers<'_, 'a> {
    type Item = Layer<Mat<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let layer = self.layers.next()?;
        Some(resolve(
            layer,
            self.residual_inputs,
            self.tensors,
            self.data,
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.layers.size_hint()
    }
}

/// Views the tensors of a compact layer in the data section. `Model::open` has resolved every one of
/// them, so no lookup fails; were one to, it would read as an empty matrix (which the kernels treat as
/// zeros) rather than panic. Built field by field rather than through [`Layer::try_map`], whose
/// by-value moves of a ~0.4 kB layer cost more than the lookups.
fn resolve<'a>(
    layer: &Stage,
    residual_inputs: &heapless::Vec<u16, MAX_RESIDUAL_TARGETS>,
    tensors: &[Stored],
    data: Data<'a>,
) -> Layer<Mat<'a>> {
    let mat = |i: u8| view(i, tensors, data);
    let weights = |w: &CellWeights<u8>| resolve_weights(w, tensors, data);
    match layer {
        Stage::Recurrent(r) => Layer::Recurrent(Recurrent {
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
        Stage::Dense(d) => Layer::Dense(format::Dense {
            weight: mat(d.weight),
            bias: d.bias.map(mat),
            activation: d.activation,
        }),
        Stage::Embedding(e) => Layer::Embedding(format::Embedding {
            table: mat(e.table),
        }),
        Stage::Crop { start, end } => Layer::Crop {
            start: *start,
            end: *end,
        },
        Stage::KeepLast { steps } => Layer::KeepLast { steps: *steps },
        Stage::LastStep => Layer::LastStep,
        Stage::SubtractLast => Layer::SubtractLast,
        Stage::Residual {
            add_last,
            skip,
            skip_bias,
        } => Layer::Residual(format::Residual {
            inputs: residual_inputs.clone(),
            add_last: *add_last,
            skip: skip.map(mat),
            skip_bias: skip_bias.map(mat),
        }),
    }
}

/// A layer of an open model, its tensors as indices into the model's table: a `Layer<u8>` but for the
/// residual layer's list of targets, which would make every entry ~130 bytes and is kept once in the
/// model instead (a residual layer can only be the last).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Stage {
    Recurrent(Recurrent<u8>),
    Dense(format::Dense<u8>),
    Embedding(format::Embedding<u8>),
    Crop {
        start: u32,
        end: u32,
    },
    KeepLast {
        steps: u32,
    },
    LastStep,
    SubtractLast,
    Residual {
        add_last: bool,
        skip: Option<u8>,
        skip_bias: Option<u8>,
    },
}

impl Stage {
    /// The stage of a decoded layer; a residual layer's targets go to `residual_inputs`.
    fn new(
        layer: Layer<u8>,
        residual_inputs: &mut heapless::Vec<u16, MAX_RESIDUAL_TARGETS>,
    ) -> Self {
        match layer {
            Layer::Recurrent(r) => Stage::Recurrent(r),
            Layer::Dense(d) => Stage::Dense(d),
            Layer::Embedding(e) => Stage::Embedding(e),
            Layer::Crop { start, end } => Stage::Crop { start, end },
            Layer::KeepLast { steps } => Stage::KeepLast { steps },
            Layer::LastStep => Stage::LastStep,
            Layer::SubtractLast => Stage::SubtractLast,
            Layer::Residual(r) => {
                *residual_inputs = r.inputs;
                Stage::Residual {
                    add_last: r.add_last,
                    skip: r.skip,
                    skip_bias: r.skip_bias,
                }
            }
        }
    }
}

/// Tensor `i` viewed in the data section (an empty matrix if it were missing; see [`resolve`]).
#[inline]
fn view<'a>(i: u8, tensors: &[Stored], data: Data<'a>) -> Mat<'a> {
    tensors
        .get(usize::from(i))
        .and_then(|t| t.view(data, u8::MAX).ok())
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

/// The data section, as bytes and as the same bytes viewed as `f32`s, `i32`s and `i16`s.
#[derive(Clone, Copy, Debug)]
struct Data<'a> {
    bytes: &'a [u8],
    floats: &'a [f32],
    ints: &'a [i32],
    halves: &'a [i16],
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
    let truncated = Error::Truncated {
        needed: min,
        got: blob.len(),
    };
    let (body, crc_bytes) = blob.split_last_chunk::<CRC_LEN>().ok_or(truncated)?;
    let preamble: &[u8; PREAMBLE_LEN] = body.first_chunk().ok_or(truncated)?;
    let [m0, m1, m2, m3, v0, v1, r0, r1, h0, h1, h2, h3, d0, d1, d2, d3] = *preamble;
    if [m0, m1, m2, m3] != MAGIC {
        return Err(Error::BadMagic);
    }
    let version = u16::from_le_bytes([v0, v1]);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion { found: version });
    }
    let stored = u32::from_le_bytes(*crc_bytes);
    let computed = CRC.checksum(body);
    if stored != computed {
        return Err(Error::Checksum { stored, computed });
    }
    let header_len = u32::from_le_bytes([h0, h1, h2, h3]) as usize;
    let data_offset = u32::from_le_bytes([d0, d1, d2, d3]) as usize;
    let header_end = PREAMBLE_LEN
        .checked_add(header_len)
        .ok_or(Error::BadPreamble)?;
    if r0 != 0
        || r1 != 0
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
            output_width.checked_rem(pairs) == Some(0)
        } else {
            pairs > 0 && pairs == input_width
        };
        if t.dtype != DType::F32 || t.cols != 2 || !fits {
            return Err(bad);
        }
        let Ok(Mat {
            values: Values::F32(values),
            ..
        }) = check_tensor(data, t, u8::MAX).and_then(|t| t.view(data, u8::MAX))
        else {
            return Err(bad);
        };
        let valid = values
            .chunks_exact(2)
            // A bit test for the non-zero scale: opening links no soft-float routine on an FPU-less core.
            .all(|pair| {
                matches!(*pair, [offset, scale]
                    if offset.is_finite() && scale.is_finite() && scale.to_bits() & 0x7fff_ffff != 0)
            });
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

/// Reads a postcard sequence length (an unsigned LEB128 varint of at most 5 bytes here).
fn take_length(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut value = 0usize;
    let mut rest = bytes;
    for shift in (0..35).step_by(7) {
        let (&byte, tail) = rest.split_first()?;
        rest = tail;
        value |= usize::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some((value, rest));
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
/// alignment, element type, scales, finite values) and adding it to `tensors`. Returns the layer with its
/// tensors as indices into `tensors`, and the bytes after it.
#[inline(never)]
fn store_layer<'h>(
    bytes: &'h [u8],
    tensors: &mut heapless::Vec<Stored, MAX_TENSORS>,
    data: Data<'_>,
    id: u8,
) -> Result<(Layer<u8>, &'h [u8]), Error> {
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
    Ok((layer, rest))
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
    use crate::format::{CellWeights, Dense, Embedding, Layer, Recurrent, Residual, TensorRef};

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
            6 => Layer::SubtractLast,
            7 => Layer::Residual(Residual {
                inputs: take(de)?,
                add_last: take(de)?,
                skip: optional(de, store)?,
                skip_bias: optional(de, store)?,
            }),
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

/// Bounds- and alignment-checks one tensor and its scales or requantization pairs, and checks those:
/// finite scales, valid requantization pairs (the f32 values themselves: [`check_finite`]).
fn check_tensor(data: Data<'_>, t: &TensorRef, layer: u8) -> Result<Stored, Error> {
    let bad = Error::BadTensor { layer };
    let bad_scale = Error::BadScale { layer };
    if t.offset as usize % TENSOR_ALIGN != 0 {
        return Err(bad);
    }
    let scale = match (t.dtype, t.scale) {
        (DType::I8 | DType::I16Scaled | DType::I8Requant | DType::I16Requant, Some(scale)) => {
            if scale as usize % TENSOR_ALIGN != 0 {
                return Err(bad_scale);
            }
            scale
        }
        (DType::I8 | DType::I16Scaled | DType::I8Requant | DType::I16Requant, None) => {
            return Err(bad_scale)
        }
        (DType::F32 | DType::I16 | DType::I32, None) => 0,
        (DType::F32 | DType::I16 | DType::I32, Some(_)) => return Err(bad),
    };
    let stored = Stored {
        dtype: t.dtype,
        offset: t.offset,
        scale,
        rows: t.rows,
        cols: t.cols,
    };
    match stored.view(data, layer)?.values {
        Values::I8 { scales, .. } | Values::I16Scaled { scales, .. }
            if scales.iter().any(|v| !v.is_finite()) =>
        {
            Err(bad_scale)
        }
        Values::I8Requant { requant, .. } | Values::I16Requant { requant, .. }
            if !requant.chunks_exact(2).all(valid_requant) =>
        {
            Err(bad_scale)
        }
        _ => Ok(stored),
    }
}

/// Checks that every f32 value of a layer's tensors is finite: a NaN or an infinity in a weight or an
/// initial state would poison every state it touches.
fn check_finite(tensors: &[Stored], data: Data<'_>, layer: u8) -> Result<(), Error> {
    for t in tensors {
        if let Ok(Mat {
            values: Values::F32(values),
            ..
        }) = t.view(data, layer)
        {
            if values.iter().any(|v| !v.is_finite()) {
                return Err(Error::BadTensor { layer });
            }
        }
    }
    Ok(())
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
    let start = offset.checked_div(size_of::<f32>())?;
    floats.get(start..start.checked_add(len)?)
}

/// `len` bytes from byte `offset` of the data section.
fn bytes(data: Data<'_>, offset: usize, len: usize) -> Option<&[u8]> {
    data.bytes.get(offset..offset.checked_add(len)?)
}

/// `len` `i16` values from byte `offset` (a multiple of 16) of the data section.
fn halves(data: Data<'_>, offset: usize, len: usize) -> Option<&[i16]> {
    let start = offset / 2;
    data.halves.get(start..start.checked_add(len)?)
}

/// `len` `i32` values from byte `offset` (a multiple of 16) of the data section.
fn ints(data: Data<'_>, offset: usize, len: usize) -> Option<&[i32]> {
    let start = offset / 4;
    data.ints.get(start..start.checked_add(len)?)
}

/// A requantization pair: a non-negative multiplier below 2^31 and a shift in `1..=62`.
fn valid_requant(pair: &[i32]) -> bool {
    matches!(pair, [m, s] if *m >= 0 && (1..=62).contains(s))
}

/// In f32 and `i8w` models, int8 and int16 (with f32 row scales) are for weight matrices, embedding
/// tables and skip maps, and every vector (bias, peephole, initial state) stays f32. In an integer-only model every matrix is
/// [`DType::I8Requant`], biases and peepholes are [`DType::I32`] and initial states [`DType::I16`].
fn check_dtypes(layer: &Layer<Mat<'_>>, integer: bool, id: u8) -> Result<(), Error> {
    let (matrix_ok, vector, state): (fn(DType) -> bool, DType, DType) = if integer {
        (
            |d| matches!(d, DType::I8Requant | DType::I16Requant),
            DType::I32,
            DType::I16,
        )
    } else {
        (
            |d| matches!(d, DType::F32 | DType::I8 | DType::I16Scaled),
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
    if !last || input_width == 0 || width.checked_rem(targets) != Some(0) {
        return Err(mismatch);
    }
    if r.inputs.iter().any(|&f| f as usize >= input_width) {
        return Err(mismatch);
    }
    let horizon = match (sequence, steps) {
        (false, _) => width.checked_div(targets).ok_or(mismatch)?,
        (true, Some(steps)) if width == targets => steps,
        _ => return Err(mismatch),
    };
    match (&r.skip, &r.skip_bias) {
        (None, None) => Ok(0),
        (None, Some(_)) => Err(Error::UnsupportedLayer { layer }),
        (Some(skip), bias) => {
            let window = window.ok_or(mismatch)?;
            // One map shared by every target, or one per target stacked by rows.
            let rows = if Some(skip.rows) == horizon.checked_mul(targets) {
                skip.rows
            } else {
                horizon
            };
            check_shape(skip, rows, window, layer)?;
            if let Some(b) = bias {
                check_shape(b, rows, 1, layer)?;
            }
            window.checked_add(horizon).ok_or(mismatch)
        }
    }
}

/// Checks a recurrent layer against its input width; returns its hidden size.
fn check_recurrent(r: &Recurrent<Mat<'_>>, input: usize, layer: u8) -> Result<usize, Error> {
    let hidden = check_width(r.hidden, layer)?;
    check_cell_compiled_in(r.cell, layer)?;
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

/// Refuses a model whose numeric mode this build leaves out (the `f32` and `i8x16` features): an
/// integer-only model needs `i8x16`, any other `f32`. Named after layer 0, where the model's arithmetic
/// starts. The runtime's float and integer paths begin with this check too, so a build without a mode
/// links none of its step code.
pub(crate) fn check_mode_compiled_in(integer: bool) -> Result<(), Error> {
    let (compiled_in, feature) = if integer {
        (cfg!(feature = "i8x16"), "i8x16")
    } else {
        (cfg!(feature = "f32"), "f32")
    };
    if compiled_in {
        Ok(())
    } else {
        Err(Error::FeatureDisabled { layer: 0, feature })
    }
}

/// Refuses a cell whose step code this build leaves out (the `lstm`, `gru`, `simple-rnn` features).
fn check_cell_compiled_in(cell: Cell, layer: u8) -> Result<(), Error> {
    let (compiled_in, feature) = match cell {
        Cell::Lstm { .. } => (cfg!(feature = "lstm"), "lstm"),
        Cell::Gru { .. } => (cfg!(feature = "gru"), "gru"),
        Cell::SimpleRnn => (cfg!(feature = "simple-rnn"), "simple-rnn"),
    };
    if compiled_in {
        Ok(())
    } else {
        Err(Error::FeatureDisabled { layer, feature })
    }
}

fn check_cell(
    cell: Cell,
    w: &CellWeights<Mat<'_>>,
    input: usize,
    hidden: usize,
    layer: u8,
) -> Result<(), Error> {
    let rows = hidden
        .checked_mul(cell.gates())
        .ok_or(Error::TooLarge { layer })?;
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
        (Some(p), Cell::Lstm { .. }) => check_shape(p, hidden.saturating_mul(3), 1, layer)?,
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
        encode(&header, data)
    }

    /// A blob of `header` and its data section.
    fn encode(header: &Header<'_>, data: &[u8]) -> Vec<u8> {
        let encoded = postcard::to_allocvec(header).unwrap();
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
            Layer::SubtractLast,
            Layer::Residual(format::Residual {
                inputs: heapless::Vec::from_slice(&[0, 3, 300]).unwrap(),
                add_last: true,
                skip: Some(t(13)),
                skip_bias: Some(t(14)),
            }),
            Layer::Residual(format::Residual {
                inputs: heapless::Vec::new(),
                add_last: false,
                skip: None,
                skip_bias: None,
            }),
        ]
    }

    /// A stack of `bidirectional` LSTM layers (input 1, hidden 1, every optional tensor present, 12
    /// tensors a layer) and, if `dense`, a Dense layer after them.
    fn tensor_heavy_blob(bidirectional: usize, dense: bool) -> Vec<u8> {
        let f = |rows: u32, cols: u32| tensor(DType::F32, rows, cols, 0, None);
        let weights = |input: u32| CellWeights {
            kernel: f(4, input),
            recurrent: f(4, 1),
            bias: Some(f(4, 1)),
            recurrent_bias: None,
            peephole: Some(f(3, 1)),
            initial_h: Some(f(1, 1)),
            initial_c: Some(f(1, 1)),
        };
        let mut layers = heapless::Vec::new();
        for i in 0..bidirectional {
            let input = if i == 0 { 1 } else { 2 };
            let layer = Layer::Recurrent(Recurrent {
                cell: Cell::Lstm {
                    input_forget: false,
                },
                hidden: 1,
                activation: Activation::Tanh,
                gate_activation: Activation::Sigmoid,
                clip: None,
                direction: Direction::Bidirectional(Merge::Concat),
                return_sequences: i + 1 < bidirectional,
                forward: weights(input),
                backward: Some(weights(input)),
            });
            layers.push(layer).unwrap();
        }
        if dense {
            let layer = Layer::Dense(Dense {
                weight: f(1, 2),
                bias: None,
                activation: Activation::Linear,
            });
            layers.push(layer).unwrap();
        }
        let header = Header {
            input: Input {
                kind: InputKind::Features(1),
                steps: None,
            },
            layers,
            io: IoLayout {
                input: InputLayout::BatchFirst,
                output: OutputLayout::BatchFirst,
            },
            scaling: Scaling::default(),
            meta: Meta {
                name: "tensor-heavy",
                source: "hand-built",
                producer: "engine tests",
                inputs: "x",
                outputs: "",
                info: "{}",
            },
            selftest: None,
            vocabulary: None,
            fixed: None,
        };
        // Every tensor reads the same 8 small values.
        let data: Vec<u8> = (1..=16u8)
            .flat_map(|i| (f32::from(i) / 64.0).to_le_bytes())
            .collect();
        encode(&header, &data)
    }

    #[test]
    fn the_tensor_table_holds_max_tensors_and_refuses_one_more() {
        // In 16-byte aligned storage: a `Vec<u8>` need not be (Miri places it anywhere).
        let (words, len) = placed(&tensor_heavy_blob(MAX_TENSORS / 12, false), 0);
        let model = Model::open(view(&words, 0, len)).unwrap();
        assert_eq!(model.layers().count(), MAX_TENSORS / 12);
        // Bidirectional layers run windowed.
        let mut memory = std::vec![0.0f32; model.window_memory(3).unwrap().total()];
        let mut runtime = crate::Runtime::new(&model, &mut memory).unwrap();
        let mut out = [0.0f32; 2];
        assert_eq!(runtime.run_window(&[0.5, -0.25, 1.0], &mut out), Ok(1));
        assert!(out.iter().all(|v| v.is_finite() && *v != 0.0), "{out:?}");

        let (words, len) = placed(&tensor_heavy_blob(MAX_TENSORS / 12, true), 0);
        let over = view(&words, 0, len);
        let layer = (MAX_TENSORS / 12) as u8;
        assert_eq!(Model::open(over).unwrap_err(), Error::TooLarge { layer });
        let mut place = None;
        assert!(Model::open_in(&mut place, over).is_err());
        assert!(place.is_none());
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
    /// `usize` are twice as wide; `firmware/` measures the Cortex-M figure. The scalers, self-test
    /// vector, vocabulary, integer formats and residual targets take ~0.5 kB of it (2,912 bytes in all
    /// when they came); the layers themselves stay compact (a residual layer's targets are kept once, not
    /// in every layer entry).
    #[test]
    fn a_model_stays_small() {
        let size = core::mem::size_of::<Model<'static>>();
        assert!(size <= 3000, "Model is {size} bytes");
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
