//! PDF text.
//!
//! `pdf-extract` (on `lopdf`) is the most complete pure-Rust text extractor (font encodings,
//! `ToUnicode` maps, Type 1 and CFF fonts), but it was written for trusted files: it `unwrap`s
//! freely and recurses without bounds. It runs isolated (see the `isolate` module), and here:
//!
//! - the documents that would recurse forever, which no stack survives (a stack overflow aborts
//!   the process), are refused before parsing ([`preflight`]), and form nesting is capped;
//! - the text is counted as it is produced, so a document that expands to gigabytes (nested forms
//!   drawn many times) stops at the size limit instead of exhausting memory;
//! - the output device checks the isolation's stop flag on every character, so an overrun that is
//!   producing text ends soon after its time-out.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use domain::ports::ExtractError;
use pdf_extract::content::Content;
use pdf_extract::{
    Dictionary, Document, MediaBox, Object, ObjectId, OutputDev, OutputError, Stream, Transform,
};

use crate::text;

/// Deepest page tree accepted (real files have a handful of levels).
const MAX_PAGE_TREE_DEPTH: usize = 256;
/// Deepest nesting of form XObjects accepted; each level is one `pdf-extract` recursion.
const MAX_FORM_DEPTH: usize = 64;
/// Distinct (form, resources) pairs the preflight explores before giving up on a document.
const MAX_FORM_VISITS: usize = 20_000;

/// The text of every page, pages separated by a blank line, or why there is none. Runs on a parse
/// thread. `budget` bounds the text produced, in bytes; `cancel` stops the work early.
pub(crate) fn extract(
    bytes: &[u8],
    budget: usize,
    cancel: &AtomicBool,
) -> Result<String, ExtractError> {
    let mut doc = Document::load_mem(bytes).map_err(corrupt)?;
    if doc.is_encrypted() {
        // Many PDFs are "encrypted" with an empty user password only to set permissions.
        doc.decrypt("").map_err(|_| {
            ExtractError::Corrupt("the PDF is encrypted and needs a password".to_owned())
        })?;
    }
    preflight(&doc, cancel)?;

    let mut out = TextOutput::new(budget, cancel);
    let result = pdf_extract::output_doc(&doc, &mut out);
    match out.stop {
        Some(Stop::Cancelled) => Err(ExtractError::Internal(
            "PDF extraction was abandoned".to_owned(),
        )),
        Some(Stop::TooLarge) => Err(text::too_large(budget)),
        None => result.map(|()| out.text).map_err(corrupt),
    }
}

fn corrupt(e: impl fmt::Display) -> ExtractError {
    ExtractError::Corrupt(e.to_string())
}

#[derive(Clone, Copy, Debug)]
enum Stop {
    Cancelled,
    TooLarge,
}

/// Plain text from the characters `pdf-extract` draws. The spacing heuristics are those of its
/// `PlainTextOutput` (a space where the pen jumps right, a newline where it moves down); added here
/// are a blank line between pages (its output runs the last word of a page into the first of the
/// next), a byte budget, and the stop flag. Returning an error from the output device is the only
/// way to end `output_doc` early.
struct TextOutput<'a> {
    text: String,
    left: usize,
    cancel: &'a AtomicBool,
    stop: Option<Stop>,
    page_height: f64,
    last_end: f64,
    last_y: f64,
    word_start: bool,
    /// No character on this page yet: the page break is all the separation needed.
    page_start: bool,
}

impl<'a> TextOutput<'a> {
    fn new(budget: usize, cancel: &'a AtomicBool) -> Self {
        Self {
            text: String::new(),
            left: budget,
            cancel,
            stop: None,
            page_height: 0.0,
            last_end: f64::INFINITY,
            last_y: 0.0,
            word_start: false,
            page_start: true,
        }
    }

    fn write(&mut self, s: &str) -> Result<(), OutputError> {
        if self.cancel.load(Ordering::Relaxed) {
            self.stop = Some(Stop::Cancelled);
            return Err(OutputError::FormatError(fmt::Error));
        }
        match self.left.checked_sub(s.len()) {
            Some(left) => {
                self.left = left;
                self.text.push_str(s);
                Ok(())
            }
            None => {
                self.stop = Some(Stop::TooLarge);
                Err(OutputError::FormatError(fmt::Error))
            }
        }
    }
}

impl OutputDev for TextOutput<'_> {
    fn begin_page(
        &mut self,
        _page_num: u32,
        media_box: &MediaBox,
        _art_box: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), OutputError> {
        if !self.text.is_empty() {
            self.write("\n\n")?;
        }
        self.page_height = media_box.ury - media_box.lly;
        self.last_end = f64::INFINITY;
        self.last_y = 0.0;
        self.word_start = false;
        self.page_start = true;
        Ok(())
    }

    fn end_page(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn output_character(
        &mut self,
        trm: &Transform,
        width: f64,
        _spacing: f64,
        font_size: f64,
        char: &str,
    ) -> Result<(), OutputError> {
        // Text space to page space with y pointing down, as pdf-extract does.
        let (x, y) = (trm.m31, self.page_height - trm.m32);
        // The side of the square with the area of the transformed font-size box.
        let size_x = font_size * (trm.m11 + trm.m21);
        let size_y = font_size * (trm.m12 + trm.m22);
        let size = (size_x * size_y).sqrt();
        if self.word_start && !self.page_start {
            let moved_down = (y - self.last_y).abs();
            if moved_down > size * 1.5 {
                self.write("\n")?;
            }
            if x < self.last_end && moved_down > size * 0.5 {
                self.write("\n")?;
            }
            if x > self.last_end + size * 0.1 {
                self.write(" ")?;
            }
        }
        self.write(char)?;
        self.word_start = false;
        self.page_start = false;
        self.last_y = y;
        self.last_end = x + width * size;
        Ok(())
    }

    fn begin_word(&mut self) -> Result<(), OutputError> {
        self.word_start = true;
        Ok(())
    }

    fn end_word(&mut self) -> Result<(), OutputError> {
        Ok(())
    }

    fn end_line(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}

/// Refuses the documents that would send `pdf-extract` into unbounded recursion, which no stack
/// survives: a cycle in a page's `/Parent` chain (it climbs the chain looking for inherited
/// `/Resources` and `/MediaBox`), and form XObjects that draw themselves, directly or through
/// others (it recurses into every `Do`). Name resolution below mirrors `pdf-extract`'s.
fn preflight(doc: &Document, cancel: &AtomicBool) -> Result<(), ExtractError> {
    let empty = Dictionary::new();
    let mut forms = FormWalk {
        doc,
        cancel,
        path: Vec::new(),
        heights: HashMap::new(),
    };
    for page_id in doc.get_pages().into_values() {
        check_parent_chain(doc, page_id)?;
        let Ok(page) = doc.get_dictionary(page_id) else {
            continue;
        };
        let resources = inherited_dict(doc, page, b"Resources").unwrap_or(&empty);
        let Ok(content) = doc.get_page_content(page_id) else {
            continue;
        };
        forms.height(&content, resources, 0)?;
    }
    Ok(())
}

fn check_parent_chain(doc: &Document, page_id: ObjectId) -> Result<(), ExtractError> {
    let mut seen = HashSet::new();
    let mut id = page_id;
    loop {
        if !seen.insert(id) {
            return Err(ExtractError::Corrupt(
                "the PDF page tree has a cycle".to_owned(),
            ));
        }
        if seen.len() > MAX_PAGE_TREE_DEPTH {
            return Err(ExtractError::Corrupt(
                "the PDF page tree is too deep".to_owned(),
            ));
        }
        let parent = doc
            .get_dictionary(id)
            .and_then(|dict| dict.get(b"Parent"))
            .and_then(Object::as_reference);
        match parent {
            Ok(parent) => id = parent,
            Err(_) => return Ok(()),
        }
    }
}

/// `dict[key]` as a dictionary, following one reference, climbing `/Parent` when absent (the
/// chain was checked for cycles first).
fn inherited_dict<'a>(
    doc: &'a Document,
    dict: &'a Dictionary,
    key: &[u8],
) -> Option<&'a Dictionary> {
    let mut dict = dict;
    for _ in 0..MAX_PAGE_TREE_DEPTH {
        if let Some(found) = entry(doc, dict, key).and_then(|o| o.as_dict().ok()) {
            return Some(found);
        }
        let parent = dict.get(b"Parent").and_then(Object::as_reference).ok()?;
        dict = doc.get_dictionary(parent).ok()?;
    }
    None
}

fn entry<'a>(doc: &'a Document, dict: &'a Dictionary, key: &[u8]) -> Option<&'a Object> {
    let object = dict.get(key).ok()?;
    match object {
        Object::Reference(id) => doc.get_object(*id).ok(),
        _ => Some(object),
    }
}

/// Depth-first walk of the `Do` graph. A state is a (form stream, resources) pair, identified by
/// address: `pdf-extract` resolves the same way whatever the object numbers. `heights` memoises
/// finished states with the nesting they add, so shared forms are walked once and the depth check
/// still sees the deepest path.
struct FormWalk<'a> {
    doc: &'a Document,
    cancel: &'a AtomicBool,
    /// Form streams being drawn, outermost first.
    path: Vec<usize>,
    heights: HashMap<(usize, usize), usize>,
}

impl<'a> FormWalk<'a> {
    /// How many form levels drawing `content` at `depth` adds below it.
    fn height(
        &mut self,
        content: &[u8],
        resources: &'a Dictionary,
        depth: usize,
    ) -> Result<usize, ExtractError> {
        let Ok(content) = Content::decode(content) else {
            // pdf-extract fails on it too, with a panic that becomes Corrupt.
            return Ok(0);
        };
        let mut height = 0;
        for operation in &content.operations {
            if operation.operator != "Do" {
                continue;
            }
            if self.cancel.load(Ordering::Relaxed) {
                return Err(ExtractError::Internal(
                    "PDF extraction was abandoned".to_owned(),
                ));
            }
            let Some(form) = self.resolve(resources, operation.operands.first()) else {
                continue;
            };
            let form_resources = entry(self.doc, &form.dict, b"Resources")
                .and_then(|o| o.as_dict().ok())
                .unwrap_or(resources);
            let form_key = std::ptr::from_ref(form) as usize;
            let state = (form_key, std::ptr::from_ref(form_resources) as usize);
            if self.path.contains(&form_key) {
                return Err(ExtractError::Corrupt(
                    "a PDF form XObject draws itself".to_owned(),
                ));
            }
            let below = match self.heights.get(&state) {
                Some(&h) => h,
                None => {
                    if depth + 1 > MAX_FORM_DEPTH {
                        return Err(too_deep());
                    }
                    if self.heights.len() >= MAX_FORM_VISITS {
                        return Err(ExtractError::Corrupt(
                            "the PDF has too many nested form XObjects".to_owned(),
                        ));
                    }
                    self.path.push(form_key);
                    let h = 1 + self.height(&stream_content(form), form_resources, depth + 1)?;
                    self.path.pop();
                    self.heights.insert(state, h);
                    h
                }
            };
            if depth + below > MAX_FORM_DEPTH {
                return Err(too_deep());
            }
            height = height.max(below);
        }
        Ok(height)
    }

    /// `resources /XObject /name`, as `pdf-extract` looks it up for `Do`.
    fn resolve(&self, resources: &'a Dictionary, name: Option<&Object>) -> Option<&'a Stream> {
        let name = name?.as_name().ok()?;
        let xobjects = entry(self.doc, resources, b"XObject")?.as_dict().ok()?;
        entry(self.doc, xobjects, name)?.as_stream().ok()
    }
}

fn too_deep() -> ExtractError {
    ExtractError::Corrupt("the PDF nests form XObjects too deeply".to_owned())
}

/// A stream's content as `pdf-extract` reads it: decompressed when its filters allow.
fn stream_content(stream: &Stream) -> Vec<u8> {
    if stream.filters().is_ok() {
        stream
            .decompressed_content()
            .unwrap_or_else(|_| stream.content.clone())
    } else {
        stream.content.clone()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A PDF with the given objects (numbered from 1; object 1 must be the catalog), with a correct
    /// cross-reference table.
    pub(crate) fn build_pdf(objects: &[String]) -> Vec<u8> {
        let mut pdf = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(pdf.len());
            pdf.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
        }
        let xref = pdf.len();
        let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
        for offset in offsets {
            table.push_str(&format!("{offset:010} 00000 n \n"));
        }
        table.push_str(&format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        ));
        pdf.extend_from_slice(table.as_bytes());
        pdf
    }

    fn stream(dict: &str, content: &str) -> String {
        format!(
            "<< {dict} /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        )
    }

    /// One page per text, Helvetica (a standard font: no embedded font program needed).
    pub(crate) fn text_pdf(pages: &[&str]) -> Vec<u8> {
        let n = pages.len();
        // 1 catalog, 2 pages, 3 font, then (page, content) pairs.
        let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
        let mut objects = vec![
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            format!(
                "<< /Type /Pages /Kids [{}] /Count {n} /MediaBox [0 0 612 792] >>",
                kids.join(" ")
            ),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
                .to_owned(),
        ];
        for (i, text) in pages.iter().enumerate() {
            objects.push(format!(
                "<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                5 + 2 * i
            ));
            objects.push(stream(
                "",
                &format!("BT /F1 18 Tf 72 700 Td ({text}) Tj ET"),
            ));
        }
        build_pdf(&objects)
    }

    fn run(bytes: &[u8]) -> Result<String, ExtractError> {
        extract(bytes, usize::MAX, &AtomicBool::new(false))
    }

    #[test]
    fn extracts_words_from_every_page() {
        let text = run(&text_pdf(&["Hello PDF world", "Second page here"])).unwrap();
        assert_eq!(text.trim(), "Hello PDF world\n\nSecond page here");
        for word in ["Hello", "PDF", "world", "Second", "page", "here"] {
            assert!(text.contains(word), "{word:?} missing from {text:?}");
        }
    }

    #[test]
    fn garbage_and_truncation_are_corrupt() {
        assert!(matches!(
            run(b"not a pdf at all"),
            Err(ExtractError::Corrupt(_))
        ));
        let pdf = text_pdf(&["Hello world"]);
        let truncated = &pdf[..pdf.len() / 3];
        assert!(
            matches!(run(truncated), Err(ExtractError::Corrupt(_))),
            "{:?}",
            run(truncated)
        );
        // Pseudo-random bytes behind a valid header.
        let mut state = 0x2545_f491_u32;
        let mut noise = b"%PDF-1.7\n".to_vec();
        noise.extend((0..4096).map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        }));
        assert!(matches!(run(&noise), Err(ExtractError::Corrupt(_))));
    }

    #[test]
    fn self_drawing_form_is_refused_not_a_stack_overflow() {
        // The form has no /Resources, so it draws with the page's, where /X1 is itself.
        let pdf = build_pdf(&[
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
             /Resources << /XObject << /X1 5 0 R >> >> /Contents 4 0 R >>"
                .to_owned(),
            stream("", "/X1 Do"),
            stream("/Type /XObject /Subtype /Form /BBox [0 0 10 10]", "/X1 Do"),
        ]);
        assert_eq!(
            run(&pdf),
            Err(ExtractError::Corrupt(
                "a PDF form XObject draws itself".to_owned()
            ))
        );
    }

    #[test]
    fn parent_cycle_is_refused_not_a_stack_overflow() {
        // No /MediaBox anywhere, and the page's parent's parent is the page.
        let pdf = build_pdf(&[
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 /Parent 3 0 R >>".to_owned(),
            "<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>".to_owned(),
            stream("", "BT ET"),
        ]);
        assert!(
            matches!(run(&pdf), Err(ExtractError::Corrupt(_))),
            "{:?}",
            run(&pdf)
        );
    }

    #[test]
    fn text_budget_stops_extraction() {
        let pdf = text_pdf(&["Hello PDF world"]);
        assert_eq!(
            extract(&pdf, 5, &AtomicBool::new(false)),
            Err(text::too_large(5))
        );
    }

    #[test]
    fn raised_flag_abandons_extraction() {
        let pdf = text_pdf(&["Hello PDF world"]);
        assert!(matches!(
            extract(&pdf, usize::MAX, &AtomicBool::new(true)),
            Err(ExtractError::Internal(_))
        ));
    }
}
