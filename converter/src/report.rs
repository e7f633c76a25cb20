//! Human-readable descriptions of a model: layers, shapes, parameters, memory and compute.

use std::fmt::Write as _;

use tinyrnn::cell::Mat;
use tinyrnn::format::{Activation, Cell, Direction, InputKind, Layer, Merge};
use tinyrnn::Model;

/// The `tinyrnn inspect` table for an opened blob of `blob_len` bytes.
pub fn describe(model: &Model<'_>, blob_len: usize) -> String {
    let mut out = String::new();
    let meta = model.meta();
    let input = model.input();
    let _ = writeln!(out, "model     {}", meta.name);
    let _ = writeln!(out, "source    {}", meta.source);
    let _ = writeln!(out, "producer  {}", meta.producer);
    let steps_text = input
        .steps
        .map_or_else(|| "None".to_string(), |s| s.to_string());
    let input_text = match input.kind {
        InputKind::Features(n) => format!("(None, {steps_text}, {n}) float features"),
        InputKind::Tokens => format!("(None, {steps_text}) token ids"),
    };
    let _ = writeln!(out, "input     {input_text}\n");
    let _ = writeln!(
        out,
        "{:<3} {:<44} {:<18} {:>10}",
        "#", "layer", "output shape", "params"
    );
    let mut steps = input.steps.map(|s| s as usize);
    let mut sequence = true;
    let mut total = 0;
    let mut weight_bytes = 0;
    let mut width = model.input_width();
    for (index, layer) in model.layers().iter().enumerate() {
        match layer {
            Layer::Recurrent(r) => {
                sequence = r.return_sequences;
                if !sequence {
                    steps = Some(1);
                }
                width = match r.direction {
                    Direction::Bidirectional(Merge::Concat) => 2 * r.hidden as usize,
                    _ => r.hidden as usize,
                };
            }
            Layer::Dense(d) => width = d.weight.rows,
            Layer::Embedding(e) => width = e.table.cols,
            Layer::Crop { start, end } => {
                steps = steps.map(|s| s.saturating_sub((start + end) as usize))
            }
            Layer::KeepLast { steps: keep } => steps = Some(*keep as usize),
            Layer::LastStep => {
                sequence = false;
                steps = Some(1);
            }
        }
        let params = layer.parameter_count(|m: &Mat<'_>| m.data.len());
        total += params;
        weight_bytes += 4 * layer_values(layer);
        let shape = if sequence {
            format!(
                "(None, {}, {width})",
                steps.map_or_else(|| "None".to_string(), |s| s.to_string())
            )
        } else {
            format!("(None, {width})")
        };
        let _ = writeln!(
            out,
            "{index:<3} {:<44} {shape:<18} {params:>10}",
            layer_name(layer, |m| (m.rows, m.cols))
        );
    }
    let _ = writeln!(out, "\ntotal parameters   {total}");
    let _ = writeln!(
        out,
        "flash              {blob_len} bytes (blob; {weight_bytes} bytes of f32 tensors)"
    );
    let memory = model.memory();
    if model.is_streamable() {
        let _ = writeln!(
            out,
            "RAM, streaming     {} bytes (state {} + scratch {})",
            memory.bytes(),
            memory.state * 4,
            memory.scratch * 4
        );
    } else {
        let _ = writeln!(
            out,
            "RAM, streaming     not streamable (bidirectional, reverse or end-cropped layers)"
        );
    }
    if let Some(steps) = input.steps {
        if let Ok(window) = model.window_memory(steps as usize) {
            let _ = writeln!(
                out,
                "RAM, window of {steps:<3} {} bytes (state {} + scratch {})",
                window.bytes(),
                window.state * 4,
                window.scratch * 4
            );
        }
    }
    let _ = writeln!(out, "MACs per step      {}", model.macs_per_step());
    out
}

fn layer_values(layer: &Layer<Mat<'_>>) -> usize {
    let mut n = 0;
    let _ = layer.clone().try_map(|m: Mat<'_>| -> Result<(), ()> {
        n += m.data.len();
        Ok(())
    });
    n
}

fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::Linear => "linear",
        Activation::Relu => "relu",
        Activation::Sigmoid => "sigmoid",
        Activation::Tanh => "tanh",
        Activation::Softmax => "softmax",
    }
}

/// A one-line description of a layer, e.g. `Bidirectional(LSTM(8), concat), sequences`. `dims` gives a
/// tensor's rows and columns.
pub fn layer_name<T>(layer: &Layer<T>, dims: impl Fn(&T) -> (usize, usize)) -> String {
    match layer {
        Layer::Recurrent(r) => {
            let mut cell = match r.cell {
                Cell::SimpleRnn => {
                    format!("SimpleRNN({}, {})", r.hidden, activation_name(r.activation))
                }
                Cell::Lstm { input_forget } => format!(
                    "LSTM({}{}{})",
                    r.hidden,
                    if r.forward.peephole.is_some() {
                        ", peepholes"
                    } else {
                        ""
                    },
                    if input_forget { ", input_forget" } else { "" }
                ),
                Cell::Gru { reset_after } => format!(
                    "GRU({}, {})",
                    r.hidden,
                    if reset_after {
                        "reset_after"
                    } else {
                        "reset_before"
                    }
                ),
            };
            if let Some(clip) = r.clip {
                cell = format!("{cell} clip {clip}");
            }
            let wrapped = match r.direction {
                Direction::Forward => cell,
                Direction::Reverse => format!("Reverse({cell})"),
                Direction::Bidirectional(m) => format!(
                    "Bidirectional({cell}, {})",
                    match m {
                        Merge::Concat => "concat",
                        Merge::Sum => "sum",
                        Merge::Mul => "mul",
                        Merge::Ave => "ave",
                    }
                ),
            };
            if r.return_sequences {
                format!("{wrapped}, sequences")
            } else {
                wrapped
            }
        }
        Layer::Dense(d) => format!(
            "Dense({}, {})",
            dims(&d.weight).0,
            activation_name(d.activation)
        ),
        Layer::Embedding(e) => {
            let (vocab, dim) = dims(&e.table);
            format!("Embedding({vocab}, {dim})")
        }
        Layer::Crop { start, end } => format!("Crop({start}, {end})"),
        Layer::KeepLast { steps } => format!("KeepLast({steps})"),
        Layer::LastStep => "LastStep".to_string(),
    }
}
