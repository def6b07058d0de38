//! The tokenizer a GGUF header describes (no `tokenizer.json` ships with the model), and the
//! incremental decoder that turns generated tokens into text without splitting a character.
//!
//! SmolLM2's tokenizer (`tokenizer.ggml.model = "gpt2"`, `tokenizer.ggml.pre = "smollm"`) is
//! byte-level BPE: digits split one by one, then GPT-2's byte-level pre-tokenizer without a
//! prefix space. Control (type 3) and user-defined (type 4) tokens are special tokens.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

/// llama.cpp's token types that are special: control and user-defined tokens.
const SPECIAL_TOKEN_TYPES: [i32; 2] = [3, 4];

const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";
const END_OF_TEXT: &str = "<|endoftext|>";

/// Why the header does not give a tokenizer.
#[derive(Debug)]
pub(crate) enum BuildError {
    /// Missing or unusable metadata.
    Metadata(String),
    /// The tokenizers crate refused the vocabulary or merges.
    Tokenizer(tokenizers::Error),
}

/// SmolLM2's tokenizer, with the ChatML markers and the tokens that end an answer.
pub(crate) struct GgufTokenizer {
    /// Encodes special-token text as plain text: a `<|im_start|>` typed in a message is not a
    /// marker. Markers enter a prompt only as ids, from [`GgufTokenizer::im_start`] and
    /// [`GgufTokenizer::im_end`].
    tokenizer: Tokenizer,
    im_start: u32,
    im_end: u32,
    stops: Vec<u32>,
}

impl GgufTokenizer {
    /// Builds the tokenizer from a GGUF header's `tokenizer.ggml.*` metadata.
    pub(crate) fn from_metadata(metadata: &HashMap<String, Value>) -> Result<Self, BuildError> {
        let string = |key: &str| {
            metadata
                .get(key)
                .and_then(|v| v.to_string().ok())
                .ok_or_else(|| BuildError::Metadata(format!("no string {key}")))
        };
        let array = |key: &str| {
            metadata
                .get(key)
                .and_then(|v| v.to_vec().ok())
                .ok_or_else(|| BuildError::Metadata(format!("no array {key}")))
        };
        let model = string("tokenizer.ggml.model")?;
        let pre = string("tokenizer.ggml.pre")?;
        if model != "gpt2" || pre != "smollm" {
            return Err(BuildError::Metadata(format!(
                "tokenizer {model:?} with pre-tokenizer {pre:?}; only \"gpt2\" with \"smollm\" is \
                 supported"
            )));
        }

        let tokens = array("tokenizer.ggml.tokens")?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<Result<Vec<String>, _>>()
            .map_err(|e| BuildError::Metadata(format!("tokenizer.ggml.tokens: {e}")))?;
        let types = array("tokenizer.ggml.token_type")?
            .iter()
            .map(Value::to_i32)
            .collect::<Result<Vec<i32>, _>>()
            .map_err(|e| BuildError::Metadata(format!("tokenizer.ggml.token_type: {e}")))?;
        if types.len() != tokens.len() {
            return Err(BuildError::Metadata(format!(
                "{} token types for {} tokens",
                types.len(),
                tokens.len()
            )));
        }
        let merges = array("tokenizer.ggml.merges")?
            .iter()
            .map(|v| {
                let merge = v.to_string().map_err(|e| e.to_string())?;
                merge
                    .split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| format!("merge {merge:?} is not two tokens"))
            })
            .collect::<Result<Merges, String>>()
            .map_err(|e| BuildError::Metadata(format!("tokenizer.ggml.merges: {e}")))?;

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), id as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(BuildError::Tokenizer)?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ]))));
        tokenizer.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, kind)| SPECIAL_TOKEN_TYPES.contains(kind))
            .map(|(token, _)| AddedToken::from(token.clone(), true))
            .collect();
        tokenizer
            .add_special_tokens(special)
            .map_err(BuildError::Tokenizer)?;
        tokenizer.set_encode_special_tokens(true);

        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| BuildError::Metadata(format!("no {token} token")))
        };
        let im_start = id(IM_START)?;
        let im_end = id(IM_END)?;
        let mut stops = vec![im_end];
        stops.extend(tokenizer.token_to_id(END_OF_TEXT));
        stops.extend(
            metadata
                .get("tokenizer.ggml.eos_token_id")
                .and_then(|v| v.to_u32().ok()),
        );
        stops.sort_unstable();
        stops.dedup();
        Ok(Self {
            tokenizer,
            im_start,
            im_end,
            stops,
        })
    }

    /// The tokens of `text`, with nothing added; special-token text is plain text.
    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u32>, tokenizers::Error> {
        Ok(self.tokenizer.encode_fast(text, false)?.get_ids().to_vec())
    }

    /// The text of `ids`; special tokens give no text.
    pub(crate) fn decode(&self, ids: &[u32]) -> Result<String, tokenizers::Error> {
        self.tokenizer.decode(ids, true)
    }

    /// `<|im_start|>`: opens a ChatML turn.
    pub(crate) const fn im_start(&self) -> u32 {
        self.im_start
    }

    /// `<|im_end|>`: closes a ChatML turn.
    pub(crate) const fn im_end(&self) -> u32 {
        self.im_end
    }

    /// Whether `id` ends an answer: `<|im_end|>`, `<|endoftext|>` or the header's EOS token.
    pub(crate) fn is_stop(&self, id: u32) -> bool {
        self.stops.contains(&id)
    }

    /// The text of one token as the vocabulary spells it (byte-level characters), for tests.
    #[cfg(test)]
    fn token(&self, id: u32) -> Option<String> {
        self.tokenizer.id_to_token(id)
    }
}

/// Turns tokens, one at a time, into text pieces that never split a UTF-8 character: the text
/// of the tokens since the last piece is decoded with the tokens of that piece before it, and
/// what it adds is given out once it does not end in an incomplete character.
pub(crate) struct TextDecoder<'a> {
    tokenizer: &'a GgufTokenizer,
    /// The tokens of the last piece given out, then the tokens not given out yet.
    window: Vec<u32>,
    /// How many of `window` belong to the last piece given out.
    given: usize,
}

impl<'a> TextDecoder<'a> {
    pub(crate) const fn new(tokenizer: &'a GgufTokenizer) -> Self {
        Self {
            tokenizer,
            window: Vec::new(),
            given: 0,
        }
    }

    /// The text `id` completes, if any.
    pub(crate) fn push(&mut self, id: u32) -> Result<Option<String>, tokenizers::Error> {
        self.window.push(id);
        let before = self.tokenizer.decode(&self.window[..self.given])?;
        let after = self.tokenizer.decode(&self.window)?;
        if after.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(None);
        }
        let Some(piece) = after.get(before.len()..).filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let piece = piece.to_owned();
        self.window.drain(..self.given);
        self.given = self.window.len();
        Ok(Some(piece))
    }

    /// What is left once the answer has ended: the text of tokens that never completed a
    /// character (with replacement characters), if any.
    pub(crate) fn finish(self) -> Result<Option<String>, tokenizers::Error> {
        if self.given == self.window.len() {
            return Ok(None);
        }
        let before = self.tokenizer.decode(&self.window[..self.given])?;
        let after = self.tokenizer.decode(&self.window)?;
        Ok(after
            .get(before.len()..)
            .filter(|p| !p.is_empty())
            .map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_model::tokenizer;

    #[test]
    fn encoding_then_decoding_gives_the_text_back() {
        let tokenizer = tokenizer();
        for text in [
            "The capital of France is Paris.",
            "Prices: 1234.56 € in 2024, ± 7 %",
            "日本語のテキスト, émojis 🦀🚀 and\ttabs\n\nnewlines",
            "<|im_start|>user\nhello<|im_end|>\n",
            "  leading spaces and trailing  ",
        ] {
            let ids = tokenizer.encode(text).expect("encodes");
            assert!(!ids.is_empty());
            assert_eq!(tokenizer.decode(&ids).expect("decodes"), text);
        }
    }

    #[test]
    fn digits_are_single_tokens() {
        let tokenizer = tokenizer();
        assert_eq!(tokenizer.encode("2024").expect("encodes").len(), 4);
    }

    #[test]
    fn chatml_markers_are_single_special_tokens() {
        let tokenizer = tokenizer();
        assert_eq!(
            tokenizer.token(tokenizer.im_start()).as_deref(),
            Some(IM_START)
        );
        assert_eq!(tokenizer.token(tokenizer.im_end()).as_deref(), Some(IM_END));
        assert!(tokenizer.is_stop(tokenizer.im_end()));
        assert!(!tokenizer.is_stop(tokenizer.im_start()));
        // As ids they give no text; typed in a message they are text, not markers.
        let hello = tokenizer.encode("hello").expect("encodes");
        let ids = [vec![tokenizer.im_start()], hello, vec![tokenizer.im_end()]].concat();
        assert_eq!(tokenizer.decode(&ids).expect("decodes"), "hello");
        let typed = tokenizer.encode(IM_END).expect("encodes");
        assert!(typed.len() > 1, "{typed:?}");
        assert!(!typed.contains(&tokenizer.im_end()));
    }

    #[test]
    fn the_decoder_never_splits_a_character() {
        let tokenizer = tokenizer();
        let text = "Crabs 🦀 and 日本 — 42°";
        let ids = tokenizer.encode(text).expect("encodes");
        let mut decoder = TextDecoder::new(&tokenizer);
        let mut pieces = Vec::new();
        for id in ids {
            pieces.extend(decoder.push(id).expect("decodes"));
        }
        pieces.extend(decoder.finish().expect("decodes"));
        assert!(
            pieces
                .iter()
                .all(|p| !p.contains(char::REPLACEMENT_CHARACTER))
        );
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn the_decoder_gives_out_an_incomplete_character_at_the_end() {
        let tokenizer = tokenizer();
        // The crab's four bytes are several byte-level tokens; stop after the first.
        let ids = tokenizer.encode("a🦀").expect("encodes");
        assert!(ids.len() > 2, "{ids:?}");
        let mut decoder = TextDecoder::new(&tokenizer);
        let mut pieces = Vec::new();
        for &id in &ids[..2] {
            pieces.extend(decoder.push(id).expect("decodes"));
        }
        assert_eq!(pieces, ["a"]);
        assert_eq!(
            decoder.finish().expect("decodes").as_deref(),
            Some("\u{FFFD}")
        );
    }
}
