//! ONNX LSTM, GRU and RNN nodes → [`Recurrent`] layers.
//!
//! ONNX stacks gate blocks by rows, per direction `d`:
//!
//! ```text
//! W [D, G·H, I]   R [D, G·H, H]   B [D, 2·G·H] = [Wb, Rb]   P [D, 3·H] (LSTM)
//! LSTM gates  i o f c      → ours i f g o     (ours[k] = onnx[[0, 2, 3, 1][k]])
//! GRU gates   z r h        → ours z r n       (same order)
//! RNN         one block
//! peepholes   p_i p_o p_f  → ours p_i p_f p_o
//! ```
//!
//! Biases: `Wb + Rb` is summed into `bias`, except for GRU `linear_before_reset=1`, where `r` multiplies
//! `R_h h + Rb_h`, so `Rb` stays apart as `recurrent_bias` (ours is `Cell::Gru { reset_after: true }`).
//! With `linear_before_reset=0` ONNX adds `Rb_h` outside the reset product, so summing is exact.

use anyhow::{bail, ensure, Context, Result};
use tinyrnn::format::{Activation, Cell, CellWeights, Direction, Layer, Merge, Recurrent};

use super::graph::{Act, Axis, Importer, Node, Raw, Value};
use super::tensor::Sym;
use crate::spec::Tensor;

/// ONNX LSTM gate blocks in our order `i f g o`: ONNX's `i o f c` indices.
const LSTM_ORDER: [usize; 4] = [0, 2, 3, 1];

/// Reads an LSTM, GRU or RNN node.
pub fn import(imp: &mut Importer, node: &Node) -> Result<()> {
    let op = node.op();
    let direction = node
        .string("direction")?
        .unwrap_or_else(|| "forward".to_string());
    let directions = match direction.as_str() {
        "forward" | "reverse" => 1,
        "bidirectional" => 2,
        other => bail!(
            "attribute 'direction' is '{other}'; ONNX allows forward, reverse and bidirectional"
        ),
    };
    let layout = node.int("layout", 0)?;
    ensure!(
        layout == 0 || layout == 1,
        "attribute 'layout' is {layout}; ONNX allows 0 and 1"
    );
    let batch_first = layout == 1;
    let cell = match op {
        "LSTM" => Cell::Lstm {
            input_forget: node.int("input_forget", 0)? != 0,
        },
        "GRU" => Cell::Gru {
            reset_after: node.int("linear_before_reset", 0)? != 0,
        },
        _ => Cell::SimpleRnn,
    };
    let gates = cell.gates();
    let (activation, gate_activation) = activations(node, directions)?;
    let clip = match node.float("clip")? {
        Some(c) => {
            ensure!(
                c.is_finite() && c > 0.0,
                "attribute 'clip' is {c}; a positive threshold is needed"
            );
            Some(c)
        }
        None => None,
    };

    // X: (time, batch, features), or (batch, time, features) with layout=1.
    let x = imp.act(node, 0)?;
    let expected = if batch_first {
        [Axis::Batch, Axis::Time, Axis::Feat]
    } else {
        [Axis::Time, Axis::Batch, Axis::Feat]
    };
    ensure!(
        x.axes == expected && x.part.is_none(),
        "input X has the layout {}, but layout={layout} needs {}",
        describe(&x),
        if batch_first {
            "(batch, time, features)"
        } else {
            "(time, batch, features)"
        }
    );
    let input = x.width;

    let w = imp.constant(node, 1, "W")?;
    let r = imp.constant(node, 2, "R")?;
    ensure!(
        r.dims.len() == 3 && r.dims[0] == directions && r.dims[2] > 0 && r.dims[1] == gates * r.dims[2],
        "input R has shape {:?}; a {op} with direction={direction} needs [{directions}, {gates}·hidden, hidden]",
        r.dims
    );
    let hidden = r.dims[2];
    let declared = node.int("hidden_size", hidden as i64)?;
    ensure!(
        declared == hidden as i64,
        "attribute 'hidden_size' is {declared}, but R has shape {:?} (hidden {hidden})",
        r.dims
    );
    ensure!(
        w.dims == [directions, gates * hidden, input],
        "input W has shape {:?}; expected [{directions}, {}, {input}] for hidden {hidden} and {input} input \
         features",
        w.dims,
        gates * hidden
    );
    let b = imp.constant_opt(node, 3, "B")?;
    if let Some(b) = &b {
        ensure!(
            b.dims == [directions, 2 * gates * hidden],
            "input B has shape {:?}; expected [{directions}, {}]",
            b.dims,
            2 * gates * hidden
        );
    }
    check_sequence_lens(imp, node, &x)?;
    let initial_h = initial_state(imp, node, 5, "initial_h", directions, hidden, batch_first)?;
    let initial_c = if op == "LSTM" {
        initial_state(imp, node, 6, "initial_c", directions, hidden, batch_first)?
    } else {
        None
    };
    let p = if op == "LSTM" {
        imp.constant_opt(node, 7, "P")?
    } else {
        None
    };
    if let Some(p) = &p {
        ensure!(
            p.dims == [directions, 3 * hidden],
            "input P has shape {:?}; expected [{directions}, {}]",
            p.dims,
            3 * hidden
        );
    }

    let (w, r) = (w.to_f32()?, r.to_f32()?);
    let b = b.map(|b| b.to_f32()).transpose()?;
    let p = p.map(|p| p.to_f32()).transpose()?;
    let order: Vec<usize> = match cell {
        Cell::Lstm { .. } => LSTM_ORDER.to_vec(),
        _ => (0..gates).collect(),
    };
    let weights = |d: usize| -> Result<CellWeights<Tensor>> {
        let gh = gates * hidden;
        let block = |data: &[f32], cols: usize| -> Result<Tensor> {
            let dir = data
                .get(d * gh * cols..(d + 1) * gh * cols)
                .context("weights too short")?;
            Tensor::matrix(gh, cols, reorder(dir, &order, hidden * cols))
        };
        let (bias, recurrent_bias) = match &b {
            None => (None, None),
            Some(b) => {
                let wb = b.get(d * 2 * gh..d * 2 * gh + gh).context("B too short")?;
                let rb = b
                    .get(d * 2 * gh + gh..(d + 1) * 2 * gh)
                    .context("B too short")?;
                if cell == (Cell::Gru { reset_after: true }) {
                    (
                        Some(Tensor::vector(wb.to_vec())),
                        Some(Tensor::vector(rb.to_vec())),
                    )
                } else {
                    let sum: Vec<f32> = wb.iter().zip(rb).map(|(x, y)| x + y).collect();
                    (Some(Tensor::vector(reorder(&sum, &order, hidden))), None)
                }
            }
        };
        let peephole = match &p {
            None => None,
            Some(p) => {
                let dir = p
                    .get(d * 3 * hidden..(d + 1) * 3 * hidden)
                    .context("P too short")?;
                // ONNX [p_i, p_o, p_f] → ours [p_i, p_f, p_o].
                Some(Tensor::vector(reorder(dir, &[0, 2, 1], hidden)))
            }
        };
        let state = |s: &Option<Vec<Vec<f32>>>| {
            s.as_ref()
                .and_then(|v| v.get(d))
                .map(|v| Tensor::vector(v.clone()))
        };
        Ok(CellWeights {
            kernel: block(&w, input)?,
            recurrent: block(&r, hidden)?,
            bias,
            recurrent_bias,
            peephole,
            initial_h: state(&initial_h),
            initial_c: state(&initial_c),
        })
    };
    let layer = Recurrent {
        cell,
        hidden: u32::try_from(hidden).context("hidden size too large")?,
        activation,
        gate_activation,
        clip,
        direction: match direction.as_str() {
            "forward" => Direction::Forward,
            "reverse" => Direction::Reverse,
            _ => Direction::Bidirectional(Merge::Concat),
        },
        return_sequences: true,
        forward: weights(0)?,
        backward: if directions == 2 {
            Some(weights(1)?)
        } else {
            None
        },
    };
    let version = imp.push(&x, Layer::Recurrent(layer))?;

    let d = Axis::Dir(directions);
    let base = Act {
        axes: Vec::new(),
        width: hidden,
        steps: x.steps,
        version,
        final_state: false,
        part: None,
        raw: None,
        tokens: false,
    };
    let y = Act {
        axes: if batch_first {
            vec![Axis::Batch, Axis::Time, d, Axis::Feat]
        } else {
            vec![Axis::Time, d, Axis::Batch, Axis::Feat]
        },
        raw: Some(Raw::Sequence {
            batch_first,
            directions: directions as u32,
        }),
        ..base.clone()
    };
    let y_h = Act {
        axes: if batch_first {
            vec![Axis::Batch, d, Axis::Feat]
        } else {
            vec![d, Axis::Batch, Axis::Feat]
        },
        steps: Some(1),
        final_state: true,
        raw: Some(Raw::FinalState {
            batch_first,
            directions: directions as u32,
        }),
        ..base
    };
    imp.set(node, 0, Value::Act(y));
    imp.set(node, 1, Value::Act(y_h));
    imp.set(
        node,
        2,
        Value::Refused(
            "output Y_c (the LSTM cell state) is not supported: tinyrnn outputs hidden states (Y, Y_h) only"
                .to_string(),
        ),
    );
    Ok(())
}

/// Rows of `data` in blocks of `block` values, rearranged so that block `k` of the result is block
/// `order[k]` of `data`.
fn reorder(data: &[f32], order: &[usize], block: usize) -> Vec<f32> {
    order
        .iter()
        .flat_map(|&k| {
            data.get(k * block..(k + 1) * block)
                .unwrap_or(&[])
                .iter()
                .copied()
        })
        .collect()
}

/// The output and gate activations from the `activations` attribute (ONNX defaults when absent).
fn activations(node: &Node, directions: usize) -> Result<(Activation, Activation)> {
    let per_direction = match node.op() {
        "LSTM" => 3,
        "GRU" => 2,
        _ => 1,
    };
    let defaults: &[&str] = match node.op() {
        "LSTM" => &["Sigmoid", "Tanh", "Tanh"],
        "GRU" => &["Sigmoid", "Tanh"],
        _ => &["Tanh"],
    };
    let names = node.strings("activations")?.unwrap_or_default();
    let names: Vec<String> = if names.is_empty() {
        defaults.iter().map(|s| s.to_string()).collect()
    } else {
        names
    };
    ensure!(
        names.len() == per_direction || names.len() == per_direction * directions,
        "attribute 'activations' lists {} functions; a {} with {directions} direction(s) needs {}",
        names.len(),
        node.op(),
        per_direction * directions
    );
    let parse = |name: &str| -> Result<Activation> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "relu" => Activation::Relu,
            _ => bail!(
                "activation '{name}' in attribute 'activations' is not supported; tinyrnn's recurrent \
                 cells use Sigmoid, Tanh or Relu"
            ),
        })
    };
    let parsed = names.iter().map(|n| parse(n)).collect::<Result<Vec<_>>>()?;
    let mut chunks = parsed.chunks(per_direction);
    let first = chunks.next().context("no activations")?.to_vec();
    for other in chunks {
        ensure!(
            other == first.as_slice(),
            "attribute 'activations' {names:?} differs between the directions; tinyrnn uses one set for both"
        );
    }
    Ok(match first.as_slice() {
        [f, g, h] => {
            ensure!(
                g == h,
                "attribute 'activations' {names:?} uses different functions for the cell candidate (g) and \
                 the cell output (h); tinyrnn's LSTM uses one function for both"
            );
            (*g, *f)
        }
        [f, g] => (*g, *f),
        [f] => (*f, Activation::Sigmoid),
        _ => bail!("attribute 'activations' {names:?} has the wrong length"),
    })
}

/// `sequence_lens` is accepted only when it changes nothing: constant, every entry the full length.
fn check_sequence_lens(imp: &Importer, node: &Node, x: &Act) -> Result<()> {
    let Some(lens) = imp
        .constant_opt(node, 4, "sequence_lens")
        .with_context(|| {
            "input sequence_lens must be a constant whose entries all equal the sequence length"
        })?
    else {
        return Ok(());
    };
    let steps = x.steps.context(
        "input sequence_lens is given but the sequence length is not fixed by the model input; tinyrnn \
         runs every sequence to its full length and cannot check it",
    )?;
    let lens = lens.to_i64().context("input sequence_lens")?;
    ensure!(
        lens.iter().all(|&l| l == steps as i64),
        "input sequence_lens is {lens:?}, but tinyrnn runs every sequence to its full length ({steps}); \
         only sequence_lens equal to the sequence length are supported"
    );
    Ok(())
}

/// A constant initial state, one `hidden` vector per direction; `None` when absent or all zeros.
fn initial_state(
    imp: &Importer,
    node: &Node,
    index: usize,
    what: &str,
    directions: usize,
    hidden: usize,
    batch_first: bool,
) -> Result<Option<Vec<Vec<f32>>>> {
    let (base, dims) = match imp.get(node, index)? {
        None => return Ok(None),
        Some(Value::Const(c)) => {
            let dims = c.dims.iter().map(|&d| Sym::Int(d as i64)).collect();
            (c, dims)
        }
        Some(Value::Expanded { base, dims }) => (base, dims),
        Some(Value::Input(name)) => bail!(
            "input {what} ('{name}') is a graph input; tinyrnn needs initial states stored in the file \
             (or left out for zeros)"
        ),
        Some(_) => bail!("input {what} is computed from the model input; tinyrnn needs a constant"),
    };
    let (dir_axis, batch_axis) = if batch_first { (1, 0) } else { (0, 1) };
    let fits = dims.len() == 3
        && dims[dir_axis] == Sym::Int(directions as i64)
        && dims[2] == Sym::Int(hidden as i64)
        && matches!(dims[batch_axis], Sym::Batch | Sym::Int(1..));
    ensure!(
        fits,
        "input {what} has shape {dims:?}; expected {} with {directions} direction(s) and hidden {hidden}",
        if batch_first { "[batch, directions, hidden]" } else { "[directions, batch, hidden]" }
    );
    // Broadcast the base to (directions, batch rows it has, hidden) in the node's own order.
    let rows = match dims[batch_axis] {
        Sym::Int(n) => n as usize,
        _ => 1,
    };
    let mut shape = [0usize; 3];
    shape[dir_axis] = directions;
    shape[batch_axis] = rows;
    shape[2] = hidden;
    let full = base.broadcast_to(&shape)?;
    let full = if batch_first {
        full.transpose(&[1, 0, 2])?
    } else {
        full
    };
    let values = full.to_f32()?;
    let mut states = Vec::with_capacity(directions);
    for d in 0..directions {
        let block = values
            .get(d * rows * hidden..(d + 1) * rows * hidden)
            .context("initial state too short")?;
        let first = block.get(..hidden).context("initial state too short")?;
        ensure!(
            block.chunks_exact(hidden).all(|row| row == first),
            "input {what} differs between batch rows; tinyrnn holds one initial state per direction, so every \
             batch row must be the same"
        );
        states.push(first.to_vec());
    }
    if states.iter().flatten().all(|&v| v == 0.0) {
        return Ok(None);
    }
    Ok(Some(states))
}

fn describe(act: &Act) -> String {
    let names: Vec<&str> = act
        .axes
        .iter()
        .map(|a| match a {
            Axis::Batch => "batch",
            Axis::Time => "time",
            Axis::Dir(_) => "directions",
            Axis::Feat => "features",
            Axis::Unit => "1",
        })
        .collect();
    format!("({})", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lstm_blocks_are_reordered_to_ifgo() {
        // ONNX blocks i o f c, each one value.
        let onnx = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(reorder(&onnx, &LSTM_ORDER, 1), vec![1.0, 3.0, 4.0, 2.0]);
    }

    #[test]
    fn peepholes_are_reordered() {
        assert_eq!(
            reorder(&[1.0, 2.0, 3.0], &[0, 2, 1], 1),
            vec![1.0, 3.0, 2.0]
        );
    }
}
