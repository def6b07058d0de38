//! A plain-text writer shared by the Markdown and HTML renderers.
//!
//! Both formats describe layout with markup rather than with the whitespace in the source, so the
//! renderers say what separates the next piece of text from the last one ([`Gap`]) and this writer
//! decides what to emit. The output has blocks separated by one blank line and lines inside a block
//! separated by one newline: the boundaries `text-splitter` ranks as paragraph and line.

/// What separates the next piece of text from the previous one. Ordered by strength: when several
/// are requested before the next text, the strongest wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Gap {
    None,
    /// A single space (between words, table cells, list markers and their text).
    Space,
    /// A newline (list items, table rows, `<br>`).
    Line,
    /// A blank line (paragraphs, headings, code blocks, lists as a whole).
    Block,
}

#[derive(Debug)]
pub(crate) struct BlockWriter {
    out: String,
    gap: Gap,
}

impl BlockWriter {
    pub(crate) fn new() -> Self {
        Self {
            out: String::new(),
            gap: Gap::None,
        }
    }

    /// Asks for at least `gap` before the next text; nothing is emitted at the very start.
    pub(crate) fn gap(&mut self, gap: Gap) {
        self.gap = self.gap.max(gap);
    }

    /// Text whose whitespace runs are source formatting (HTML text nodes, Markdown inline text):
    /// each run becomes one space.
    pub(crate) fn collapsed(&mut self, text: &str) {
        if text.starts_with(char::is_whitespace) {
            self.gap(Gap::Space);
        }
        let mut any = false;
        for word in text.split_whitespace() {
            if any {
                self.gap(Gap::Space);
            }
            self.push(word);
            any = true;
        }
        if any && text.ends_with(char::is_whitespace) {
            self.gap(Gap::Space);
        }
    }

    /// Text whose whitespace is content (code blocks, `<pre>`), kept as it is.
    pub(crate) fn verbatim(&mut self, text: &str) {
        if !text.is_empty() {
            self.push(text);
        }
    }

    fn push(&mut self, text: &str) {
        if !self.out.is_empty() {
            match self.gap {
                Gap::None => {}
                Gap::Space => {
                    if !self.out.ends_with(char::is_whitespace) {
                        self.out.push(' ');
                    }
                }
                Gap::Line | Gap::Block => {
                    let kept = self.out.trim_end().len();
                    self.out.truncate(kept);
                    self.out
                        .push_str(if self.gap == Gap::Line { "\n" } else { "\n\n" });
                }
            }
        }
        self.gap = Gap::None;
        self.out.push_str(text);
    }

    /// The text, without leading or trailing whitespace.
    pub(crate) fn finish(self) -> String {
        let mut out = self.out;
        let kept = out.trim_end().len();
        out.truncate(kept);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strongest_gap_wins_and_nothing_leads() {
        let mut w = BlockWriter::new();
        w.gap(Gap::Block);
        w.collapsed("  one \n two ");
        w.gap(Gap::Line);
        w.gap(Gap::Block);
        w.gap(Gap::Space);
        w.collapsed("three");
        w.gap(Gap::Line);
        w.verbatim("  code\n    indented\n");
        w.gap(Gap::Block);
        assert_eq!(w.finish(), "one two\n\nthree\n  code\n    indented");
    }

    #[test]
    fn adjacent_inline_text_is_not_split() {
        let mut w = BlockWriter::new();
        w.collapsed("foo");
        w.collapsed("bar ");
        w.collapsed(" baz");
        assert_eq!(w.finish(), "foobar baz");
    }
}
