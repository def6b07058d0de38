//! Token counting with OpenAI's own `cl100k_base` encoding (the one of `text-embedding-3-*`,
//! `text-embedding-ada-002` and GPT-3.5/4), from `tiktoken-rs`. Its BPE ranks are compiled into
//! the crate (`include_str!`), so loading it needs neither network nor files at run time.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, OnceLock};

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
    /// Counts are remembered ([`Memo`]): a conversation's history is counted again at every
    /// turn.
    pub(crate) fn count(self, text: &str) -> usize {
        let memo = Memo::shared();
        let key = memo.hasher.hash_one(text);
        if let Some(&known) = memo.lock().get(&key) {
            return known;
        }
        let counted = self.0.encode_ordinary(text).len();
        let mut seen = memo.lock();
        // Bounded: once full it starts again, which costs a count per text, never memory.
        if seen.len() >= MEMO_ENTRIES {
            seen.clear();
        }
        seen.insert(key, counted);
        counted
    }
}

/// How many texts' counts are remembered (about 16 bytes each).
const MEMO_ENTRIES: usize = 16_384;

/// Token counts of recent texts, by a hash of the text. The BPE's regex costs tens of
/// microseconds for a short message and grows with it; the hash, under one. Keyed by a
/// process-random SipHash, so no text can be made to collide with another on purpose, and a
/// chance collision (one in 2⁶⁴ a pair) would only misjudge a budget.
struct Memo {
    hasher: RandomState,
    seen: Mutex<HashMap<u64, usize>>,
}

impl Memo {
    fn shared() -> &'static Self {
        static MEMO: OnceLock<Memo> = OnceLock::new();
        MEMO.get_or_init(|| Self {
            hasher: RandomState::new(),
            seen: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, usize>> {
        // A panic elsewhere while holding it leaves a map that is still a valid memo.
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    #[test]
    fn remembered_counts_are_the_counts() {
        let encoder = Cl100k::load().unwrap();
        let texts: Vec<String> = (0..100)
            .map(|i| format!("message {i}: {}", "word ".repeat(i)))
            .collect();
        let first: Vec<usize> = texts.iter().map(|t| encoder.count(t)).collect();
        let again: Vec<usize> = texts.iter().map(|t| encoder.count(t)).collect();
        assert_eq!(first, again);
        let direct: Vec<usize> = texts
            .iter()
            .map(|t| encoder.0.encode_ordinary(t).len())
            .collect();
        assert_eq!(first, direct);
    }
}
