//! ONNX importer: reads an `.onnx` protobuf (our own `prost` messages for the subset we need, no
//! `protoc`) and maps its graph onto the engine's chain of layers.
//!
//! What it reads:
//! - `LSTM`, `GRU`, `RNN` nodes in every direction and both layouts, with peepholes, `clip`,
//!   `input_forget`, `linear_before_reset`, constant initial states, the activations the engine has
//!   (Sigmoid, Tanh, Relu), and `sequence_lens` when it equals the full length. The gate orders are
//!   translated in the `recurrent` submodule (ONNX LSTM `i o f c` → ours `i f g o`; GRU `z r h` = ours `z r n`).
//! - Dense layers as `MatMul` (+ `Add`) or `Gemm`, with `Relu`/`Sigmoid`/`Tanh`/`Softmax`; scalar and
//!   per-feature `Add`/`Sub`/`Mul`/`Div` folded into them.
//! - Embeddings as `Gather` on a weight table with the int64/int32 token ids as indices.
//! - Timestep selection (`Slice`/`Gather` on the time axis → keep-last-N or crop), bidirectional merges
//!   (`Concat`, `Add`, `Mul`, their average, `ReduceMean`/`ReduceSum` over the direction axis), and the
//!   layout glue exporters put between nodes (`Transpose`, `Squeeze`, `Unsqueeze`, `Reshape`, `Flatten`,
//!   and `Shape`/`Gather`/`Concat`/`ConstantOfShape` arithmetic on shapes).
//!
//! The model's one graph input is the data: `(batch, time, features)` or token ids `(batch, time)`,
//! or time-first when it feeds a `layout=0` recurrent node directly. The first graph output decides the
//! output layout: a raw recurrent `Y`/`Y_h` keeps ONNX's layout, anything else is laid out batch first
//! (or time first, when the graph's output is time first). Every error names the file and the node.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use tinyrnn::format::{Input, InputKind, InputLayout, IoLayout};

use crate::spec::ModelSpec;

mod graph;
mod proto;
mod recurrent;
mod tensor;

use graph::{node_label, topological_order, Act, Axis, Importer, Node, Value};
use proto::{GraphProto, ModelProto, ValueInfoProto};
use tensor::Const;

/// Imports an ONNX model.
pub fn import_onnx(path: &Path, bytes: &[u8]) -> Result<ModelSpec> {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    import_model(path, &file, bytes).with_context(|| format!("reading the ONNX model {file}"))
}

fn import_model(path: &Path, file: &str, bytes: &[u8]) -> Result<ModelSpec> {
    let model: ModelProto =
        proto::decode_model(bytes).map_err(|e| anyhow!("not a valid ONNX protobuf: {e}"))?;
    let opset = model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .context("the model declares no version of the default ONNX operator set (opset_import)")?;
    let graph = model.graph.as_ref().context("the model has no graph")?;

    let mut values = HashMap::new();
    for t in &graph.initializer {
        let c = Const::from_proto(t).with_context(|| format!("initializer '{}'", t.name))?;
        values.insert(t.name.clone(), Value::Const(c));
    }
    // Older files list the initializers among the inputs too; those are constants.
    let inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !values.contains_key(&i.name))
        .collect();
    // The data input: the first one read as data rather than as a weight.
    let x = *inputs
        .iter()
        .find(|i| !only_weight_uses(graph, &i.name))
        .or(inputs.first())
        .context("the graph has no input")?;
    for other in inputs.iter().filter(|i| i.name != x.name) {
        values.insert(other.name.clone(), Value::Input(other.name.clone()));
    }
    let (input, input_layout, act) =
        model_input(graph, x).with_context(|| format!("graph input '{}'", x.name))?;
    values.insert(x.name.clone(), Value::Act(act));

    let order = topological_order(&graph.node)?;
    let output = graph.output.first().context("the graph has no output")?;
    let needed = ancestors(graph, &output.name);
    let mut importer = Importer::new(values);
    for k in order {
        if !needed.contains(&k) {
            continue;
        }
        let Some(proto) = graph.node.get(k) else {
            continue;
        };
        importer
            .node(&Node { proto, opset })
            .with_context(|| node_label(proto, k))?;
    }
    let result = importer
        .values
        .get(&output.name)
        .cloned()
        .with_context(|| format!("the graph output '{}' is computed by no node", output.name))?;
    let act = match result {
        Value::Act(a) => a,
        Value::Refused(reason) => bail!("graph output '{}': {reason}", output.name),
        Value::Input(name) => bail!(
            "the graph output '{}' is the graph input '{name}'",
            output.name
        ),
        Value::Const(_) | Value::Expanded { .. } => {
            bail!(
                "the graph output '{}' is a constant; it does not depend on the input",
                output.name
            )
        }
    };
    let output_layout = importer
        .finish(&act)
        .with_context(|| format!("graph output '{}'", output.name))?;

    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let producer = match (
        model.producer_name.as_str(),
        model.producer_version.as_str(),
    ) {
        ("", _) => String::new(),
        (name, "") => format!(", produced by {name}"),
        (name, version) => format!(", produced by {name} {version}"),
    };
    Ok(ModelSpec {
        input,
        layers: importer.layers,
        io: IoLayout {
            input: input_layout,
            output: output_layout,
        },
        name: if graph.name.is_empty() {
            stem
        } else {
            graph.name.clone()
        },
        source: format!("ONNX {file} (opset {opset}{producer})"),
        vocabulary: None,
        scaling: Default::default(),
        annotations: Default::default(),
        fixed: None,
    })
}

/// Indices of the nodes the value `output` depends on.
fn ancestors(graph: &GraphProto, output: &str) -> HashSet<usize> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (k, n) in graph.node.iter().enumerate() {
        for o in &n.output {
            producer.insert(o.as_str(), k);
        }
    }
    let mut needed = HashSet::new();
    let mut stack = vec![output];
    while let Some(name) = stack.pop() {
        if let Some(&k) = producer.get(name) {
            if needed.insert(k) {
                if let Some(n) = graph.node.get(k) {
                    stack.extend(n.input.iter().map(String::as_str).filter(|s| !s.is_empty()));
                }
            }
        }
    }
    needed
}

/// Whether value `name` is input X of a recurrent node with `layout=0`, directly or through
/// pass-through operators (Identity, Dropout, Cast).
fn feeds_time_first_node(graph: &GraphProto, name: &str) -> bool {
    let mut frontier = vec![name];
    for _ in 0..8 {
        let mut next = Vec::new();
        for value in frontier {
            for n in graph
                .node
                .iter()
                .filter(|n| n.input.first().map(String::as_str) == Some(value))
            {
                match n.op_type.as_str() {
                    "LSTM" | "GRU" | "RNN" => {
                        let layout = n
                            .attribute
                            .iter()
                            .find(|a| a.name == "layout")
                            .map_or(0, |a| a.i);
                        if layout == 0 {
                            return true;
                        }
                    }
                    "Identity" | "Dropout" | "Cast" => {
                        next.extend(n.output.first().map(String::as_str))
                    }
                    _ => {}
                }
            }
        }
        frontier = next;
    }
    false
}

/// Whether the graph input `name` is only ever read where weights go (recurrent W/R/B/…, the second
/// operand of MatMul/Gemm, an embedding table): then it is a misplaced weight, not the model's data.
fn only_weight_uses(graph: &GraphProto, name: &str) -> bool {
    graph.node.iter().all(|n| {
        n.input.iter().enumerate().all(|(k, i)| {
            i != name
                || match n.op_type.as_str() {
                    "LSTM" | "GRU" | "RNN" | "MatMul" | "Gemm" => k >= 1,
                    "Gather" => k == 0,
                    _ => false,
                }
        })
    })
}

/// The model input: what one timestep holds, its batch layout, and the activation it starts as.
fn model_input(graph: &GraphProto, x: &ValueInfoProto) -> Result<(Input, InputLayout, Act)> {
    let tensor = x
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .context("its type is not a tensor type")?;
    let dims: Vec<Option<usize>> = tensor
        .shape
        .as_ref()
        .context("its shape is not given; tinyrnn needs at least the rank and the feature count")?
        .dim
        .iter()
        .map(|d| {
            d.dim_value
                .and_then(|v| usize::try_from(v).ok())
                .filter(|&v| v > 0)
        })
        .collect();
    let elem = tensor.elem_type;
    let tokens = match elem {
        1 | 10 | 11 | 16 => false,
        2..=7 | 12 | 13 => true,
        other => bail!(
            "its element type is {}, but tinyrnn reads float features or integer token ids",
            tensor::data_type_name(other)
        ),
    };
    let time_first = if tokens {
        graph.node.iter().any(|n| {
            n.op_type == "Gather"
                && n.input.get(1) == Some(&x.name)
                && n.output
                    .first()
                    .is_some_and(|o| feeds_time_first_node(graph, o))
        })
    } else {
        feeds_time_first_node(graph, &x.name)
    };
    let (time_axis, mut axes) = if time_first {
        (0, vec![Axis::Time, Axis::Batch])
    } else {
        (1, vec![Axis::Batch, Axis::Time])
    };
    let (kind, width) = if tokens {
        ensure!(
            dims.len() == 2,
            "token ids must have shape (batch, time) or (time, batch), found rank {}",
            dims.len()
        );
        (InputKind::Tokens, 1)
    } else {
        ensure!(
            dims.len() == 3,
            "features must have shape (batch, time, features) or (time, batch, features), found rank {}",
            dims.len()
        );
        let f = dims[2].context("the feature count (last dimension) must be fixed")?;
        axes.push(Axis::Feat);
        (
            InputKind::Features(u32::try_from(f).context("too many features")?),
            f,
        )
    };
    let steps = dims[time_axis];
    let input = Input {
        kind,
        steps: steps
            .map(u32::try_from)
            .transpose()
            .context("too many timesteps")?,
    };
    let layout = if time_first {
        InputLayout::TimeFirst
    } else {
        InputLayout::BatchFirst
    };
    let act = Act {
        axes,
        width,
        steps,
        version: 0,
        final_state: false,
        part: None,
        raw: None,
        tokens,
    };
    Ok((input, layout, act))
}
