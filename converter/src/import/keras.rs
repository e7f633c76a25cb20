//! Keras importer: Keras 3 `.keras` archives and legacy `.h5` files.
//!
//! Both hold a model config (JSON) and the weights (HDF5). The config is walked in order; its layers must
//! form a single chain from one input to one output. Each layer maps onto the engine's schema:
//!
//! | Keras | engine |
//! |---|---|
//! | `SimpleRNN`, `LSTM`, `GRU`, `RNN(SimpleRNNCell / LSTMCell / GRUCell)` | [`Layer::Recurrent`] |
//! | `Bidirectional(<one of those>, merge_mode=concat/sum/mul/ave)` | [`Layer::Recurrent`], [`Direction::Bidirectional`] |
//! | `Dense`, `TimeDistributed(Dense)` | [`Layer::Dense`] (on vectors or on every timestep) |
//! | `Activation` right after a linear `Dense` | folded into that `Dense` |
//! | `Embedding` (first layer, token-id input) | [`Layer::Embedding`] |
//! | `Cropping1D((start, end))` | [`Layer::Crop`] |
//! | `Dropout`, `SpatialDropout1D`, `GaussianNoise`, `GaussianDropout`, `AlphaDropout`, `ActivityRegularization` | nothing: no-ops at inference |
//!
//! # Layouts
//! Keras kernels are `input × G·H` and recurrent kernels `H × G·H`, with the gate blocks side by side;
//! the engine wants `G·H × input` and `G·H × H`, so both are transposed. The gate orders need no change:
//! Keras LSTM `i f c o` is the engine's `i f g o`, Keras GRU `z r h` its `z r n`.
//!
//! Biases: SimpleRNN, LSTM and a reset-before GRU (`reset_after=False`) have one bias of `G·H`. A
//! reset-after GRU (`reset_after=True`, the Keras default) has a `2 × 3H` bias: row 0 is the input bias
//! (`bias`), row 1 the recurrent bias (`recurrent_bias`), kept apart because the reset gate multiplies
//! the candidate's part of it: `n = tanh(W_n x + b_in + r ⊙ (R_n h + b_rn))`.
//!
//! Dense kernels are `input × units` (transposed to `units × input`); an Embedding table is
//! `vocabulary × dimension`, as the engine stores it.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use tinyrnn::format::{
    Activation, Cell, CellWeights, Dense, Direction, Embedding, Input, InputKind, InputLayout,
    IoLayout, Layer, Merge, OutputLayout, Recurrent, Splitting, MAX_VOCAB, MAX_WIDTH,
};

use crate::spec::{ModelSpec, Tensor, TokenVocabulary};

mod config;
mod weights;

use config::{Chain, ConfigLayer};
use weights::{Store, Variable};

/// Largest archive member read from a `.keras` file.
const MAX_MEMBER_BYTES: u64 = 1 << 29;

/// Layers the importer accepts, for messages.
const SUPPORTED: &str = "InputLayer, SimpleRNN, LSTM, GRU, RNN (with a SimpleRNNCell, LSTMCell or GRUCell), \
    Bidirectional (over one of those), Dense, TimeDistributed(Dense), Activation (after a linear Dense), \
    Embedding, Cropping1D, and the inference no-ops Dropout, SpatialDropout1D, GaussianNoise, \
    GaussianDropout, AlphaDropout and ActivityRegularization";

/// Layers that do nothing at inference.
const NO_OPS: [&str; 7] = [
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
];

/// Imports a Keras 3 `.keras` archive: `config.json`, `metadata.json` and `model.weights.h5` in a zip.
pub fn import_keras_zip(path: &Path, bytes: &[u8]) -> Result<ModelSpec> {
    let file = file_name(path);
    import_zip_inner(&file, bytes)
        .with_context(|| format!("{file}: cannot import this Keras 3 archive"))
}

fn import_zip_inner(file: &str, bytes: &[u8]) -> Result<ModelSpec> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).context("not a readable zip archive")?;
    let config_bytes = zip_member(&mut archive, "config.json")?
        .context("the archive has no config.json; is it a Keras 3 .keras file?")?;
    let root: Value =
        serde_json::from_slice(&config_bytes).context("config.json is not valid JSON")?;
    let version = zip_member(&mut archive, "metadata.json")?
        .and_then(|m| serde_json::from_slice::<Value>(&m).ok())
        .and_then(|m| {
            m.get("keras_version")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let weights = match zip_member(&mut archive, "model.weights.h5")? {
        Some(w) => w,
        None => {
            let names: Vec<String> = archive.file_names().map(str::to_string).collect();
            bail!(
                "the archive has no model.weights.h5 (it holds {}); weights saved in another format or \
                 sharded are not supported",
                names.join(", ")
            )
        }
    };
    let store = Store::Keras3(weights::open(&weights).context("model.weights.h5")?);
    let source = format!(
        "Keras {} (.keras): {file}",
        version.as_deref().unwrap_or("3")
    );
    let mut assets = Assets::new();
    let asset_names: Vec<String> = archive
        .file_names()
        .filter(|n| n.starts_with("assets/") && n.ends_with("/vocabulary.txt"))
        .map(str::to_string)
        .collect();
    for name in asset_names {
        if let Some(bytes) = zip_member(&mut archive, &name)? {
            assets.insert(name, bytes);
        }
    }
    translate(&root, &store, &assets, source)
}

/// Files of a `.keras` archive's `assets/` folder, by their path in the archive.
type Assets = std::collections::HashMap<String, Vec<u8>>;

/// A leading `TextVectorization` layer: the vocabulary it maps words to, and the fixed length it pads
/// or cuts to.
fn text_vectorization(
    layer: &ConfigLayer<'_>,
    assets: &Assets,
) -> Result<(TokenVocabulary, Option<u32>)> {
    let cfg = layer.config;
    let text = |key: &str| cfg.get(key).and_then(Value::as_str);
    let (lowercase, strip_punctuation) = match cfg.get("standardize") {
        Some(Value::Null) => (false, false),
        _ => match text("standardize") {
            Some("lower_and_strip_punctuation") => (true, true),
            Some("lower") => (true, false),
            Some("strip_punctuation") => (false, true),
            other => bail!(
                "standardize={other:?} is not supported; use 'lower_and_strip_punctuation', 'lower', \
                 'strip_punctuation' or None (a custom function is Python code)"
            ),
        },
    };
    ensure!(
        text("split") == Some("whitespace"),
        "split={:?} is not supported; only 'whitespace'",
        cfg.get("split")
    );
    ensure!(
        text("output_mode") == Some("int"),
        "output_mode={:?} is not supported; only 'int' (token ids into an Embedding)",
        cfg.get("output_mode")
    );
    ensure!(
        cfg.get("ngrams").is_none_or(Value::is_null),
        "ngrams are not supported"
    );
    let steps = match cfg.get("output_sequence_length") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n > 0)
                .with_context(|| format!("output_sequence_length {v} is not a length"))?,
        ),
    };
    let words: Vec<String> = match cfg.get("vocabulary") {
        Some(Value::Array(list)) => {
            // An inline vocabulary lists the words only; Keras puts padding and OOV first.
            let mut words = vec![String::new(), "[UNK]".to_string()];
            for (i, w) in list.iter().enumerate() {
                words.push(
                    w.as_str()
                        .with_context(|| format!("vocabulary entry {i} is not a string"))?
                        .to_string(),
                );
            }
            words
        }
        _ => {
            let path = format!("assets/{}/vocabulary.txt", layer.store_path);
            let bytes = assets.get(&path).with_context(|| {
                format!(
                    "its vocabulary is not in the archive ({path}); it is saved only in .keras archives, \
                     or pass it with --vocab"
                )
            })?;
            let text =
                std::str::from_utf8(bytes).with_context(|| format!("{path} is not UTF-8"))?;
            text.split('\n').map(str::to_string).collect()
        }
    };
    ensure!(
        words.len() >= 2,
        "the vocabulary has {} entries",
        words.len()
    );
    let unknown = words.iter().position(|w| w == "[UNK]").map(|p| p as u32);
    Ok((
        TokenVocabulary {
            splitting: Splitting::Words {
                lowercase,
                strip_punctuation,
            },
            tokens: words,
            unknown,
        },
        steps,
    ))
}

/// Imports a legacy Keras `.h5` file: the model config in the root's `model_config` attribute, the
/// weights in `model_weights/<layer name>/…`.
pub fn import_keras_h5(path: &Path, bytes: &[u8]) -> Result<ModelSpec> {
    let file = file_name(path);
    import_h5_inner(&file, bytes)
        .with_context(|| format!("{file}: cannot import this Keras .h5 file"))
}

fn import_h5_inner(file: &str, bytes: &[u8]) -> Result<ModelSpec> {
    let h5 = weights::open(bytes)?;
    let config_text = weights::root_string(&h5, "model_config")?.context(
        "the file has no 'model_config' attribute: it holds weights only; save the whole model with \
         model.save(\"model.h5\") or, better, model.save(\"model.keras\")",
    )?;
    let root: Value = serde_json::from_str(&config_text)
        .context("the 'model_config' attribute is not valid JSON")?;
    let version = weights::root_string(&h5, "keras_version").ok().flatten();
    let source = format!(
        "Keras {} (.h5): {file}",
        version.as_deref().unwrap_or("(unknown version)")
    );
    translate(&root, &Store::Legacy(h5), &Assets::new(), source)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn zip_member(
    archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let member = match archive.by_name(name) {
        Ok(m) => m,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {name} from the archive")),
    };
    let mut out = Vec::new();
    member
        .take(MAX_MEMBER_BYTES + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("reading {name} from the archive"))?;
    ensure!(
        out.len() as u64 <= MAX_MEMBER_BYTES,
        "{name} in the archive is larger than {MAX_MEMBER_BYTES} bytes"
    );
    Ok(Some(out))
}

/// The shape of the data flowing between layers.
#[derive(Clone, Copy)]
struct Flow {
    /// Values per timestep (per vector); `None` before the Embedding of a token-id model.
    width: Option<usize>,
    /// `true`: a sequence of timesteps; `false`: one vector.
    sequence: bool,
    /// Timesteps, when the input fixes them.
    steps: Option<u32>,
}

fn translate(root: &Value, store: &Store, assets: &Assets, source: String) -> Result<ModelSpec> {
    let chain = config::chain(root)?;
    let Chain {
        name,
        mut input,
        layers: mut config_layers,
    } = chain;
    // A model that starts from strings: its TextVectorization becomes the blob's vocabulary, and the
    // model reads the token ids it produces.
    let mut vocabulary = None;
    if config_layers
        .first()
        .is_some_and(|l| l.class == "TextVectorization")
    {
        let layer = config_layers.remove(0);
        let (words, steps) = text_vectorization(&layer, assets)
            .with_context(|| format!("layer {}", layer.describe()))?;
        vocabulary = Some(words);
        input = config::InputShape {
            steps,
            features: None,
        };
    }
    let kind = match input.features {
        Some(f) => {
            ensure!(
                f <= MAX_WIDTH,
                "the input has {f} features; at most {MAX_WIDTH} are supported"
            );
            InputKind::Features(f)
        }
        None => InputKind::Tokens,
    };
    let mut flow = Flow {
        width: input.features.map(|f| f as usize),
        sequence: true,
        steps: input.steps,
    };
    let mut layers: Vec<Layer<Tensor>> = Vec::new();
    for layer in &config_layers {
        layer_to_spec(layer, store, &mut flow, &mut layers)
            .with_context(|| format!("layer {}", layer.describe()))?;
    }
    ensure!(!layers.is_empty(), "the model has no layers to import");
    Ok(ModelSpec {
        input: Input {
            kind,
            steps: input.steps,
        },
        layers,
        io: IoLayout {
            input: InputLayout::BatchFirst,
            output: OutputLayout::BatchFirst,
        },
        name,
        source,
        vocabulary,
        scaling: Default::default(),
        annotations: Default::default(),
        fixed: None,
    })
}

fn layer_to_spec(
    layer: &ConfigLayer<'_>,
    store: &Store,
    flow: &mut Flow,
    out: &mut Vec<Layer<Tensor>>,
) -> Result<()> {
    let cfg = layer.config;
    let class = layer.class.as_str();
    if flow.width.is_none() && class != "Embedding" && !NO_OPS.contains(&class) {
        bail!(
            "the model reads token ids (input shape (batch, steps)), so its first layer must be an \
             Embedding; feature inputs must have shape (batch, steps, features)"
        );
    }
    match class {
        "SimpleRNN" | "LSTM" | "GRU" | "RNN" => {
            let rnn = RnnConfig::parse(class, cfg)?;
            ensure!(
                !rnn.go_backwards,
                "go_backwards=True is not supported (it reverses time on its own); use \
                 Bidirectional for a backward pass"
            );
            let input = sequence_width(flow, "a recurrent layer")?;
            let vars = store.variables(layer, &["cell"])?;
            let forward = cell_weights(&rnn, input, one_part(vars)?)?;
            out.push(Layer::Recurrent(rnn.layer(Direction::Forward, forward, None)));
            *flow = Flow {
                width: Some(rnn.units),
                sequence: rnn.return_sequences,
                steps: flow.steps,
            };
        }
        "Bidirectional" => {
            let inner = cfg
                .get("layer")
                .context("the Bidirectional config has no wrapped 'layer'")?;
            let inner_class = inner.get("class_name").and_then(Value::as_str).unwrap_or("?");
            ensure!(
                matches!(inner_class, "SimpleRNN" | "LSTM" | "GRU" | "RNN"),
                "Bidirectional wraps a {inner_class}; only SimpleRNN, LSTM, GRU or RNN are supported"
            );
            let inner_cfg = inner
                .get("config")
                .context("the wrapped layer has no config")?;
            let rnn = RnnConfig::parse(inner_class, inner_cfg).with_context(|| format!("the wrapped {inner_class}"))?;
            ensure!(
                !rnn.go_backwards,
                "the wrapped {inner_class} has go_backwards=True, which swaps the two directions; this is \
                 not supported"
            );
            if let Some(backward) = cfg.get("backward_layer").filter(|b| !b.is_null()) {
                let back_cfg = backward
                    .get("config")
                    .context("the backward layer has no config")?;
                let back_class = backward.get("class_name").and_then(Value::as_str).unwrap_or("?");
                let back = RnnConfig::parse(back_class, back_cfg).context("the backward layer")?;
                ensure!(
                    back.go_backwards,
                    "the backward layer does not have go_backwards=True"
                );
                ensure!(
                    back.same_cell(&rnn),
                    "the backward layer differs from the forward one (cell, units, activations, bias or \
                     return_sequences); this is not supported"
                );
            }
            let merge = match cfg.get("merge_mode") {
                Some(Value::String(m)) => match m.as_str() {
                    "concat" => Merge::Concat,
                    "sum" => Merge::Sum,
                    "mul" => Merge::Mul,
                    "ave" => Merge::Ave,
                    other => bail!(
                        "merge_mode '{other}' is not supported; use 'concat', 'sum', 'mul' or 'ave'"
                    ),
                },
                None => Merge::Concat,
                Some(_) => bail!(
                    "merge_mode=None returns the two directions separately; use 'concat', 'sum', 'mul' \
                     or 'ave'"
                ),
            };
            let input = sequence_width(flow, "a Bidirectional layer")?;
            let mut parts = store
                .variables(layer, &["forward_layer/cell", "backward_layer/cell"])?
                .into_iter();
            let (Some(fwd_vars), Some(bwd_vars)) = (parts.next(), parts.next()) else {
                bail!("the weights file lacks one of the two directions");
            };
            let forward = cell_weights(&rnn, input, fwd_vars).context("forward direction")?;
            let backward = cell_weights(&rnn, input, bwd_vars).context("backward direction")?;
            out.push(Layer::Recurrent(rnn.layer(
                Direction::Bidirectional(merge),
                forward,
                Some(backward),
            )));
            let width = if merge == Merge::Concat {
                rnn.units * 2
            } else {
                rnn.units
            };
            *flow = Flow {
                width: Some(width),
                sequence: rnn.return_sequences,
                steps: flow.steps,
            };
        }
        "Dense" => {
            let input = flow.width.context("no input width")?;
            let vars = store.variables(layer, &[""])?;
            let dense = dense(cfg, input, one_part(vars)?)?;
            flow.width = Some(dense_units(&dense));
            out.push(Layer::Dense(dense));
        }
        "TimeDistributed" => {
            let inner = cfg
                .get("layer")
                .context("the TimeDistributed config has no wrapped 'layer'")?;
            let inner_class = inner.get("class_name").and_then(Value::as_str).unwrap_or("?");
            ensure!(
                inner_class == "Dense",
                "TimeDistributed wraps a {inner_class}; only TimeDistributed(Dense) is supported"
            );
            let inner_cfg = inner
                .get("config")
                .context("the wrapped Dense has no config")?;
            let input = sequence_width(flow, "TimeDistributed")?;
            let vars = store.variables(layer, &["layer"])?;
            let dense = dense(inner_cfg, input, one_part(vars)?).context("the wrapped Dense")?;
            flow.width = Some(dense_units(&dense));
            out.push(Layer::Dense(dense));
        }
        "Activation" => {
            let activation = activation(cfg, "activation", ActivationUse::Dense)?;
            if activation != Activation::Linear {
                match out.last_mut() {
                    Some(Layer::Dense(d)) if d.activation == Activation::Linear => d.activation = activation,
                    _ => bail!(
                        "a standalone Activation is supported only right after a Dense layer with a \
                         linear activation, into which it is folded; give the preceding layer the \
                         activation instead"
                    ),
                }
            }
        }
        "Embedding" => {
            ensure!(
                out.is_empty() && flow.width.is_none(),
                "an Embedding must be the first layer of a model whose input is token ids of shape \
                 (batch, steps)"
            );
            ensure!(
                !flag(cfg, "mask_zero")?,
                "mask_zero=True is not supported (the engine does not mask padded timesteps); set \
                 mask_zero=False"
            );
            no_quantization(cfg)?;
            let vocab = size(cfg, "input_dim", MAX_VOCAB)?;
            let dim = size(cfg, "output_dim", MAX_WIDTH)?;
            let mut vars = one_part(store.variables(layer, &[""])?)?.into_iter();
            let (Some(table), None) = (vars.next(), vars.next()) else {
                bail!("expected exactly one variable (the embedding table)");
            };
            check_name(&table, "embeddings")?;
            let data = table.read(&[vocab, dim], "the embedding table")?;
            out.push(Layer::Embedding(Embedding {
                table: Tensor::matrix(vocab, dim, data)?,
            }));
            flow.width = Some(dim);
        }
        "Cropping1D" => {
            ensure!(
                flow.sequence,
                "Cropping1D needs a sequence, but the layer before it returns one vector \
                 (return_sequences=False)"
            );
            let (start, end) = cropping(cfg)?;
            if let Some(steps) = flow.steps {
                ensure!(
                    u64::from(start) + u64::from(end) < u64::from(steps),
                    "cropping ({start}, {end}) leaves nothing of {steps} timesteps"
                );
                flow.steps = Some(steps - start - end);
            }
            out.push(Layer::Crop { start, end });
        }
        c if NO_OPS.contains(&c) => {}
        "Lambda" => bail!(
            "a Lambda layer holds Python code, which cannot be imported. To keep the last N timesteps \
             (x[:, -N:]), use Cropping1D((steps - N, 0)) instead; for anything else, use a supported layer"
        ),
        "InputLayer" => bail!("a second InputLayer inside the model is not supported"),
        other => bail!("{other} layers are not supported; supported layers: {SUPPORTED}"),
    }
    Ok(())
}

fn sequence_width(flow: &Flow, what: &str) -> Result<usize> {
    ensure!(
        flow.sequence,
        "{what} needs a sequence, but the layer before it returns one vector (return_sequences=False)"
    );
    flow.width.context("no input width")
}

fn one_part(parts: Vec<Vec<Variable>>) -> Result<Vec<Variable>> {
    let mut parts = parts.into_iter();
    match (parts.next(), parts.next()) {
        (Some(one), None) => Ok(one),
        _ => bail!("unexpected weight layout"),
    }
}

fn dense_units(d: &Dense<Tensor>) -> usize {
    d.weight.rows
}

/// A recurrent layer's settings, from a `SimpleRNN`/`LSTM`/`GRU` config or an `RNN` config and its cell.
struct RnnConfig {
    cell: Cell,
    units: usize,
    activation: Activation,
    gate_activation: Activation,
    use_bias: bool,
    return_sequences: bool,
    go_backwards: bool,
}

impl RnnConfig {
    fn parse(class: &str, cfg: &Value) -> Result<Self> {
        // The sequence-level options live on the layer; the cell's own on the cell, which for
        // SimpleRNN/LSTM/GRU is the layer config itself and for RNN its 'cell'.
        for (key, what) in [
            ("stateful", "stateful=True (state kept across batches) is not supported; the engine's runtime keeps state itself when streaming"),
            ("return_state", "return_state=True is not supported"),
            ("time_major", "time_major=True is not supported"),
        ] {
            ensure!(!flag(cfg, key)?, "{what}");
        }
        let return_sequences = flag(cfg, "return_sequences")?;
        let go_backwards = flag(cfg, "go_backwards")?;
        let (cell_class, cell_cfg) = match cfg.get("cell").filter(|_| class == "RNN") {
            Some(cell) => {
                let class = cell
                    .get("class_name")
                    .and_then(Value::as_str)
                    .context("the RNN's 'cell' is not a single cell (lists of cells and StackedRNNCells are not supported)")?;
                let cell_cfg = cell.get("config").context("the RNN's cell has no config")?;
                (class, cell_cfg)
            }
            None if class == "RNN" => bail!("the RNN config has no 'cell'"),
            None => ("", cfg),
        };
        let kind = match (class, cell_class) {
            ("RNN", "SimpleRNNCell") | ("SimpleRNN", _) => "SimpleRNN",
            ("RNN", "LSTMCell") | ("LSTM", _) => "LSTM",
            ("RNN", "GRUCell") | ("GRU", _) => "GRU",
            ("RNN", other) => {
                bail!("RNN wraps a {other}; only SimpleRNNCell, LSTMCell and GRUCell are supported")
            }
            (other, _) => bail!("{other} is not a recurrent layer"),
        };
        let cell = match kind {
            "LSTM" => Cell::Lstm {
                input_forget: false,
            },
            "GRU" => Cell::Gru {
                reset_after: match cell_cfg.get("reset_after") {
                    Some(v) => v.as_bool().context("'reset_after' is not true or false")?,
                    None => true,
                },
            },
            _ => Cell::SimpleRnn,
        };
        let gate_activation = match cell {
            Cell::SimpleRnn => Activation::Sigmoid,
            _ => activation(cell_cfg, "recurrent_activation", ActivationUse::Recurrent)?,
        };
        Ok(Self {
            cell,
            units: size(cell_cfg, "units", MAX_WIDTH)?,
            activation: activation(cell_cfg, "activation", ActivationUse::Recurrent)?,
            gate_activation,
            use_bias: match cell_cfg.get("use_bias") {
                Some(v) => v.as_bool().context("'use_bias' is not true or false")?,
                None => true,
            },
            return_sequences,
            go_backwards,
        })
    }

    fn same_cell(&self, other: &Self) -> bool {
        self.cell == other.cell
            && self.units == other.units
            && self.activation == other.activation
            && self.gate_activation == other.gate_activation
            && self.use_bias == other.use_bias
            && self.return_sequences == other.return_sequences
    }

    fn layer(
        &self,
        direction: Direction,
        forward: CellWeights<Tensor>,
        backward: Option<CellWeights<Tensor>>,
    ) -> Recurrent<Tensor> {
        Recurrent {
            cell: self.cell,
            hidden: self.units as u32,
            activation: self.activation,
            gate_activation: self.gate_activation,
            clip: None,
            direction,
            return_sequences: self.return_sequences,
            forward,
            backward,
        }
    }
}

/// One direction's weights: kernel `(I, G·H)`, recurrent kernel `(H, G·H)`, then the bias if any.
fn cell_weights(rnn: &RnnConfig, input: usize, vars: Vec<Variable>) -> Result<CellWeights<Tensor>> {
    let h = rnn.units;
    let gh = rnn.cell.gates() * h;
    let expected = if rnn.use_bias { 3 } else { 2 };
    ensure!(
        vars.len() == expected,
        "expected {expected} variables (kernel, recurrent kernel{}), the weights file has {}",
        if rnn.use_bias { ", bias" } else { "" },
        vars.len()
    );
    let mut vars = vars.into_iter();
    let (Some(kernel), Some(recurrent)) = (vars.next(), vars.next()) else {
        bail!("missing kernels");
    };
    check_name(&kernel, "kernel")?;
    check_name(&recurrent, "recurrent_kernel")?;
    let kernel = Tensor::transposed(input, gh, &kernel.read(&[input, gh], "the kernel")?)?;
    let recurrent = Tensor::transposed(h, gh, &recurrent.read(&[h, gh], "the recurrent kernel")?)?;
    let (bias, recurrent_bias) = match vars.next() {
        None => (None, None),
        Some(bias) => {
            check_name(&bias, "bias")?;
            match rnn.cell {
                Cell::Gru { reset_after: true } => {
                    let mut both = bias.read(&[2, gh], "the bias (input and recurrent rows)")?;
                    let recurrent_row = both.split_off(gh);
                    (
                        Some(Tensor::vector(both)),
                        Some(Tensor::vector(recurrent_row)),
                    )
                }
                _ => (Some(Tensor::vector(bias.read(&[gh], "the bias")?)), None),
            }
        }
    };
    Ok(CellWeights {
        kernel,
        recurrent,
        bias,
        recurrent_bias,
        peephole: None,
        initial_h: None,
        initial_c: None,
    })
}

fn dense(cfg: &Value, input: usize, vars: Vec<Variable>) -> Result<Dense<Tensor>> {
    no_quantization(cfg)?;
    if cfg.get("lora_rank").is_some_and(|r| !r.is_null()) {
        bail!("a Dense with LoRA weights is not supported; merge them first");
    }
    let units = size(cfg, "units", MAX_WIDTH)?;
    let activation = activation(cfg, "activation", ActivationUse::Dense)?;
    let use_bias = match cfg.get("use_bias") {
        Some(v) => v.as_bool().context("'use_bias' is not true or false")?,
        None => true,
    };
    let expected = if use_bias { 2 } else { 1 };
    ensure!(
        vars.len() == expected,
        "expected {expected} variables (kernel{}), the weights file has {}",
        if use_bias { ", bias" } else { "" },
        vars.len()
    );
    let mut vars = vars.into_iter();
    let Some(kernel) = vars.next() else {
        bail!("missing kernel");
    };
    check_name(&kernel, "kernel")?;
    let weight = Tensor::transposed(input, units, &kernel.read(&[input, units], "the kernel")?)?;
    let bias = match vars.next() {
        Some(b) => {
            check_name(&b, "bias")?;
            Some(Tensor::vector(b.read(&[units], "the bias")?))
        }
        None => None,
    };
    Ok(Dense {
        weight,
        bias,
        activation,
    })
}

/// In legacy files each variable has a name; it must be the one expected at its position.
fn check_name(var: &Variable, expected: &str) -> Result<()> {
    ensure!(
        var.name.is_empty() || var.name == expected,
        "expected the weight '{expected}' but found '{}' ({})",
        var.name,
        var.path
    );
    Ok(())
}

fn no_quantization(cfg: &Value) -> Result<()> {
    ensure!(
        cfg.get("quantization_config").is_none_or(Value::is_null),
        "quantized Keras layers are not supported; import the float model and quantize with tinyrnn"
    );
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ActivationUse {
    Recurrent,
    Dense,
}

/// Maps a Keras activation (a name, `null`, or a serialised function) to the engine's.
fn activation(cfg: &Value, key: &str, usage: ActivationUse) -> Result<Activation> {
    let value = cfg.get(key).unwrap_or(&Value::Null);
    let name = match value {
        Value::Null => "linear",
        Value::String(s) => s.as_str(),
        Value::Object(o) => o
            .get("config")
            .and_then(Value::as_str)
            .or_else(|| o.get("class_name").and_then(Value::as_str))
            .unwrap_or("?"),
        _ => "?",
    };
    let allowed = match usage {
        ActivationUse::Recurrent => "tanh, relu, linear or sigmoid",
        ActivationUse::Dense => "linear, relu, sigmoid, tanh or softmax",
    };
    Ok(match (name, usage) {
        ("linear" | "None", _) => Activation::Linear,
        ("tanh", _) => Activation::Tanh,
        ("relu", _) => Activation::Relu,
        ("sigmoid", _) => Activation::Sigmoid,
        ("softmax", ActivationUse::Dense) => Activation::Softmax,
        (other, _) => bail!("{key} '{other}' is not supported here; use {allowed}"),
    })
}

fn flag(cfg: &Value, key: &str) -> Result<bool> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(v) => v
            .as_bool()
            .with_context(|| format!("'{key}' is {v}, not true or false")),
    }
}

fn size(cfg: &Value, key: &str, max: u32) -> Result<usize> {
    let v = cfg
        .get(key)
        .with_context(|| format!("the config has no '{key}'"))?;
    let n = v
        .as_u64()
        .with_context(|| format!("'{key}' is {v}, not a size"))?;
    ensure!(
        (1..=u64::from(max)).contains(&n),
        "'{key}' is {n}; it must be between 1 and {max}"
    );
    usize::try_from(n).with_context(|| format!("'{key}' is too large"))
}

fn cropping(cfg: &Value) -> Result<(u32, u32)> {
    let v = cfg
        .get("cropping")
        .context("the config has no 'cropping'")?;
    let one = |x: &Value| -> Result<u32> {
        x.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .with_context(|| format!("cropping {v} is not a pair of sizes"))
    };
    match v {
        Value::Array(pair) => match pair.as_slice() {
            [a, b] => Ok((one(a)?, one(b)?)),
            _ => bail!("cropping {v} is not a pair of sizes"),
        },
        n => {
            let n = one(n)?;
            Ok((n, n))
        }
    }
}
