//! Citations in an answer: the sources were put in the prompt numbered 1..n, and the model cites
//! them with markers such as `[2]` or `[1, 3]`. [`cite`] turns an answer into the answer as
//! stored and one citation per marker occurrence:
//! - a list marker (`[1, 3]`, `[1,3]`) is written as adjacent single markers (`[1][3]`), so that
//!   each citation has offsets of its own;
//! - a number that matches no source is removed, and with it a marker left empty (and the space
//!   before it), so that nothing in a stored answer points nowhere;
//! - offsets are in Unicode code points of the stored answer, end exclusive.
//!
//! Anything else in brackets (`[note]`, `[1.5]`, `[]`, a number too long to be a source) is text
//! and is left as it is.

use crate::ids::{ChunkId, CollectionId, DocumentId};

/// The longest snippet of a cited chunk a citation carries, in characters.
pub const SNIPPET_CHARS: usize = 300;

/// A source as the prompt numbered it.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    /// 1-based, as the prompt shows it.
    pub n: u32,
    pub chunk_id: ChunkId,
    pub document_id: DocumentId,
    pub document_title: String,
    pub collection_id: CollectionId,
    pub text: String,
}

pub use crate::entities::Citation;

/// An answer as stored, with its citations in order of appearance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cited {
    pub answer: String,
    pub citations: Vec<Citation>,
}

/// Source numbers have at most this many digits; longer runs are text (a year, an id).
const MAX_DIGITS: usize = 3;

/// Rewrites `answer`'s markers as described in the module docs and lists the citations.
#[must_use]
pub fn cite(answer: &str, sources: &[Source]) -> Cited {
    // Removing a marker can join its neighbours into a new one (`[[9]1]` becomes `[1]`): pass
    // again until nothing changes. Each pass that changes the text removes a marker or splits
    // a list, so this ends.
    let mut cited = cite_once(answer, sources);
    loop {
        let again = cite_once(&cited.answer, sources);
        if again.answer == cited.answer {
            return again;
        }
        cited = again;
    }
}

fn cite_once(answer: &str, sources: &[Source]) -> Cited {
    let mut out = Cited::default();
    // Code points written so far, kept alongside `out.answer` so offsets cost nothing extra.
    let mut written = 0usize;
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        let (before, from_bracket) = rest.split_at(open);
        let Some((numbers, after)) = marker(from_bracket) else {
            // Not a marker: the bracket is text.
            push(&mut out.answer, &mut written, before);
            push(&mut out.answer, &mut written, "[");
            rest = &from_bracket[1..];
            continue;
        };
        let known: Vec<&Source> = numbers
            .iter()
            .filter_map(|n| sources.iter().find(|s| s.n == *n))
            .collect();
        if known.is_empty() {
            // A marker that points nowhere goes, with the space that led to it.
            let trimmed = if before.ends_with(' ') && !after.starts_with(char::is_alphanumeric) {
                &before[..before.len() - 1]
            } else {
                before
            };
            push(&mut out.answer, &mut written, trimmed);
        } else {
            push(&mut out.answer, &mut written, before);
            for source in known {
                let text = format!("[{}]", source.n);
                let start = written;
                push(&mut out.answer, &mut written, &text);
                out.citations.push(Citation {
                    n: source.n,
                    start,
                    end: written,
                    chunk_id: source.chunk_id,
                    document_id: source.document_id,
                    document_title: source.document_title.clone(),
                    collection_id: source.collection_id,
                    snippet: snippet(&source.text),
                });
            }
        }
        rest = after;
    }
    push(&mut out.answer, &mut written, rest);
    out
}

fn push(out: &mut String, written: &mut usize, text: &str) {
    out.push_str(text);
    *written += text.chars().count();
}

/// The source numbers of the marker `text` starts with, and the text after it: `[n]` or a list
/// `[n, m, …]` of numbers of 1 to [`MAX_DIGITS`] digits, separated by commas and optional
/// spaces. `None` when `text` does not start with one.
fn marker(text: &str) -> Option<(Vec<u32>, &str)> {
    let close = text.find(']')?;
    let inside = &text[1..close];
    let mut numbers = Vec::new();
    for part in inside.split(',') {
        let part = part.trim_matches(' ');
        let is_number = !part.is_empty()
            && part.len() <= MAX_DIGITS
            && part.bytes().all(|b| b.is_ascii_digit());
        if !is_number {
            return None;
        }
        let n: u32 = part.parse().ok()?;
        if n == 0 {
            return None;
        }
        numbers.push(n);
    }
    Some((numbers, &text[close + 1..]))
}

fn snippet(text: &str) -> String {
    crate::values::truncated(text, SNIPPET_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(count: u32) -> Vec<Source> {
        (1..=count)
            .map(|n| Source {
                n,
                chunk_id: ChunkId::new(),
                document_id: DocumentId::new(),
                document_title: format!("Doc {n}"),
                collection_id: CollectionId::new(),
                text: format!("text of source {n}"),
            })
            .collect()
    }

    /// The stored answer's text at a citation's offsets.
    fn at(cited: &Cited, c: &Citation) -> String {
        cited
            .answer
            .chars()
            .skip(c.start)
            .take(c.end - c.start)
            .collect()
    }

    #[test]
    fn each_marker_occurrence_is_one_citation_at_its_offsets() {
        let s = sources(2);
        let cited = cite("Résumés go to HR [1]. Leave is 25 days [2][1].", &s);
        assert_eq!(
            cited.answer,
            "Résumés go to HR [1]. Leave is 25 days [2][1]."
        );
        let ns: Vec<u32> = cited.citations.iter().map(|c| c.n).collect();
        assert_eq!(ns, [1, 2, 1]);
        for c in &cited.citations {
            assert_eq!(at(&cited, c), format!("[{}]", c.n));
        }
        // Offsets count code points: "Résumés" is 7 of them, 9 bytes.
        assert_eq!(cited.citations[0].start, 17);
        assert_eq!(cited.citations[1].chunk_id, s[1].chunk_id);
    }

    #[test]
    fn lists_become_adjacent_markers() {
        let cited = cite("Both say so [1, 2] and [2,1].", &sources(2));
        assert_eq!(cited.answer, "Both say so [1][2] and [2][1].");
        assert_eq!(cited.citations.len(), 4);
        for c in &cited.citations {
            assert_eq!(at(&cited, c), format!("[{}]", c.n));
        }
    }

    #[test]
    fn markers_that_match_no_source_are_removed() {
        let cited = cite("Paris [7]. Rome [1, 9] and [9]x.", &sources(1));
        assert_eq!(cited.answer, "Paris. Rome [1] and x.");
        assert_eq!(cited.citations.len(), 1);
        assert_eq!(at(&cited, &cited.citations[0]), "[1]");
        assert!(cite("Nothing [1].", &[]).citations.is_empty());
        // A removal that joins its neighbours into a marker: that one is cited too.
        let joined = cite("[[9]1]", &sources(1));
        assert_eq!(joined.answer, "[1]");
        assert_eq!(joined.citations.len(), 1);
    }

    #[test]
    fn other_brackets_are_text() {
        let text = "See [note], [1.5], [], [0], [2026] and [a, 1] or an unclosed [1";
        let cited = cite(text, &sources(3));
        assert_eq!(cited.answer, text);
        assert!(cited.citations.is_empty());
    }

    #[test]
    fn every_stored_marker_is_a_citation_and_every_citation_a_stored_marker() {
        // Every sequence of three fragments: markers known and unknown, lists, lookalikes,
        // multi-byte text and spaces.
        let fragments = [
            "[1]", "[4]", "[2, 4]", "[3,1]", " ", "é ", "[x]", "[", "]", "[0]", "ok.", "[12]", "1]",
        ];
        let s = sources(3);
        for a in fragments {
            for b in fragments {
                for c in fragments {
                    let answer = format!("{a}{b}{c}");
                    let cited = cite(&answer, &s);
                    for citation in &cited.citations {
                        assert_eq!(
                            at(&cited, citation),
                            format!("[{}]", citation.n),
                            "{answer:?}"
                        );
                        assert!((1..=3).contains(&citation.n), "{answer:?}");
                    }
                    // Citing the stored answer again changes nothing: no marker was left out.
                    let again = cite(&cited.answer, &s);
                    assert_eq!(again.answer, cited.answer, "{answer:?}");
                    let offsets = |c: &Cited| {
                        c.citations
                            .iter()
                            .map(|c| (c.n, c.start))
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(offsets(&again), offsets(&cited), "{answer:?}");
                }
            }
        }
    }

    #[test]
    fn snippets_are_bounded_on_a_character_boundary() {
        let mut s = sources(1);
        s[0].text = "é".repeat(SNIPPET_CHARS + 5);
        let cited = cite("[1]", &s);
        let snippet = &cited.citations[0].snippet;
        assert_eq!(snippet.chars().count(), SNIPPET_CHARS + 1);
        assert!(snippet.ends_with('…'));
    }
}
