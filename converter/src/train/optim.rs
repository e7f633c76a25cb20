//! Optimisation: a small seeded random number generator, Adam, Adagrad, and gradient clipping (by global
//! norm, or element-wise as min-char-rnn does).

/// SplitMix64: a tiny, well-mixed generator; the same seed gives the same stream on every machine.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5EED_7159_0000_0001)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.uniform();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    /// Shuffles in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Adam (Kingma & Ba) with Keras' defaults: β₁ 0.9, β₂ 0.999, ε 1e-7.
#[derive(Clone, Debug)]
pub(crate) struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
    lr: f32,
}

impl Adam {
    /// An optimiser for `n` parameters.
    pub fn new(n: usize, lr: f32) -> Self {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
            lr,
        }
    }

    /// One update of `params` along `grad`.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        const EPS: f32 = 1e-7;
        self.t += 1;
        let c1 = 1.0 - B1.powi(self.t);
        let c2 = 1.0 - B2.powi(self.t);
        let lr = self.lr * c2.sqrt() / c1;
        for ((p, g), (m, v)) in params
            .iter_mut()
            .zip(grad)
            .zip(self.m.iter_mut().zip(self.v.iter_mut()))
        {
            *m = B1 * *m + (1.0 - B1) * g;
            *v = B2 * *v + (1.0 - B2) * g * g;
            *p -= lr * *m / (v.sqrt() + EPS);
        }
    }
}

/// Adagrad as min-char-rnn runs it: `m += g²; p −= lr · g / √(m + 1e-8)`.
#[derive(Clone, Debug)]
pub(crate) struct Adagrad {
    memory: Vec<f32>,
    lr: f32,
}

impl Adagrad {
    /// An optimiser for `n` parameters.
    pub fn new(n: usize, lr: f32) -> Self {
        Adagrad {
            memory: vec![0.0; n],
            lr,
        }
    }

    /// One update of `params` along `grad`.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) {
        for ((p, g), m) in params.iter_mut().zip(grad).zip(self.memory.iter_mut()) {
            *m += g * g;
            *p -= self.lr * g / (*m + 1e-8).sqrt();
        }
    }
}

/// Clamps every gradient element into `[−limit, limit]` (min-char-rnn's `np.clip`; 0 or less: no
/// clipping). Returns how many elements were clamped.
pub(crate) fn clip_elementwise(grad: &mut [f32], limit: f32) -> usize {
    if limit <= 0.0 {
        return 0;
    }
    let mut clamped = 0;
    for g in grad.iter_mut() {
        if g.abs() > limit {
            *g = g.clamp(-limit, limit);
            clamped += 1;
        }
    }
    clamped
}

/// Scales `grad` so its L2 norm is at most `max_norm` (0 or less: no clipping). Returns the norm before.
pub(crate) fn clip_global_norm(grad: &mut [f32], max_norm: f32) -> f32 {
    let norm = grad
        .iter()
        .map(|g| f64::from(*g) * f64::from(*g))
        .sum::<f64>()
        .sqrt() as f32;
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / norm;
        grad.iter_mut().for_each(|g| *g *= scale);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_and_spread() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<f64> = (0..1000).map(|_| a.uniform()).collect();
        assert!(xs.iter().all(|&x| x == b.uniform()));
        let mean = xs.iter().sum::<f64>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05, "{mean}");
        assert_ne!(Rng::new(8).next_u64(), Rng::new(7).next_u64());
    }

    #[test]
    fn adam_minimises_a_quadratic() {
        let mut p = vec![3.0f32, -2.0];
        let mut adam = Adam::new(2, 0.1);
        for _ in 0..500 {
            let g = [2.0 * p[0], 2.0 * (p[1] - 1.0)];
            adam.step(&mut p, &g);
        }
        assert!(p[0].abs() < 1e-2 && (p[1] - 1.0).abs() < 1e-2, "{p:?}");
    }

    #[test]
    fn adagrad_minimises_a_quadratic() {
        let mut p = vec![3.0f32, -2.0];
        let mut adagrad = Adagrad::new(2, 0.5);
        for _ in 0..2000 {
            let g = [2.0 * p[0], 2.0 * (p[1] - 1.0)];
            adagrad.step(&mut p, &g);
        }
        assert!(p[0].abs() < 1e-2 && (p[1] - 1.0).abs() < 1e-2, "{p:?}");
    }

    #[test]
    fn elementwise_clipping_clamps_each_value() {
        let mut g = vec![7.0f32, -6.0, 0.5, -5.0];
        assert_eq!(clip_elementwise(&mut g, 5.0), 2);
        assert_eq!(g, [5.0, -5.0, 0.5, -5.0]);
        assert_eq!(clip_elementwise(&mut g, 0.0), 0);
    }

    #[test]
    fn clipping_scales_to_the_norm() {
        let mut g = vec![3.0f32, 4.0];
        assert_eq!(clip_global_norm(&mut g, 1.0), 5.0);
        assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
        let mut g = vec![0.3f32, 0.4];
        clip_global_norm(&mut g, 1.0);
        assert_eq!(g, [0.3, 0.4]);
    }
}
