//! Text in and out of token models, with no allocation: a blob's [`Vocabulary`] turns text into token
//! ids ([`Vocabulary::ids`]) and ids back into text ([`Vocabulary::token`]); a seeded [`Sampler`] draws the
//! next token from a model's output at a temperature; [`generate`] feeds each drawn token back in
//! (one-to-many generation, as a char-RNN does). The same code runs on the host and on a device, so the
//! same seed gives the same text on both.
//!
//! Word splitting follows Keras `TextVectorization` with `split="whitespace"`: lowercase (Unicode, as
//! `tf.strings.lower`), remove ASCII punctuation (Keras' strip regex is exactly the ASCII punctuation set),
//! split on whitespace, drop empty words. Lookups scan the vocabulary: `O(vocabulary × word length)` per
//! word, no index in RAM.

use crate::error::Error;
use crate::format::{InputKind, Layer, Splitting, Vocabulary};
use crate::model::Model;
use crate::runtime::Runtime;

/// Checks a blob's vocabulary against its model: a token model whose embedding has a row for every token
/// (it may have more: Keras sizes an Embedding by `max_tokens`, and the adapted vocabulary can be smaller).
pub(crate) fn check(model: &Model<'_>, vocabulary: &Vocabulary<'_>) -> Result<(), Error> {
    if model.input().kind != InputKind::Tokens {
        return Err(Error::BadVocabulary);
    }
    let rows = match model.layers().next() {
        Some(Layer::Embedding(e)) => e.table.rows,
        _ => return Err(Error::BadVocabulary),
    };
    if vocabulary.is_empty() || vocabulary.len() > rows {
        return Err(Error::BadVocabulary);
    }
    if let Splitting::Words { .. } = vocabulary.splitting {
        if !vocabulary.tokens.is_empty() && !vocabulary.tokens.ends_with('\n') {
            return Err(Error::BadVocabulary);
        }
    }
    match vocabulary.unknown {
        Some(id) if id as usize >= rows => Err(Error::BadVocabulary),
        _ => Ok(()),
    }
}

impl<'a> Vocabulary<'a> {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        match self.splitting {
            Splitting::Chars => self.tokens.chars().count(),
            Splitting::Words { .. } => self.tokens.matches('\n').count(),
        }
    }

    /// Whether the vocabulary has no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The text of token `id`.
    pub fn token(&self, id: u32) -> Option<&'a str> {
        let id = id as usize;
        match self.splitting {
            Splitting::Chars => self
                .tokens
                .char_indices()
                .nth(id)
                .and_then(|(at, c)| self.tokens.get(at..at.checked_add(c.len_utf8())?)),
            Splitting::Words { .. } => lines(self.tokens).nth(id),
        }
    }

    /// The id of a token given exactly as the vocabulary holds it (no standardisation), if present.
    pub fn id(&self, token: &str) -> Option<u32> {
        let position = match self.splitting {
            Splitting::Chars => {
                let mut chars = token.chars();
                let c = chars.next()?;
                if chars.next().is_some() {
                    return None;
                }
                self.tokens.chars().position(|t| t == c)
            }
            Splitting::Words { .. } => lines(self.tokens).position(|t| t == token),
        }?;
        u32::try_from(position).ok()
    }

    /// The token ids of `text`, split and standardised as the vocabulary says. A token not in the
    /// vocabulary becomes the unknown-token id, or [`Error::UnknownToken`] when the model has none.
    pub fn ids<'t>(&self, text: &'t str) -> Ids<'a, 't> {
        Ids {
            vocabulary: *self,
            rest: text,
        }
    }

    /// Looks up one word of text, standardised on the fly.
    fn word_id(&self, word: &str, lowercase: bool, strip: bool) -> Option<u32> {
        let standard = move || {
            word.chars()
                .filter(move |c| !(strip && c.is_ascii_punctuation()))
                .flat_map(move |c| Lowered::new(c, lowercase))
        };
        let position = lines(self.tokens).position(|token| token.chars().eq(standard()))?;
        u32::try_from(position).ok()
    }
}

/// The lines of `tokens`, as `str::split_terminator('\n')` gives them, found byte by byte: the standard
/// splitter keeps a bounds check the optimiser cannot drop (a panic path, see
/// `firmware/check-no-panic.sh`).
fn lines(tokens: &str) -> impl Iterator<Item = &str> {
    let mut rest = tokens;
    core::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let line = match rest.bytes().position(|b| b == b'\n') {
            Some(at) => {
                let line = rest.get(..at).unwrap_or("");
                // `at` indexes a newline byte, so the rest starts at the next character.
                rest = rest.get(at.saturating_add(1)..).unwrap_or("");
                line
            }
            None => core::mem::take(&mut rest),
        };
        Some(line)
    })
}

/// One character, lowercased or not, as an iterator of characters (lowercasing may give several).
enum Lowered {
    Kept(Option<char>),
    Lower(core::char::ToLowercase),
}

impl Lowered {
    fn new(c: char, lowercase: bool) -> Self {
        if lowercase {
            Lowered::Lower(c.to_lowercase())
        } else {
            Lowered::Kept(Some(c))
        }
    }
}

impl Iterator for Lowered {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        match self {
            Lowered::Kept(c) => c.take(),
            Lowered::Lower(l) => l.next(),
        }
    }
}

/// The token ids of a text ([`Vocabulary::ids`]).
#[derive(Clone, Debug)]
pub struct Ids<'a, 't> {
    vocabulary: Vocabulary<'a>,
    rest: &'t str,
}

impl Iterator for Ids<'_, '_> {
    type Item = Result<u32, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let vocabulary = self.vocabulary;
        let unknown = |found: Option<u32>| found.or(vocabulary.unknown).ok_or(Error::UnknownToken);
        match vocabulary.splitting {
            Splitting::Chars => {
                let mut chars = self.rest.chars();
                let c = chars.next()?;
                self.rest = chars.as_str();
                let found = vocabulary.tokens.chars().position(|t| t == c);
                Some(unknown(found.and_then(|p| u32::try_from(p).ok())))
            }
            Splitting::Words {
                lowercase,
                strip_punctuation,
            } => loop {
                let start = self.rest.trim_start_matches(char::is_whitespace);
                if start.is_empty() {
                    self.rest = start;
                    return None;
                }
                let end = start.find(char::is_whitespace).unwrap_or(start.len());
                let (word, rest) = start.split_at_checked(end).unwrap_or((start, ""));
                self.rest = rest;
                // A word of punctuation only is no word once the punctuation is gone.
                let empty = word
                    .chars()
                    .all(|c| strip_punctuation && c.is_ascii_punctuation());
                if empty {
                    continue;
                }
                let found = vocabulary.word_id(word, lowercase, strip_punctuation);
                return Some(unknown(found));
            },
        }
    }
}

/// A seeded random source for sampling (PCG-XSH-RR 32, a fixed, portable sequence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sampler {
    state: u64,
}

const PCG_MULTIPLIER: u64 = 6_364_136_223_846_793_005;
const PCG_INCREMENT: u64 = 1_442_695_040_888_963_407;

impl Sampler {
    /// A sampler whose draws depend only on `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sampler = Sampler { state: 0 };
        sampler.next_u32();
        sampler.state = sampler.state.wrapping_add(seed);
        sampler.next_u32();
        sampler
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(PCG_MULTIPLIER).wrapping_add(PCG_INCREMENT);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        xorshifted.rotate_right((old >> 59) as u32)
    }

    /// A uniform draw from `[0, 1)`, with 24 random bits.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Draws an index with probability `p_i^(1/temperature)`, normalised: temperature 1 samples the model's
    /// distribution, lower sharpens it, and a temperature of 0 (or below) takes the most likely index.
    /// Negative and NaN probabilities count as 0; `None` when no index has a positive weight.
    pub fn sample(&mut self, probabilities: &[f32], temperature: f32) -> Option<usize> {
        if temperature.is_nan() || temperature <= 0.0 {
            return argmax(probabilities);
        }
        let weight = |p: f32| {
            if p > 0.0 {
                libm::expf(libm::logf(p) / temperature)
            } else {
                0.0
            }
        };
        let total: f32 = probabilities.iter().map(|&p| weight(p)).sum();
        if total.is_nan() || total <= 0.0 || total.is_infinite() {
            return argmax(probabilities);
        }
        let target = self.uniform() * total;
        let mut cumulative = 0.0f32;
        let mut last = None;
        for (index, &p) in probabilities.iter().enumerate() {
            let w = weight(p);
            if w > 0.0 {
                cumulative += w;
                last = Some(index);
                if target < cumulative {
                    return Some(index);
                }
            }
        }
        // Rounding can leave the target a hair above the running sum: the last candidate takes it.
        last
    }
}

fn argmax(values: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (index, &v) in values.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((index, v));
        }
    }
    best.map(|(index, _)| index)
}

/// One-to-many generation: feeds the ids of `prime` to a streaming token model whose output is one score
/// per vocabulary entry (a softmax head), then draws `length` tokens with `sampler` at `temperature`,
/// feeding each back in, and passes each drawn token's text to `emit`. `output` holds one step's output
/// ([`Model::step_output_len`] values). The runtime is reset first, so the text depends only on the
/// model, the prime, the seed of `sampler` and the temperature.
pub fn generate(
    runtime: &mut Runtime<'_, '_>,
    output: &mut [f32],
    prime: &str,
    length: usize,
    temperature: f32,
    sampler: &mut Sampler,
    mut emit: impl FnMut(&str),
) -> Result<(), Error> {
    let model = runtime.model();
    let vocabulary = model.vocabulary().ok_or(Error::BadVocabulary)?;
    if model.step_output_len() != vocabulary.len() {
        return Err(Error::OutputLength {
            expected: vocabulary.len(),
            got: model.step_output_len(),
        });
    }
    runtime.reset();
    let mut primed = false;
    for id in vocabulary.ids(prime) {
        runtime.step_token(id?, output)?;
        primed = true;
    }
    if !primed {
        return Err(Error::InputLength {
            expected: 1,
            got: 0,
        });
    }
    for _ in 0..length {
        let id = sampler
            .sample(output, temperature)
            .ok_or(Error::BadVocabulary)?;
        let id = u32::try_from(id).map_err(|_| Error::BadVocabulary)?;
        emit(vocabulary.token(id).ok_or(Error::BadVocabulary)?);
        runtime.step_token(id, output)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(tokens: &str) -> Vocabulary<'_> {
        Vocabulary {
            splitting: Splitting::Words {
                lowercase: true,
                strip_punctuation: true,
            },
            tokens,
            unknown: Some(1),
        }
    }

    #[test]
    fn words_are_standardised_as_keras_does() {
        let v = words("\n[UNK]\nthe\nmovie\nwas\ngreat\ndont\n");
        let ids: heapless::Vec<u32, 16> = v
            .ids("  The MOVIE, was... GREAT!!  I don't know ?! ")
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(&ids[..], &[2, 3, 4, 5, 1, 6, 1]);
        assert_eq!(v.token(5), Some("great"));
        assert_eq!(v.id("movie"), Some(3));
        assert_eq!(v.len(), 7);
    }

    #[test]
    fn unicode_lowercasing_matches() {
        let v = words("\n[UNK]\nétude\n");
        assert_eq!(v.ids("ÉTUDE").next(), Some(Ok(2)));
    }

    #[test]
    fn characters_map_one_to_one_and_unknown_ones_are_errors() {
        let v = Vocabulary {
            splitting: Splitting::Chars,
            tokens: "ab\né",
            unknown: None,
        };
        let ids: heapless::Vec<Result<u32, Error>, 8> = v.ids("é\nbz").collect();
        assert_eq!(&ids[..], &[Ok(3), Ok(2), Ok(1), Err(Error::UnknownToken)]);
        assert_eq!(v.token(3), Some("é"));
        assert_eq!(v.token(4), None);
        assert_eq!(v.len(), 4);
    }

    #[test]
    // 31,000 draws through libm (whose x86 sqrtf is inline assembly) and no unsafe code: not for Miri.
    #[cfg_attr(miri, ignore)]
    fn sampling_follows_the_distribution_and_the_temperature() {
        let p = [0.1f32, 0.6, 0.3];
        let mut sampler = Sampler::new(7);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[sampler.sample(&p, 1.0).unwrap()] += 1;
        }
        // Within 5 standard deviations of the expected counts.
        for (count, prob) in counts.iter().zip(p) {
            let expected = 30_000.0 * prob;
            let sd = libm::sqrtf(30_000.0 * prob * (1.0 - prob));
            assert!((*count as f32 - expected).abs() < 5.0 * sd, "{counts:?}");
        }
        // A low temperature concentrates on the most likely entry; zero takes it outright.
        let mut cold = [0u32; 3];
        for _ in 0..1_000 {
            cold[sampler.sample(&p, 0.1).unwrap()] += 1;
        }
        assert!(cold[1] > 990, "{cold:?}");
        assert_eq!(sampler.sample(&p, 0.0), Some(1));
        assert_eq!(sampler.sample(&[0.0, f32::NAN, -1.0], 1.0), Some(0));
        assert_eq!(sampler.sample(&[], 1.0), None);
    }

    #[test]
    fn the_same_seed_gives_the_same_draws() {
        let (mut a, mut b) = (Sampler::new(42), Sampler::new(42));
        for _ in 0..100 {
            assert_eq!(a.next_u32(), b.next_u32());
        }
        assert_ne!(Sampler::new(1).next_u32(), Sampler::new(2).next_u32());
    }
}
