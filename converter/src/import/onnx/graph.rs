//! The graph walk: every value is either a constant ([`Value::Const`]) or a symbolic activation
//! ([`Act`]) that records where its batch, time and direction axes are; operators on activations append
//! or amend layers of the one chain the engine runs.
//!
//! Branches are caught with a version counter: each activation remembers the chain version it was made
//! at, and any operator that changes the chain (appends a layer, folds into the last one) needs the
//! activation it reads to be current. Layout-only operators (Transpose, Reshape, Squeeze, …) do not
//! change the chain, so an unused branch of them costs nothing.

use std::collections::{HashMap, VecDeque};

use anyhow::{anyhow, bail, ensure, Context, Result};
use tinyrnn::format::{
    Activation, Dense, Direction, Embedding, Layer, Merge, OutputLayout, MAX_WIDTH,
};

use super::proto::{attribute_type, AttributeProto, NodeProto, TensorProto};
use super::tensor::{axis_index, numel, Const, Data, Sym};
use crate::spec::Tensor;

/// One axis of an activation tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// The batch axis (its size is only known at run time).
    Batch,
    /// The time axis.
    Time,
    /// The direction axis of a recurrent output, with its size (1 or 2).
    Dir(usize),
    /// The feature axis (per direction, when a `Dir(2)` axis is present).
    Feat,
    /// A size-1 axis.
    Unit,
}

/// An unmodified recurrent output, whose layout ONNX defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Raw {
    /// `Y`.
    Sequence {
        /// `layout=1`.
        batch_first: bool,
        /// 1 or 2.
        directions: u32,
    },
    /// `Y_h`.
    FinalState {
        /// `layout=1`.
        batch_first: bool,
        /// 1 or 2.
        directions: u32,
    },
}

/// A value computed from the model input: the output of the layers built so far, in some layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Act {
    /// The tensor's axes, outermost first.
    pub axes: Vec<Axis>,
    /// Size of the feature axis (1 when there is none).
    pub width: usize,
    /// Size of the time axis when fixed.
    pub steps: Option<usize>,
    /// Chain version this value belongs to.
    pub version: u64,
    /// `Y_h`: reading it turns the last recurrent layer's `return_sequences` off.
    pub final_state: bool,
    /// Only one direction (0 forward, 1 backward) of the last, bidirectional layer.
    pub part: Option<usize>,
    /// Set while the value is a recurrent node's output, untouched.
    pub raw: Option<Raw>,
    /// The model's token-id input, before its embedding.
    pub tokens: bool,
}

impl Act {
    /// Size of an axis, symbolic for the batch and a free time axis.
    pub fn size(&self, axis: Axis) -> Sym {
        match axis {
            Axis::Batch => Sym::Batch,
            Axis::Time => self.steps.map_or(Sym::Time, |s| Sym::Int(s as i64)),
            Axis::Dir(n) => Sym::Int(n as i64),
            Axis::Feat => Sym::Int(self.width as i64),
            Axis::Unit => Sym::Int(1),
        }
    }

    /// Whether an axis statically has size 1.
    pub fn is_one(&self, axis: Axis) -> bool {
        self.size(axis) == Sym::Int(1)
    }

    /// Whether both directions of a bidirectional layer are still on their own axis.
    pub fn has_dir2(&self) -> bool {
        self.axes.contains(&Axis::Dir(2))
    }

    /// Width of the engine's per-timestep vector for this value.
    pub fn engine_width(&self) -> usize {
        if self.has_dir2() {
            2 * self.width
        } else {
            self.width
        }
    }

    /// The same value after a layout-only change: no longer a raw recurrent output.
    fn relaid(&self, axes: Vec<Axis>) -> Act {
        Act {
            axes,
            raw: None,
            ..self.clone()
        }
    }

    fn describe(&self) -> String {
        let names: Vec<String> = self
            .axes
            .iter()
            .map(|a| match a {
                Axis::Batch => "batch".to_string(),
                Axis::Time => match self.steps {
                    Some(s) => format!("time={s}"),
                    None => "time".to_string(),
                },
                Axis::Dir(n) => format!("directions={n}"),
                Axis::Feat => format!("features={}", self.width),
                Axis::Unit => "1".to_string(),
            })
            .collect();
        format!("({})", names.join(", "))
    }
}

/// What a value name stands for.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A constant tensor.
    Const(Const),
    /// A constant broadcast to a shape involving the batch size (`ConstantOfShape`/`Expand` on a shape
    /// read with `Shape`), e.g. PyTorch's zero initial states.
    Expanded {
        /// The constant, broadcastable to `dims` with the symbolic sizes taken as 1.
        base: Const,
        /// The shape.
        dims: Vec<Sym>,
    },
    /// Computed from the model input.
    Act(Act),
    /// A second graph input, which tinyrnn cannot feed.
    Input(String),
    /// A value the importer refuses whenever it is used, with the reason.
    Refused(String),
}

/// A node and the default-domain opset it is read under.
pub struct Node<'a> {
    /// The node.
    pub proto: &'a NodeProto,
    /// Default-domain operator set version.
    pub opset: i64,
}

impl Node<'_> {
    /// The attribute `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.proto.attribute.iter().find(|a| a.name == name)
    }

    fn typed(&self, name: &str, expected: i32, what: &str) -> Result<Option<&AttributeProto>> {
        match self.attr(name) {
            Some(a) if a.r#type != 0 && a.r#type != expected => {
                bail!(
                    "attribute '{name}' should be {what} (type {expected}), found type {}",
                    a.r#type
                )
            }
            other => Ok(other),
        }
    }

    /// An integer attribute, or `default`.
    pub fn int(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self
            .typed(name, attribute_type::INT, "an integer")?
            .map_or(default, |a| a.i))
    }

    /// A tensor attribute, if present.
    pub fn tensor(&self, name: &str) -> Result<Option<&TensorProto>> {
        match self.typed(name, attribute_type::TENSOR, "a tensor")? {
            Some(a) => {
                Ok(Some(a.t.as_ref().with_context(|| {
                    format!("attribute '{name}' holds no tensor")
                })?))
            }
            None => Ok(None),
        }
    }

    /// A float attribute, if present.
    pub fn float(&self, name: &str) -> Result<Option<f32>> {
        Ok(self
            .typed(name, attribute_type::FLOAT, "a float")?
            .map(|a| a.f))
    }

    /// A string attribute, if present.
    pub fn string(&self, name: &str) -> Result<Option<String>> {
        self.typed(name, attribute_type::STRING, "a string")?
            .map(|a| {
                String::from_utf8(a.s.clone())
                    .map_err(|_| anyhow!("attribute '{name}' is not UTF-8 text"))
            })
            .transpose()
    }

    /// An integer-list attribute, if present.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        Ok(self
            .typed(name, attribute_type::INTS, "a list of integers")?
            .map(|a| a.ints.clone()))
    }

    /// A float-list attribute, if present.
    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>> {
        Ok(self
            .typed(name, attribute_type::FLOATS, "a list of floats")?
            .map(|a| a.floats.clone()))
    }

    /// A string-list attribute, if present.
    pub fn strings(&self, name: &str) -> Result<Option<Vec<String>>> {
        self.typed(name, attribute_type::STRINGS, "a list of strings")?
            .map(|a| {
                a.strings
                    .iter()
                    .map(|s| {
                        String::from_utf8(s.clone())
                            .map_err(|_| anyhow!("attribute '{name}' is not UTF-8 text"))
                    })
                    .collect()
            })
            .transpose()
    }

    /// Name of input `i`, if present (an empty name is an absent optional input).
    pub fn input_name(&self, i: usize) -> Option<&str> {
        self.proto
            .input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The operator name.
    pub fn op(&self) -> &str {
        &self.proto.op_type
    }
}

/// Operators the importer reads, for error messages.
pub const SUPPORTED_OPS: &str = "LSTM, GRU, RNN, MatMul, Gemm, Add, Sub, Mul, Div, Relu, Sigmoid, Tanh, \
    Softmax, Gather, Slice, Split, Concat, Squeeze, Unsqueeze, Reshape, Flatten, Transpose, ReduceMean, \
    ReduceSum, Identity, Dropout, Cast, Constant, ConstantOfShape, Expand and Shape";

/// "Last N timesteps" ends at or beyond this (exporters write `INT_MAX` or `INT64_MAX`).
const TO_THE_END: i64 = i32::MAX as i64;

/// The walk's state: every value seen so far and the layer chain built from them.
pub struct Importer {
    /// Value name → what it stands for.
    pub values: HashMap<String, Value>,
    /// The chain of layers.
    pub layers: Vec<Layer<Tensor>>,
    /// Chain version, bumped whenever `layers` changes.
    pub version: u64,
}

impl Importer {
    /// An importer that knows `values` (initializers and graph inputs) and has no layers yet.
    pub fn new(values: HashMap<String, Value>) -> Self {
        Self {
            values,
            layers: Vec::new(),
            version: 0,
        }
    }

    // ----------------------------------------------------------------------------------------------
    // Reading inputs and writing outputs

    /// Input `i` of `node`, or `None` when it is absent.
    pub fn get(&self, node: &Node, i: usize) -> Result<Option<Value>> {
        let Some(name) = node.input_name(i) else {
            return Ok(None);
        };
        match self.values.get(name) {
            Some(Value::Refused(reason)) => bail!("input {i} ('{name}'): {reason}"),
            Some(v) => Ok(Some(v.clone())),
            None => bail!(
                "input {i} ('{name}') is not an initializer, a graph input or the output of any node"
            ),
        }
    }

    /// Input `i`, which must be present.
    pub fn req(&self, node: &Node, i: usize) -> Result<Value> {
        self.get(node, i)?
            .with_context(|| format!("input {i} is missing; {} needs it", node.op()))
    }

    /// Input `i` as a constant (`what` names it in errors), or `None` when absent.
    pub fn constant_opt(&self, node: &Node, i: usize, what: &str) -> Result<Option<Const>> {
        let name = node.input_name(i).unwrap_or("");
        match self.get(node, i)? {
            None => Ok(None),
            Some(Value::Const(c)) => Ok(Some(c)),
            Some(Value::Input(n)) => bail!(
                "input {i} ({what}, '{n}') must be a constant initializer, but it is a graph input; tinyrnn \
                 reads one graph input, the model's data, and needs every weight stored in the file"
            ),
            Some(Value::Act(_)) => bail!(
                "input {i} ({what}, '{name}') must be a constant initializer, but it is computed from the \
                 model input"
            ),
            Some(Value::Expanded { .. }) => bail!(
                "input {i} ({what}, '{name}') depends on the batch size, where a constant is needed"
            ),
            Some(Value::Refused(reason)) => bail!("input {i} ('{name}'): {reason}"),
        }
    }

    /// Input `i` as a constant, which must be present.
    pub fn constant(&self, node: &Node, i: usize, what: &str) -> Result<Const> {
        self.constant_opt(node, i, what)?
            .with_context(|| format!("input {i} ({what}) is missing"))
    }

    /// Input `i` as an activation.
    pub fn act(&self, node: &Node, i: usize) -> Result<Act> {
        match self.req(node, i)? {
            Value::Act(a) => Ok(a),
            Value::Input(n) => {
                bail!("input {i} is the graph input '{n}'; tinyrnn reads one graph input")
            }
            _ => bail!("input {i} should be computed from the model input, but it is a constant"),
        }
    }

    /// Stores output `k` of `node` (skipped when the output is absent).
    pub fn set(&mut self, node: &Node, k: usize, value: Value) {
        if let Some(name) = node.proto.output.get(k).filter(|s| !s.is_empty()) {
            self.values.insert(name.clone(), value);
        }
    }

    // ----------------------------------------------------------------------------------------------
    // The chain

    /// Checks that `act` may extend the chain and settles what reading it implies.
    pub fn claim(&mut self, act: &Act) -> Result<()> {
        ensure!(
            act.part.is_none(),
            "this value holds only one direction of a bidirectional recurrent node; tinyrnn keeps both \
             directions together, so merge them first (Concat, Add, Mul or their average)"
        );
        ensure!(
            !act.tokens,
            "token ids must go through an embedding (Gather on a weight table) first"
        );
        ensure!(
            act.version == self.version,
            "the graph branches: this value is read after another layer was already built on it; \
             tinyrnn runs a single chain of layers"
        );
        if act.final_state {
            if let Some(Layer::Recurrent(r)) = self.layers.last_mut() {
                r.return_sequences = false;
            }
        }
        Ok(())
    }

    /// Appends a layer after `act`; returns the new activation's version.
    pub fn push(&mut self, act: &Act, layer: Layer<Tensor>) -> Result<u64> {
        self.claim(act)?;
        self.layers.push(layer);
        self.version += 1;
        Ok(self.version)
    }

    /// `act` after a layer that keeps its layout.
    fn after(&self, act: &Act, width: usize) -> Act {
        Act {
            width,
            version: self.version,
            final_state: false,
            raw: None,
            ..act.clone()
        }
    }

    // ----------------------------------------------------------------------------------------------
    // Dispatch

    /// Reads one node.
    pub fn node(&mut self, node: &Node) -> Result<()> {
        let domain = node.proto.domain.as_str();
        ensure!(
            domain.is_empty() || domain == "ai.onnx",
            "operator '{}' of domain '{domain}' is not supported; tinyrnn reads the default ONNX domain: {}",
            node.op(),
            SUPPORTED_OPS
        );
        match node.op() {
            "Constant" => self.op_constant(node),
            "Identity" | "Dropout" => {
                let v = self.req(node, 0)?;
                self.set(node, 0, v);
                self.set(
                    node,
                    1,
                    Value::Refused("the Dropout mask is not supported".to_string()),
                );
                Ok(())
            }
            "Cast" => self.op_cast(node),
            "Shape" => self.op_shape(node),
            "Transpose" => self.op_transpose(node),
            "Squeeze" => self.op_squeeze(node),
            "Unsqueeze" => self.op_unsqueeze(node),
            "Reshape" => self.op_reshape(node),
            "Flatten" => self.op_flatten(node),
            "Slice" => self.op_slice(node),
            "Gather" => self.op_gather(node),
            "Split" => self.op_split(node),
            "Concat" => self.op_concat(node),
            "Add" | "Sub" | "Mul" | "Div" => self.op_binary(node),
            "MatMul" => self.op_matmul(node),
            "Gemm" => self.op_gemm(node),
            "Relu" | "Sigmoid" | "Tanh" | "Softmax" => self.op_activation(node),
            "ConstantOfShape" => self.op_constant_of_shape(node),
            "Expand" => self.op_expand(node),
            "ReduceMean" | "ReduceSum" => self.op_reduce(node),
            "LSTM" | "GRU" | "RNN" => super::recurrent::import(self, node),
            op => bail!("operator '{op}' is not supported; tinyrnn reads {SUPPORTED_OPS}"),
        }
    }

    // ----------------------------------------------------------------------------------------------
    // Constants and shapes

    fn op_constant(&mut self, node: &Node) -> Result<()> {
        let c = if let Some(t) = node.tensor("value")? {
            Const::from_proto(t)?
        } else if let Some(f) = node.float("value_float")? {
            Const::float(vec![], vec![f])?
        } else if let Some(v) = node.floats("value_floats")? {
            Const::float(vec![v.len()], v)?
        } else if node.attr("value_int").is_some() {
            Const::ints(vec![], vec![Sym::Int(node.int("value_int", 0)?)])?
        } else if let Some(v) = node.ints("value_ints")? {
            Const::int_vector(v.into_iter().map(Sym::Int).collect())
        } else {
            bail!(
                "Constant needs one of the attributes value, value_float(s) or value_int(s); sparse and \
                 string constants are not supported"
            )
        };
        self.set(node, 0, Value::Const(c));
        Ok(())
    }

    fn op_cast(&mut self, node: &Node) -> Result<()> {
        let to = node.int("to", 0)? as i32;
        let float = matches!(to, 1 | 10 | 11 | 16);
        let int = matches!(to, 2..=7 | 9 | 12 | 13);
        ensure!(float || int, "Cast to type {to} is not supported");
        let convert = |c: Const| -> Result<Const> {
            Ok(match (c.data, float) {
                (Data::F(v), true) => Const::float(c.dims, v)?,
                (Data::F(v), false) => Const::ints(
                    c.dims,
                    v.iter()
                        .map(|x| {
                            Sym::Int(if to == 9 {
                                (*x != 0.0) as i64
                            } else {
                                x.trunc() as i64
                            })
                        })
                        .collect(),
                )?,
                (Data::I(v), false) => Const::ints(c.dims, v)?,
                (Data::I(v), true) => {
                    Const::float(c.dims.clone(), Const::ints(c.dims, v)?.to_f32()?)?
                }
            })
        };
        let out = match self.req(node, 0)? {
            Value::Const(c) => Value::Const(convert(c)?),
            Value::Expanded { base, dims } => Value::Expanded {
                base: convert(base)?,
                dims,
            },
            Value::Act(a) => {
                ensure!(
                    a.tokens != float,
                    "Cast of {} to {} is not supported",
                    if a.tokens { "token ids" } else { "features" },
                    super::tensor::data_type_name(to)
                );
                Value::Act(a)
            }
            v @ (Value::Input(_) | Value::Refused(_)) => v,
        };
        self.set(node, 0, out);
        Ok(())
    }

    fn op_shape(&mut self, node: &Node) -> Result<()> {
        let dims: Vec<Sym> = match self.req(node, 0)? {
            Value::Const(c) => c.dims.iter().map(|&d| Sym::Int(d as i64)).collect(),
            Value::Expanded { dims, .. } => dims,
            Value::Act(a) => a.axes.iter().map(|&x| a.size(x)).collect(),
            _ => bail!("Shape of a graph input other than the model's data is not supported"),
        };
        let rank = dims.len() as i64;
        let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
        let start = clamp(node.int("start", 0)?);
        let end = clamp(node.int("end", rank)?);
        let picked = dims.get(start..end.max(start)).unwrap_or(&[]).to_vec();
        self.set(node, 0, Value::Const(Const::int_vector(picked)));
        Ok(())
    }

    fn op_constant_of_shape(&mut self, node: &Node) -> Result<()> {
        let shape = self.constant(node, 0, "shape")?.to_syms()?;
        let base = match node.tensor("value")? {
            Some(t) => {
                let t = Const::from_proto(t)?;
                ensure!(t.len() == 1, "attribute 'value' must hold one element");
                t.reshaped(vec![])?
            }
            None => Const::float(vec![], vec![0.0])?,
        };
        self.set(node, 0, expand(base, shape)?);
        Ok(())
    }

    fn op_expand(&mut self, node: &Node) -> Result<()> {
        let shape = self.constant(node, 1, "shape")?.to_syms()?;
        let base = self.constant(node, 0, "input")?;
        // Expand broadcasts both ways: a 1 in `shape` keeps the input's size.
        let rank = shape.len().max(base.dims.len());
        let mut dims = Vec::with_capacity(rank);
        for i in 0..rank {
            let s = (i + shape.len() >= rank).then(|| shape[i + shape.len() - rank]);
            let d = (i + base.dims.len() >= rank).then(|| base.dims[i + base.dims.len() - rank]);
            dims.push(match (s, d) {
                (Some(Sym::Int(1)) | None, Some(d)) => Sym::Int(d as i64),
                (Some(s), _) => s,
                (None, None) => Sym::Int(1),
            });
        }
        self.set(node, 0, expand(base, dims)?);
        Ok(())
    }

    // ----------------------------------------------------------------------------------------------
    // Layout operators

    fn op_transpose(&mut self, node: &Node) -> Result<()> {
        let v = self.req(node, 0)?;
        let rank = match &v {
            Value::Const(c) => c.dims.len(),
            Value::Act(a) => a.axes.len(),
            _ => bail!("Transpose of this value is not supported"),
        };
        let perm: Vec<usize> = match node.ints("perm")? {
            Some(p) => p
                .iter()
                .map(|&x| axis_index(x, rank))
                .collect::<Result<_>>()?,
            None => (0..rank).rev().collect(),
        };
        let mut seen = vec![false; rank];
        ensure!(
            perm.len() == rank,
            "perm {perm:?} does not match rank {rank}"
        );
        for &p in &perm {
            ensure!(!seen[p], "perm {perm:?} is not a permutation");
            seen[p] = true;
        }
        let out = match v {
            Value::Const(c) => Value::Const(c.transpose(&perm)?),
            Value::Act(a) => Value::Act(a.relaid(perm.iter().map(|&p| a.axes[p]).collect())),
            _ => unreachable!("checked above"),
        };
        self.set(node, 0, out);
        Ok(())
    }

    /// The `axes` of Squeeze/Unsqueeze/Reduce*: an attribute before `input_from`, else input 1.
    fn axes_arg(&self, node: &Node, input_from: i64) -> Result<Option<Vec<i64>>> {
        if node.opset < input_from {
            node.ints("axes")
        } else {
            self.constant_opt(node, 1, "axes")?
                .map(|c| c.to_i64())
                .transpose()
        }
    }

    fn op_squeeze(&mut self, node: &Node) -> Result<()> {
        let axes = self.axes_arg(node, 13)?;
        let out = match self.req(node, 0)? {
            Value::Const(c) => {
                let rank = c.dims.len();
                let drop: Vec<usize> = match &axes {
                    Some(list) => list
                        .iter()
                        .map(|&a| axis_index(a, rank))
                        .collect::<Result<_>>()?,
                    None => (0..rank).filter(|&i| c.dims[i] == 1).collect(),
                };
                ensure!(
                    drop.iter().all(|&i| c.dims[i] == 1),
                    "Squeeze of an axis whose size is not 1"
                );
                let dims = (0..rank)
                    .filter(|i| !drop.contains(i))
                    .map(|i| c.dims[i])
                    .collect();
                Value::Const(c.reshaped(dims)?)
            }
            Value::Expanded { base, dims } => {
                let rank = dims.len();
                let list = axes.context("Squeeze without axes of a batch-sized tensor")?;
                let drop: Vec<usize> = list
                    .iter()
                    .map(|&a| axis_index(a, rank))
                    .collect::<Result<_>>()?;
                ensure!(
                    drop.iter().all(|&i| dims[i] == Sym::Int(1)),
                    "Squeeze of an axis whose size is not 1"
                );
                let keep: Vec<Sym> = (0..rank)
                    .filter(|i| !drop.contains(i))
                    .map(|i| dims[i])
                    .collect();
                let base = squeeze_base(base, rank, &drop)?;
                Value::Expanded { base, dims: keep }
            }
            Value::Act(a) => {
                let rank = a.axes.len();
                let drop: Vec<usize> = match &axes {
                    Some(list) => list
                        .iter()
                        .map(|&x| axis_index(x, rank))
                        .collect::<Result<_>>()?,
                    None => (0..rank)
                        .filter(|&i| a.axes[i] != Axis::Batch && a.is_one(a.axes[i]))
                        .collect(),
                };
                for &i in &drop {
                    let axis = a.axes[i];
                    ensure!(
                        axis != Axis::Batch,
                        "Squeeze of the batch axis (axis {i} of {}) is not supported: the batch size is free",
                        a.describe()
                    );
                    ensure!(
                        a.is_one(axis),
                        "Squeeze of axis {i} of {}, whose size is not 1",
                        a.describe()
                    );
                }
                Value::Act(
                    a.relaid(
                        (0..rank)
                            .filter(|i| !drop.contains(i))
                            .map(|i| a.axes[i])
                            .collect(),
                    ),
                )
            }
            _ => bail!("Squeeze of this value is not supported"),
        };
        self.set(node, 0, out);
        Ok(())
    }

    fn op_unsqueeze(&mut self, node: &Node) -> Result<()> {
        let axes = self.axes_arg(node, 13)?.context("Unsqueeze needs axes")?;
        let v = self.req(node, 0)?;
        let rank = match &v {
            Value::Const(c) => c.dims.len(),
            Value::Act(a) => a.axes.len(),
            Value::Expanded { dims, .. } => dims.len(),
            _ => bail!("Unsqueeze of this value is not supported"),
        } + axes.len();
        let mut positions: Vec<usize> = axes
            .iter()
            .map(|&a| axis_index(a, rank))
            .collect::<Result<_>>()?;
        positions.sort_unstable();
        positions.dedup();
        ensure!(
            positions.len() == axes.len(),
            "Unsqueeze axes {axes:?} repeat"
        );
        let out = match v {
            Value::Const(c) => {
                let mut dims = c.dims.clone();
                for &p in &positions {
                    dims.insert(p, 1);
                }
                Value::Const(c.reshaped(dims)?)
            }
            Value::Expanded { base, mut dims } => {
                let mut bdims = base.dims.clone();
                let pad = dims.len() - bdims.len();
                for &p in &positions {
                    dims.insert(p, Sym::Int(1));
                    if p >= pad {
                        bdims.insert(p - pad, 1);
                    }
                }
                let base = base.reshaped(bdims)?;
                Value::Expanded { base, dims }
            }
            Value::Act(a) => {
                let mut axes = a.axes.clone();
                for &p in &positions {
                    axes.insert(p, Axis::Unit);
                }
                Value::Act(a.relaid(axes))
            }
            _ => unreachable!("checked above"),
        };
        self.set(node, 0, out);
        Ok(())
    }

    fn op_reshape(&mut self, node: &Node) -> Result<()> {
        let target: Vec<Sym> = if node.opset < 5 {
            node.ints("shape")?
                .context("Reshape needs a shape")?
                .into_iter()
                .map(Sym::Int)
                .collect()
        } else {
            self.constant(node, 1, "shape")?.to_syms()?
        };
        let allowzero = node.int("allowzero", 0)? != 0;
        let out = match self.req(node, 0)? {
            Value::Const(c) => {
                let target: Vec<i64> = target
                    .iter()
                    .map(|s| match s {
                        Sym::Int(i) => Ok(*i),
                        _ => bail!("Reshape of a constant to a batch-sized shape is not supported"),
                    })
                    .collect::<Result<_>>()?;
                let dims = resolve_shape(&c.dims, &target, allowzero)?;
                Value::Const(c.reshaped(dims)?)
            }
            Value::Act(a) => Value::Act(reshape_act(&a, &target, allowzero)?),
            _ => bail!("Reshape of this value is not supported"),
        };
        self.set(node, 0, out);
        Ok(())
    }

    fn op_flatten(&mut self, node: &Node) -> Result<()> {
        let axis = node.int("axis", 1)?;
        let out = match self.req(node, 0)? {
            Value::Const(c) => {
                let a = if axis == c.dims.len() as i64 {
                    c.dims.len()
                } else {
                    axis_index(axis, c.dims.len())?
                };
                let dims = vec![c.dims[..a].iter().product(), c.dims[a..].iter().product()];
                Value::Const(c.reshaped(dims)?)
            }
            Value::Act(act) => {
                let rank = act.axes.len();
                let a = if axis == rank as i64 {
                    rank
                } else {
                    axis_index(axis, rank)?
                };
                let product = |axes: &[Axis]| -> Result<Sym> {
                    let mut m = Mono::ONE;
                    for &x in axes {
                        m = m.mul(Mono::of(act.size(x))?).context("size overflow")?;
                    }
                    m.to_sym().with_context(|| {
                        format!(
                            "Flatten at axis {axis} of {} merges the batch or time axis with others",
                            act.describe()
                        )
                    })
                };
                let target = vec![product(&act.axes[..a])?, product(&act.axes[a..])?];
                Value::Act(reshape_act(&act, &target, true)?)
            }
            _ => bail!("Flatten of this value is not supported"),
        };
        self.set(node, 0, out);
        Ok(())
    }

    // ----------------------------------------------------------------------------------------------
    // Selecting timesteps and directions

    fn op_slice(&mut self, node: &Node) -> Result<()> {
        let (starts, ends, axes, steps) = if node.opset < 10 {
            (
                node.ints("starts")?.context("Slice needs starts")?,
                node.ints("ends")?.context("Slice needs ends")?,
                node.ints("axes")?,
                None,
            )
        } else {
            (
                self.constant(node, 1, "starts")?.to_i64()?,
                self.constant(node, 2, "ends")?.to_i64()?,
                self.constant_opt(node, 3, "axes")?
                    .map(|c| c.to_i64())
                    .transpose()?,
                self.constant_opt(node, 4, "steps")?
                    .map(|c| c.to_i64())
                    .transpose()?,
            )
        };
        ensure!(
            starts.len() == ends.len(),
            "Slice starts and ends differ in length"
        );
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        ensure!(
            axes.len() == starts.len(),
            "Slice axes and starts differ in length"
        );
        if let Some(steps) = &steps {
            ensure!(
                steps.len() == starts.len(),
                "Slice steps and starts differ in length"
            );
        }
        let mut value = self.req(node, 0)?;
        for (k, ((&s, &e), &axis)) in starts.iter().zip(&ends).zip(&axes).enumerate() {
            let step = steps
                .as_ref()
                .and_then(|st| st.get(k).copied())
                .unwrap_or(1);
            ensure!(
                step == 1,
                "Slice with step {step} is not supported (only step 1)"
            );
            value = match value {
                Value::Const(c) => {
                    let a = axis_index(axis, c.dims.len())?;
                    let (from, to) = clamp_range(s, e, c.dims[a]);
                    Value::Const(c.slice(a, from, to)?)
                }
                Value::Act(act) => Value::Act(self.slice_act(act, axis, s, e)?),
                _ => bail!("Slice of this value is not supported"),
            };
        }
        self.set(node, 0, value);
        Ok(())
    }

    fn slice_act(&mut self, act: Act, axis: i64, s: i64, e: i64) -> Result<Act> {
        let a = axis_index(axis, act.axes.len())?;
        match act.axes[a] {
            Axis::Time => self.crop_time(act, s, e),
            Axis::Dir(2) => {
                ensure!(act.part.is_none(), "Slice of an already selected direction");
                let (from, to) = clamp_range(s, e, 2);
                match (from, to) {
                    (0, 2) => Ok(act),
                    (k, t) if t == k + 1 => {
                        let mut axes = act.axes.clone();
                        axes[a] = Axis::Dir(1);
                        Ok(Act {
                            part: Some(k),
                            ..act.relaid(axes)
                        })
                    }
                    _ => bail!("Slice {s}..{e} of the direction axis selects nothing"),
                }
            }
            x => {
                // Only a slice that keeps the whole axis (a no-op) is accepted.
                let end = match act.size(x) {
                    Sym::Int(n) => n,
                    _ => TO_THE_END,
                };
                let whole = s == 0 && e >= end;
                ensure!(
                    whole,
                    "Slice {s}..{e} of axis {a} of {} is not supported: only the time axis (and the \
                     direction axis) can be sliced",
                    act.describe()
                );
                Ok(act)
            }
        }
    }

    /// Keeps timesteps `s..e` (ONNX Slice semantics) of an activation with a time axis.
    fn crop_time(&mut self, act: Act, s: i64, e: i64) -> Result<Act> {
        let layer = match act.steps {
            Some(t) => {
                let (from, to) = clamp_range(s, e, t);
                ensure!(to > from, "Slice {s}..{e} of the time axis (length {t}) keeps nothing");
                if from == 0 && to == t {
                    return Ok(act);
                }
                if to == t {
                    Layer::KeepLast { steps: (t - from) as u32 }
                } else {
                    Layer::Crop {
                        start: from as u32,
                        end: (t - to) as u32,
                    }
                }
            }
            None => match (s, e) {
                (s, e) if s < 0 && e >= TO_THE_END => Layer::KeepLast {
                    steps: u32::try_from(-s).context("Slice start out of range")?,
                },
                (s, e) if s >= 0 && e >= TO_THE_END => Layer::Crop {
                    start: u32::try_from(s).context("Slice start out of range")?,
                    end: 0,
                },
                (s, e) if s >= 0 && e < 0 => Layer::Crop {
                    start: u32::try_from(s).context("Slice start out of range")?,
                    end: u32::try_from(-e).context("Slice end out of range")?,
                },
                _ => bail!(
                    "Slice {s}..{e} of a time axis of free length is not supported; slice from the start \
                     (start ≥ 0, end < 0 or to the end) or keep the last N steps (start = -N)"
                ),
            },
        };
        let steps = match (&layer, act.steps) {
            (Layer::KeepLast { steps }, _) => Some(*steps as usize),
            (Layer::Crop { start, end }, Some(t)) => Some(t - *start as usize - *end as usize),
            _ => None,
        };
        if steps == Some(0) {
            bail!("the Slice keeps no timesteps");
        }
        self.claim(&act)?;
        // The last output of a forward recurrent layer is its final state: no need to keep a history.
        // The last output of a reverse layer has read only the last timestep: keep that one step before
        // the layer and let it return its final state. Either way the output is a vector, as in ONNX.
        let last_step_of = match (&layer, self.layers.last_mut()) {
            (Layer::KeepLast { steps: 1 }, Some(Layer::Recurrent(r))) if r.return_sequences => {
                match r.direction {
                    Direction::Forward | Direction::Reverse => {
                        r.return_sequences = false;
                        Some(r.direction)
                    }
                    Direction::Bidirectional(_) => None,
                }
            }
            _ => None,
        };
        match last_step_of {
            Some(Direction::Forward) => {}
            Some(_) => {
                let at = self.layers.len().saturating_sub(1);
                self.layers.insert(at, layer);
            }
            None => self.layers.push(layer),
        }
        self.version += 1;
        Ok(Act {
            steps,
            ..self.after(&act, act.width)
        })
    }

    fn op_gather(&mut self, node: &Node) -> Result<()> {
        let axis = node.int("axis", 0)?;
        let data = self.req(node, 0)?;
        let indices = self.req(node, 1)?;
        let out = match (data, indices) {
            (Value::Const(c), Value::Const(i)) => {
                let a = axis_index(axis, c.dims.len())?;
                let dim = c.dims[a];
                let idx = i
                    .to_i64()?
                    .iter()
                    .map(|&k| {
                        let k = if k < 0 { k + dim as i64 } else { k };
                        usize::try_from(k)
                            .ok()
                            .filter(|&k| k < dim)
                            .with_context(|| format!("Gather index {k} out of range for {dim}"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mut out = c.take(a, &idx, false)?;
                let mut dims = c.dims[..a].to_vec();
                dims.extend_from_slice(&i.dims);
                dims.extend_from_slice(&c.dims[a + 1..]);
                out = out.reshaped(dims)?;
                Value::Const(out)
            }
            (Value::Const(table), Value::Act(ids)) => {
                ensure!(
                    ids.tokens,
                    "Gather with computed indices is only supported on the token ids"
                );
                ensure!(
                    table.dims.len() == 2 && axis_index(axis, 2)? == 0,
                    "an embedding Gather needs a 2-D table gathered along axis 0 (table shape {:?})",
                    table.dims
                );
                ensure!(
                    self.layers.is_empty(),
                    "an embedding must be the first layer"
                );
                let (vocab, dim) = (table.dims[0], table.dims[1]);
                let weights = Tensor::matrix(vocab, dim, table.to_f32()?)?;
                ensure!(ids.version == self.version, "the token ids are read twice");
                self.layers
                    .push(Layer::Embedding(Embedding { table: weights }));
                self.version += 1;
                let mut axes = ids.axes.clone();
                axes.push(Axis::Feat);
                Value::Act(Act {
                    axes,
                    width: dim,
                    tokens: false,
                    version: self.version,
                    ..ids
                })
            }
            (Value::Act(act), Value::Const(i)) => {
                let idx = i.to_i64()?;
                ensure!(
                    idx.len() == 1 && i.dims.len() <= 1,
                    "Gather on {} needs a single index",
                    act.describe()
                );
                let k = idx[0];
                let a = axis_index(axis, act.axes.len())?;
                let keep_axis = i.dims.len() == 1;
                let selected = match act.axes[a] {
                    Axis::Time => self.crop_time(act, k, if k == -1 { TO_THE_END } else { k + 1 })?,
                    Axis::Dir(2) => {
                        ensure!(act.part.is_none(), "Gather of an already selected direction");
                        let d = if k < 0 { k + 2 } else { k };
                        ensure!(d == 0 || d == 1, "Gather index {k} on the direction axis");
                        let mut axes = act.axes.clone();
                        axes[a] = Axis::Dir(1);
                        Act {
                            part: Some(d as usize),
                            ..act.relaid(axes)
                        }
                    }
                    x if act.is_one(x) && x != Axis::Batch && (k == 0 || k == -1) => act,
                    _ => bail!(
                        "Gather on axis {a} of {} is not supported: only the time and direction axes can \
                         be indexed",
                        act.describe()
                    ),
                };
                let mut axes = selected.axes.clone();
                if !keep_axis {
                    axes.remove(a);
                }
                Value::Act(Act { axes, ..selected })
            }
            _ => bail!("Gather of these inputs is not supported"),
        };
        self.set(node, 0, out);
        Ok(())
    }

    fn op_split(&mut self, node: &Node) -> Result<()> {
        let axis = node.int("axis", 0)?;
        let n_out = node.proto.output.len();
        let split: Option<Vec<i64>> = if node.opset < 13 {
            node.ints("split")?
        } else {
            self.constant_opt(node, 1, "split")?
                .map(|c| c.to_i64())
                .transpose()?
        };
        match self.req(node, 0)? {
            Value::Const(c) => {
                let a = axis_index(axis, c.dims.len())?;
                let dim = c.dims[a];
                let sizes = split_sizes(split, dim, n_out)?;
                let mut start = 0;
                for (k, size) in sizes.into_iter().enumerate() {
                    let part = c.slice(a, start, start + size)?;
                    start += size;
                    self.set(node, k, Value::Const(part));
                }
            }
            Value::Act(act) => {
                let a = axis_index(axis, act.axes.len())?;
                ensure!(
                    act.axes[a] == Axis::Dir(2) && act.part.is_none(),
                    "Split along axis {a} of {} is not supported: only the direction axis of a \
                     bidirectional output can be split",
                    act.describe()
                );
                let sizes = split_sizes(split, 2, n_out)?;
                ensure!(
                    sizes == [1, 1],
                    "Split of the direction axis must give two parts of one"
                );
                for k in 0..2 {
                    let mut axes = act.axes.clone();
                    axes[a] = Axis::Dir(1);
                    self.set(
                        node,
                        k,
                        Value::Act(Act {
                            part: Some(k),
                            ..act.relaid(axes)
                        }),
                    );
                }
            }
            _ => bail!("Split of this value is not supported"),
        }
        Ok(())
    }

    fn op_concat(&mut self, node: &Node) -> Result<()> {
        let axis = node.int("axis", 0)?;
        let inputs = (0..node.proto.input.len())
            .map(|i| self.req(node, i))
            .collect::<Result<Vec<_>>>()?;
        let out = if inputs.iter().all(|v| matches!(v, Value::Const(_))) {
            let parts: Vec<Const> = inputs
                .into_iter()
                .filter_map(|v| match v {
                    Value::Const(c) => Some(c),
                    _ => None,
                })
                .collect();
            Value::Const(Const::concat(&parts, axis)?)
        } else {
            let [Value::Act(a), Value::Act(b)] = inputs.as_slice() else {
                bail!(
                    "Concat of computed values is only supported for the two directions of a \
                     bidirectional recurrent node"
                )
            };
            let (fw, bw) = parts_of(a, b, "Concat")?;
            ensure!(
                a.part == Some(0),
                "Concat puts the backward direction first; tinyrnn's concatenation is [forward, backward]"
            );
            let k = axis_index(axis, fw.axes.len())?;
            let mut axes = fw.axes.clone();
            match fw.axes[k] {
                Axis::Feat => {
                    // [fw, bw] along the features: what the engine's Concat merge writes.
                    for x in axes.iter_mut() {
                        if *x == Axis::Dir(1) {
                            *x = Axis::Unit;
                        }
                    }
                    Value::Act(Act {
                        width: 2 * fw.width,
                        part: None,
                        final_state: fw.final_state || bw.final_state,
                        ..fw.relaid(axes)
                    })
                }
                Axis::Dir(1) => {
                    axes[k] = Axis::Dir(2);
                    Value::Act(Act {
                        part: None,
                        ..fw.relaid(axes)
                    })
                }
                _ => bail!(
                    "Concat of the two directions along axis {k} of {} is not supported",
                    fw.describe()
                ),
            }
        };
        self.set(node, 0, out);
        Ok(())
    }

    fn op_reduce(&mut self, node: &Node) -> Result<()> {
        let from = if node.op() == "ReduceSum" { 13 } else { 18 };
        let axes = self.axes_arg(node, from)?;
        let keepdims = node.int("keepdims", 1)? != 0;
        let act = self.act(node, 0)?;
        let rank = act.axes.len();
        let axes: Vec<usize> = match axes {
            Some(list) if !list.is_empty() => list
                .iter()
                .map(|&a| axis_index(a, rank))
                .collect::<Result<_>>()?,
            _ => bail!("{} over all axes is not supported", node.op()),
        };
        let mut out_axes = Vec::new();
        let mut merged = false;
        for (i, &x) in act.axes.iter().enumerate() {
            if !axes.contains(&i) {
                out_axes.push(x);
                continue;
            }
            match x {
                Axis::Dir(2) if act.part.is_none() => merged = true,
                x if act.is_one(x) && x != Axis::Batch => {}
                _ => bail!(
                    "{} over axis {i} of {} is not supported: only the direction axis can be reduced",
                    node.op(),
                    act.describe()
                ),
            }
            if keepdims {
                out_axes.push(Axis::Unit);
            }
        }
        let out = if merged {
            let merge = if node.op() == "ReduceSum" {
                Merge::Sum
            } else {
                Merge::Ave
            };
            self.set_merge(&act, merge)?;
            Act {
                version: self.version,
                final_state: false,
                ..act.relaid(out_axes)
            }
        } else {
            act.relaid(out_axes)
        };
        self.set(node, 0, Value::Act(out));
        Ok(())
    }

    /// Sets the merge of the last (bidirectional) layer, read through `act`.
    fn set_merge(&mut self, act: &Act, merge: Merge) -> Result<()> {
        let plain = Act {
            part: None,
            ..act.clone()
        };
        self.claim(&plain)?;
        match self.layers.last_mut() {
            Some(Layer::Recurrent(r)) if r.direction == Direction::Bidirectional(Merge::Concat) => {
                r.direction = Direction::Bidirectional(merge);
            }
            _ => bail!("internal: no bidirectional layer to merge"),
        }
        self.version += 1;
        Ok(())
    }

    // ----------------------------------------------------------------------------------------------
    // Arithmetic

    fn op_binary(&mut self, node: &Node) -> Result<()> {
        let op = node.op().to_string();
        let a = self.req(node, 0)?;
        let b = self.req(node, 1)?;
        let out = match (a, b) {
            (Value::Const(x), Value::Const(y)) => Value::Const(fold_binary(&op, &x, &y)?),
            (Value::Act(x), Value::Act(y)) => {
                let merge = match op.as_str() {
                    "Add" => Merge::Sum,
                    "Mul" => Merge::Mul,
                    _ => bail!("{op} of two computed values is not supported"),
                };
                let (fw, _) = parts_of(&x, &y, &op)?;
                ensure!(
                    x.axes == y.axes,
                    "{op} of the two directions with different layouts"
                );
                self.set_merge(fw, merge)?;
                let axes = fw
                    .axes
                    .iter()
                    .map(|&a| if a == Axis::Dir(1) { Axis::Unit } else { a })
                    .collect();
                Value::Act(Act {
                    part: None,
                    version: self.version,
                    final_state: false,
                    ..fw.relaid(axes)
                })
            }
            (Value::Act(x), Value::Const(c)) => Value::Act(self.affine_const(&op, x, &c, false)?),
            (Value::Const(c), Value::Act(x)) => Value::Act(self.affine_const(&op, x, &c, true)?),
            _ => bail!("{op} of these inputs is not supported"),
        };
        self.set(node, 0, out);
        Ok(())
    }

    /// `act ⊕ c` (or `c ⊕ act` when `flipped`) with `c` constant along everything but the features.
    fn affine_const(&mut self, op: &str, act: Act, c: &Const, flipped: bool) -> Result<Act> {
        ensure!(
            c.dims.len() <= act.axes.len(),
            "{op} with a constant of shape {:?} would broadcast {} to more axes",
            c.dims,
            act.describe()
        );
        let per_feature = feature_vector(&act, c).with_context(|| {
            format!(
                "{op} with a constant of shape {:?} on {} is not supported: the constant may only vary \
                 along the feature axis",
                c.dims,
                act.describe()
            )
        })?;
        // A bidirectional sum halved is the average merge.
        if matches!(op, "Mul" | "Div")
            && !flipped
            && act.part.is_none()
            && act.version == self.version
        {
            let factor = per_feature.first().copied().unwrap_or(1.0);
            let uniform = per_feature.iter().all(|&v| v == factor);
            let halves = (op == "Mul" && factor == 0.5) || (op == "Div" && factor == 2.0);
            if uniform && halves {
                if let Some(Layer::Recurrent(r)) = self.layers.last_mut() {
                    if r.direction == Direction::Bidirectional(Merge::Sum) {
                        self.claim(&act)?;
                        if let Some(Layer::Recurrent(r)) = self.layers.last_mut() {
                            r.direction = Direction::Bidirectional(Merge::Ave);
                        }
                        self.version += 1;
                        return Ok(self.after(&act, act.width));
                    }
                }
            }
        }
        let n = per_feature.len();
        let (scale, offset): (Vec<f32>, Vec<f32>) = match (op, flipped) {
            ("Add", _) => (vec![1.0; n], per_feature),
            ("Sub", false) => (vec![1.0; n], per_feature.iter().map(|v| -v).collect()),
            ("Sub", true) => (vec![-1.0; n], per_feature),
            ("Mul", _) => (per_feature, vec![0.0; n]),
            ("Div", false) => (per_feature.iter().map(|v| 1.0 / v).collect(), vec![0.0; n]),
            _ => bail!("{op} of a constant by a computed value is not supported"),
        };
        // Tile over a still-separate direction axis: the engine's vector is [forward, backward].
        let tile = act.engine_width() / act.width.max(1);
        let scale: Vec<f32> = scale.iter().cycle().take(n * tile).copied().collect();
        let offset: Vec<f32> = offset.iter().cycle().take(n * tile).copied().collect();
        self.apply_affine(act, scale, offset)
    }

    /// `y = scale ⊙ x + offset`, folded into the last Dense layer when it is linear, else a new layer.
    fn apply_affine(&mut self, act: Act, scale: Vec<f32>, offset: Vec<f32>) -> Result<Act> {
        self.claim(&act)?;
        let width = act.engine_width();
        ensure!(
            scale.len() == width && offset.len() == width,
            "internal: affine width"
        );
        ensure!(
            width <= MAX_WIDTH as usize,
            "{width} features exceed tinyrnn's limit of {MAX_WIDTH}"
        );
        match self.layers.last_mut() {
            Some(Layer::Dense(d)) if d.activation == Activation::Linear => {
                let cols = d.weight.cols;
                for (r, s) in scale.iter().enumerate() {
                    if let Some(row) = d.weight.data.get_mut(r * cols..(r + 1) * cols) {
                        row.iter_mut().for_each(|w| *w *= s);
                    }
                }
                let mut bias = d.bias.take().map_or(vec![0.0; width], |b| b.data);
                for ((b, s), o) in bias.iter_mut().zip(&scale).zip(&offset) {
                    *b = *b * s + o;
                }
                d.bias = Some(Tensor::vector(bias));
            }
            _ => {
                let mut weight = vec![0.0; width * width];
                for (r, s) in scale.iter().enumerate() {
                    weight[r * width + r] = *s;
                }
                let bias = offset
                    .iter()
                    .any(|&o| o != 0.0)
                    .then(|| Tensor::vector(offset));
                self.layers.push(Layer::Dense(Dense {
                    weight: Tensor::matrix(width, width, weight)?,
                    bias,
                    activation: Activation::Linear,
                }));
            }
        }
        self.version += 1;
        Ok(self.after(&act, act.width))
    }

    fn op_matmul(&mut self, node: &Node) -> Result<()> {
        let a = self.req(node, 0)?;
        let b = self.constant(node, 1, "B")?;
        let out = match a {
            Value::Const(x) => {
                ensure!(
                    x.dims.len() == 2 && b.dims.len() == 2,
                    "MatMul of constants is only folded in 2-D"
                );
                let (m, k, n) = (x.dims[0], x.dims[1], b.dims[1]);
                ensure!(
                    m.saturating_mul(k).saturating_mul(n) <= 1 << 28,
                    "MatMul of constants of shapes {:?} and {:?} is too large to fold",
                    x.dims,
                    b.dims
                );
                ensure!(b.dims[0] == k, "MatMul of {:?} by {:?}", x.dims, b.dims);
                let (xv, bv) = (x.to_f32()?, b.to_f32()?);
                let mut out = vec![0.0; numel(&[m, n])?];
                for i in 0..m {
                    for j in 0..n {
                        out[i * n + j] = (0..k).map(|p| xv[i * k + p] * bv[p * n + j]).sum();
                    }
                }
                Value::Const(Const::float(vec![m, n], out)?)
            }
            Value::Act(act) => {
                ensure!(
                    b.dims.len() == 2,
                    "MatMul by a weight of shape {:?}: a 2-D (inputs, outputs) weight is needed",
                    b.dims
                );
                ensure!(
                    act.axes.last() == Some(&Axis::Feat) && !act.has_dir2(),
                    "MatMul on {}: the features must be the last axis",
                    act.describe()
                );
                let (k, n) = (b.dims[0], b.dims[1]);
                ensure!(
                    k == act.width,
                    "MatMul weight of shape {:?} does not fit {} features",
                    b.dims,
                    act.width
                );
                let weight = Tensor::transposed(k, n, &b.to_f32()?)?;
                self.push(
                    &act,
                    Layer::Dense(Dense {
                        weight,
                        bias: None,
                        activation: Activation::Linear,
                    }),
                )?;
                Value::Act(self.after(&act, n))
            }
            _ => bail!("MatMul of this value is not supported"),
        };
        self.set(node, 0, out);
        Ok(())
    }

    fn op_gemm(&mut self, node: &Node) -> Result<()> {
        let act = self.act(node, 0)?;
        ensure!(
            node.int("transA", 0)? == 0,
            "Gemm with transA=1 is not supported"
        );
        ensure!(
            act.axes == [Axis::Batch, Axis::Feat],
            "Gemm on {}: a (batch, features) input is needed",
            act.describe()
        );
        let b = self.constant(node, 1, "B")?;
        ensure!(
            b.dims.len() == 2,
            "Gemm weight B must be 2-D, found {:?}",
            b.dims
        );
        let alpha = node.float("alpha")?.unwrap_or(1.0);
        let beta = node.float("beta")?.unwrap_or(1.0);
        let values: Vec<f32> = b.to_f32()?.iter().map(|v| v * alpha).collect();
        // Ours is (outputs × inputs): B itself with transB=1, else its transpose.
        let weight = if node.int("transB", 0)? != 0 {
            Tensor::matrix(b.dims[0], b.dims[1], values)?
        } else {
            Tensor::transposed(b.dims[0], b.dims[1], &values)?
        };
        ensure!(
            weight.cols == act.width,
            "Gemm weight of shape {:?} does not fit {} features",
            b.dims,
            act.width
        );
        let n = weight.rows;
        let bias = match self.constant_opt(node, 2, "C")? {
            None => None,
            Some(c) => {
                let ok =
                    c.len() == 1 || (c.len() == n && c.dims.iter().rev().skip(1).all(|&d| d == 1));
                ensure!(
                    ok,
                    "Gemm bias C of shape {:?} must be per output (N = {n})",
                    c.dims
                );
                let v = c.to_f32()?;
                Some(Tensor::vector(
                    (0..n)
                        .map(|j| beta * v.get(j).or(v.first()).copied().unwrap_or(0.0))
                        .collect(),
                ))
            }
        };
        self.push(
            &act,
            Layer::Dense(Dense {
                weight,
                bias,
                activation: Activation::Linear,
            }),
        )?;
        let out = self.after(&act, n);
        self.set(node, 0, Value::Act(out));
        Ok(())
    }

    fn op_activation(&mut self, node: &Node) -> Result<()> {
        let activation = match node.op() {
            "Relu" => Activation::Relu,
            "Sigmoid" => Activation::Sigmoid,
            "Tanh" => Activation::Tanh,
            _ => Activation::Softmax,
        };
        let out = match self.req(node, 0)? {
            Value::Const(c) => {
                ensure!(
                    activation != Activation::Softmax,
                    "Softmax of a constant is not folded"
                );
                let v = c.to_f32()?;
                let f = |x: f32| match activation {
                    Activation::Relu => x.max(0.0),
                    Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
                    _ => x.tanh(),
                };
                Value::Const(Const::float(
                    c.dims.clone(),
                    v.into_iter().map(f).collect(),
                )?)
            }
            Value::Act(act) => {
                if activation == Activation::Softmax {
                    check_softmax_axis(node, &act)?;
                }
                self.claim(&act)?;
                match self.layers.last_mut() {
                    Some(Layer::Dense(d)) if d.activation == Activation::Linear => {
                        d.activation = activation
                    }
                    _ => {
                        let w = act.engine_width();
                        ensure!(
                            w <= MAX_WIDTH as usize,
                            "{w} features exceed tinyrnn's limit of {MAX_WIDTH}"
                        );
                        let mut identity = vec![0.0; w * w];
                        for r in 0..w {
                            identity[r * w + r] = 1.0;
                        }
                        self.layers.push(Layer::Dense(Dense {
                            weight: Tensor::matrix(w, w, identity)?,
                            bias: None,
                            activation,
                        }));
                    }
                }
                self.version += 1;
                Value::Act(self.after(&act, act.width))
            }
            _ => bail!("{} of this value is not supported", node.op()),
        };
        self.set(node, 0, out);
        Ok(())
    }

    // ----------------------------------------------------------------------------------------------
    // The end

    /// Whether the layers so far end in a sequence (rather than one vector per window).
    fn chain_is_sequence(&self) -> bool {
        self.layers
            .iter()
            .fold(true, |sequence, layer| match layer {
                Layer::Recurrent(r) => r.return_sequences,
                Layer::LastStep => false,
                _ => sequence,
            })
    }

    /// Settles the graph output `act` and returns its batch layout.
    pub fn finish(&mut self, act: &Act) -> Result<OutputLayout> {
        ensure!(!act.tokens, "the graph output is the token-id input itself");
        self.claim(act)?;
        ensure!(
            !self.layers.is_empty(),
            "the graph computes nothing tinyrnn can run (no layers)"
        );
        if let Some(raw) = act.raw {
            return Ok(match raw {
                Raw::Sequence {
                    batch_first,
                    directions,
                } => OutputLayout::OnnxSequence {
                    batch_first,
                    directions,
                },
                Raw::FinalState {
                    batch_first,
                    directions,
                } => OutputLayout::OnnxFinalState {
                    batch_first,
                    directions,
                },
            });
        }
        // A time axis indexed away (Gather) leaves one timestep that ONNX no longer counts as a
        // sequence; unless a layer already made the output a vector, say so in the chain.
        let batch_and_features_only = act
            .axes
            .iter()
            .all(|a| matches!(a, Axis::Batch | Axis::Feat));
        if batch_and_features_only && act.steps == Some(1) && self.chain_is_sequence() {
            self.layers.push(Layer::LastStep);
        }
        let kept: Vec<Axis> = act
            .axes
            .iter()
            .copied()
            .filter(|&a| matches!(a, Axis::Batch | Axis::Feat) || !act.is_one(a))
            .collect();
        let mut axes = Vec::new();
        let mut i = 0;
        while let Some(&a) = kept.get(i) {
            if a == Axis::Dir(2) && kept.get(i + 1) == Some(&Axis::Feat) {
                axes.push(Axis::Feat);
                i += 2;
            } else {
                axes.push(a);
                i += 1;
            }
        }
        use Axis::{Batch, Dir, Feat, Time};
        Ok(match axes.as_slice() {
            [Batch] | [Batch, Feat] | [Batch, Time] | [Batch, Time, Feat] => {
                OutputLayout::BatchFirst
            }
            // ONNX's Y of one direction keeps a size-1 direction axis: (time, 1, batch, hidden).
            [Time, Batch] | [Time, Batch, Feat]
                if act.axes.iter().any(|a| matches!(a, Dir(_) | Axis::Unit)) =>
            {
                OutputLayout::OnnxSequence {
                    batch_first: false,
                    directions: 1,
                }
            }
            [Time, Batch] | [Time, Batch, Feat] => OutputLayout::TimeFirst,
            [Time, Dir(2), Batch] | [Time, Dir(2), Batch, Feat] => OutputLayout::OnnxSequence {
                batch_first: false,
                directions: 2,
            },
            [Dir(2), Batch] | [Dir(2), Batch, Feat] => OutputLayout::OnnxFinalState {
                batch_first: false,
                directions: 2,
            },
            _ => bail!(
                "the graph output has the layout {}, which tinyrnn cannot reproduce; it lays out \
                 (batch, [time,] features), (time, batch, features) and ONNX's Y and Y_h",
                act.describe()
            ),
        })
    }
}

/// A constant, or a batch-sized broadcast of one.
fn expand(base: Const, dims: Vec<Sym>) -> Result<Value> {
    if dims.iter().all(|d| matches!(d, Sym::Int(_))) {
        let fixed = dims
            .iter()
            .map(|d| match d {
                Sym::Int(n) => usize::try_from(*n).context("negative size in a shape"),
                _ => unreachable!("all fixed"),
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok(Value::Const(base.broadcast_to(&fixed)?));
    }
    // Check that the base broadcasts with every symbolic size taken as 1.
    let ones: Vec<usize> = dims
        .iter()
        .map(|d| match d {
            Sym::Int(n) => usize::try_from(*n).context("negative size in a shape"),
            _ => Ok(1),
        })
        .collect::<Result<_>>()?;
    ensure!(
        base.dims.len() <= dims.len(),
        "cannot broadcast {:?} to {} axes",
        base.dims,
        dims.len()
    );
    let pad = dims.len() - base.dims.len();
    for (i, &d) in base.dims.iter().enumerate() {
        ensure!(
            d == 1 || d == ones[pad + i],
            "cannot broadcast {:?} to the shape {dims:?}",
            base.dims
        );
    }
    Ok(Value::Expanded { base, dims })
}

/// Removes the `drop` axes (of a rank-`rank` tensor) from a broadcast base aligned to its right.
fn squeeze_base(base: Const, rank: usize, drop: &[usize]) -> Result<Const> {
    let pad = rank - base.dims.len().min(rank);
    let dims = base
        .dims
        .iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(&(i + pad)))
        .map(|(_, &d)| d)
        .collect();
    base.reshaped(dims)
}

/// The start and end of an ONNX Slice on a dimension of size `dim`, clamped as ONNX does.
fn clamp_range(s: i64, e: i64, dim: usize) -> (usize, usize) {
    let d = dim as i64;
    let fix = |v: i64| (if v < 0 { v + d } else { v }).clamp(0, d) as usize;
    let (from, to) = (fix(s), fix(e));
    (from, to.max(from))
}

/// Sizes of the outputs of a Split.
fn split_sizes(split: Option<Vec<i64>>, dim: usize, n_out: usize) -> Result<Vec<usize>> {
    match split {
        Some(s) => {
            let sizes = s
                .iter()
                .map(|&v| usize::try_from(v).context("negative Split size"))
                .collect::<Result<Vec<_>>>()?;
            ensure!(
                sizes.iter().sum::<usize>() == dim,
                "Split sizes {s:?} do not add up to {dim}"
            );
            Ok(sizes)
        }
        None => {
            ensure!(
                n_out > 0 && dim % n_out == 0,
                "cannot split {dim} into {n_out} equal parts"
            );
            Ok(vec![dim / n_out; n_out])
        }
    }
}

/// The two directions of one bidirectional layer, forward first.
fn parts_of<'a>(a: &'a Act, b: &'a Act, op: &str) -> Result<(&'a Act, &'a Act)> {
    ensure!(
        a.part.is_none() || b.part.is_none() || a.version == b.version,
        "{op} of directions taken from two different recurrent nodes is not supported"
    );
    match (a.part, b.part) {
        (Some(0), Some(1)) => Ok((a, b)),
        (Some(1), Some(0)) => Ok((b, a)),
        _ => bail!(
            "{op} of two computed values is only supported for the forward and backward outputs of one \
             bidirectional recurrent node (a merge)"
        ),
    }
}

/// Folds an element-wise operator on two constants.
fn fold_binary(op: &str, x: &Const, y: &Const) -> Result<Const> {
    let ints = matches!((&x.data, &y.data), (Data::I(_), Data::I(_)));
    if ints {
        return Const::binary_i64(x, y, |p, q| match op {
            "Add" => p.checked_add(q),
            "Sub" => p.checked_sub(q),
            "Mul" => p.checked_mul(q),
            _ => p.checked_div(q),
        });
    }
    Const::binary_f32(x, y, |p, q| match op {
        "Add" => p + q,
        "Sub" => p - q,
        "Mul" => p * q,
        _ => p / q,
    })
}

/// The per-feature values of a constant broadcast against `act`, which must vary only along its
/// feature axis; `None` when it varies along another.
fn feature_vector(act: &Act, c: &Const) -> Option<Vec<f32>> {
    let values = c.to_f32().ok()?;
    let pad = act.axes.len() - c.dims.len();
    let mut feature_dim = 1;
    for (i, &d) in c.dims.iter().enumerate() {
        if d == 1 {
            continue;
        }
        if act.axes.get(pad + i) == Some(&Axis::Feat) && d == act.width {
            feature_dim = d;
        } else {
            return None;
        }
    }
    Some(if feature_dim == 1 {
        vec![values.first().copied()?; act.width]
    } else {
        values
    })
}

/// Softmax must run over the features only.
fn check_softmax_axis(node: &Node, act: &Act) -> Result<()> {
    let rank = act.axes.len();
    let default = if node.opset < 13 { 1 } else { -1 };
    let axis = axis_index(node.int("axis", default)?, rank)?;
    ensure!(
        !act.has_dir2(),
        "Softmax over one direction of a bidirectional output is not supported"
    );
    let ok = if node.opset < 13 {
        // Softmax over the flattened axes from `axis` on.
        act.axes[axis..].contains(&Axis::Feat)
            && act.axes[axis..]
                .iter()
                .all(|&a| a == Axis::Feat || (a != Axis::Batch && act.is_one(a)))
    } else {
        act.axes[axis] == Axis::Feat
    };
    ensure!(
        ok,
        "Softmax over axis {axis} of {} is not supported: it must run over the features",
        act.describe()
    );
    Ok(())
}

/// A product of sizes: a fixed part times powers of the batch size and of a free sequence length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mono {
    fixed: u128,
    batch: u32,
    time: u32,
}

impl Mono {
    const ONE: Mono = Mono {
        fixed: 1,
        batch: 0,
        time: 0,
    };

    fn of(s: Sym) -> Result<Mono> {
        Ok(match s {
            Sym::Int(n) if n > 0 => Mono {
                fixed: n as u128,
                ..Mono::ONE
            },
            Sym::Int(n) => bail!("size {n} in a shape"),
            Sym::Batch => Mono {
                batch: 1,
                ..Mono::ONE
            },
            Sym::Time => Mono {
                time: 1,
                ..Mono::ONE
            },
        })
    }

    fn mul(self, o: Mono) -> Option<Mono> {
        Some(Mono {
            fixed: self
                .fixed
                .checked_mul(o.fixed)
                .filter(|&f| f <= u64::MAX as u128)?,
            batch: self.batch.checked_add(o.batch)?,
            time: self.time.checked_add(o.time)?,
        })
    }

    fn div(self, o: Mono) -> Option<Mono> {
        (o.fixed != 0 && self.fixed % o.fixed == 0).then_some(())?;
        Some(Mono {
            fixed: self.fixed / o.fixed,
            batch: self.batch.checked_sub(o.batch)?,
            time: self.time.checked_sub(o.time)?,
        })
    }

    fn is_one(self) -> bool {
        self == Mono::ONE
    }

    fn to_sym(self) -> Option<Sym> {
        match (self.fixed, self.batch, self.time) {
            (1, 1, 0) => Some(Sym::Batch),
            (1, 0, 1) => Some(Sym::Time),
            (f, 0, 0) => Some(Sym::Int(i64::try_from(f).ok()?)),
            _ => None,
        }
    }
}

/// Resolves a Reshape target (0 = copy, -1 = infer) against a constant's dimensions.
fn resolve_shape(dims: &[usize], target: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let total = numel(dims)?;
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        out.push(match t {
            0 if !allowzero => *dims
                .get(i)
                .context("Reshape copies a dimension that does not exist")?,
            -1 => {
                ensure!(infer.is_none(), "Reshape with two -1 entries");
                infer = Some(i);
                1
            }
            t => usize::try_from(t).context("negative Reshape size")?,
        });
    }
    if let Some(i) = infer {
        let known: usize = out.iter().product();
        ensure!(
            known != 0 && total % known == 0,
            "cannot reshape {dims:?} to {target:?}"
        );
        out[i] = total / known;
    }
    Ok(out)
}

/// Reshape of an activation: the batch and time axes must survive on their own; the only merge allowed
/// is a bidirectional output's (directions, features) into one feature axis, `[forward, backward]`.
pub fn reshape_act(act: &Act, target: &[Sym], allowzero: bool) -> Result<Act> {
    let fail = || {
        format!(
            "Reshape of {} to {:?} is not supported: the batch and time axes must stay apart and the \
             features may only absorb the direction axis",
            act.describe(),
            target
        )
    };
    let sizes: Vec<Mono> = act
        .axes
        .iter()
        .map(|&a| Mono::of(act.size(a)))
        .collect::<Result<_>>()?;
    let mut total = Mono::ONE;
    for &m in &sizes {
        total = total.mul(m).with_context(fail)?;
    }
    let mut out: Vec<Option<Mono>> = Vec::with_capacity(target.len());
    for (i, &t) in target.iter().enumerate() {
        out.push(match t {
            Sym::Int(0) if !allowzero => Some(*sizes.get(i).with_context(fail)?),
            Sym::Int(-1) => None,
            s => Some(Mono::of(s).with_context(fail)?),
        });
    }
    ensure!(
        out.iter().filter(|o| o.is_none()).count() <= 1,
        "Reshape with two -1 entries"
    );
    let mut known = Mono::ONE;
    for m in out.iter().flatten() {
        known = known.mul(*m).with_context(fail)?;
    }
    let inferred = total.div(known).with_context(fail)?;
    let out: Vec<Mono> = out.into_iter().map(|o| o.unwrap_or(inferred)).collect();

    let mut axes = Vec::new();
    let mut width = act.width;
    let (mut i, mut j) = (0, 0);
    loop {
        let feat_one = i < sizes.len() && act.axes[i] == Axis::Feat && sizes[i].is_one();
        if i < sizes.len()
            && sizes[i].is_one()
            && act.axes[i] != Axis::Feat
            && act.axes[i] != Axis::Batch
        {
            i += 1;
            continue;
        }
        if j < out.len() && out[j].is_one() && !feat_one {
            axes.push(Axis::Unit);
            j += 1;
            continue;
        }
        if i == sizes.len() && j == out.len() {
            break;
        }
        if j == out.len() && i < sizes.len() && sizes[i].is_one() {
            // A size-1 feature axis the target drops.
            i += 1;
            continue;
        }
        ensure!(i < sizes.len() && j < out.len(), "{}", fail());
        let (gi, gj) = (i, j);
        let (mut pin, mut pout) = (sizes[i], out[j]);
        i += 1;
        j += 1;
        while pin != pout {
            if pout.div(pin).is_some() {
                ensure!(i < sizes.len(), "{}", fail());
                pin = pin.mul(sizes[i]).with_context(fail)?;
                i += 1;
            } else if pin.div(pout).is_some() {
                ensure!(j < out.len(), "{}", fail());
                pout = pout.mul(out[j]).with_context(fail)?;
                j += 1;
            } else {
                bail!("{}", fail());
            }
        }
        let group: Vec<Axis> = act.axes[gi..i]
            .iter()
            .zip(&sizes[gi..i])
            .filter(|(a, m)| **a == Axis::Feat || **a == Axis::Batch || !m.is_one())
            .map(|(a, _)| *a)
            .collect();
        let outs: Vec<bool> = out[gj..j].iter().map(|m| m.is_one()).collect();
        let significant = outs.iter().filter(|one| !**one).count();
        let single = match group.as_slice() {
            [a] if significant <= 1 => *a,
            [Axis::Dir(2), Axis::Feat] if significant == 1 && act.part.is_none() => {
                width *= 2;
                Axis::Feat
            }
            _ => bail!("{}", fail()),
        };
        let mut placed = false;
        for one in outs {
            if one && (placed || significant == 1) {
                axes.push(Axis::Unit);
            } else {
                axes.push(single);
                placed = true;
            }
        }
    }
    Ok(Act {
        width,
        ..act.relaid(axes)
    })
}

/// Sorts `nodes` so every node comes after the producers of its inputs; fails on a cycle.
pub fn topological_order(nodes: &[NodeProto]) -> Result<Vec<usize>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (k, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if producer.insert(o.as_str(), k).is_some() {
                bail!("value '{o}' is produced by more than one node");
            }
        }
    }
    let mut pending = vec![0usize; nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (k, n) in nodes.iter().enumerate() {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            if let Some(&p) = producer.get(i.as_str()) {
                pending[k] += 1;
                users[p].push(k);
            }
        }
    }
    let mut ready: VecDeque<usize> = (0..nodes.len()).filter(|&k| pending[k] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(k) = ready.pop_front() {
        order.push(k);
        for &u in &users[k] {
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push_back(u);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck: Vec<String> = (0..nodes.len())
            .filter(|&k| pending[k] > 0)
            .take(5)
            .map(|k| node_label(&nodes[k], k))
            .collect();
        bail!("the graph has a cycle through {}", stuck.join(", "));
    }
    Ok(order)
}

/// How errors name a node: its name (or position and first output) and operator.
pub fn node_label(node: &NodeProto, index: usize) -> String {
    let name = if node.name.is_empty() {
        match node.output.first() {
            Some(o) => format!("#{index} (output '{o}')"),
            None => format!("#{index}"),
        }
    } else {
        format!("'{}'", node.name)
    };
    format!("node {name} ({})", node.op_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(axes: Vec<Axis>, width: usize, steps: Option<usize>) -> Act {
        Act {
            axes,
            width,
            steps,
            version: 0,
            final_state: false,
            part: None,
            raw: None,
            tokens: false,
        }
    }

    #[test]
    fn reshape_merges_directions_into_features() {
        // PyTorch's bidirectional glue: Y (T, 2, B, H) → Transpose(0, 2, 1, 3) → Reshape(0, 0, -1).
        use Axis::*;
        let y = act(vec![Time, Batch, Dir(2), Feat], 4, Some(5));
        let r = reshape_act(&y, &[Sym::Int(0), Sym::Int(0), Sym::Int(-1)], false).unwrap();
        assert_eq!(r.axes, vec![Time, Batch, Feat]);
        assert_eq!(r.width, 8);
    }

    #[test]
    fn reshape_with_symbolic_and_unit_dimensions() {
        use Axis::*;
        let y = act(vec![Dir(1), Batch, Feat], 6, Some(1));
        let r = reshape_act(&y, &[Sym::Batch, Sym::Int(-1)], false).unwrap();
        assert_eq!(r.axes, vec![Batch, Feat]);
        let u = reshape_act(&r, &[Sym::Int(0), Sym::Int(1), Sym::Int(6)], false).unwrap();
        assert_eq!(u.axes, vec![Batch, Unit, Feat]);
        // A free time axis survives as a symbol.
        let x = act(vec![Time, Batch, Feat], 3, None);
        let t = reshape_act(&x, &[Sym::Time, Sym::Int(-1), Sym::Int(3)], false).unwrap();
        assert_eq!(t.axes, vec![Time, Batch, Feat]);
    }

    #[test]
    fn reshape_refuses_merging_batch_or_time_or_fixing_the_batch() {
        use Axis::*;
        let x = act(vec![Batch, Time, Feat], 3, Some(5));
        assert!(reshape_act(&x, &[Sym::Int(-1), Sym::Int(3)], false).is_err());
        assert!(reshape_act(&x, &[Sym::Int(0), Sym::Int(-1)], false).is_err());
        assert!(reshape_act(&x, &[Sym::Int(2), Sym::Int(5), Sym::Int(3)], false).is_err());
        // Trailing unit axes are fine; splitting the features is not.
        assert!(reshape_act(
            &x,
            &[
                Sym::Int(0),
                Sym::Int(0),
                Sym::Int(3),
                Sym::Int(1),
                Sym::Int(1)
            ],
            false
        )
        .is_ok());
        let wide = act(vec![Batch, Feat], 6, None);
        assert!(reshape_act(&wide, &[Sym::Int(0), Sym::Int(2), Sym::Int(3)], false).is_err());
    }

    #[test]
    fn slice_ranges_clamp_like_onnx() {
        assert_eq!(clamp_range(-2, i64::MAX, 5), (3, 5));
        assert_eq!(clamp_range(1, -1, 5), (1, 4));
        assert_eq!(clamp_range(-10, 2, 5), (0, 2));
        assert_eq!(clamp_range(4, 2, 5), (4, 4));
    }

    #[test]
    fn cycles_are_found() {
        let node = |name: &str, input: &str, output: &str| NodeProto {
            input: vec![input.to_string()],
            output: vec![output.to_string()],
            name: name.to_string(),
            op_type: "Relu".to_string(),
            domain: String::new(),
            attribute: vec![],
        };
        let ok = [node("a", "x", "y"), node("b", "y", "z")];
        assert_eq!(topological_order(&ok).unwrap(), vec![0, 1]);
        let reversed = [node("b", "y", "z"), node("a", "x", "y")];
        assert_eq!(topological_order(&reversed).unwrap(), vec![1, 0]);
        let cycle = [node("a", "z", "y"), node("b", "y", "z")];
        let err = topological_order(&cycle).unwrap_err().to_string();
        assert!(err.contains("cycle") && err.contains("'a'"), "{err}");
        let twice = [node("a", "x", "y"), node("b", "x", "y")];
        assert!(topological_order(&twice).is_err());
    }

    #[test]
    fn a_stale_value_cannot_extend_the_chain() {
        let mut imp = Importer::new(HashMap::new());
        let x = act(vec![Axis::Batch, Axis::Feat], 2, None);
        let dense = || {
            Layer::Dense(Dense {
                weight: Tensor::matrix(2, 2, vec![1.0, 0.0, 0.0, 1.0]).unwrap(),
                bias: None,
                activation: Activation::Linear,
            })
        };
        imp.push(&x, dense()).unwrap();
        let err = imp.push(&x, dense()).unwrap_err().to_string();
        assert!(err.contains("branches"), "{err}");
    }
}
