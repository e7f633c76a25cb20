//! The engine's one error type.

use core::fmt;

/// Everything that can go wrong when opening a blob or running a model. Layer indices count from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The blob is shorter than its preamble, header or data section say it is.
    Truncated {
        /// Bytes the blob must have at least.
        needed: usize,
        /// Bytes it has.
        got: usize,
    },
    /// The blob does not start with `TRNN`.
    BadMagic,
    /// The blob was written for a format version this engine does not read.
    UnsupportedVersion {
        /// The version in the blob.
        found: u16,
    },
    /// The closing CRC-32 does not match the blob's bytes.
    Checksum {
        /// CRC-32 stored in the blob.
        stored: u32,
        /// CRC-32 computed over the blob.
        computed: u32,
    },
    /// The preamble's header length or data offset is inconsistent (byte 8 or 12).
    BadPreamble,
    /// The postcard header could not be decoded, or bytes follow it.
    BadHeader,
    /// The data section does not start on a 4-byte boundary in memory; place the blob at an aligned address.
    Misaligned,
    /// The model has no layers.
    NoLayers,
    /// A tensor lies outside the data section, is misaligned, has an unsupported element type, or holds a
    /// NaN or an infinity.
    BadTensor {
        /// Layer holding the tensor.
        layer: u8,
    },
    /// An int8 tensor's per-row scales are missing, misaligned, outside the data section or not finite.
    BadScale {
        /// Layer holding the tensor.
        layer: u8,
    },
    /// A raw-unit scaler is not an f32 `n × 2` tensor of `[offset, scale]` rows inside the data section
    /// with one row per input feature (input) or a row count dividing the output width (output), finite
    /// values and non-zero scales.
    BadScaler {
        /// `true` for the output scaler, `false` for the input scaler.
        output: bool,
    },
    /// An integer-only model's fixed-point formats are missing, out of range (more than
    /// [`crate::format::MAX_FRAC`] fraction bits, a clip that is not positive) or inconsistent with the
    /// layer (a crop that changes the format).
    BadFixedPoint {
        /// The layer, or 255 for the model input or the list of formats itself.
        layer: u8,
    },
    /// An integer entry point (`*_i16`) was called on a float model, or a float model's call on an
    /// integer one where no conversion exists.
    NotInteger,
    /// A tensor's shape does not fit its layer.
    TensorShape {
        /// Layer holding the tensor.
        layer: u8,
    },
    /// A layer does not fit the one before it (width, sequence or vector, token input).
    LayerMismatch {
        /// The layer that does not fit.
        layer: u8,
    },
    /// A layer uses an option this engine does not support (e.g. softmax as a gate activation).
    UnsupportedLayer {
        /// The layer.
        layer: u8,
    },
    /// A size exceeds the engine's limits ([`crate::format::MAX_WIDTH`], [`crate::format::MAX_VOCAB`]).
    TooLarge {
        /// The layer, or 255 for the model input.
        layer: u8,
    },
    /// The input slice length does not match the model's input.
    InputLength {
        /// Values expected.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// The output slice length does not match the model's output.
    OutputLength {
        /// Values expected.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// The window has a length the model cannot take (fixed by the model, or too short for a crop).
    WindowLength {
        /// Timesteps given.
        steps: usize,
    },
    /// The caller's memory is smaller than the model needs.
    BufferTooSmall {
        /// `f32` words needed.
        needed: usize,
        /// `f32` words given.
        got: usize,
    },
    /// The model cannot run one step at a time (a bidirectional or reverse layer, or a crop that needs the
    /// end of the window); use the windowed call.
    NotStreamable,
    /// Feature input given to a token model, or token input to a feature model.
    WrongInputKind,
    /// A token id is not below the vocabulary size.
    TokenOutOfRange {
        /// The token id.
        token: u32,
        /// Vocabulary size.
        vocab: u32,
    },
    /// A state to restore does not have this model's state length.
    StateLength {
        /// Words expected.
        expected: usize,
        /// Words given.
        got: usize,
    },
    /// Saved stream state bytes (or the buffer to save them into) have the wrong length.
    StateBytes {
        /// Bytes expected.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// Saved stream state bytes are damaged (bad magic, unknown layout, checksum mismatch, bytes that
    /// `save_state` does not write), or a state to restore holds a NaN or an infinity.
    StateCorrupt,
    /// Saved stream state was written by another model (or another window length or mode).
    StateModel {
        /// Identity of this model ([`crate::Model::id`]).
        expected: u32,
        /// Identity recorded in the saved state.
        got: u32,
    },
    /// A replacement model does not take the same input or give the same forecast shape as the running one.
    ModelMismatch,
    /// An input value is NaN or infinite. The sample was not used: the state is as it was.
    NonFiniteInput {
        /// Position of the first such value in the input.
        index: usize,
    },
    /// A streaming step left a NaN or an infinity in the state: finite inputs too large for the model. The
    /// state was reset to its initial value, so the stream goes on from scratch with the next sample.
    StateOverflow,
    /// Neither flash slot holds an intact record with a blob that opens ([`crate::slot::boot`]).
    NoBootableSlot,
    /// The blob's self-test vector does not fit the model (element type, shape, bounds, token ids or
    /// tolerance).
    BadSelfTest,
    /// The blob's vocabulary does not fit the model: a feature model, more tokens than the
    /// embedding has rows, a multi-character token where characters are the tokens, or an unknown-token id
    /// outside the vocabulary.
    BadVocabulary,
    /// A piece of text holds a token that is not in the vocabulary, and the model has no unknown-token id.
    UnknownToken,
    /// A compile-time-sized front door ([`crate::sized`]) was opened on a layer that is not what its
    /// type says.
    SizedMismatch {
        /// The layer.
        layer: u8,
        /// The front door's cell: `"LSTM"`, `"GRU"` or `"SimpleRNN"`.
        cell: &'static str,
        /// Input and hidden size of the front door's type.
        expected: (u32, u32),
        /// Input and hidden size of the blob's layer (`(0, 0)` when it is not a recurrent layer).
        got: (u32, u32),
        /// What does not fit.
        problem: &'static str,
    },
    /// The blob needs a piece of the engine that this build leaves out: the engine's cargo feature
    /// `feature` (e.g. `"gru"`) is off. Rebuild the engine with that feature, or convert the model to what
    /// the build has.
    FeatureDisabled {
        /// The layer that needs it.
        layer: u8,
        /// The engine's cargo feature the layer needs.
        feature: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated { needed, got } => {
                write!(f, "blob truncated: needs at least {needed} bytes, has {got}")
            }
            Error::BadMagic => write!(f, "not a tinyrnn blob: bytes 0..4 are not \"TRNN\""),
            Error::UnsupportedVersion { found } => write!(
                f,
                "blob format version {found} (bytes 4..6) is not supported; this engine reads version {}",
                crate::format::FORMAT_VERSION
            ),
            Error::Checksum { stored, computed } => write!(
                f,
                "blob checksum mismatch (the blob is cut short or damaged): its last 4 bytes hold CRC-32 {stored:#010x}, the bytes before them give {computed:#010x}"
            ),
            Error::BadPreamble => {
                write!(f, "blob preamble inconsistent: header length (bytes 8..12) or data offset (bytes 12..16)")
            }
            Error::BadHeader => write!(f, "blob header (from byte 16) does not decode"),
            Error::Misaligned => {
                write!(f, "blob data section is not 4-byte aligned in memory; load the blob at an aligned address")
            }
            Error::NoLayers => write!(f, "model has no layers"),
            Error::BadTensor { layer } => write!(
                f,
                "layer {layer}: a tensor lies outside the data section, is misaligned, has an unsupported type or holds a NaN or an infinity"
            ),
            Error::BadScale { layer } => write!(
                f,
                "layer {layer}: an int8 tensor's scales are missing, misaligned, out of bounds or not finite"
            ),
            Error::BadScaler { output } => write!(
                f,
                "{} scaler: expected an f32 tensor of [offset, scale] rows, one per {}, inside the data \
                 section, finite, with non-zero scales",
                if output { "output" } else { "input" },
                if output {
                    "output value (or a number of rows dividing the output width)"
                } else {
                    "input feature"
                }
            ),
            Error::BadFixedPoint { layer } => write!(
                f,
                "layer {layer}: the integer (i8x16) formats are missing, out of range or inconsistent"
            ),
            Error::NotInteger => write!(
                f,
                "an integer (i16) entry point was called on a float model; quantize it with --mode i8x16"
            ),
            Error::TensorShape { layer } => {
                write!(f, "layer {layer}: a tensor's shape does not fit the layer")
            }
            Error::LayerMismatch { layer } => {
                write!(f, "layer {layer} does not fit the output of the layer before it")
            }
            Error::UnsupportedLayer { layer } => {
                write!(f, "layer {layer} uses an option this engine does not support")
            }
            Error::TooLarge { layer } => write!(f, "layer {layer} exceeds the engine's size limits"),
            Error::InputLength { expected, got } => {
                write!(f, "input has {got} values, the model expects {expected}")
            }
            Error::OutputLength { expected, got } => {
                write!(f, "output buffer has {got} values, the model writes {expected}")
            }
            Error::WindowLength { steps } => {
                write!(f, "a window of {steps} timesteps does not fit this model")
            }
            Error::BufferTooSmall { needed, got } => write!(
                f,
                "memory too small: the model needs {needed} f32 words, {got} were given"
            ),
            Error::NotStreamable => write!(
                f,
                "this model cannot run one step at a time (bidirectional, reverse or end-cropped); run whole windows"
            ),
            Error::WrongInputKind => write!(f, "input kind (features or token ids) does not match the model"),
            Error::TokenOutOfRange { token, vocab } => {
                write!(f, "token id {token} is outside the vocabulary of {vocab}")
            }
            Error::StateLength { expected, got } => {
                write!(f, "state has {got} words, this model's state has {expected}")
            }
            Error::StateBytes { expected, got } => {
                write!(f, "saved state has {got} bytes, this stream's state has {expected}")
            }
            Error::StateCorrupt => write!(
                f,
                "saved state is damaged (magic, layout, checksum or a non-finite value)"
            ),
            Error::StateModel { expected, got } => write!(
                f,
                "saved state belongs to model {got:#010x}, this stream runs model {expected:#010x}"
            ),
            Error::ModelMismatch => write!(
                f,
                "the new model's input or forecast shape differs from the running model's"
            ),
            Error::NonFiniteInput { index } => write!(
                f,
                "input value {index} is NaN or infinite; the sample was not used"
            ),
            Error::NoBootableSlot => write!(
                f,
                "neither flash slot holds an intact record and a blob that opens"
            ),
            Error::StateOverflow => write!(
                f,
                "the state overflowed to NaN or infinity (inputs too large for the model); it was reset"
            ),
            Error::BadVocabulary => write!(
                f,
                "the blob's vocabulary does not fit the model (token count, token form or unknown-token id)"
            ),
            Error::UnknownToken => write!(
                f,
                "the text holds a token outside the model's vocabulary, and the model has no unknown-token id"
            ),
            Error::BadSelfTest => write!(
                f,
                "the blob's self-test vector does not fit the model (type, shape, bounds or tolerance)"
            ),
            Error::SizedMismatch {
                layer,
                cell,
                expected: (input, hidden),
                got: (got_input, got_hidden),
                problem,
            } => write!(
                f,
                "layer {layer}: a sized {cell} of input {input} and hidden {hidden} cannot run it: \
                 {problem} (the layer's input is {got_input}, its hidden size {got_hidden})"
            ),
            Error::FeatureDisabled { layer, feature } => write!(
                f,
                "layer {layer} needs the engine's cargo feature `{feature}`, which this build leaves out"
            ),
        }
    }
}

impl core::error::Error for Error {}
