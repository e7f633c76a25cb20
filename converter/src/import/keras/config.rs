//! Reading a Keras model config (`config.json` in a `.keras` archive, the `model_config` attribute of a
//! legacy `.h5` file) down to the single chain of layers the engine runs.

use std::collections::{HashMap, HashSet};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

/// One layer of the chain, as the model config describes it.
pub(super) struct ConfigLayer<'a> {
    /// The user-visible layer name (also its group in a legacy `.h5` file).
    pub name: String,
    /// The Keras class, e.g. `LSTM`.
    pub class: String,
    /// The layer's own `config` object.
    pub config: &'a Value,
    /// Where a Keras 3 weights file keeps the layer's variables: `layers/<class in snake case>`, with
    /// `_1`, `_2`, … for the second, third, … layer of the same class (Keras' `_save_container_state`).
    pub store_path: String,
}

impl ConfigLayer<'_> {
    /// `'name' (Class)`, for messages.
    pub fn describe(&self) -> String {
        format!("'{}' ({})", self.name, self.class)
    }
}

/// The model's declared input, without the batch dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InputShape {
    /// Timesteps, `None` when the time axis is unbounded.
    pub steps: Option<u32>,
    /// Features per timestep; `None` for a `(steps,)` input of token ids.
    pub features: Option<u32>,
}

/// A model whose layers form one chain from its single input to its single output.
pub(super) struct Chain<'a> {
    /// The model's name.
    pub name: String,
    /// The declared input.
    pub input: InputShape,
    /// Every layer after the input, first to last.
    pub layers: Vec<ConfigLayer<'a>>,
}

/// Reads the chain out of a model config `{"class_name": "Sequential" | "Functional", "config": …}`.
pub(super) fn chain(root: &Value) -> Result<Chain<'_>> {
    let class = root
        .get("class_name")
        .and_then(Value::as_str)
        .context("the model config has no 'class_name'")?;
    let config = root
        .get("config")
        .with_context(|| format!("the {class} model config has no 'config'"))?;
    match class {
        "Sequential" => sequential(config),
        "Functional" | "Model" => functional(config),
        other => bail!(
            "the top-level model is a '{other}'; Sequential and Functional models are supported \
             (subclassed models have no config to import)"
        ),
    }
}

fn model_name(config: &Value) -> String {
    config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("model")
        .to_string()
}

/// The entries of a config's `layers` list with their class names, config objects, names and store
/// paths, in order.
fn entries(list: &[Value]) -> Result<Vec<ConfigLayer<'_>>> {
    let mut used: HashMap<String, usize> = HashMap::new();
    list.iter()
        .enumerate()
        .map(|(index, entry)| {
            let class = entry
                .get("class_name")
                .and_then(Value::as_str)
                .with_context(|| {
                    format!("layer #{index} of the model config has no 'class_name'")
                })?;
            let config = entry
                .get("config")
                .filter(|c| c.is_object())
                .with_context(|| format!("layer #{index} ({class}) has no 'config' object"))?;
            let name = config
                .get("name")
                .or_else(|| entry.get("name"))
                .and_then(Value::as_str)
                .with_context(|| format!("layer #{index} ({class}) has no name"))?;
            let base = snake_case(class);
            let store_path = match used.get_mut(&base) {
                Some(count) => {
                    *count += 1;
                    format!("layers/{base}_{count}")
                }
                None => {
                    used.insert(base.clone(), 0);
                    format!("layers/{base}")
                }
            };
            Ok(ConfigLayer {
                name: name.to_string(),
                class: class.to_string(),
                config,
                store_path,
            })
        })
        .collect()
}

fn sequential(config: &Value) -> Result<Chain<'_>> {
    // Keras 2.0–2.2 wrote the layer list as the config itself.
    let list = config
        .get("layers")
        .or(Some(config))
        .and_then(Value::as_array)
        .context("the Sequential model config has no 'layers' list")?;
    let mut layers = entries(list)?;
    let input = match layers.first() {
        Some(first) if first.class == "InputLayer" => {
            let shape =
                input_shape(first).with_context(|| format!("input layer {}", first.describe()))?;
            layers.remove(0);
            shape
        }
        first => {
            // Built without an Input: the shape is on the model or on its first layer.
            let declared = config
                .get("build_input_shape")
                .filter(|v| !v.is_null())
                .or_else(|| first.and_then(|l| l.config.get("batch_input_shape")))
                .or_else(|| {
                    first.and_then(|l| {
                        l.config
                            .get("build_config")
                            .and_then(|b| b.get("input_shape"))
                    })
                })
                .context(
                    "the Sequential model declares no input shape; build it with keras.Input((steps, features))",
                )?;
            parse_batch_shape(declared).context("the Sequential model's input shape")?
        }
    };
    ensure!(
        layers.iter().all(|l| l.class != "InputLayer"),
        "the Sequential model has an InputLayer after its first layer"
    );
    Ok(Chain {
        name: model_name(config),
        input,
        layers,
    })
}

/// A `[name, node index, tensor index]` reference to a layer's output.
type TensorRef = (String, u64, u64);

fn functional(config: &Value) -> Result<Chain<'_>> {
    let list = config
        .get("layers")
        .and_then(Value::as_array)
        .context("the Functional model config has no 'layers' list")?;
    let all = entries(list)?;
    let raw = |index: usize| list.get(index).unwrap_or(&Value::Null);
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (index, layer) in all.iter().enumerate() {
        ensure!(
            by_name.insert(layer.name.as_str(), index).is_none(),
            "two layers are named '{}'",
            layer.name
        );
    }

    let inputs = tensor_list(config.get("input_layers")).context("the model's 'input_layers'")?;
    let outputs =
        tensor_list(config.get("output_layers")).context("the model's 'output_layers'")?;
    ensure!(
        inputs.len() == 1,
        "the model has {} inputs; only models with a single input are supported",
        inputs.len()
    );
    if outputs.len() != 1 {
        // Say why a single layer gives several outputs, when that is the case.
        if let Some(layer) = outputs
            .first()
            .filter(|first| outputs.iter().all(|o| o.0 == first.0))
            .and_then(|first| by_name.get(first.0.as_str()))
            .and_then(|&i| all.get(i))
        {
            bail!(
                "layer {} gives {} outputs{}; only models with a single output are supported",
                layer.describe(),
                outputs.len(),
                several_outputs_reason(layer)
            );
        }
        bail!(
            "the model has {} outputs; only models with a single output are supported",
            outputs.len()
        );
    }
    let (input_name, output) = match (inputs.first(), outputs.first()) {
        (Some(i), Some(o)) => (i.0.clone(), o.clone()),
        _ => bail!("the model has no input or no output"),
    };

    // Walk back from the output to the input; every step must have exactly one inbound tensor.
    let mut chain_indices = Vec::new();
    let mut current = output;
    loop {
        let &index = by_name.get(current.0.as_str()).with_context(|| {
            format!(
                "the model refers to a layer '{}' it does not list",
                current.0
            )
        })?;
        let layer = all.get(index).context("layer index out of range")?;
        if current.2 != 0 {
            bail!(
                "layer {} is used through its output #{}{}; only layers with one output are supported",
                layer.describe(),
                current.2,
                several_outputs_reason(layer)
            );
        }
        if layer.name == input_name {
            ensure!(
                layer.class == "InputLayer",
                "the model input '{}' is a {}, not an InputLayer",
                layer.name,
                layer.class
            );
            break;
        }
        ensure!(
            chain_indices.len() < all.len() && !chain_indices.contains(&index),
            "the model graph has a cycle through layer {}",
            layer.describe()
        );
        chain_indices.push(index);
        let inbound = inbound_tensors(raw(index))
            .with_context(|| format!("the inbound nodes of layer {}", layer.describe()))?;
        match inbound.as_slice() {
            [one] => current = one.clone(),
            [] => bail!(
                "layer {} has no input although it is not the model input",
                layer.describe()
            ),
            many => bail!(
                "layer {} takes {} inputs ({}); only models whose layers form a single chain are supported",
                layer.describe(),
                many.len(),
                many.iter().map(|t| t.0.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    chain_indices.reverse();

    let on_chain: HashSet<usize> = chain_indices.iter().copied().collect();
    let off_chain: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(i, l)| !on_chain.contains(i) && l.name != input_name)
        .map(|(_, l)| l.describe())
        .collect();
    ensure!(
        off_chain.is_empty(),
        "layers {} are not on the path from the input to the output; only models whose layers form a \
         single chain are supported",
        off_chain.join(", ")
    );

    let input_layer = by_name
        .get(input_name.as_str())
        .and_then(|&i| all.get(i))
        .with_context(|| format!("the model input '{input_name}' is not among its layers"))?;
    let input = input_shape(input_layer)
        .with_context(|| format!("input layer {}", input_layer.describe()))?;
    let name = model_name(config);
    let mut slots: Vec<Option<ConfigLayer<'_>>> = all.into_iter().map(Some).collect();
    let layers = chain_indices
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect();
    Ok(Chain {
        name,
        input,
        layers,
    })
}

/// Why one layer gives several outputs, as a clause starting with "; " (or nothing).
fn several_outputs_reason(layer: &ConfigLayer<'_>) -> String {
    let config = layer.config;
    if layer.class == "Bidirectional" && config.get("merge_mode").is_some_and(Value::is_null) {
        return "; it has merge_mode=None, which returns the two directions separately (use merge_mode \
                'concat', 'sum', 'mul' or 'ave')"
            .to_string();
    }
    let wrapped = config.get("layer").and_then(|l| l.get("config"));
    if [Some(config), wrapped]
        .into_iter()
        .flatten()
        .any(|c| c.get("return_state").and_then(Value::as_bool) == Some(true))
    {
        return "; it has return_state=True".to_string();
    }
    String::new()
}

/// Parses `input_layers` / `output_layers`: one `[name, node, tensor]` triple or a list of them.
fn tensor_list(value: Option<&Value>) -> Result<Vec<TensorRef>> {
    let list = value
        .and_then(Value::as_array)
        .context("missing or not a list")?;
    if list.first().is_some_and(Value::is_string) {
        return Ok(vec![tensor_ref(list)?]);
    }
    list.iter()
        .map(|t| {
            t.as_array()
                .context("not a [name, node, tensor] triple")
                .and_then(|t| tensor_ref(t))
        })
        .collect()
}

fn tensor_ref(triple: &[Value]) -> Result<TensorRef> {
    match triple {
        [name, node, tensor, ..] => Ok((
            name.as_str()
                .context("tensor reference without a layer name")?
                .to_string(),
            node.as_u64()
                .context("tensor reference with a bad node index")?,
            tensor
                .as_u64()
                .context("tensor reference with a bad tensor index")?,
        )),
        _ => bail!("a tensor reference is not a [name, node, tensor] triple"),
    }
}

/// The tensors a layer reads, from its `inbound_nodes`: Keras 3 writes
/// `[{"args": [<keras tensor>…], "kwargs": {…}}]`, Keras 2 `[[[name, node, tensor, kwargs], …]]`.
fn inbound_tensors(entry: &Value) -> Result<Vec<TensorRef>> {
    let nodes = match entry.get("inbound_nodes") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(v) => v.as_array().context("'inbound_nodes' is not a list")?,
    };
    match nodes.as_slice() {
        [] => Ok(Vec::new()),
        [node] => {
            let mut found = Vec::new();
            if node.is_object() {
                collect_keras_tensors(node, &mut found)?;
            } else {
                for t in node
                    .as_array()
                    .context("an inbound node is neither an object nor a list")?
                {
                    found.push(tensor_ref(
                        t.as_array().context("an inbound tensor is not a list")?,
                    )?);
                }
            }
            Ok(found)
        }
        many => bail!(
            "the layer is called {} times (a shared layer); only layers called once are supported",
            many.len()
        ),
    }
}

fn collect_keras_tensors(value: &Value, found: &mut Vec<TensorRef>) -> Result<()> {
    match value {
        Value::Object(map) => {
            if map.get("class_name").and_then(Value::as_str) == Some("__keras_tensor__") {
                let history = map
                    .get("config")
                    .and_then(|c| c.get("keras_history"))
                    .and_then(Value::as_array)
                    .context("a Keras tensor without 'keras_history'")?;
                found.push(tensor_ref(history)?);
            } else {
                for v in map.values() {
                    collect_keras_tensors(v, found)?;
                }
            }
        }
        Value::Array(list) => {
            for v in list {
                collect_keras_tensors(v, found)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The input shape an `InputLayer` declares.
fn input_shape(layer: &ConfigLayer<'_>) -> Result<InputShape> {
    let declared = layer
        .config
        .get("batch_shape")
        .or_else(|| layer.config.get("batch_input_shape"))
        .context("it declares no 'batch_shape'")?;
    if layer.config.get("sparse").and_then(Value::as_bool) == Some(true)
        || layer.config.get("ragged").and_then(Value::as_bool) == Some(true)
    {
        bail!("sparse and ragged inputs are not supported");
    }
    parse_batch_shape(declared)
}

/// `[batch, steps, features]` (features) or `[batch, steps]` (token ids); `null` where unbounded.
fn parse_batch_shape(value: &Value) -> Result<InputShape> {
    let dims = value.as_array().context("the input shape is not a list")?;
    let dim = |v: &Value| -> Result<Option<u32>> {
        match v {
            Value::Null => Ok(None),
            v => Ok(Some(
                v.as_u64()
                    .and_then(|d| u32::try_from(d).ok())
                    .with_context(|| format!("input dimension {v} is not a size"))?,
            )),
        }
    };
    let text = || value.to_string();
    match dims.as_slice() {
        [_, steps, features] => {
            let features = dim(features)?.with_context(|| {
                format!("input shape {}: the feature count must be fixed", text())
            })?;
            ensure!(features > 0, "input shape {}: no features", text());
            Ok(InputShape {
                steps: dim(steps)?,
                features: Some(features),
            })
        }
        [_, steps] => Ok(InputShape {
            steps: dim(steps)?,
            features: None,
        }),
        _ => bail!(
            "input shape {} has {} dimensions; recurrent models take (batch, steps, features) or \
             (batch, steps) token ids",
            text(),
            dims.len()
        ),
    }
}

/// Keras' `naming.to_snake_case`, which names a layer's group in a Keras 3 weights file after its
/// class: drop non-word characters, then `(.)([A-Z][a-z]+)` → `\1_\2`, `([a-z])([A-Z])` → `\1_\2`,
/// lower case.
pub(super) fn snake_case(class: &str) -> String {
    let word: Vec<char> = class
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    // (.)([A-Z][a-z]+) -> \1_\2, matches taken left to right without overlap.
    let mut first = Vec::with_capacity(word.len() + 4);
    let mut i = 0;
    while let Some(&c) = word.get(i) {
        let upper_next = word.get(i + 1).is_some_and(char::is_ascii_uppercase);
        let lower_run = word.get(i + 2..).map_or(0, |rest| {
            rest.iter().take_while(|c| c.is_ascii_lowercase()).count()
        });
        if c != '\n' && upper_next && lower_run > 0 {
            first.push(c);
            first.push('_');
            first.extend_from_slice(word.get(i + 1..i + 2 + lower_run).unwrap_or_default());
            i += 2 + lower_run;
        } else {
            first.push(c);
            i += 1;
        }
    }
    // ([a-z])([A-Z]) -> \1_\2
    let mut out = String::with_capacity(first.len() + 4);
    let mut i = 0;
    while let Some(&c) = first.get(i) {
        match first.get(i + 1) {
            Some(&n) if c.is_ascii_lowercase() && n.is_ascii_uppercase() => {
                out.push(c);
                out.push('_');
                out.push(n);
                i += 2;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_matches_keras() {
        for (class, snake) in [
            ("SimpleRNN", "simple_rnn"),
            ("LSTM", "lstm"),
            ("GRU", "gru"),
            ("RNN", "rnn"),
            ("Bidirectional", "bidirectional"),
            ("TimeDistributed", "time_distributed"),
            ("InputLayer", "input_layer"),
            ("Cropping1D", "cropping1d"),
            ("SpatialDropout1D", "spatial_dropout1d"),
            ("Conv1D", "conv1d"),
            ("Dense", "dense"),
            ("HTTPResponseCode", "http_response_code"),
            ("ABCd", "ab_cd"),
        ] {
            assert_eq!(snake_case(class), snake, "{class}");
        }
    }

    #[test]
    fn duplicate_classes_are_numbered_in_order() {
        let list: Value = serde_json::from_str(
            r#"[{"class_name": "InputLayer", "config": {"name": "x"}},
                {"class_name": "Dense", "config": {"name": "dense_7"}},
                {"class_name": "LSTM", "config": {"name": "a"}},
                {"class_name": "Dense", "config": {"name": "dense"}},
                {"class_name": "Dense", "config": {"name": "b"}}]"#,
        )
        .unwrap();
        let paths: Vec<String> = entries(list.as_array().unwrap())
            .unwrap()
            .into_iter()
            .map(|l| l.store_path)
            .collect();
        assert_eq!(
            paths,
            [
                "layers/input_layer",
                "layers/dense",
                "layers/lstm",
                "layers/dense_1",
                "layers/dense_2"
            ]
        );
    }

    #[test]
    fn keras2_functional_config_is_a_chain() {
        let root: Value = serde_json::from_str(
            r#"{"class_name": "Model", "config": {"name": "m",
                "layers": [
                  {"class_name": "InputLayer", "name": "input_1",
                   "config": {"batch_input_shape": [null, 5, 3], "name": "input_1"}, "inbound_nodes": []},
                  {"class_name": "LSTM", "name": "lstm", "config": {"name": "lstm"},
                   "inbound_nodes": [[["input_1", 0, 0, {}]]]},
                  {"class_name": "Dense", "name": "dense", "config": {"name": "dense"},
                   "inbound_nodes": [[["lstm", 0, 0, {}]]]}],
                "input_layers": [["input_1", 0, 0]], "output_layers": [["dense", 0, 0]]}}"#,
        )
        .unwrap();
        let chain = chain(&root).unwrap();
        assert_eq!(chain.name, "m");
        assert_eq!(
            chain.input,
            InputShape {
                steps: Some(5),
                features: Some(3)
            }
        );
        let names: Vec<&str> = chain.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["lstm", "dense"]);
    }

    #[test]
    fn sequential_without_input_layer_uses_build_shape() {
        let root: Value = serde_json::from_str(
            r#"{"class_name": "Sequential", "config": {"name": "s", "build_input_shape": [null, null, 4],
                "layers": [{"class_name": "GRU", "config": {"name": "gru"}}]}}"#,
        )
        .unwrap();
        let chain = chain(&root).unwrap();
        assert_eq!(
            chain.input,
            InputShape {
                steps: None,
                features: Some(4)
            }
        );
        assert_eq!(chain.layers.len(), 1);
    }

    fn chain_error(json: &str) -> String {
        let root: Value = serde_json::from_str(json).unwrap();
        match chain(&root) {
            Ok(_) => panic!("accepted: {json}"),
            Err(e) => format!("{e:#}"),
        }
    }

    const INPUT: &str = r#"{"class_name": "InputLayer", "name": "x",
        "config": {"batch_shape": [null, 5, 3], "name": "x"}, "inbound_nodes": []}"#;

    fn keras3_tensor(layer: &str) -> String {
        format!(
            r#"{{"class_name": "__keras_tensor__", "config": {{"shape": [null, 5, 3],
               "keras_history": ["{layer}", 0, 0]}}}}"#
        )
    }

    #[test]
    fn two_inputs_are_refused() {
        let json = format!(
            r#"{{"class_name": "Functional", "config": {{"name": "m", "layers": [{INPUT},
                 {{"class_name": "InputLayer", "name": "y",
                   "config": {{"batch_shape": [null, 5, 3], "name": "y"}}, "inbound_nodes": []}},
                 {{"class_name": "Add", "name": "add", "config": {{"name": "add"}},
                   "inbound_nodes": [{{"args": [[{}, {}]], "kwargs": {{}}}}]}}],
               "input_layers": [["x", 0, 0], ["y", 0, 0]], "output_layers": ["add", 0, 0]}}}}"#,
            keras3_tensor("x"),
            keras3_tensor("y")
        );
        assert!(chain_error(&json).contains("2 inputs"));
    }

    #[test]
    fn a_shared_layer_is_refused() {
        let node = format!(r#"{{"args": [{}], "kwargs": {{}}}}"#, keras3_tensor("x"));
        let json = format!(
            r#"{{"class_name": "Functional", "config": {{"name": "m", "layers": [{INPUT},
                 {{"class_name": "Dense", "name": "d", "config": {{"name": "d"}},
                   "inbound_nodes": [{node}, {node}]}}],
               "input_layers": ["x", 0, 0], "output_layers": ["d", 0, 0]}}}}"#
        );
        let err = chain_error(&json);
        assert!(
            err.contains("'d' (Dense)") && err.contains("called 2 times"),
            "{err}"
        );
    }

    #[test]
    fn a_state_output_is_refused() {
        let json = format!(
            r#"{{"class_name": "Functional", "config": {{"name": "m", "layers": [{INPUT},
                 {{"class_name": "LSTM", "name": "l", "config": {{"name": "l", "return_state": true}},
                   "inbound_nodes": [{{"args": [{}], "kwargs": {{}}}}]}}],
               "input_layers": ["x", 0, 0], "output_layers": ["l", 0, 1]}}}}"#,
            keras3_tensor("x")
        );
        let err = chain_error(&json);
        assert!(
            err.contains("'l' (LSTM)") && err.contains("return_state=True"),
            "{err}"
        );
    }

    #[test]
    fn malformed_configs_are_errors() {
        for json in [
            r#"{}"#,
            r#"{"class_name": "Sequential"}"#,
            r#"{"class_name": "Sequential", "config": {"layers": [{"class_name": "LSTM"}]}}"#,
            r#"{"class_name": "Sequential", "config": {"layers": [{"class_name": "LSTM", "config": {"name": "l"}}]}}"#,
            r#"{"class_name": "Functional", "config": {"layers": []}}"#,
            r#"{"class_name": "Functional", "config": {"layers": [], "input_layers": [], "output_layers": []}}"#,
            r#"{"class_name": "MyModel", "config": {}}"#,
        ] {
            chain_error(json);
        }
    }
}
