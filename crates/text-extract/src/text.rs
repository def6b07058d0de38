//! Decoding and clean-up shared by every format.

use domain::ports::ExtractError;

/// Strict UTF-8, without a leading byte-order mark. The error position is counted in the bytes as
/// uploaded (BOM included), so it points at the offending byte of the user's file.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, ExtractError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| ExtractError::InvalidUtf8(e.valid_up_to()))?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// Text over [`crate::ExtractorConfig::max_text_bytes`]: the document's fault, and permanent.
pub(crate) fn too_large(limit: usize) -> ExtractError {
    ExtractError::Corrupt(format!(
        "the document's text is too large (over {limit} bytes)"
    ))
}

/// The last step for every format: line ends become `\n` (CRLF and lone CR alike, so old Mac files
/// split into lines too), control characters other than `\n` and `\t` go (PostgreSQL `text` cannot
/// hold U+0000, and the others are noise to a tokenizer), and the ends are trimmed.
pub(crate) fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    let end = out.trim_end().len();
    out.truncate(end);
    let start = out.len() - out.trim_start().len();
    out.drain(..start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bom_is_stripped_and_errors_point_into_the_upload() {
        assert_eq!(utf8(b"\xEF\xBB\xBFhello"), Ok("hello"));
        assert_eq!(
            utf8(b"\xEF\xBB\xBFab\xFFc"),
            Err(ExtractError::InvalidUtf8(5))
        );
    }

    #[test]
    fn line_ends_and_controls_are_normalised() {
        assert_eq!(normalize("\r\n a\r\nb\rc\u{0}d\te\u{7}\n\n"), "a\nb\ncd\te");
    }
}
