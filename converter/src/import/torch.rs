//! PyTorch `state_dict`s saved as `.safetensors`, and NumPy `.npz` archives (PyTorch names, or
//! min-char-rnn's `Wxh, Whh, Why, bh, by`).
//!
//! A `state_dict` holds tensors, not the forward pass. What the names and shapes say is used:
//! `<module>.weight_ih_l<k>[_reverse]`, `weight_hh_…`, `bias_ih_…`, `bias_hh_…` make an `nn.RNN`, `nn.GRU` or
//! `nn.LSTM` (1, 3 or 4 gate blocks per `weight_hh` row count over its column count), with its layer count
//! and directions; `<module>.weight` (+ `.bias`) is an `nn.Linear`, or an `nn.Embedding` when its name says
//! `emb`. What they do not say (the order of several Linear layers, the activations between them, an
//! `nn.RNN`'s `nonlinearity`, whether the head reads the last timestep or every timestep, `batch_first`)
//! comes from defaults when the file leaves no doubt, and otherwise from `--arch`:
//!
//! ```text
//! --arch "embedding, lstm, last, fc1:relu, fc2"
//! ```
//!
//! a comma- (or `->`-) separated list of the file's modules in forward order, plus `last` for
//! `out[:, -1, :]`. Options after a colon: `relu`/`tanh` for an `nn.RNN`, `time-first` for a recurrent
//! module run with `batch_first=False`, `relu`/`sigmoid`/`tanh`/`softmax` after a Linear, and `embedding` or
//! `linear` to say what a `.weight` module is. Every module of the file must appear once.
//!
//! Without `--arch`, a file is read as `[embedding] → recurrent → last → [linear]`, with tanh and
//! batch-first, and only when it has one recurrent module, at most one Linear and at most one Embedding;
//! anything else is ambiguous and refused with a message saying so.
//!
//! PyTorch's gate orders are LSTM `i f g o` (ours) and GRU `r z n` (ours is `z r n`); a GRU is always
//! reset-after (`b_hn` inside `r ⊙ (…)`), so its recurrent bias stays separate.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use tinyrnn::format::{
    Activation, Cell, CellWeights, Dense, Direction, Embedding, Input, InputKind, InputLayout,
    IoLayout, Layer, Merge, OutputLayout, Recurrent,
};

use crate::npy;
use crate::spec::{ModelSpec, Tensor};

/// Largest tensor file member or tensor read, in bytes; a bound against archives that inflate without end.
const MAX_TENSOR_BYTES: u64 = 1 << 30;

/// One named array.
#[derive(Clone, Debug)]
struct Named {
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// Reads a `.safetensors` file into a model; see the module docs for `arch`.
pub fn import_safetensors(path: &Path, bytes: &[u8], arch: Option<&str>) -> Result<ModelSpec> {
    let tensors = read_safetensors(bytes)?;
    build(
        tensors,
        arch,
        &format!("PyTorch state_dict {}", file_name(path)),
    )
}

/// Reads an `.npz` archive into a model; see the module docs for `arch`.
pub fn import_npz(path: &Path, bytes: &[u8], arch: Option<&str>) -> Result<ModelSpec> {
    let tensors = read_npz(bytes)?;
    let source = format!("NumPy {}", file_name(path));
    if MIN_CHAR_RNN.iter().all(|n| tensors.contains_key(*n)) {
        ensure!(
            arch.is_none(),
            "--arch does not apply to a min-char-rnn archive (Wxh, Whh, Why, bh, by)"
        );
        return min_char_rnn(tensors, &source);
    }
    build(tensors, arch, &source)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn read_safetensors(bytes: &[u8]) -> Result<BTreeMap<String, Named>> {
    use safetensors::{Dtype, SafeTensors};
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow!("not a readable safetensors file: {e}"))?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
                .collect(),
            other => {
                bail!("tensor '{name}' has dtype {other:?}; weights must be F32, F64, F16 or BF16")
            }
        };
        ensure!(
            data.len() == view.shape().iter().product::<usize>(),
            "tensor '{name}': shape {:?} does not match its {} values",
            view.shape(),
            data.len()
        );
        out.insert(
            name,
            Named {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(out)
}

/// IEEE half precision to single, exactly.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exponent = u32::from((h >> 10) & 0x1f);
    let mantissa = u32::from(h & 0x3ff);
    let bits = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: m × 2^-24, exact in f32.
            let magnitude = m as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -magnitude } else { magnitude };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn read_npz(bytes: &[u8]) -> Result<BTreeMap<String, Named>> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .context("not a readable .npz (zip) archive")?;
    let mut out = BTreeMap::new();
    for index in 0..archive.len() {
        let member = archive
            .by_index(index)
            .with_context(|| format!("reading member {index} of the archive"))?;
        let member_name = member.name().to_string();
        let Some(name) = member_name.strip_suffix(".npy") else {
            bail!("archive member '{member_name}' is not an .npy array");
        };
        let name = name.to_string();
        let mut buffer = Vec::new();
        member
            .take(MAX_TENSOR_BYTES + 1)
            .read_to_end(&mut buffer)
            .with_context(|| format!("reading {member_name}"))?;
        ensure!(
            buffer.len() as u64 <= MAX_TENSOR_BYTES,
            "{member_name} is larger than {MAX_TENSOR_BYTES} bytes"
        );
        let array = npy::parse(&buffer).with_context(|| member_name.clone())?;
        let data = match array.data {
            npy::Data::Float(values) => values,
            npy::Data::Int(_) => bail!("'{name}' holds integers; weights must be floating point"),
        };
        out.insert(
            name,
            Named {
                shape: array.shape,
                data,
            },
        );
    }
    Ok(out)
}

// ----------------------------------------------------------------------------------------------------
// Modules found in a state dict

/// `nn.RNN`, `nn.GRU` or `nn.LSTM`, from its tensor names.
#[derive(Clone, Debug)]
struct RecurrentModule {
    prefix: String,
    cell: Cell,
    gates: usize,
    hidden: usize,
    input: usize,
    layers: usize,
    bidirectional: bool,
}

impl RecurrentModule {
    fn output_width(&self) -> usize {
        self.hidden * if self.bidirectional { 2 } else { 1 }
    }

    fn kind_name(&self) -> &'static str {
        match self.cell {
            Cell::SimpleRnn => "nn.RNN",
            Cell::Gru { .. } => "nn.GRU",
            Cell::Lstm { .. } => "nn.LSTM",
        }
    }
}

/// A `<prefix>.weight` (+ `.bias`) module: `nn.Linear` or `nn.Embedding`.
#[derive(Clone, Debug)]
struct WeightModule {
    prefix: String,
    rows: usize,
    cols: usize,
    has_bias: bool,
}

impl WeightModule {
    fn looks_like_embedding(&self) -> bool {
        !self.has_bias && self.prefix.to_ascii_lowercase().contains("emb")
    }
}

enum Module {
    Recurrent(RecurrentModule),
    Weight(WeightModule),
}

impl Module {
    fn prefix(&self) -> &str {
        match self {
            Module::Recurrent(r) => &r.prefix,
            Module::Weight(w) => &w.prefix,
        }
    }
}

/// Splits `rnn.weight_ih_l0_reverse` into (`rnn`, `weight_ih`, 0, true).
fn recurrent_name(name: &str) -> Option<(&str, &str, usize, bool)> {
    let (prefix, last) = match name.rsplit_once('.') {
        Some((p, l)) => (p, l),
        None => ("", name),
    };
    let (last, reverse) = match last.strip_suffix("_reverse") {
        Some(l) => (l, true),
        None => (last, false),
    };
    let (kind, layer) = last.rsplit_once("_l")?;
    let layer: usize = layer.parse().ok()?;
    matches!(
        kind,
        "weight_ih" | "weight_hh" | "bias_ih" | "bias_hh" | "weight_hr"
    )
    .then_some((prefix, kind, layer, reverse))
}

fn tensor_key(prefix: &str, kind: &str, layer: usize, reverse: bool) -> String {
    let dot = if prefix.is_empty() { "" } else { "." };
    let suffix = if reverse { "_reverse" } else { "" };
    format!("{prefix}{dot}{kind}_l{layer}{suffix}")
}

fn find_modules(tensors: &BTreeMap<String, Named>) -> Result<Vec<Module>> {
    let mut recurrent: BTreeMap<String, (usize, bool)> = BTreeMap::new();
    let mut weights: BTreeMap<String, ()> = BTreeMap::new();
    for (name, tensor) in tensors {
        if let Some((prefix, kind, layer, reverse)) = recurrent_name(name) {
            ensure!(
                kind != "weight_hr",
                "'{name}': an LSTM with proj_size is not supported (its projection weight_hr has no \
                 counterpart in tinyrnn's LSTM)"
            );
            let entry = recurrent.entry(prefix.to_string()).or_insert((0, false));
            entry.0 = entry.0.max(layer + 1);
            entry.1 |= reverse;
        } else if let Some(prefix) = name.strip_suffix(".weight") {
            weights.insert(prefix.to_string(), ());
        } else if let Some(prefix) = name.strip_suffix(".bias") {
            ensure!(
                tensors.contains_key(&format!("{prefix}.weight")),
                "'{name}' has no '{prefix}.weight' beside it"
            );
        } else {
            bail!(
                "tensor '{name}' (shape {:?}) is not part of a module tinyrnn reads: expected nn.RNN/GRU/LSTM \
                 names (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, with _reverse), nn.Linear \
                 (weight, bias) or nn.Embedding (weight)",
                tensor.shape
            );
        }
    }
    let mut modules = Vec::new();
    for (prefix, (layers, bidirectional)) in recurrent {
        modules.push(Module::Recurrent(recurrent_module(
            tensors,
            &prefix,
            layers,
            bidirectional,
        )?));
    }
    for prefix in weights.into_keys() {
        let name = format!("{prefix}.weight");
        let weight = &tensors[&name];
        ensure!(
            weight.shape.len() == 2,
            "tensor '{name}' has shape {:?}; nn.Linear and nn.Embedding weights are 2-D (a {}-D weight \
             belongs to a layer tinyrnn does not support)",
            weight.shape,
            weight.shape.len()
        );
        let has_bias = tensors.contains_key(&format!("{prefix}.bias"));
        if has_bias {
            let bias = &tensors[&format!("{prefix}.bias")];
            ensure!(
                bias.shape == [weight.shape[0]],
                "tensor '{prefix}.bias' has shape {:?}; '{name}' of shape {:?} needs [{}]",
                bias.shape,
                weight.shape,
                weight.shape[0]
            );
        }
        modules.push(Module::Weight(WeightModule {
            prefix,
            rows: weight.shape[0],
            cols: weight.shape[1],
            has_bias,
        }));
    }
    Ok(modules)
}

fn recurrent_module(
    tensors: &BTreeMap<String, Named>,
    prefix: &str,
    layers: usize,
    bidirectional: bool,
) -> Result<RecurrentModule> {
    let shape = |key: &str| -> Result<&[usize]> {
        tensors.get(key).map(|t| t.shape.as_slice()).ok_or_else(|| {
            anyhow!("tensor '{key}' is missing (module '{prefix}' has other layers or directions)")
        })
    };
    let hh = tensor_key(prefix, "weight_hh", 0, false);
    let hh_shape = shape(&hh)?;
    ensure!(
        hh_shape.len() == 2 && hh_shape[1] > 0 && hh_shape[0] % hh_shape[1] == 0,
        "tensor '{hh}' has shape {hh_shape:?}; expected (gates × hidden, hidden)"
    );
    let hidden = hh_shape[1];
    let gates = hh_shape[0] / hidden;
    let cell = match gates {
        1 => Cell::SimpleRnn,
        3 => Cell::Gru { reset_after: true },
        4 => Cell::Lstm {
            input_forget: false,
        },
        _ => bail!(
            "tensor '{hh}' has shape {hh_shape:?}: {gates} gate blocks of {hidden}; nn.RNN has 1, nn.GRU 3, \
             nn.LSTM 4"
        ),
    };
    let input = shape(&tensor_key(prefix, "weight_ih", 0, false))?
        .get(1)
        .copied()
        .unwrap_or(0);
    let module = RecurrentModule {
        prefix: prefix.to_string(),
        cell,
        gates,
        hidden,
        input,
        layers,
        bidirectional,
    };
    let has_bias = tensors.contains_key(&tensor_key(prefix, "bias_ih", 0, false));
    for layer in 0..layers {
        let width = if layer == 0 {
            input
        } else {
            module.output_width()
        };
        for &reverse in directions(bidirectional) {
            let expect = |kind: &str, want: &[usize]| -> Result<()> {
                let key = tensor_key(prefix, kind, layer, reverse);
                let got = shape(&key)?;
                ensure!(
                    got == want,
                    "tensor '{key}' has shape {got:?}; {} '{prefix}' (hidden {hidden}, layer {layer} input \
                     {width}) needs {want:?}",
                    module.kind_name()
                );
                Ok(())
            };
            expect("weight_ih", &[gates * hidden, width])?;
            expect("weight_hh", &[gates * hidden, hidden])?;
            for kind in ["bias_ih", "bias_hh"] {
                let key = tensor_key(prefix, kind, layer, reverse);
                match (has_bias, tensors.contains_key(&key)) {
                    (true, _) => expect(kind, &[gates * hidden])?,
                    (false, false) => {}
                    (false, true) => bail!(
                        "tensor '{key}' is present but '{}' is not: biases must be all there or all absent",
                        tensor_key(prefix, "bias_ih", 0, false)
                    ),
                }
            }
        }
    }
    Ok(module)
}

fn directions(bidirectional: bool) -> &'static [bool] {
    if bidirectional {
        &[false, true]
    } else {
        &[false]
    }
}

// ----------------------------------------------------------------------------------------------------
// The forward pass: inferred, or from --arch

/// One step of the forward pass.
enum Step {
    Recurrent {
        module: RecurrentModule,
        activation: Activation,
        time_first: bool,
    },
    Linear {
        module: WeightModule,
        activation: Activation,
    },
    Embedding(WeightModule),
    Last,
}

fn infer(modules: Vec<Module>) -> Result<Vec<Step>> {
    let summary = modules
        .iter()
        .map(|m| match m {
            Module::Recurrent(r) => format!("{} '{}'", r.kind_name(), r.prefix),
            Module::Weight(w) => format!("'{}' ({}×{})", w.prefix, w.rows, w.cols),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let ambiguous = |why: &str| {
        anyhow!(
            "the architecture is ambiguous: {why}. The file holds {summary}. Say the forward pass with \
             --arch, e.g. --arch \"lstm, last, fc1:relu, fc2\" (modules in order; `last` takes the last \
             timestep; options: relu/tanh for nn.RNN, time-first, relu/sigmoid/tanh/softmax after a Linear, \
             embedding/linear for a .weight module)"
        )
    };
    let mut recurrent = Vec::new();
    let mut embeddings = Vec::new();
    let mut linears = Vec::new();
    for module in modules {
        match module {
            Module::Recurrent(r) => recurrent.push(r),
            Module::Weight(w) if w.looks_like_embedding() => embeddings.push(w),
            Module::Weight(w) => linears.push(w),
        }
    }
    if recurrent.len() != 1 {
        return Err(ambiguous(&format!(
            "{} recurrent modules (the order of several is not recorded)",
            recurrent.len()
        )));
    }
    if linears.len() > 1 {
        return Err(ambiguous(&format!(
            "{} Linear layers (neither their order nor the activations between them are recorded)",
            linears.len()
        )));
    }
    if embeddings.len() > 1 {
        return Err(ambiguous("more than one embedding"));
    }
    let mut steps = Vec::new();
    if let Some(e) = embeddings.pop() {
        steps.push(Step::Embedding(e));
    }
    let module = recurrent.remove(0);
    steps.push(Step::Recurrent {
        module,
        activation: Activation::Tanh,
        time_first: false,
    });
    steps.push(Step::Last);
    if let Some(l) = linears.pop() {
        steps.push(Step::Linear {
            module: l,
            activation: Activation::Linear,
        });
    }
    Ok(steps)
}

fn parse_arch(arch: &str, modules: Vec<Module>) -> Result<Vec<Step>> {
    let mut remaining: BTreeMap<String, Module> = modules
        .into_iter()
        .map(|m| (m.prefix().to_string(), m))
        .collect();
    let available = remaining.keys().cloned().collect::<Vec<_>>().join(", ");
    let mut steps = Vec::new();
    for item in arch.replace("->", ",").split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let mut parts = item.split(':').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let options: Vec<&str> = parts.collect();
        if name == "last" {
            ensure!(
                options.is_empty(),
                "--arch item '{item}': `last` takes no options"
            );
            steps.push(Step::Last);
            continue;
        }
        let module = remaining.remove(name).ok_or_else(|| {
            anyhow!("--arch names '{name}', which is not a module of the file (it has: {available}; each once)")
        })?;
        steps.push(match module {
            Module::Recurrent(r) => {
                let mut activation = Activation::Tanh;
                let mut time_first = false;
                for option in options {
                    match option {
                        "tanh" => activation = Activation::Tanh,
                        "relu" if matches!(r.cell, Cell::SimpleRnn) => activation = Activation::Relu,
                        "time-first" => time_first = true,
                        "batch-first" => time_first = false,
                        _ => bail!(
                            "--arch item '{item}': unknown option '{option}' for {} (options: {}time-first)",
                            r.kind_name(),
                            if matches!(r.cell, Cell::SimpleRnn) { "tanh, relu, " } else { "" }
                        ),
                    }
                }
                Step::Recurrent {
                    module: r,
                    activation,
                    time_first,
                }
            }
            Module::Weight(w) => {
                let mut activation = Activation::Linear;
                let mut embedding = w.looks_like_embedding();
                for option in options {
                    match option {
                        "embedding" => embedding = true,
                        "linear" => embedding = false,
                        "relu" => activation = Activation::Relu,
                        "sigmoid" => activation = Activation::Sigmoid,
                        "tanh" => activation = Activation::Tanh,
                        "softmax" => activation = Activation::Softmax,
                        _ => bail!(
                            "--arch item '{item}': unknown option '{option}' (options for a .weight module: \
                             embedding, linear, relu, sigmoid, tanh, softmax)"
                        ),
                    }
                }
                if embedding {
                    ensure!(
                        activation == Activation::Linear,
                        "--arch item '{item}': an embedding takes no activation"
                    );
                    Step::Embedding(w)
                } else {
                    Step::Linear {
                        module: w,
                        activation,
                    }
                }
            }
        });
    }
    if !remaining.is_empty() {
        bail!(
            "--arch leaves out {} of the file's modules: {}; every module must appear once",
            remaining.len(),
            remaining.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(steps)
}

fn build(tensors: BTreeMap<String, Named>, arch: Option<&str>, source: &str) -> Result<ModelSpec> {
    ensure!(!tensors.is_empty(), "the file holds no tensors");
    let modules = find_modules(&tensors)?;
    let (steps, how) = match arch {
        Some(arch) => (parse_arch(arch, modules)?, "given"),
        None => (infer(modules)?, "assumed, no --arch"),
    };
    ensure!(!steps.is_empty(), "--arch lists no modules");
    let source = format!("{source}; forward pass ({how}): {}", describe_steps(&steps));

    let mut layers = Vec::new();
    let mut kind = None;
    let mut time_first = false;
    let mut width = 0usize;
    let mut sequence = true;
    let describe = |index: usize| format!("step {} of the forward pass", index + 1);
    for (index, step) in steps.into_iter().enumerate() {
        match step {
            Step::Embedding(w) => {
                ensure!(
                    index == 0,
                    "{}: the embedding '{}' must come first",
                    describe(index),
                    w.prefix
                );
                kind = Some(InputKind::Tokens);
                width = w.cols;
                layers.push(Layer::Embedding(Embedding {
                    table: matrix(&tensors, &format!("{}.weight", w.prefix))?,
                }));
            }
            Step::Recurrent {
                module,
                activation,
                time_first: tf,
            } => {
                ensure!(
                    sequence,
                    "{}: {} '{}' follows `last`; it needs a sequence",
                    describe(index),
                    module.kind_name(),
                    module.prefix
                );
                if index == 0 {
                    kind = Some(InputKind::Features(u32::try_from(module.input)?));
                    width = module.input;
                    time_first = tf;
                }
                ensure!(
                    module.input == width,
                    "tensor '{}' takes {} inputs, but what comes before it gives {width}",
                    tensor_key(&module.prefix, "weight_ih", 0, false),
                    module.input
                );
                layers.extend(recurrent_layers(&tensors, &module, activation)?);
                width = module.output_width();
            }
            Step::Last => {
                ensure!(sequence, "{}: `last` twice", describe(index));
                ensure!(
                    index > 0,
                    "{}: `last` needs a sequence before it",
                    describe(index)
                );
                layers.push(Layer::LastStep);
                sequence = false;
            }
            Step::Linear { module, activation } => {
                ensure!(
                    index > 0,
                    "the first module must be an embedding or a recurrent module, not Linear '{}'",
                    module.prefix
                );
                ensure!(
                    module.cols == width,
                    "tensor '{}.weight' has shape [{}, {}]: it takes {} inputs, but what comes before it gives {width}",
                    module.prefix,
                    module.rows,
                    module.cols,
                    module.cols
                );
                let bias = if module.has_bias {
                    Some(Tensor::vector(
                        tensors[&format!("{}.bias", module.prefix)].data.clone(),
                    ))
                } else {
                    None
                };
                layers.push(Layer::Dense(Dense {
                    weight: matrix(&tensors, &format!("{}.weight", module.prefix))?,
                    bias,
                    activation,
                }));
                width = module.rows;
            }
        }
    }
    let kind = kind.ok_or_else(|| anyhow!("the forward pass has no input layer"))?;
    let layout = if time_first {
        (InputLayout::TimeFirst, OutputLayout::TimeFirst)
    } else {
        (InputLayout::BatchFirst, OutputLayout::BatchFirst)
    };
    Ok(ModelSpec {
        input: Input { kind, steps: None },
        layers,
        io: IoLayout {
            input: layout.0,
            output: layout.1,
        },
        name: "torch".to_string(),
        source,
        vocabulary: None,
        scaling: Default::default(),
        annotations: Default::default(),
        fixed: None,
    })
}

/// The forward pass in `--arch` syntax, options spelled out, so `inspect` shows what was assumed.
fn describe_steps(steps: &[Step]) -> String {
    let activation = |a: Activation| match a {
        Activation::Linear => "",
        Activation::Relu => ":relu",
        Activation::Sigmoid => ":sigmoid",
        Activation::Tanh => ":tanh",
        Activation::Softmax => ":softmax",
    };
    steps
        .iter()
        .map(|step| match step {
            Step::Embedding(w) => format!("{}:embedding", w.prefix),
            Step::Recurrent {
                module,
                activation: a,
                time_first,
            } => {
                let nonlinearity = match module.cell {
                    Cell::SimpleRnn => activation(*a),
                    _ => "",
                };
                let layout = if *time_first { ":time-first" } else { "" };
                format!("{}{nonlinearity}{layout}", module.prefix)
            }
            Step::Linear {
                module,
                activation: a,
            } => format!("{}{}", module.prefix, activation(*a)),
            Step::Last => "last".to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn matrix(tensors: &BTreeMap<String, Named>, key: &str) -> Result<Tensor> {
    let t = tensors
        .get(key)
        .ok_or_else(|| anyhow!("tensor '{key}' is missing"))?;
    ensure!(
        t.shape.len() == 2,
        "tensor '{key}' has shape {:?}; expected 2-D",
        t.shape
    );
    Tensor::matrix(t.shape[0], t.shape[1], t.data.clone())
}

/// PyTorch's gate blocks in our order: GRU `r z n` → `z r n`; RNN and LSTM are already ours.
fn reorder(cell: Cell, hidden: usize, cols: usize, data: &[f32]) -> Vec<f32> {
    let block = hidden * cols;
    match cell {
        Cell::Gru { .. } => [1usize, 0, 2]
            .iter()
            .flat_map(|&g| data[g * block..(g + 1) * block].iter().copied())
            .collect(),
        _ => data.to_vec(),
    }
}

fn recurrent_layers(
    tensors: &BTreeMap<String, Named>,
    module: &RecurrentModule,
    activation: Activation,
) -> Result<Vec<Layer<Tensor>>> {
    let (g, h) = (module.gates, module.hidden);
    let mut out = Vec::new();
    for layer in 0..module.layers {
        let mut weights = Vec::new();
        for &reverse in directions(module.bidirectional) {
            let get = |kind: &str| -> Result<&Named> {
                let key = tensor_key(&module.prefix, kind, layer, reverse);
                tensors
                    .get(&key)
                    .ok_or_else(|| anyhow!("tensor '{key}' is missing"))
            };
            let ih = get("weight_ih")?;
            let hh = get("weight_hh")?;
            let cols = ih.shape[1];
            let kernel = Tensor::matrix(g * h, cols, reorder(module.cell, h, cols, &ih.data))?;
            let recurrent = Tensor::matrix(g * h, h, reorder(module.cell, h, h, &hh.data))?;
            let (bias, recurrent_bias) = match (get("bias_ih"), get("bias_hh")) {
                (Ok(bi), Ok(bh)) => {
                    let bi = reorder(module.cell, h, 1, &bi.data);
                    let bh = reorder(module.cell, h, 1, &bh.data);
                    match module.cell {
                        Cell::Gru { .. } => (Some(Tensor::vector(bi)), Some(Tensor::vector(bh))),
                        _ => (
                            Some(Tensor::vector(
                                bi.iter().zip(&bh).map(|(a, b)| a + b).collect(),
                            )),
                            None,
                        ),
                    }
                }
                _ => (None, None),
            };
            weights.push(CellWeights {
                kernel,
                recurrent,
                bias,
                recurrent_bias,
                peephole: None,
                initial_h: None,
                initial_c: None,
            });
        }
        let backward = if module.bidirectional {
            weights.pop()
        } else {
            None
        };
        let forward = weights
            .pop()
            .ok_or_else(|| anyhow!("module '{}' has no weights", module.prefix))?;
        out.push(Layer::Recurrent(Recurrent {
            cell: module.cell,
            hidden: u32::try_from(h)?,
            activation,
            gate_activation: Activation::Sigmoid,
            clip: None,
            direction: if module.bidirectional {
                Direction::Bidirectional(Merge::Concat)
            } else {
                Direction::Forward
            },
            return_sequences: true,
            forward,
            backward,
        }));
    }
    Ok(out)
}

// ----------------------------------------------------------------------------------------------------
// min-char-rnn

const MIN_CHAR_RNN: [&str; 5] = ["Wxh", "Whh", "Why", "bh", "by"];

/// min-char-rnn: `h = tanh(Wxh x + Whh h + bh)`, `p = softmax(Why h + by)` for a one-hot `x`. A one-hot
/// input picks a column of `Wxh`, so the model reads token ids: an embedding holding `Wxhᵀ`, a SimpleRNN
/// whose input kernel is the identity, and a softmax Dense head on every timestep.
fn min_char_rnn(mut tensors: BTreeMap<String, Named>, source: &str) -> Result<ModelSpec> {
    let extra: Vec<&String> = tensors
        .keys()
        .filter(|k| !MIN_CHAR_RNN.contains(&k.as_str()))
        .collect();
    ensure!(
        extra.is_empty(),
        "a min-char-rnn archive holds Wxh, Whh, Why, bh and by only; it also has {extra:?}"
    );
    let mut take = |name: &str| {
        tensors
            .remove(name)
            .ok_or_else(|| anyhow!("'{name}' is missing"))
    };
    let (wxh, whh, why, bh, by) = (
        take("Wxh")?,
        take("Whh")?,
        take("Why")?,
        take("bh")?,
        take("by")?,
    );
    ensure!(
        wxh.shape.len() == 2,
        "'Wxh' has shape {:?}; expected (hidden, vocabulary)",
        wxh.shape
    );
    let (hidden, vocab) = (wxh.shape[0], wxh.shape[1]);
    let check = |name: &str, t: &Named, want: &[&[usize]]| -> Result<()> {
        ensure!(
            want.iter().any(|w| t.shape == *w),
            "'{name}' has shape {:?}; with Wxh of shape [{hidden}, {vocab}] it must be {:?}",
            t.shape,
            want[0]
        );
        Ok(())
    };
    check("Whh", &whh, &[&[hidden, hidden]])?;
    check("Why", &why, &[&[vocab, hidden]])?;
    check("bh", &bh, &[&[hidden, 1], &[hidden]])?;
    check("by", &by, &[&[vocab, 1], &[vocab]])?;
    let identity = (0..hidden * hidden)
        .map(|i| if i / hidden == i % hidden { 1.0 } else { 0.0 })
        .collect();
    Ok(ModelSpec {
        input: Input {
            kind: InputKind::Tokens,
            steps: None,
        },
        layers: vec![
            Layer::Embedding(Embedding {
                table: Tensor::transposed(hidden, vocab, &wxh.data)?,
            }),
            Layer::Recurrent(Recurrent {
                cell: Cell::SimpleRnn,
                hidden: u32::try_from(hidden)?,
                activation: Activation::Tanh,
                gate_activation: Activation::Sigmoid,
                clip: None,
                direction: Direction::Forward,
                return_sequences: true,
                forward: CellWeights {
                    kernel: Tensor::matrix(hidden, hidden, identity)?,
                    recurrent: Tensor::matrix(hidden, hidden, whh.data)?,
                    bias: Some(Tensor::vector(bh.data)),
                    recurrent_bias: None,
                    peephole: None,
                    initial_h: None,
                    initial_c: None,
                },
                backward: None,
            }),
            Layer::Dense(Dense {
                weight: Tensor::matrix(vocab, hidden, why.data)?,
                bias: Some(Tensor::vector(by.data)),
                activation: Activation::Softmax,
            }),
        ],
        io: IoLayout {
            input: InputLayout::BatchFirst,
            output: OutputLayout::BatchFirst,
        },
        name: "min-char-rnn".to_string(),
        source: source.to_string(),
        vocabulary: None,
        scaling: Default::default(),
        annotations: Default::default(),
        fixed: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_converts_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn recurrent_names_split_into_their_parts() {
        assert_eq!(
            recurrent_name("encoder.rnn.weight_hh_l1_reverse"),
            Some(("encoder.rnn", "weight_hh", 1, true))
        );
        assert_eq!(
            recurrent_name("bias_ih_l0"),
            Some(("", "bias_ih", 0, false))
        );
        assert_eq!(recurrent_name("fc.weight"), None);
    }
}
