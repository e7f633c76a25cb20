//! Shared helpers for the conformance tests: a seeded generator of random models covering every layer
//! kind, fixture loading, and the one tolerance table.

use std::path::{Path, PathBuf};

use tinyrnn::format::{
    Activation, Cell, CellWeights, Dense, Direction, Embedding, Input, InputKind, InputLayout,
    IoLayout, Layer, Merge, OutputLayout, Recurrent,
};
use tinyrnn_converter::spec::{ModelSpec, Tensor};

/// Absolute tolerance against framework references.
pub const ATOL: f32 = 1e-5;
/// Relative tolerance against framework references.
pub const RTOL: f32 = 1e-4;

/// Largest `|a - b| - (ATOL + RTOL·|b|)` over two arrays, with the index where it occurs: the comparison
/// passes when the value is ≤ 0. Lengths must match.
pub fn worst_excess(actual: &[f32], expected: &[f32]) -> (f32, usize) {
    assert_eq!(actual.len(), expected.len(), "output lengths differ");
    let mut worst = (f32::NEG_INFINITY, 0);
    for (i, (a, b)) in actual.iter().zip(expected).enumerate() {
        let excess = if a.is_nan() || b.is_nan() {
            f32::INFINITY
        } else {
            (a - b).abs() - (ATOL + RTOL * b.abs())
        };
        if excess > worst.0 {
            worst = (excess, i);
        }
    }
    worst
}

/// Largest absolute difference between two arrays.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The fixtures folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A small deterministic generator (xorshift64*), so tests need no extra crates.
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[-scale, scale)`.
    pub fn uniform(&mut self, scale: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * unit - 1.0) * scale
    }

    /// `n` values uniform in `[-scale, scale)`.
    pub fn values(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(scale)).collect()
    }

    fn matrix(&mut self, rows: usize, cols: usize) -> Tensor {
        Tensor::matrix(rows, cols, self.values(rows * cols, 0.6)).expect("shape")
    }

    fn vector(&mut self, n: usize) -> Tensor {
        Tensor::vector(self.values(n, 0.5))
    }
}

/// Options of a random recurrent layer.
#[derive(Clone, Copy, Debug)]
pub struct RecurrentOptions {
    /// Cell kind.
    pub cell: Cell,
    /// Hidden size.
    pub hidden: usize,
    /// Direction.
    pub direction: Direction,
    /// One output per timestep.
    pub return_sequences: bool,
    /// Output activation.
    pub activation: Activation,
    /// LSTM peepholes.
    pub peephole: bool,
    /// Constant initial states.
    pub initial_state: bool,
    /// Gate pre-activation clip.
    pub clip: Option<f32>,
}

impl RecurrentOptions {
    /// Defaults for `cell`: forward, sequences, tanh, no extras.
    pub fn new(cell: Cell, hidden: usize) -> Self {
        Self {
            cell,
            hidden,
            direction: Direction::Forward,
            return_sequences: true,
            activation: Activation::Tanh,
            peephole: false,
            initial_state: false,
            clip: None,
        }
    }
}

/// A random recurrent layer reading `input` features.
pub fn recurrent(rng: &mut Rng, input: usize, o: RecurrentOptions) -> Layer<Tensor> {
    let rows = o.cell.gates() * o.hidden;
    let weights = |rng: &mut Rng| CellWeights {
        kernel: rng.matrix(rows, input),
        recurrent: rng.matrix(rows, o.hidden),
        bias: Some(rng.vector(rows)),
        recurrent_bias: matches!(o.cell, Cell::Gru { reset_after: true }).then(|| rng.vector(rows)),
        peephole: (o.peephole && matches!(o.cell, Cell::Lstm { .. }))
            .then(|| rng.vector(3 * o.hidden)),
        initial_h: o.initial_state.then(|| rng.vector(o.hidden)),
        initial_c: (o.initial_state && matches!(o.cell, Cell::Lstm { .. }))
            .then(|| rng.vector(o.hidden)),
    };
    let forward = weights(rng);
    let backward = matches!(o.direction, Direction::Bidirectional(_)).then(|| weights(rng));
    Layer::Recurrent(Recurrent {
        cell: o.cell,
        hidden: o.hidden as u32,
        activation: o.activation,
        gate_activation: Activation::Sigmoid,
        clip: o.clip,
        direction: o.direction,
        return_sequences: o.return_sequences,
        forward,
        backward,
    })
}

/// A random dense layer.
pub fn dense(rng: &mut Rng, input: usize, units: usize, activation: Activation) -> Layer<Tensor> {
    Layer::Dense(Dense {
        weight: rng.matrix(units, input),
        bias: Some(rng.vector(units)),
        activation,
    })
}

/// A model reading `features` per timestep.
pub fn model(
    name: &str,
    features: usize,
    steps: Option<u32>,
    layers: Vec<Layer<Tensor>>,
) -> ModelSpec {
    ModelSpec {
        input: Input {
            kind: InputKind::Features(features as u32),
            steps,
        },
        layers,
        io: IoLayout {
            input: InputLayout::BatchFirst,
            output: OutputLayout::BatchFirst,
        },
        name: name.to_string(),
        source: "generated by the test suite".to_string(),
    }
}

/// The cells the engine runs, each with its options.
pub fn all_cells() -> [Cell; 5] {
    [
        Cell::SimpleRnn,
        Cell::Lstm {
            input_forget: false,
        },
        Cell::Lstm { input_forget: true },
        Cell::Gru { reset_after: true },
        Cell::Gru { reset_after: false },
    ]
}

/// A varied set of models covering every layer kind and option, each with its window length.
pub fn sample_models(seed: u64) -> Vec<(ModelSpec, usize)> {
    let mut rng = Rng::new(seed);
    let mut models = Vec::new();
    for (i, cell) in all_cells().into_iter().enumerate() {
        let mut first = RecurrentOptions::new(cell, 5);
        first.peephole = true;
        first.initial_state = i % 2 == 0;
        first.clip = (i == 1).then_some(0.8);
        let mut second = RecurrentOptions::new(cell, 4);
        second.return_sequences = false;
        models.push((
            model(
                &format!("stacked-{i}"),
                3,
                None,
                vec![
                    recurrent(&mut rng, 3, first),
                    recurrent(&mut rng, 5, second),
                    dense(&mut rng, 4, 2, Activation::Softmax),
                ],
            ),
            7,
        ));
        for (j, merge) in [Merge::Concat, Merge::Sum, Merge::Mul, Merge::Ave]
            .into_iter()
            .enumerate()
        {
            let mut bi = RecurrentOptions::new(cell, 3);
            bi.direction = Direction::Bidirectional(merge);
            bi.return_sequences = j % 2 == 0;
            let width = if merge == Merge::Concat { 6 } else { 3 };
            models.push((
                model(
                    &format!("bidirectional-{i}-{j}"),
                    2,
                    Some(6),
                    vec![
                        recurrent(&mut rng, 2, bi),
                        dense(&mut rng, width, 2, Activation::Tanh),
                    ],
                ),
                6,
            ));
        }
        let mut reverse = RecurrentOptions::new(cell, 4);
        reverse.direction = Direction::Reverse;
        models.push((
            model("reverse", 3, None, vec![recurrent(&mut rng, 3, reverse)]),
            5,
        ));
    }
    for activation in [Activation::Relu, Activation::Linear] {
        let mut o = RecurrentOptions::new(Cell::SimpleRnn, 2);
        o.activation = activation;
        models.push((
            model(
                "kpi-seed",
                3,
                Some(5),
                vec![recurrent(&mut rng, 3, o), Layer::Crop { start: 3, end: 0 }],
            ),
            5,
        ));
    }
    let mut o = RecurrentOptions::new(Cell::Gru { reset_after: true }, 4);
    o.return_sequences = true;
    models.push((
        model(
            "keep-last-time-distributed",
            3,
            None,
            vec![
                recurrent(&mut rng, 3, o),
                Layer::KeepLast { steps: 3 },
                dense(&mut rng, 4, 2, Activation::Sigmoid),
            ],
        ),
        8,
    ));
    models.push((
        model(
            "crop-both-ends",
            2,
            Some(8),
            vec![
                recurrent(
                    &mut rng,
                    2,
                    RecurrentOptions::new(
                        Cell::Lstm {
                            input_forget: false,
                        },
                        3,
                    ),
                ),
                Layer::Crop { start: 1, end: 2 },
                dense(&mut rng, 3, 1, Activation::Relu),
            ],
        ),
        8,
    ));
    let mut tokens = model(
        "embedding",
        1,
        None,
        vec![
            Layer::Embedding(Embedding {
                table: rng.matrix(11, 4),
            }),
            recurrent(&mut rng, 4, {
                let mut o = RecurrentOptions::new(
                    Cell::Lstm {
                        input_forget: false,
                    },
                    3,
                );
                o.return_sequences = false;
                o
            }),
            dense(&mut rng, 3, 1, Activation::Sigmoid),
        ],
    );
    tokens.input.kind = InputKind::Tokens;
    models.push((tokens, 6));
    models
}
