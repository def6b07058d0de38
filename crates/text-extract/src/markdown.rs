//! Markdown to plain text, keeping the words and the block structure.
//!
//! Link and image destinations are dropped (a URL is noise to an embedding model and to a reader of
//! a cited chunk); link text and image alt text stay. Code blocks stay verbatim. Raw HTML blocks
//! go through the HTML renderer so that their text is kept and their tags are not.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use crate::blocks::{BlockWriter, Gap};
use crate::html;

pub(crate) fn to_text(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let mut out = BlockWriter::new();
    // One entry per open list: the next item number of an ordered list, `None` for bullets.
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut in_code = false;
    let mut raw_html: Option<String> = None;
    let mut first_cell = true;

    for event in Parser::new_ext(markdown, options) {
        // Inside a list, blocks are lines of the list's block, so the list stays one paragraph.
        let block = if lists.is_empty() {
            Gap::Block
        } else {
            Gap::Line
        };
        match event {
            Event::Start(tag) => match tag {
                Tag::Paragraph
                | Tag::Heading { .. }
                | Tag::BlockQuote(_)
                | Tag::FootnoteDefinition(_)
                | Tag::Table(_)
                | Tag::DefinitionList
                | Tag::MetadataBlock(_) => out.gap(block),
                Tag::CodeBlock(_) => {
                    out.gap(block);
                    in_code = true;
                }
                Tag::HtmlBlock => raw_html = Some(String::new()),
                Tag::List(start) => {
                    out.gap(block);
                    lists.push(start);
                }
                Tag::Item => {
                    out.gap(Gap::Line);
                    let indent = "  ".repeat(lists.len().saturating_sub(1));
                    let marker = match lists.last_mut() {
                        Some(Some(n)) => {
                            let marker = format!("{indent}{n}.");
                            *n = n.saturating_add(1);
                            marker
                        }
                        _ => format!("{indent}-"),
                    };
                    out.verbatim(&marker);
                    out.gap(Gap::Space);
                }
                Tag::TableHead | Tag::TableRow => {
                    out.gap(Gap::Line);
                    first_cell = true;
                }
                Tag::TableCell => {
                    if !first_cell {
                        out.gap(Gap::Space);
                        out.verbatim("|");
                        out.gap(Gap::Space);
                    }
                    first_cell = false;
                }
                Tag::DefinitionListTitle | Tag::DefinitionListDefinition => out.gap(Gap::Line),
                Tag::Emphasis
                | Tag::Strong
                | Tag::Strikethrough
                | Tag::Superscript
                | Tag::Subscript
                | Tag::Link { .. }
                | Tag::Image { .. } => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::BlockQuote(_)
                | TagEnd::FootnoteDefinition
                | TagEnd::Table
                | TagEnd::DefinitionList
                | TagEnd::MetadataBlock(_) => out.gap(block),
                TagEnd::CodeBlock => {
                    in_code = false;
                    out.gap(block);
                }
                TagEnd::HtmlBlock => {
                    if let Some(html) = raw_html.take() {
                        out.gap(block);
                        out.verbatim(&html::fragment_to_text(&html));
                        out.gap(block);
                    }
                }
                TagEnd::List(_) => {
                    lists.pop();
                    out.gap(if lists.is_empty() {
                        Gap::Block
                    } else {
                        Gap::Line
                    });
                }
                TagEnd::Item
                | TagEnd::TableHead
                | TagEnd::TableRow
                | TagEnd::DefinitionListTitle
                | TagEnd::DefinitionListDefinition => out.gap(Gap::Line),
                TagEnd::TableCell
                | TagEnd::Emphasis
                | TagEnd::Strong
                | TagEnd::Strikethrough
                | TagEnd::Superscript
                | TagEnd::Subscript
                | TagEnd::Link
                | TagEnd::Image => {}
            },
            Event::Text(text) => {
                if in_code {
                    out.verbatim(&text);
                } else {
                    out.collapsed(&text);
                }
            }
            Event::Code(text) | Event::InlineMath(text) | Event::DisplayMath(text) => {
                out.collapsed(&text);
            }
            Event::Html(html) => match raw_html.as_mut() {
                Some(buffer) => buffer.push_str(&html),
                None => out.collapsed(&html::fragment_to_text(&html)),
            },
            // Inline HTML events are the tags alone; the text between them comes as Text.
            Event::InlineHtml(_) | Event::FootnoteReference(_) => {}
            Event::SoftBreak => out.gap(Gap::Space),
            Event::HardBreak => out.gap(Gap::Line),
            Event::Rule => out.gap(Gap::Block),
            Event::TaskListMarker(done) => {
                out.verbatim(if done { "[x]" } else { "[ ]" });
                out.gap(Gap::Space);
            }
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_is_kept_as_blocks() {
        let md = "# Title\n\nSome *emphasised* text\nwrapped over lines.\n\n\
                  ## Section\n\n- one\n- two\n  - nested\n- [x] done\n\n\
                  1. first\n2. second\n\n\
                  > quoted\n\n---\n\nafter";
        assert_eq!(
            to_text(md),
            "Title\n\nSome emphasised text wrapped over lines.\n\nSection\n\n\
             - one\n- two\n  - nested\n- [x] done\n\n1. first\n2. second\n\nquoted\n\nafter"
        );
    }

    #[test]
    fn links_and_images_keep_text_only() {
        let md = "See [the docs](https://example.invalid/docs \"title\") and \
                  ![a diagram](img/diagram.png). <https://example.invalid/bare>";
        assert_eq!(
            to_text(md),
            "See the docs and a diagram. https://example.invalid/bare"
        );
    }

    #[test]
    fn code_blocks_stay_verbatim() {
        let md =
            "Intro:\n\n```rust\nfn main() {\n    println!(\"hi\");\n}\n```\n\nand `inline  code`.";
        assert_eq!(
            to_text(md),
            "Intro:\n\nfn main() {\n    println!(\"hi\");\n}\n\nand inline code."
        );
    }

    #[test]
    fn tables_and_raw_html() {
        let md = "| a | b |\n|---|---|\n| 1 | 2 |\n\n<div>\n<script>x()</script>\n<p>raw <b>html</b></p>\n</div>\n\nend";
        assert_eq!(to_text(md), "a | b\n1 | 2\n\nraw html\n\nend");
    }
}
