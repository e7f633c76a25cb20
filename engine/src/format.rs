//! The model blob schema, shared by the engine (which reads it) and the converter (which writes it).
//!
//! `docs/FORMAT.md` is the prose specification; this module is its single implementation. A blob is
//!
//! ```text
//! offset 0   magic "TRNN"
//!        4   format version, u16 little-endian
//!        6   flags, u16 (0)
//!        8   header length in bytes, u32
//!       12   data section offset from the blob start, u32, a multiple of 16
//!       16   postcard-encoded [`Header`]
//!            zero padding up to the data section
//!  data_off  tensor data: every tensor starts on a 16-byte boundary of the data section
//!  len - 4   CRC-32 (ISO-HDLC) of every byte before it, u32 little-endian
//! ```
//!
//! Layers are generic over their tensor handle `T`: in a blob it is a [`TensorRef`] into the data section,
//! in the converter an owned array. One schema, two owners, so the writer and the reader cannot drift apart.
//!
//! Gate order is the Keras/PyTorch order throughout: LSTM `i f g o` (input, forget, cell candidate,
//! output), GRU `z r n` (update, reset, candidate). Only importers know other frameworks' orders.

use serde::{Deserialize, Serialize};

/// The four bytes every blob starts with.
pub const MAGIC: [u8; 4] = *b"TRNN";
/// The blob format version this engine reads and the converter writes. Any change to the layout bumps it.
pub const FORMAT_VERSION: u16 = 3;
/// Length of the fixed preamble before the postcard header.
pub const PREAMBLE_LEN: usize = 16;
/// Alignment of the data section and of every tensor in it, in bytes.
pub const TENSOR_ALIGN: usize = 16;
/// Length of the closing CRC-32.
pub const CRC_LEN: usize = 4;
/// Most layers a model may have.
pub const MAX_LAYERS: usize = 16;
/// Most tensors (weights, biases, scales not counted) a model may have, over all its layers.
pub const MAX_TENSORS: usize = 48;
/// Largest hidden size, layer width or embedding dimension a blob may declare.
pub const MAX_WIDTH: u32 = 4096;
/// Largest vocabulary an embedding may declare.
pub const MAX_VOCAB: u32 = 1 << 20;
/// Most targets a [`Residual`] layer may continue.
pub const MAX_RESIDUAL_TARGETS: usize = 64;
/// The CRC used to close a blob.
pub const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Element type of a tensor in the data section.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DType {
    /// IEEE-754 single precision, little-endian.
    F32,
    /// Signed 8-bit integers (two's complement), one per byte, with one f32 scale per row: row `r` stands
    /// for `scale[r] × value`. Weight matrices and embedding tables only.
    I8,
    /// Integer-only models (`i8x16`): signed 8-bit integers with one requantization pair per row instead
    /// of an f32 scale. The tensor's `scale` offset points to `rows` pairs of little-endian `i32`
    /// `(multiplier, shift)`: row `r`'s integer dot product `acc` becomes
    /// `round(acc × multiplier / 2^shift)` in the format the layer's [`FixedLayer`] names for it.
    /// Weight matrices and embedding tables of a model with a [`FixedPoint`] header only.
    I8Requant,
    /// Signed 16-bit integers, little-endian: the initial states of an integer-only model, in the
    /// layer's state (`h`) or cell (`c`) format.
    I16,
    /// Signed 32-bit integers, little-endian: biases (in the pre-activation format) and peepholes
    /// (Q·.16) of an integer-only model.
    I32,
    /// Integer-only models: signed 16-bit weights with one requantization pair per row, as
    /// [`DType::I8Requant`] but finer; the converter uses it for narrow input kernels, whose few
    /// columns leave int8 rounding nowhere to average out.
    I16Requant,
    /// Signed 16-bit integers, little-endian, with one f32 scale per row, as [`DType::I8`] but finer:
    /// row `r` stands for `scale[r] × value`. Weight matrices, embedding tables and skip maps of f32
    /// and `i8w` models, where the converter stores a narrow matrix or a skip map in int16 (int8
    /// rounding has few columns to average out over there, or reaches the output undamped).
    I16Scaled,
}

impl DType {
    /// Size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::I8 | DType::I8Requant => 1,
            DType::I16 | DType::I16Requant | DType::I16Scaled => 2,
        }
    }
}

/// Fraction bits of a gate's pre-activation in an integer-only model: every gate and cell
/// pre-activation, bias and clip is an `i32` in Q·.12 (`q / 4096`), the input format of the fixed-point
/// sigmoid and tanh ([`crate::kernels::fixed::ACT_FRAC`]).
pub const PRE_FRAC: u8 = 12;

/// Fraction bits of an integer-only model's peephole weights (`i32`, `q / 65536`).
pub const PEEPHOLE_FRAC: u8 = 16;

/// Most fraction bits an `i16` format of an integer-only model may have.
pub const MAX_FRAC: u8 = 24;

/// The fixed-point formats of one layer of an integer-only model. A format is a number of fraction bits
/// `f`: an `i16` value `q` stands for `q / 2^f`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedLayer {
    /// Format of the layer's `i16` output (each timestep, or the vector). Crop, KeepLast and LastStep
    /// pass values through, so theirs equals their input's.
    pub output_frac: u8,
    /// Recurrent layers: format of the hidden state `h` (also the format the recurrent kernel's
    /// requantization pairs expect). 15 for a tanh or sigmoid output. 0 for other layers.
    pub state_frac: u8,
    /// LSTM: format of the cell state `c`, chosen from calibration. 0 for other layers.
    pub cell_frac: u8,
    /// Recurrent layers with a clip: the clip in Q·.12 (positive). 0 otherwise.
    pub clip: i32,
}

/// What an integer-only (`i8x16`) model adds to its header. Its presence makes the model integer-only:
/// every weight matrix and embedding table is [`DType::I8Requant`], every bias and peephole
/// [`DType::I32`], every initial state [`DType::I16`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FixedPoint {
    /// Format of the model's `i16` feature input (unused for token input).
    pub input_frac: u8,
    /// One entry per layer, in layer order.
    pub layers: heapless::Vec<FixedLayer, MAX_LAYERS>,
}

/// A tensor stored in the data section: a row-major `rows × cols` matrix (a vector has `cols == 1`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorRef {
    /// Element type.
    pub dtype: DType,
    /// Number of rows (for a weight matrix, its outputs).
    pub rows: u32,
    /// Number of columns (for a weight matrix, its inputs).
    pub cols: u32,
    /// Byte offset from the start of the data section; a multiple of [`TENSOR_ALIGN`].
    pub offset: u32,
    /// [`DType::I8`], [`DType::I16Scaled`], [`DType::I8Requant`] and [`DType::I16Requant`] only (and then required): byte offset of the per-row scales
    /// (`rows` f32 values) or requantization pairs (`rows` × 2 `i32`), from the start of the data section;
    /// a multiple of [`TENSOR_ALIGN`].
    pub scale: Option<u32>,
}

/// Activation functions.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Identity.
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// `e^x_i / Σ e^x_j` over the feature axis (Dense layers only).
    Softmax,
}

/// Which recurrent cell a layer runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Elman RNN: `h' = act(W x + b + R h)`. One gate.
    SimpleRnn,
    /// LSTM, gates `i f g o`.
    Lstm {
        /// ONNX `input_forget`: the forget gate is `1 - i`.
        input_forget: bool,
    },
    /// GRU, gates `z r n`.
    Gru {
        /// `true`: the reset gate scales the recurrent projection, `r ⊙ (R_n h + b_rn)` (Keras default,
        /// PyTorch, ONNX `linear_before_reset=1`). `false`: it scales the state first, `R_n (r ⊙ h)`.
        reset_after: bool,
    },
}

impl Cell {
    /// Number of gates, i.e. how many blocks of `hidden` rows the weight matrices have.
    pub const fn gates(self) -> usize {
        match self {
            Cell::SimpleRnn => 1,
            Cell::Lstm { .. } => 4,
            Cell::Gru { .. } => 3,
        }
    }
}

/// How a bidirectional layer combines its two directions, per timestep.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// `[forward, backward]`, width `2 × hidden` (also ONNX's `Y` layout per timestep).
    Concat,
    /// `forward + backward`.
    Sum,
    /// `forward ⊙ backward`.
    Mul,
    /// `(forward + backward) / 2`.
    Ave,
}

/// Direction of a recurrent layer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Time runs forwards.
    Forward,
    /// Time runs backwards; outputs stay aligned with their input timestep (ONNX `reverse`).
    Reverse,
    /// Both, merged per timestep. Windowed only: the backward pass needs the whole window.
    Bidirectional(Merge),
}

/// Weights of one direction of a recurrent layer. `G` is [`Cell::gates`], `H` the hidden size, `I` the input
/// width.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CellWeights<T> {
    /// Input kernel, `G·H × I`.
    pub kernel: T,
    /// Recurrent kernel, `G·H × H`.
    pub recurrent: T,
    /// Bias added to the input projection, `G·H × 1`. Where a framework has separate input and recurrent
    /// biases they are summed here, except the GRU reset-after case below.
    pub bias: Option<T>,
    /// GRU reset-after only: the recurrent bias, `3·H × 1`, kept apart because `r` multiplies it.
    pub recurrent_bias: Option<T>,
    /// LSTM only: peephole weights `[p_i, p_f, p_o]`, `3·H × 1`.
    pub peephole: Option<T>,
    /// Constant initial hidden state, `H × 1`; zeros when absent.
    pub initial_h: Option<T>,
    /// LSTM only: constant initial cell state, `H × 1`; zeros when absent.
    pub initial_c: Option<T>,
}

/// A recurrent layer: SimpleRNN, LSTM or GRU, in one or both directions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Recurrent<T> {
    /// The cell.
    pub cell: Cell,
    /// Hidden size `H`.
    pub hidden: u32,
    /// Output activation: SimpleRNN's activation, LSTM's `g` and `h` (cell candidate and cell output),
    /// GRU's candidate. Tanh by default.
    pub activation: Activation,
    /// Gate activation (LSTM `i f o`, GRU `z r`). Sigmoid by default.
    pub gate_activation: Activation,
    /// ONNX `clip`: gate pre-activations are clamped to `[-clip, clip]`.
    pub clip: Option<f32>,
    /// Direction, and the merge of a bidirectional layer.
    pub direction: Direction,
    /// `true`: one output per timestep; `false`: only the final output (for a backward direction, its
    /// state after reading the first timestep).
    pub return_sequences: bool,
    /// Weights of the forward direction (of the only direction for `Reverse`).
    pub forward: CellWeights<T>,
    /// Weights of the backward direction; present exactly when the layer is bidirectional.
    pub backward: Option<CellWeights<T>>,
}

/// A fully connected layer, applied to every timestep of a sequence (TimeDistributed) or to a vector.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Dense<T> {
    /// Weights, `units × input width`.
    pub weight: T,
    /// Bias, `units × 1`.
    pub bias: Option<T>,
    /// Activation applied to the result.
    pub activation: Activation,
}

/// A token-id lookup table; the first layer of a model whose input is token ids.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Embedding<T> {
    /// Table, `vocabulary × dimension`.
    pub table: T,
}

/// Adds the model's own input window back into its forecast: the output half of window normalisation
/// ([`Layer::SubtractLast`]) and a linear skip path from the window to the horizon. Windowed only.
///
/// The layer's input is a forecast of `horizon × targets` values (a sequence of `horizon` timesteps of
/// `targets` values, or one vector of `horizon × targets`, timestep-major). Target `j` continues input
/// feature `inputs[j]`; with `x_j[t]` that feature's raw value at window timestep `t` of `T` and
/// `l_j = x_j[T-1]` when `add_last` (else 0):
///
/// ```text
/// y[s, j] = forecast[s, j] + l_j + Σ_t skip[s, t] · (x_j[t] − l_j) + skip_bias[s]
/// ```
/// The skip weights are either shared by every target (`horizon` rows: a channel-independent linear
/// forecaster) or one map per target (`horizon · targets` rows, target `j`'s block starting at row
/// `j · horizon`, which then stands for `skip[s, t]` and `skip_bias[s]` above).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Residual<T> {
    /// For each target, the input feature it continues.
    pub inputs: heapless::Vec<u16, MAX_RESIDUAL_TARGETS>,
    /// Add each target's input value at the window's last timestep.
    pub add_last: bool,
    /// Skip weights, `horizon × T` or `horizon·targets × T` (`T` the model's fixed window length).
    pub skip: Option<T>,
    /// Skip bias, one value per row of `skip`; only with `skip`.
    pub skip_bias: Option<T>,
}

/// One layer of a model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Layer<T> {
    /// SimpleRNN, LSTM or GRU.
    Recurrent(Recurrent<T>),
    /// Fully connected.
    Dense(Dense<T>),
    /// Token ids to vectors.
    Embedding(Embedding<T>),
    /// Drop `start` timesteps from the front and `end` from the back of a sequence (Keras `Cropping1D`).
    Crop {
        /// Timesteps dropped at the start.
        start: u32,
        /// Timesteps dropped at the end.
        end: u32,
    },
    /// Keep only the last `steps` timesteps of a sequence (`x[:, -steps:]`).
    KeepLast {
        /// Timesteps kept.
        steps: u32,
    },
    /// The last timestep of a sequence, as a vector (`x[:, -1, :]`).
    LastStep,
    /// Window normalisation: subtracts each feature's value at the window's last timestep from every
    /// timestep. First layer only; windowed only.
    SubtractLast,
    /// Adds the input window back into the forecast; last layer only; windowed only.
    Residual(Residual<T>),
}

impl<T> Layer<T> {
    /// The same layer with every tensor handle mapped through `f`, which may fail.
    pub fn try_map<U, E>(self, mut f: impl FnMut(T) -> Result<U, E>) -> Result<Layer<U>, E> {
        Ok(match self {
            Layer::Recurrent(r) => {
                let forward = r.forward.try_map(&mut f)?;
                let backward = match r.backward {
                    Some(b) => Some(b.try_map(&mut f)?),
                    None => None,
                };
                Layer::Recurrent(Recurrent {
                    cell: r.cell,
                    hidden: r.hidden,
                    activation: r.activation,
                    gate_activation: r.gate_activation,
                    clip: r.clip,
                    direction: r.direction,
                    return_sequences: r.return_sequences,
                    forward,
                    backward,
                })
            }
            Layer::Dense(d) => Layer::Dense(Dense {
                weight: f(d.weight)?,
                bias: d.bias.map(&mut f).transpose()?,
                activation: d.activation,
            }),
            Layer::Embedding(e) => Layer::Embedding(Embedding { table: f(e.table)? }),
            Layer::Crop { start, end } => Layer::Crop { start, end },
            Layer::KeepLast { steps } => Layer::KeepLast { steps },
            Layer::LastStep => Layer::LastStep,
            Layer::SubtractLast => Layer::SubtractLast,
            Layer::Residual(r) => Layer::Residual(Residual {
                inputs: r.inputs,
                add_last: r.add_last,
                skip: r.skip.map(&mut f).transpose()?,
                skip_bias: r.skip_bias.map(&mut f).transpose()?,
            }),
        })
    }
}

impl<T> Layer<T> {
    /// Number of trainable parameters, counted as Keras `model.summary()` counts them (initial states
    /// are not parameters). `len` gives the number of values in a tensor.
    pub fn parameter_count(&self, len: impl Fn(&T) -> usize) -> usize {
        let opt = |t: &Option<T>| t.as_ref().map_or(0, &len);
        match self {
            Layer::Recurrent(r) => [Some(&r.forward), r.backward.as_ref()]
                .into_iter()
                .flatten()
                .flat_map(|w| {
                    [
                        len(&w.kernel),
                        len(&w.recurrent),
                        opt(&w.bias),
                        opt(&w.recurrent_bias),
                        opt(&w.peephole),
                    ]
                })
                .fold(0, usize::saturating_add),
            Layer::Dense(d) => len(&d.weight).saturating_add(opt(&d.bias)),
            Layer::Embedding(e) => len(&e.table),
            Layer::Residual(r) => opt(&r.skip).saturating_add(opt(&r.skip_bias)),
            Layer::Crop { .. } | Layer::KeepLast { .. } | Layer::LastStep | Layer::SubtractLast => {
                0
            }
        }
    }
}

impl<T> CellWeights<T> {
    /// The same weights with every tensor handle mapped through `f`, which may fail.
    pub fn try_map<U, E>(self, mut f: impl FnMut(T) -> Result<U, E>) -> Result<CellWeights<U>, E> {
        Ok(CellWeights {
            kernel: f(self.kernel)?,
            recurrent: f(self.recurrent)?,
            bias: self.bias.map(&mut f).transpose()?,
            recurrent_bias: self.recurrent_bias.map(&mut f).transpose()?,
            peephole: self.peephole.map(&mut f).transpose()?,
            initial_h: self.initial_h.map(&mut f).transpose()?,
            initial_c: self.initial_c.map(&mut f).transpose()?,
        })
    }
}

/// What the model reads at each timestep.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// A vector of this many features.
    Features(u32),
    /// One token id; the first layer is an [`Embedding`].
    Tokens,
}

/// The model's input.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Input {
    /// What one timestep holds.
    pub kind: InputKind,
    /// Window length fixed by the source model (Keras `Input((5, 3))`), or `None` for any length.
    pub steps: Option<u32>,
}

/// How the source framework lays out a batch of inputs, so host tools can read its arrays unchanged.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputLayout {
    /// `(batch, time, features)` or `(batch, time)` for tokens: Keras, ONNX `layout=1`.
    BatchFirst,
    /// `(time, batch, features)`: an ONNX recurrent node with `layout=0`.
    TimeFirst,
}

/// How the source framework lays out a batch of outputs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputLayout {
    /// `(batch, …)` followed by the model's own output shape: Keras `model.predict`.
    BatchFirst,
    /// `(time, batch, features)` for a sequence output, `(batch, features)` for a vector: a time-major
    /// graph (PyTorch `batch_first=False`).
    TimeFirst,
    /// ONNX recurrent `Y`: `(time, directions, batch, hidden)`, or `(batch, time, directions, hidden)`
    /// when `batch_first` (`layout=1`).
    OnnxSequence {
        /// `layout=1`.
        batch_first: bool,
        /// 1 or 2.
        directions: u32,
    },
    /// ONNX recurrent `Y_h`: `(directions, batch, hidden)`, or `(batch, directions, hidden)` when
    /// `batch_first`.
    OnnxFinalState {
        /// `layout=1`.
        batch_first: bool,
        /// 1 or 2.
        directions: u32,
    },
}

/// How host tools map the source framework's batched arrays onto the engine's single windows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoLayout {
    /// Layout of the input batch.
    pub input: InputLayout,
    /// Layout of the output batch.
    pub output: OutputLayout,
}

/// A known input and the output the converter's engine computed for it, so a device can check itself at
/// boot ([`crate::Model::self_test`]).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct SelfTest<T> {
    /// The input in model units: a window of `steps × features` values run with
    /// [`crate::Runtime::run_window`], or for a token model `steps × 1` token ids fed one by one with
    /// [`crate::Runtime::step_token`] after a reset.
    pub input: T,
    /// The expected output, `n × 1`: the window's output, or for a token model the output of the last
    /// step.
    pub output: T,
    /// Largest absolute difference allowed between an output value and its expected value.
    pub tolerance: f32,
}

impl<T> SelfTest<T> {
    /// The same vector with both tensor handles mapped through `f`, which may fail.
    pub fn try_map<U, E>(self, mut f: impl FnMut(T) -> Result<U, E>) -> Result<SelfTest<U>, E> {
        Ok(SelfTest {
            input: f(self.input)?,
            output: f(self.output)?,
            tolerance: self.tolerance,
        })
    }
}

/// Affine maps between raw units (what a sensor reads) and model units (what the layers compute in):
/// `model = (raw − offset) / scale`, so `raw = model × scale + offset`.
///
/// Each map is an `n × 2` f32 tensor whose row `i` is `[offset, scale]`. The input map has one row per
/// input feature. The output map has `n` rows, where `n` divides the output width, and output value `k` of
/// a forecast (counted over the whole forecast, all timesteps) uses row `k % n`. A forecast of `horizon`
/// steps of `targets` values is horizon-major (step 0's targets, then step 1's, …), so a model whose Dense
/// head writes `horizon × targets` values in one vector stores `targets` rows, as does a model that keeps
/// its last `horizon` timesteps of `targets` values each. An absent map is the identity.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Scaling<T> {
    /// Raw input to model input, `features × 2`.
    pub input: Option<T>,
    /// Model output to raw output, `n × 2`.
    pub output: Option<T>,
}

impl<T> Default for Scaling<T> {
    fn default() -> Self {
        Self {
            input: None,
            output: None,
        }
    }
}

impl<T> Scaling<T> {
    /// The same maps with every tensor handle mapped through `f`, which may fail.
    pub fn try_map<U, E>(self, mut f: impl FnMut(T) -> Result<U, E>) -> Result<Scaling<U>, E> {
        Ok(Scaling {
            input: self.input.map(&mut f).transpose()?,
            output: self.output.map(&mut f).transpose()?,
        })
    }
}

/// Free-form descriptive fields.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta<'a> {
    /// Model name.
    pub name: &'a str,
    /// Where the model came from (framework and file).
    pub source: &'a str,
    /// The converter that wrote the blob, with its version.
    pub producer: &'a str,
    /// Names of the input features, one per line (empty when unknown).
    pub inputs: &'a str,
    /// Names of the output values, one per line, in the order of the output scaler's rows (empty when
    /// unknown).
    pub outputs: &'a str,
    /// Free-form details, for `tinyrnn train` a JSON document with the training settings and test
    /// metrics (empty when there are none).
    pub info: &'a str,
}

impl<'a> Meta<'a> {
    /// The input feature names ([`Meta::inputs`] split into lines; nothing when empty).
    pub fn input_names(&self) -> impl Iterator<Item = &'a str> {
        lines(self.inputs)
    }

    /// The output names ([`Meta::outputs`] split into lines; nothing when empty).
    pub fn output_names(&self) -> impl Iterator<Item = &'a str> {
        lines(self.outputs)
    }
}

/// The lines of `text`, none when it is empty.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    (!text.is_empty())
        .then(|| text.split('\n'))
        .into_iter()
        .flatten()
}

/// The postcard-encoded header of a blob.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Header<'a> {
    /// The model's input.
    pub input: Input,
    /// Layers, first to last.
    pub layers: heapless::Vec<Layer<TensorRef>, MAX_LAYERS>,
    /// Batch layouts of the source framework.
    pub io: IoLayout,
    /// Raw-unit scalers of the input and output.
    pub scaling: Scaling<TensorRef>,
    /// Descriptive fields.
    #[serde(borrow)]
    pub meta: Meta<'a>,
    /// A self-test vector, when the converter wrote one.
    pub selftest: Option<SelfTest<TensorRef>>,
    /// What a token model's ids stand for, when the converter knows.
    #[serde(borrow)]
    pub vocabulary: Option<Vocabulary<'a>>,
    /// Formats of an integer-only (`i8x16`) model; `None` for f32 and `i8w` models.
    pub fixed: Option<FixedPoint>,
}

/// How text splits into tokens.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Splitting {
    /// Every character is a token (a char-RNN).
    Chars,
    /// Words separated by whitespace (Keras `TextVectorization`, `split="whitespace"`).
    Words {
        /// Lowercase first (`standardize="lower…"`).
        lowercase: bool,
        /// Remove ASCII punctuation first, before splitting (`"…strip_punctuation"`).
        strip_punctuation: bool,
    },
}

/// The tokens a token model's ids stand for, so devices and host tools can turn text into ids and back
/// (`crate::text`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vocabulary<'a> {
    /// How text splits into tokens.
    pub splitting: Splitting,
    /// The tokens in id order. [`Splitting::Chars`]: the characters one after another. [`Splitting::Words`]:
    /// each word followed by `\n` (Keras' padding token is the empty first line).
    pub tokens: &'a str,
    /// Id of a token not in the vocabulary (Keras' OOV index, 1), if the model has one.
    pub unknown: Option<u32>,
}

/// Round `n` up to the next multiple of [`TENSOR_ALIGN`], or `None` on overflow.
pub const fn align_up(n: usize) -> Option<usize> {
    n.checked_next_multiple_of(TENSOR_ALIGN)
}
