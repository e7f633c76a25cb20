//! Human-readable descriptions of a model: layers, shapes, parameters, memory and compute.

use std::fmt::Write as _;

use tinyrnn::cell::Mat;
use tinyrnn::format::{Activation, Cell, DType, Direction, InputKind, Layer, Merge};
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
    let _ = writeln!(out, "input     {input_text}");
    out.push_str(&scalers(model));
    out.push('\n');
    let _ = writeln!(
        out,
        "{:<3} {:<44} {:<18} {:>10}",
        "#", "layer", "output shape", "params"
    );
    let mut steps = input.steps.map(|s| s as usize);
    let mut sequence = true;
    let mut total = 0;
    let mut bytes = TensorBytes::default();
    let mut width = model.input_width();
    for (index, layer) in model.layers().enumerate() {
        match &layer {
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
            Layer::SubtractLast | Layer::Residual(_) => {}
        }
        let params = layer.parameter_count(Mat::len);
        total += params;
        bytes.add(&layer);
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
            layer_name(&layer, |m| (m.rows, m.cols))
        );
    }
    let _ = writeln!(out, "\ntotal parameters   {total}");
    if let Some(fixed) = model.fixed_point() {
        let _ = writeln!(
            out,
            "numeric mode       i8x16 (integer only: int8 weights, int16 activations and state, no float)"
        );
        let _ = writeln!(
            out,
            "flash              {blob_len} bytes (blob; tensors: {} bytes int8/int16 weights with requantization pairs, {} bytes int16/int32)",
            bytes.i8, bytes.f32
        );
        let formats: Vec<String> = fixed
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut text = format!("{i}: out Q.{}", l.output_frac);
                if l.state_frac > 0 {
                    let _ = write!(text, " h Q.{}", l.state_frac);
                }
                if l.cell_frac > 0 {
                    let _ = write!(text, " c Q.{}", l.cell_frac);
                }
                text
            })
            .collect();
        let _ = writeln!(
            out,
            "fixed point        input Q.{}; {}",
            fixed.input_frac,
            formats.join(", ")
        );
    } else {
        let _ = writeln!(out, "numeric mode       {}", bytes.mode());
        let int16 = if bytes.i16 > 0 {
            format!(", {} bytes int16 with their scales", bytes.i16)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "flash              {blob_len} bytes (blob; tensors: {} bytes f32, {} bytes int8 with their scales{int16})",
            bytes.f32, bytes.i8
        );
    }
    let memory = model.memory();
    if model.is_streamable() {
        let _ = writeln!(
            out,
            "RAM, streaming     {} bytes (state {} + scratch {})",
            memory.bytes(),
            memory.state * 4,
            memory.scratch * 4
        );
        let compact = model.memory_compact();
        if compact.total() < memory.total() {
            let _ = writeln!(
                out,
                "RAM, compact       {} bytes (state {} + scratch {}; LSTM steps unit by unit, same outputs)",
                compact.bytes(),
                compact.state * 4,
                compact.scratch * 4
            );
        }
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
    let _ = writeln!(out, "self-test          {}", self_test_text(model));
    if let Some(v) = model.vocabulary() {
        let preview: Vec<String> = (0..v.len().min(8) as u32)
            .filter_map(|id| v.token(id))
            .map(|t| format!("{t:?}"))
            .collect();
        let kind = match v.splitting {
            tinyrnn::format::Splitting::Chars => "characters".to_string(),
            tinyrnn::format::Splitting::Words {
                lowercase,
                strip_punctuation,
            } => format!(
                "words{}{}",
                if lowercase { ", lowercased" } else { "" },
                if strip_punctuation {
                    ", punctuation stripped"
                } else {
                    ""
                }
            ),
        };
        let _ = writeln!(
            out,
            "vocabulary         {} {kind}{}: {}{}",
            v.len(),
            v.unknown
                .map_or(String::new(), |u| format!(", unknown → {u}")),
            preview.join(" "),
            if v.len() > 8 { " …" } else { "" }
        );
    }
    out
}

/// The blob's self-test vector and what running it on this machine gives.
fn self_test_text(model: &Model<'_>) -> String {
    let Some(vector) = model.self_test_vector() else {
        return "none".to_string();
    };
    let mut memory = vec![0.0; model.self_test_memory()];
    let outcome = match model.self_test(&mut memory) {
        Ok(tinyrnn::SelfTestOutcome::Passed { max_error }) => {
            format!("passes here (max error {max_error:.1e})")
        }
        Ok(other) => format!("FAILS here: {other:?}"),
        Err(err) => format!("does not run: {err}"),
    };
    format!(
        "{} input steps → {} outputs, tolerance {:.1e}; {outcome}",
        vector.input.rows, vector.output.rows, vector.tolerance
    )
}

/// Bytes of tensor data by element type.
#[derive(Default)]
struct TensorBytes {
    f32: usize,
    i8: usize,
    /// int16 weights with f32 scales (`i8w` models).
    i16: usize,
}

impl TensorBytes {
    fn add(&mut self, layer: &Layer<Mat<'_>>) {
        let _ = layer.clone().try_map(|m: Mat<'_>| -> Result<(), ()> {
            match m.dtype() {
                DType::I8 | DType::I8Requant | DType::I16Requant => self.i8 += m.stored_bytes(),
                DType::I16Scaled => self.i16 += m.stored_bytes(),
                _ => self.f32 += m.stored_bytes(),
            }
            Ok(())
        });
    }

    /// `f32` for a float model, `i8w` when weights are int8 (activations are f32 in both).
    fn mode(&self) -> &'static str {
        if self.i8 > 0 || self.i16 > 0 {
            "i8w (int8 weights, one scale per row; f32 activations and state)"
        } else {
            "f32"
        }
    }
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
        Layer::SubtractLast => "SubtractLast".to_string(),
        Layer::Residual(r) => {
            let inputs: Vec<String> = r.inputs.iter().map(|f| f.to_string()).collect();
            let mut name = format!("Residual(inputs [{}]", inputs.join(", "));
            if r.add_last {
                name.push_str(", add last");
            }
            if let Some(skip) = &r.skip {
                let (horizon, window) = dims(skip);
                name.push_str(&format!(", skip {window}→{horizon}"));
            }
            name + ")"
        }
    }
}

/// Flash, RAM and compute of the same model in several numeric modes: `(mode name, blob)` pairs.
pub fn modes(blobs: &[(&str, &[u8])]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:>12} {:>16} {:>14}",
        "mode", "flash bytes", "RAM bytes (step)", "MACs per step"
    );
    for (name, blob) in blobs {
        let aligned = crate::run::AlignedBlob::new(blob);
        let Ok(model) = aligned.open() else {
            let _ = writeln!(out, "{name:<6} (does not open)");
            continue;
        };
        let ram = if model.is_streamable() {
            model.memory().bytes().to_string()
        } else {
            "windowed only".to_string()
        };
        let _ = writeln!(
            out,
            "{name:<6} {:>12} {ram:>16} {:>14}",
            blob.len(),
            model.macs_per_step()
        );
    }
    out
}

/// The error of a quantized model against its float model, per output feature.
pub fn accuracy(errors: &[crate::quantize::FeatureError]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7} {:>12} {:>12} {:>12} {:>14}",
        "output", "max |err|", "mean |err|", "f32 range", "max err/range"
    );
    for (j, e) in errors.iter().enumerate() {
        let _ = writeln!(
            out,
            "{j:<7} {:>12.3e} {:>12.3e} {:>12.4} {:>14.3e}",
            e.max_abs,
            e.mean_abs,
            e.range,
            e.relative()
        );
    }
    if errors.len() > 1 {
        let max_abs = errors.iter().fold(0.0f32, |m, e| m.max(e.max_abs));
        let mean_abs =
            errors.iter().map(|e| f64::from(e.mean_abs)).sum::<f64>() / errors.len() as f64;
        let (worst, relative) =
            errors
                .iter()
                .map(|e| e.relative())
                .enumerate()
                .fold((0, 0.0f32), |(k, m), (j, r)| {
                    if r > m || r.is_nan() {
                        (j, r)
                    } else {
                        (k, m)
                    }
                });
        let _ = writeln!(
            out,
            "{:<7} {max_abs:>12.3e} {mean_abs:>12.3e} {:>12} {relative:>14.3e}  (largest: output {worst})",
            "all", "",
        );
    }
    out
}

/// The input and output names and scalers, one line per feature, e.g.
/// `  CQI                   raw = model × 15 + 0`. Empty for a model without names or scalers.
pub fn scalers(model: &Model<'_>) -> String {
    let mut out = String::new();
    let meta = model.meta();
    let scaling = model.scaling();
    let sides = [
        (
            "inputs",
            meta.input_names().collect::<Vec<_>>(),
            scaling.input,
            model.input_width(),
        ),
        (
            "outputs",
            meta.output_names().collect::<Vec<_>>(),
            scaling.output,
            scaling.output.map_or(model.output_width(), |m| m.len() / 2),
        ),
    ];
    for (side, names, map, count) in sides {
        if names.is_empty() && map.is_none() {
            continue;
        }
        let _ = writeln!(out, "{side}");
        for i in 0..count {
            let name = names.get(i).copied().unwrap_or("?");
            let unit = match map.and_then(|m| m.get(2 * i..2 * i + 2)) {
                Some(&[offset, scale]) if offset < 0.0 => {
                    format!("raw = model × {scale} − {}", -offset)
                }
                Some(&[offset, scale]) => format!("raw = model × {scale} + {offset}"),
                _ => "raw units (no scaler)".to_string(),
            };
            let _ = writeln!(out, "  {i:<3} {name:<24} {unit}");
        }
    }
    if map_is_shared(model) {
        let _ = writeln!(
            out,
            "  (output value k of a forecast uses output row k mod {})",
            scaling.output.map_or(1, |m| m.len() / 2)
        );
    }
    out
}

/// Whether the output scaler's rows repeat over a forecast (fewer rows than output values).
fn map_is_shared(model: &Model<'_>) -> bool {
    let rows = model.scaling().output.map_or(0, |m| m.len() / 2);
    let values = model
        .input()
        .steps
        .and_then(|s| model.output_len(s as usize).ok())
        .unwrap_or(model.output_width());
    rows > 0 && rows < values
}

/// The blob's free-form details: a JSON document pretty-printed, anything else as it is. Empty when the
/// blob has none.
pub fn info(model: &Model<'_>) -> String {
    let text = model.meta().info;
    if text.is_empty() {
        return String::new();
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_else(|_| text.to_string()),
        Err(_) => text.to_string(),
    }
}
