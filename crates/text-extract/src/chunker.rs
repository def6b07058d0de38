use domain::ports::{Chunker, EmbedError, Embedder, TextChunk};
use text_splitter::{ChunkConfig, TextSplitter, TryChunkSizer};

/// Token-aware chunking with overlap, measured with the embedder's own tokenizer, so that a chunk
/// that fits here fits the model: a character or word estimate would either waste the window or
/// overflow it and get truncated.
///
/// Splitting is `text-splitter`'s: the largest semantic units that fit (runs of blank lines, then
/// lines, sentences, words, graphemes), merged up to the limit, chunks trimmed. It sizes candidate
/// chunks by binary search, so one document costs many `count_tokens` calls (memoised by
/// `text-splitter`); with a local tokenizer that is milliseconds per page.
///
/// The limit is enforced after splitting too: a chunk still above it (possible with tokenizers
/// whose counts are not additive over text) is cut further at character boundaries, never
/// truncated; those cut pieces carry no overlap.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokenChunker;

/// The chunk parameters cannot work: the limit must be positive and larger than the overlap (after
/// capping the limit at the embedder's window). A caller bug, reported through
/// [`EmbedError::Internal`] because the port's error type is the embedder's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot chunk with max_tokens = {max_tokens} and overlap = {overlap}: the limit must be positive and larger than the overlap"
)]
pub struct InvalidChunkParams {
    /// The limit in force: the smaller of the requested one and the embedder's window.
    pub max_tokens: usize,
    /// The requested overlap between consecutive chunks, in tokens.
    pub overlap: usize,
}

impl Chunker for TokenChunker {
    /// `max_tokens` is capped at [`Embedder::max_input_tokens`], so the chunks always fit the
    /// model whatever the caller asks. For all-MiniLM-L6-v2 the window is 256 pieces including
    /// `[CLS]` and `[SEP]`, so at most 254. Text that is empty or only whitespace has no chunks.
    ///
    /// # Errors
    /// The first [`EmbedError`] from `count_tokens`; [`EmbedError::Internal`] wrapping
    /// [`InvalidChunkParams`] for a zero limit or an overlap not below it;
    /// [`EmbedError::TooLong`] when a single character is over the limit by itself, so that no
    /// split can make it fit.
    fn chunk(
        &self,
        text: &str,
        embedder: &dyn Embedder,
        max_tokens: usize,
        overlap: usize,
    ) -> Result<Vec<TextChunk>, EmbedError> {
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let limit = max_tokens.min(embedder.max_input_tokens());
        let invalid = || {
            EmbedError::Internal(Box::new(InvalidChunkParams {
                max_tokens: limit,
                overlap,
            }))
        };
        if limit == 0 || overlap >= limit {
            return Err(invalid());
        }
        let config = ChunkConfig::new(limit)
            .with_overlap(overlap)
            .map_err(|_| invalid())?
            .with_sizer(TokenSizer { embedder });
        let splitter = TextSplitter::new(config);

        let mut chunks = Vec::new();
        for piece in splitter.try_chunks(text) {
            push_fitting(piece?, embedder, limit, &mut chunks)?;
        }
        Ok(chunks)
    }
}

/// `text-splitter`'s sizer, counting in the embedder's tokens. Its error stops the splitting and
/// comes out of `try_chunks`.
struct TokenSizer<'e> {
    embedder: &'e dyn Embedder,
}

impl TryChunkSizer for TokenSizer<'_> {
    type Error = EmbedError;

    fn try_size(&self, chunk: &str) -> Result<usize, EmbedError> {
        self.embedder.count_tokens(chunk)
    }
}

/// Appends `piece` as one chunk when it fits, or as consecutive pieces cut at the longest fitting
/// character prefix (at its last whitespace when it has one) until the rest fits.
fn push_fitting(
    piece: &str,
    embedder: &dyn Embedder,
    limit: usize,
    chunks: &mut Vec<TextChunk>,
) -> Result<(), EmbedError> {
    let mut rest = piece.trim();
    while !rest.is_empty() {
        let tokens = embedder.count_tokens(rest)?;
        if tokens <= limit {
            return push(chunks, rest, tokens);
        }
        let (end, fitted) = longest_fitting_prefix(rest, embedder, limit)?.ok_or_else(|| {
            let first = rest.chars().next().map_or(0, char::len_utf8);
            EmbedError::TooLong {
                index: chunks.len(),
                tokens: embedder.count_tokens(&rest[..first]).unwrap_or(tokens),
                max: limit,
            }
        })?;
        let head = &rest[..end];
        // Prefer ending at a word boundary inside the prefix; recount, as tokenizers need not be
        // monotonic.
        let at_space = head
            .char_indices()
            .skip(1)
            .filter(|(_, c)| c.is_whitespace())
            .map(|(i, _)| i)
            .last();
        let (cut, cut_tokens) = match at_space {
            Some(i) => match embedder.count_tokens(head[..i].trim_end())? {
                n if n <= limit && !head[..i].trim_end().is_empty() => (i, n),
                _ => (end, fitted),
            },
            None => (end, fitted),
        };
        let content = rest[..cut].trim_end();
        let tokens = if content.len() == cut {
            cut_tokens
        } else {
            embedder.count_tokens(content)?
        };
        if tokens > limit {
            return Err(EmbedError::TooLong {
                index: chunks.len(),
                tokens,
                max: limit,
            });
        }
        push(chunks, content, tokens)?;
        rest = rest[cut..].trim_start();
    }
    Ok(())
}

/// The byte end and token count of the longest prefix of `text` (at a character boundary, at
/// least one character) that fits `limit`, by binary search over the prefix length.
fn longest_fitting_prefix(
    text: &str,
    embedder: &dyn Embedder,
    limit: usize,
) -> Result<Option<(usize, usize)>, EmbedError> {
    let ends: Vec<usize> = text
        .char_indices()
        .skip(1)
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let (mut low, mut high) = (0, ends.len());
    let mut best = None;
    while low < high {
        let mid = low + (high - low) / 2;
        let end = ends[mid];
        let tokens = embedder.count_tokens(&text[..end])?;
        if tokens <= limit {
            best = Some((end, tokens));
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    Ok(best)
}

fn push(chunks: &mut Vec<TextChunk>, content: &str, token_count: usize) -> Result<(), EmbedError> {
    let position = u32::try_from(chunks.len())
        .map_err(|_| EmbedError::Internal("a document has more than 2^32 chunks".into()))?;
    chunks.push(TextChunk {
        position,
        content: content.to_owned(),
        token_count,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;

    /// Counts tokens like a toy word-piece model: each whitespace-separated word is one token per
    /// `piece_len` characters (started). With a huge `piece_len` it is a plain word counter.
    struct FakeEmbedder {
        piece_len: usize,
        window: usize,
        fail_on: Option<&'static str>,
    }

    impl FakeEmbedder {
        fn words() -> Self {
            Self {
                piece_len: usize::MAX,
                window: 10_000,
                fail_on: None,
            }
        }
    }

    #[async_trait]
    impl Embedder for FakeEmbedder {
        fn dimensions(&self) -> usize {
            3
        }

        fn max_input_tokens(&self) -> usize {
            self.window
        }

        fn count_tokens(&self, text: &str) -> Result<usize, EmbedError> {
            if self.fail_on.is_some_and(|bad| text.contains(bad)) {
                return Err(EmbedError::Internal("tokenizer exploded".into()));
            }
            Ok(text
                .split_whitespace()
                .map(|w| w.chars().count().div_ceil(self.piece_len))
                .sum())
        }

        async fn embed(&self, _texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            Err(EmbedError::Provider("not in these tests".to_owned()))
        }
    }

    /// Paragraphs of sentences of unique words `w0 w1 …`, so every word's place is known.
    fn document(words: usize) -> String {
        let mut text = String::new();
        for i in 0..words {
            text.push_str(&format!("w{i}"));
            text.push_str(match i % 40 {
                39 => ".\n\n",
                n if n % 8 == 7 => ". ",
                _ => " ",
            });
        }
        text
    }

    fn word_index(word: &str) -> usize {
        word.trim_end_matches('.')
            .trim_start_matches('w')
            .parse()
            .unwrap()
    }

    /// (first, last) word index of each chunk; asserts each chunk is a contiguous run.
    fn spans(chunks: &[TextChunk]) -> Vec<(usize, usize)> {
        chunks
            .iter()
            .map(|c| {
                let idx: Vec<usize> = c.content.split_whitespace().map(word_index).collect();
                for pair in idx.windows(2) {
                    assert_eq!(pair[1], pair[0] + 1, "gap inside {:?}", c.content);
                }
                (idx[0], idx[idx.len() - 1])
            })
            .collect()
    }

    #[test]
    fn chunks_respect_the_limit_count_correctly_and_are_ordered() {
        let embedder = FakeEmbedder::words();
        let chunks = TokenChunker
            .chunk(&document(600), &embedder, 30, 6)
            .unwrap();
        assert!(chunks.len() > 20);
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk.position as usize, i);
            assert!(chunk.token_count <= 30, "{chunk:?}");
            assert_eq!(
                chunk.token_count,
                embedder.count_tokens(&chunk.content).unwrap()
            );
            assert_eq!(chunk.content, chunk.content.trim());
        }
        let spans = spans(&chunks);
        for pair in spans.windows(2) {
            assert!(pair[1].0 > pair[0].0, "out of order: {pair:?}");
        }
    }

    #[test]
    fn consecutive_chunks_overlap_and_together_cover_every_word() {
        let chunks = TokenChunker
            .chunk(&document(600), &FakeEmbedder::words(), 30, 6)
            .unwrap();
        let spans = spans(&chunks);
        assert_eq!(spans[0].0, 0);
        assert_eq!(spans[spans.len() - 1].1, 599);
        for pair in spans.windows(2) {
            let ((_, prev_end), (next_start, _)) = (pair[0], pair[1]);
            // No word skipped between chunks...
            assert!(next_start <= prev_end + 1, "gap between {pair:?}");
            // ...never more overlap than asked for...
            assert!(prev_end + 1 - next_start <= 6, "too much overlap {pair:?}");
            // ...and overlap wherever a paragraph (40 words here, too long for one chunk) had to
            // be cut; text-splitter starts each paragraph afresh.
            if next_start % 40 != 0 {
                assert!(next_start <= prev_end, "no overlap between {pair:?}");
            }
        }
    }

    #[test]
    fn without_overlap_chunks_partition_the_words() {
        let chunks = TokenChunker
            .chunk(&document(300), &FakeEmbedder::words(), 25, 0)
            .unwrap();
        let spans = spans(&chunks);
        let mut next = 0;
        for (start, end) in spans {
            assert_eq!(start, next);
            next = end + 1;
        }
        assert_eq!(next, 300);
    }

    #[test]
    fn a_long_unbroken_token_string_is_split_not_truncated() {
        let embedder = FakeEmbedder {
            piece_len: 4,
            window: 10_000,
            fail_on: None,
        };
        let word: String = ('a'..='z').cycle().take(5_000).collect();
        let text = format!("intro words. {word} outro.");
        let chunks = TokenChunker.chunk(&text, &embedder, 50, 0).unwrap();
        assert!(chunks.iter().all(|c| c.token_count <= 50));
        let joined: String = chunks.iter().map(|c| c.content.as_str()).collect();
        assert_eq!(joined.replace(' ', ""), text.replace(' ', ""));
    }

    #[test]
    fn oversized_pieces_are_cut_by_characters_preferring_spaces() {
        let embedder = FakeEmbedder {
            piece_len: 2,
            window: 10_000,
            fail_on: None,
        };
        let mut chunks = Vec::new();
        push_fitting("abcdefgh ij klmnop", &embedder, 3, &mut chunks).unwrap();
        let contents: Vec<&str> = chunks.iter().map(|c| c.content.as_str()).collect();
        assert_eq!(contents, ["abcdef", "gh ij", "klmnop"]);
        assert!(chunks.iter().all(|c| c.token_count <= 3));
        let positions: Vec<u32> = chunks.iter().map(|c| c.position).collect();
        assert_eq!(positions, [0, 1, 2]);
    }

    #[test]
    fn a_character_over_the_limit_is_an_error_not_a_truncation() {
        struct CharHog;
        #[async_trait]
        impl Embedder for CharHog {
            fn dimensions(&self) -> usize {
                1
            }
            fn max_input_tokens(&self) -> usize {
                100
            }
            fn count_tokens(&self, text: &str) -> Result<usize, EmbedError> {
                Ok(text.chars().map(|c| if c == '∑' { 5 } else { 1 }).sum())
            }
            async fn embed(&self, _: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
                Ok(Vec::new())
            }
        }
        let outcome = TokenChunker.chunk("ab∑cd", &CharHog, 3, 0);
        assert!(
            matches!(
                outcome,
                Err(EmbedError::TooLong {
                    tokens: 5,
                    max: 3,
                    ..
                })
            ),
            "{outcome:?}"
        );
    }

    #[test]
    fn empty_text_has_no_chunks() {
        for text in ["", "   ", "\n\n\t"] {
            assert_eq!(
                TokenChunker
                    .chunk(text, &FakeEmbedder::words(), 10, 2)
                    .unwrap(),
                Vec::new()
            );
        }
    }

    #[test]
    fn short_text_is_one_chunk() {
        let chunks = TokenChunker
            .chunk("  Just a few words.  ", &FakeEmbedder::words(), 254, 32)
            .unwrap();
        assert_eq!(
            chunks,
            [TextChunk {
                position: 0,
                content: "Just a few words.".to_owned(),
                token_count: 4,
            }]
        );
    }

    #[test]
    fn the_limit_is_capped_at_the_model_window() {
        let embedder = FakeEmbedder {
            window: 12,
            ..FakeEmbedder::words()
        };
        let chunks = TokenChunker
            .chunk(&document(100), &embedder, 254, 2)
            .unwrap();
        assert!(chunks.iter().all(|c| c.token_count <= 12));
    }

    #[test]
    fn impossible_parameters_are_refused() {
        for (max, overlap) in [(0, 0), (10, 10), (10, 11)] {
            let err = TokenChunker
                .chunk("some text", &FakeEmbedder::words(), max, overlap)
                .unwrap_err();
            match err {
                EmbedError::Internal(source) => {
                    assert!(source.downcast_ref::<InvalidChunkParams>().is_some());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn tokenizer_errors_come_out() {
        let embedder = FakeEmbedder {
            fail_on: Some("w42"),
            ..FakeEmbedder::words()
        };
        let err = TokenChunker
            .chunk(&document(100), &embedder, 20, 4)
            .unwrap_err();
        assert!(matches!(err, EmbedError::Internal(_)), "{err:?}");
    }
}
