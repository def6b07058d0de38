//! Token counting with OpenAI's own `cl100k_base` encoding (the one of `text-embedding-3-*`,
//! `text-embedding-ada-002` and GPT-3.5/4), from `tiktoken-rs`. Its BPE ranks are compiled into
//! the crate (`include_str!`), so loading it needs neither network nor files at run time.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

use crate::config::ConfigError;

/// A handle on the process-wide `cl100k_base` encoder (built once: parsing its 100k ranks takes
/// a noticeable fraction of a second, so it happens in constructors, not on the first request).
#[derive(Clone, Copy)]
pub(crate) struct Cl100k(&'static CoreBPE);

impl Cl100k {
    pub(crate) fn load() -> Result<Self, ConfigError> {
        static ENCODER: OnceLock<CoreBPE> = OnceLock::new();
        if let Some(encoder) = ENCODER.get() {
            return Ok(Self(encoder));
        }
        let encoder = tiktoken_rs::cl100k_base().map_err(|error| ConfigError::Init {
            what: "cl100k_base tokenizer",
            source: error.into(),
        })?;
        Ok(Self(ENCODER.get_or_init(|| encoder)))
    }

    /// Tokens of `text`, special-token markers such as `<|endoftext|>` counted as plain text.
    pub(crate) fn count(self, text: &str) -> usize {
        self.0.encode_ordinary(text).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_tiktoken() {
        let encoder = Cl100k::load().unwrap();
        // Reference values from Python's tiktoken, cl100k_base.
        assert_eq!(encoder.count(""), 0);
        assert_eq!(encoder.count("hello world"), 2);
        assert_eq!(encoder.count("tiktoken is great!"), 6);
    }
}
