//! HTML to visible text.
//!
//! `scraper` parses with html5ever (the browsers' algorithm, so broken markup is repaired the way a
//! browser would, and entities are decoded) into an `ego-tree` arena. The walk below is iterative
//! and the arena is a flat `Vec`, so deeply nested markup cannot overflow the stack.

use std::borrow::Cow;

use domain::ports::ExtractError;
use ego_tree::iter::Edge;
use encoding_rs::{Encoding, UTF_8};
use scraper::{Html, Node, node::Element};

use crate::blocks::{BlockWriter, Gap};
use crate::text;

/// Elements whose content a reader never sees.
const HIDDEN: &[&str] = &[
    "head", "title", "script", "style", "noscript", "template", "iframe", "object", "embed",
    "canvas", "svg", "math", "audio", "video", "select", "datalist",
];

/// Elements that start and end a paragraph.
const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "caption",
    "center",
    "details",
    "dialog",
    "div",
    "dl",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hgroup",
    "hr",
    "legend",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "ul",
];

/// Elements that start and end a line within a paragraph.
const LINES: &[&str] = &["br", "dd", "dt", "li", "option", "tr"];

/// Bytes as uploaded to text: a byte-order mark wins; then valid UTF-8; then the charset declared
/// in a `<meta>` within the first 1024 bytes (as browsers prescan). Valid UTF-8 is preferred over a
/// declared legacy charset because pages that lie about their charset are mostly UTF-8 ones.
pub(crate) fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, ExtractError> {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        let body = bytes.get(bom_len..).unwrap_or_default();
        if encoding == UTF_8 {
            return text::utf8(bytes).map(Cow::Borrowed);
        }
        return Ok(encoding.decode_without_bom_handling(body).0);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(Cow::Borrowed(text)),
        Err(e) => match declared_charset(bytes) {
            Some(encoding) => Ok(encoding.decode_without_bom_handling(bytes).0),
            None => Err(ExtractError::InvalidUtf8(e.valid_up_to())),
        },
    }
}

/// The legacy (non-UTF-8, byte-oriented) charset a `<meta charset>` or `http-equiv` declares.
fn declared_charset(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = bytes.get(..1024).unwrap_or(bytes).to_ascii_lowercase();
    let needle = b"charset=";
    let at = head.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let rest = head.get(at..)?;
    let rest = rest
        .iter()
        .position(|b| !matches!(b, b'"' | b'\'' | b' ' | b'\t'))
        .and_then(|skip| rest.get(skip..))?;
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')))
        .unwrap_or(rest.len());
    let encoding = Encoding::for_label(rest.get(..end)?)?;
    // A document that declares UTF-8 (or UTF-16, which browsers read as UTF-8 here) but is not
    // valid UTF-8 is reported as such rather than guessed at.
    (encoding.is_ascii_compatible() && encoding != UTF_8).then_some(encoding)
}

/// A whole document's visible text.
pub(crate) fn document_to_text(html: &str) -> String {
    visible_text(&Html::parse_document(html))
}

/// The visible text of a fragment (raw HTML blocks inside Markdown).
pub(crate) fn fragment_to_text(html: &str) -> String {
    visible_text(&Html::parse_fragment(html))
}

fn visible_text(html: &Html) -> String {
    let mut out = BlockWriter::new();
    let mut hidden_depth = 0usize;
    let mut pre_depth = 0usize;
    let mut list_items = 0usize;
    // One flag per open table row: whether the next cell is the row's first.
    let mut rows: Vec<bool> = Vec::new();

    for edge in html.tree.root().traverse() {
        match edge {
            Edge::Open(node) => match node.value() {
                Node::Element(el) => {
                    if is_hidden(el) {
                        hidden_depth += 1;
                    }
                    if hidden_depth > 0 {
                        continue;
                    }
                    let name = el.name();
                    if name == "pre" {
                        pre_depth += 1;
                    }
                    if name == "tr" {
                        rows.push(true);
                    }
                    let in_list = list_items > 0;
                    if name == "li" {
                        list_items += 1;
                    }
                    let row = match name {
                        "td" | "th" => rows.last_mut(),
                        _ => None,
                    };
                    if let Some(first_cell) = row {
                        if !*first_cell {
                            out.gap(Gap::Space);
                            out.verbatim("|");
                            out.gap(Gap::Space);
                        }
                        *first_cell = false;
                    }
                    open_or_close(&mut out, name, in_list);
                }
                Node::Text(t) if hidden_depth == 0 => {
                    if pre_depth > 0 {
                        out.verbatim(t);
                    } else {
                        out.collapsed(t);
                    }
                }
                _ => {}
            },
            Edge::Close(node) => {
                if let Node::Element(el) = node.value() {
                    if hidden_depth == 0 {
                        let name = el.name();
                        if name == "pre" {
                            pre_depth = pre_depth.saturating_sub(1);
                        }
                        if name == "tr" {
                            rows.pop();
                        }
                        if name == "li" {
                            list_items = list_items.saturating_sub(1);
                        }
                        open_or_close(&mut out, name, list_items > 0);
                    }
                    if is_hidden(el) {
                        hidden_depth = hidden_depth.saturating_sub(1);
                    }
                }
            }
        }
    }
    out.finish()
}

/// `in_list`: inside a list item, where a nested list stays part of the outer list's paragraph.
fn open_or_close(out: &mut BlockWriter, name: &str, in_list: bool) {
    if in_list && matches!(name, "ul" | "ol" | "dl") {
        out.gap(Gap::Line);
    } else if BLOCKS.contains(&name) {
        out.gap(Gap::Block);
    } else if LINES.contains(&name) {
        out.gap(Gap::Line);
    } else if matches!(name, "td" | "th" | "img" | "input" | "button") {
        out.gap(Gap::Space);
    }
}

/// Hidden by its kind, by the `hidden` attribute, or by an inline `display: none`.
fn is_hidden(el: &Element) -> bool {
    HIDDEN.contains(&el.name())
        || el.attr("hidden").is_some()
        || el.attr("aria-hidden") == Some("true")
        || el.attr("style").is_some_and(|style| {
            let style: String = style
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_ascii_lowercase();
            style.contains("display:none") || style.contains("visibility:hidden")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_styles_and_head_are_dropped() {
        let html = r#"<!doctype html><html><head><title>T</title><style>p{color:red}</style>
            <script>var secret = "nope";</script></head>
            <body><noscript>enable js</noscript><template><p>tmpl</p></template>
            <h1>Heading</h1><p>First   paragraph
            with <b>bold</b>&nbsp;and &amp; entities &lt;tag&gt;.</p>
            <div hidden>invisible</div><span style="display: none">gone</span>
            <script>alert(1)</script><p>Second</p></body></html>"#;
        let text = document_to_text(html);
        assert_eq!(
            text,
            "Heading\n\nFirst paragraph with bold and & entities <tag>.\n\nSecond"
        );
    }

    #[test]
    fn lists_tables_breaks_and_pre() {
        let html = "<ul><li>one</li><li>two<br>lines<ol><li>nested</li></ol></li></ul>\
                    <table><tr><th>Name</th><th>Age</th></tr><tr><td>Ann</td><td>30</td></tr></table>\
                    <pre>  keep\n    this</pre>after";
        assert_eq!(
            document_to_text(html),
            "one\ntwo\nlines\nnested\n\nName | Age\nAnn | 30\n\n  keep\n    this\n\nafter"
        );
    }

    #[test]
    fn inline_markup_does_not_split_words() {
        assert_eq!(
            document_to_text("<p>un<i>believ</i>able</p>"),
            "unbelievable"
        );
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        // Parse time is quadratic in depth (html5ever); the extractor's time limit covers deeper.
        let html = "<div>".repeat(5_000) + "deep" + &"</div>".repeat(5_000);
        assert_eq!(document_to_text(&html), "deep");
    }

    #[test]
    fn charset_decoding() {
        let latin1 = b"<meta charset=\"iso-8859-1\"><p>caf\xE9</p>";
        assert_eq!(document_to_text(&decode(latin1).unwrap()), "caf\u{e9}");
        let http_equiv =
            b"<meta http-equiv='Content-Type' content='text/html; charset=windows-1252'><p>\x93q\x94</p>";
        assert_eq!(
            document_to_text(&decode(http_equiv).unwrap()),
            "\u{201c}q\u{201d}"
        );
        // Declared UTF-8 (or nothing) and invalid: an error, not a guess.
        assert_eq!(
            decode(b"<meta charset=utf-8><p>ab\xFF").unwrap_err(),
            ExtractError::InvalidUtf8(25)
        );
        assert_eq!(decode(b"ab\xFF").unwrap_err(), ExtractError::InvalidUtf8(2));
        // UTF-16 with a BOM.
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("<p>hi</p>".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(document_to_text(&decode(&utf16).unwrap()), "hi");
    }
}
