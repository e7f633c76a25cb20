//! Vocabulary side files (`tinyrnn import --vocab FILE`), for token models whose file does not carry one.
//!
//! JSON, one of:
//! - an array of strings: Keras `TextVectorization.get_vocabulary()` as saved by
//!   `json.dump(layer.get_vocabulary(), f)`: words, lowercased and stripped of punctuation before splitting
//!   on whitespace (Keras' default `standardize`), the unknown id that of `"[UNK]"` if present;
//! - `{"chars": "…"}`: a character vocabulary, id = position (min-char-rnn's `chars`, in its order);
//! - `{"words": [...], "lowercase": bool, "strip_punctuation": bool, "unknown": id}` (flags default to
//!   `true`, `unknown` to the position of `"[UNK]"`).

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use tinyrnn::format::Splitting;

use crate::spec::TokenVocabulary;

/// Reads a vocabulary side file.
pub fn read(path: &Path) -> Result<TokenVocabulary> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("{} is not a vocabulary file", path.display()))
}

/// Parses the JSON of a vocabulary side file.
pub fn parse(text: &str) -> Result<TokenVocabulary> {
    let value: Value = serde_json::from_str(text).context("not valid JSON")?;
    let words = |list: &Value| -> Result<Vec<String>> {
        let Some(items) = list.as_array() else {
            bail!("expected an array of strings");
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .with_context(|| format!("token {i} is not a string: {v}"))
            })
            .collect()
    };
    let unknown_of = |tokens: &[String]| tokens.iter().position(|t| t == "[UNK]").map(|p| p as u32);
    let vocabulary = match &value {
        Value::Array(_) => {
            let tokens = words(&value)?;
            TokenVocabulary {
                splitting: Splitting::Words {
                    lowercase: true,
                    strip_punctuation: true,
                },
                unknown: unknown_of(&tokens),
                tokens,
            }
        }
        Value::Object(map) => {
            if let Some(chars) = map.get("chars") {
                let chars = chars.as_str().context("\"chars\" must be a string")?;
                TokenVocabulary {
                    splitting: Splitting::Chars,
                    tokens: chars.chars().map(String::from).collect(),
                    unknown: None,
                }
            } else if let Some(list) = map.get("words") {
                let tokens = words(list).context("\"words\"")?;
                let flag = |key: &str| -> Result<bool> {
                    match map.get(key) {
                        None => Ok(true),
                        Some(v) => v
                            .as_bool()
                            .with_context(|| format!("\"{key}\" must be true or false")),
                    }
                };
                let unknown = match map.get("unknown") {
                    None => unknown_of(&tokens),
                    Some(Value::Null) => None,
                    Some(v) => Some(
                        v.as_u64()
                            .and_then(|u| u32::try_from(u).ok())
                            .context("\"unknown\" must be a token id")?,
                    ),
                };
                TokenVocabulary {
                    splitting: Splitting::Words {
                        lowercase: flag("lowercase")?,
                        strip_punctuation: flag("strip_punctuation")?,
                    },
                    tokens,
                    unknown,
                }
            } else {
                bail!("expected an object with \"chars\" or \"words\"");
            }
        }
        _ => bail!("expected an array of words, or an object with \"chars\" or \"words\""),
    };
    ensure!(!vocabulary.tokens.is_empty(), "the vocabulary is empty");
    if let Some(id) = vocabulary.unknown {
        ensure!(
            (id as usize) < vocabulary.tokens.len(),
            "unknown-token id {id} is outside the vocabulary of {}",
            vocabulary.tokens.len()
        );
    }
    Ok(vocabulary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keras_list_is_a_word_vocabulary_with_its_oov() {
        let v = parse(r#"["", "[UNK]", "the", "movie"]"#).unwrap();
        assert_eq!(v.unknown, Some(1));
        assert_eq!(v.tokens.len(), 4);
        assert!(matches!(
            v.splitting,
            Splitting::Words {
                lowercase: true,
                ..
            }
        ));
    }

    #[test]
    fn chars_keep_their_order() {
        let v = parse(r#"{"chars": "ba\n"}"#).unwrap();
        assert_eq!(v.tokens, ["b", "a", "\n"]);
        assert_eq!(v.splitting, Splitting::Chars);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        for (text, wanted) in [
            ("[1, 2]", "token 0 is not a string"),
            ("{}", "\"chars\" or \"words\""),
            (
                r#"{"words": ["a"], "unknown": 3}"#,
                "outside the vocabulary",
            ),
            ("[]", "empty"),
            ("nope", "not valid JSON"),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }
}
