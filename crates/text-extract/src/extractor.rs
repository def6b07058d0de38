use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_trait::async_trait;
use domain::TenantId;
use domain::ports::{ExtractError, TextExtractor};
use domain::values::ContentType;
use tokio::sync::Semaphore;

use crate::{html, isolate, markdown, pdf, text};

/// Limits that keep one hostile or huge document from hurting the worker that ingests it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtractorConfig {
    /// How long one PDF may take before [`ExtractError::TimedOut`], waiting for a free parse
    /// thread included. PDF parse time is not linear in the file's size. Default 30 s.
    pub pdf_timeout: Duration,
    /// The same for HTML and Markdown: html5ever is quadratic in nesting depth, so a small hostile
    /// page can take minutes. Default 10 s.
    pub markup_timeout: Duration,
    /// The largest extracted text accepted, in UTF-8 bytes; larger documents fail with
    /// [`ExtractError::Corrupt`] ("… too large …"). `Corrupt` rather than `Internal` because the
    /// failure is the document's and permanent: retrying cannot help, and the uploader can act on
    /// the message. The domain error has no size variant. Default 10 MiB (a few thousand pages of
    /// prose, already a long embedding job on a CPU).
    pub max_text_bytes: usize,
    /// Parse threads (PDF, HTML, Markdown) alive at once, including ones detached after a time-out
    /// and still running. Bounds the cores that runaway parses can take; at least 1. Default 2.
    pub max_parse_threads: usize,
}

impl Default for ExtractorConfig {
    fn default() -> Self {
        Self {
            pdf_timeout: Duration::from_secs(30),
            markup_timeout: Duration::from_secs(10),
            max_text_bytes: 10 * 1024 * 1024,
            max_parse_threads: 2,
        }
    }
}

/// Plain text, Markdown, HTML and PDF to plain text whose blocks are separated by blank lines.
///
/// Every format ends the same way: line ends become `\n`, control characters other than `\n` and
/// `\t` are removed (PostgreSQL `text` cannot store U+0000), the ends are trimmed, and text that is
/// then empty is [`ExtractError::Empty`]. Plain text is decoded on Tokio's blocking pool; PDF, HTML
/// and Markdown are parsed on dedicated big-stack threads under a time limit (the `isolate`
/// module says why and what a time-out leaves running).
///
/// Clones share the parse thread limit.
#[derive(Clone, Debug)]
pub struct Extractor {
    config: ExtractorConfig,
    parse_slots: Arc<Semaphore>,
}

impl Extractor {
    /// One extractor per process (or clones of it): the parse thread limit is per instance.
    #[must_use]
    pub fn new(config: ExtractorConfig) -> Self {
        let slots = config.max_parse_threads.max(1);
        Self {
            config,
            parse_slots: Arc::new(Semaphore::new(slots)),
        }
    }

    /// The limits in force, for logging at start-up.
    #[must_use]
    pub fn config(&self) -> &ExtractorConfig {
        &self.config
    }
}

impl Default for Extractor {
    fn default() -> Self {
        Self::new(ExtractorConfig::default())
    }
}

#[async_trait]
impl TextExtractor for Extractor {
    /// - `text/plain`: strict UTF-8 (a leading BOM is dropped).
    /// - `text/markdown`: strict UTF-8, rendered to text: link and image URLs dropped, their text
    ///   kept; headings, paragraphs, list items, table rows and code blocks kept as blocks or lines.
    /// - `text/html`: the visible text (no `head`, `script`, `style`, `noscript`, `template`, nor
    ///   elements hidden by `hidden` or an inline `display: none`), entities decoded, block elements
    ///   as paragraphs. Decoded as UTF-8 or, when it is not valid UTF-8, in the charset a `<meta>`
    ///   declares; a UTF-16 BOM is honoured.
    /// - `application/pdf`: the text of every page, in `pdf-extract`'s reading order. Encrypted
    ///   PDFs are read only when their user password is empty.
    ///
    /// # Errors
    /// [`ExtractError::InvalidUtf8`] for text that is not UTF-8 (position of the first bad byte),
    /// [`ExtractError::Empty`] when no text remains, [`ExtractError::Corrupt`] for unreadable or
    /// too large documents (the parser's reason in the message), [`ExtractError::TimedOut`] for a
    /// PDF, HTML or Markdown parse over its time limit, [`ExtractError::Internal`] when a thread
    /// cannot be started.
    async fn extract(
        &self,
        _tenant: TenantId,
        content_type: ContentType,
        bytes: Vec<u8>,
    ) -> Result<String, ExtractError> {
        let max = self.config.max_text_bytes;
        match content_type {
            ContentType::PlainText => {
                on_blocking_pool(move || finish(text::utf8(&bytes)?, max)).await
            }
            ContentType::Markdown => {
                self.isolated(self.config.markup_timeout, move |_| {
                    finish(&markdown::to_text(text::utf8(&bytes)?), max)
                })
                .await
            }
            ContentType::Html => {
                self.isolated(self.config.markup_timeout, move |_| {
                    finish(&html::document_to_text(&html::decode(&bytes)?), max)
                })
                .await
            }
            ContentType::Pdf => {
                self.isolated(self.config.pdf_timeout, move |cancel| {
                    finish(&pdf::extract(&bytes, max, cancel)?, max)
                })
                .await
            }
        }
    }
}

impl Extractor {
    async fn isolated<F>(&self, limit: Duration, job: F) -> Result<String, ExtractError>
    where
        F: FnOnce(&AtomicBool) -> Result<String, ExtractError> + Send + 'static,
    {
        isolate::run_isolated(job, limit, Arc::clone(&self.parse_slots)).await
    }
}

fn finish(text: &str, max: usize) -> Result<String, ExtractError> {
    let text = text::normalize(text);
    if text.is_empty() {
        Err(ExtractError::Empty)
    } else if text.len() > max {
        Err(text::too_large(max))
    } else {
        Ok(text)
    }
}

/// Parsing is CPU-bound and linear in the input; a 50 MB upload must not stall the executor.
async fn on_blocking_pool<F>(parse: F) -> Result<String, ExtractError>
where
    F: FnOnce() -> Result<String, ExtractError> + Send + 'static,
{
    tokio::task::spawn_blocking(parse).await.map_err(|e| {
        if e.is_panic() {
            ExtractError::Corrupt(format!(
                "the parser failed: {}",
                isolate::panic_message(e.into_panic().as_ref())
            ))
        } else {
            ExtractError::Internal("text extraction was cancelled".to_owned())
        }
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdf::tests::{build_pdf, text_pdf};

    async fn extract(content_type: ContentType, bytes: &[u8]) -> Result<String, ExtractError> {
        Extractor::default()
            .extract(TenantId::new(), content_type, bytes.to_vec())
            .await
    }

    #[tokio::test]
    async fn plain_text() {
        assert_eq!(
            extract(
                ContentType::PlainText,
                b"\xEF\xBB\xBFline one\r\nline two\r\n\r\npara\n"
            )
            .await,
            Ok("line one\nline two\n\npara".to_owned())
        );
        assert_eq!(
            extract(ContentType::PlainText, b"ok \xC3\x28").await,
            Err(ExtractError::InvalidUtf8(3))
        );
        assert_eq!(
            extract(ContentType::PlainText, b" \r\n\t \n").await,
            Err(ExtractError::Empty)
        );
        assert_eq!(
            extract(ContentType::PlainText, b"").await,
            Err(ExtractError::Empty)
        );
    }

    #[tokio::test]
    async fn markdown() {
        assert_eq!(
            extract(
                ContentType::Markdown,
                b"# Title\r\n\r\nA [link](http://x.invalid) here.\r\n\r\n- a\r\n- b\r\n"
            )
            .await,
            Ok("Title\n\nA link here.\n\n- a\n- b".to_owned())
        );
        assert_eq!(
            extract(ContentType::Markdown, b"# \xFF").await,
            Err(ExtractError::InvalidUtf8(2))
        );
        assert_eq!(
            extract(ContentType::Markdown, b"\n\n---\n\n").await,
            Err(ExtractError::Empty)
        );
    }

    #[tokio::test]
    async fn html() {
        assert_eq!(
            extract(
                ContentType::Html,
                b"<html><head><script>x</script></head><body><p>Hi &amp; bye</p></body></html>"
            )
            .await,
            Ok("Hi & bye".to_owned())
        );
        assert_eq!(
            extract(
                ContentType::Html,
                b"<script>only()</script><style>p{}</style>"
            )
            .await,
            Err(ExtractError::Empty)
        );
        assert_eq!(
            extract(ContentType::Html, b"<p>\xFF</p>").await,
            Err(ExtractError::InvalidUtf8(3))
        );
    }

    #[tokio::test]
    async fn pdf() {
        let text = extract(
            ContentType::Pdf,
            &text_pdf(&["Quarterly report", "Revenue grew"]),
        )
        .await
        .unwrap();
        for word in ["Quarterly", "report", "Revenue", "grew"] {
            assert!(text.contains(word), "{word:?} missing from {text:?}");
        }
        assert_eq!(
            extract(ContentType::Pdf, &text_pdf(&[""])).await,
            Err(ExtractError::Empty)
        );
        assert!(matches!(
            extract(ContentType::Pdf, b"%PDF-1.4 garbage").await,
            Err(ExtractError::Corrupt(_))
        ));
        // A page object without /Contents and /MediaBox: pdf-extract panics on it.
        let broken = build_pdf(&[
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
            "<< /Type /Page /Parent 2 0 R >>".to_owned(),
        ]);
        assert!(matches!(
            extract(ContentType::Pdf, &broken).await,
            Err(ExtractError::Corrupt(_) | ExtractError::Empty)
        ));
    }

    #[tokio::test]
    async fn hostile_markup_times_out() {
        let extractor = Extractor::new(ExtractorConfig {
            markup_timeout: Duration::from_millis(200),
            ..ExtractorConfig::default()
        });
        let html = "<div>".repeat(100_000) + "deep";
        assert_eq!(
            extractor
                .extract(TenantId::new(), ContentType::Html, html.into_bytes())
                .await,
            Err(ExtractError::TimedOut(1))
        );
    }

    #[tokio::test]
    async fn text_over_the_limit_is_refused() {
        let extractor = Extractor::new(ExtractorConfig {
            max_text_bytes: 8,
            ..ExtractorConfig::default()
        });
        for (content_type, bytes) in [
            (ContentType::PlainText, b"twelve bytes".to_vec()),
            (ContentType::Html, b"<p>twelve bytes</p>".to_vec()),
            (ContentType::Pdf, text_pdf(&["twelve bytes"])),
        ] {
            let outcome = extractor
                .extract(TenantId::new(), content_type, bytes)
                .await;
            assert!(
                matches!(&outcome, Err(ExtractError::Corrupt(m)) if m.contains("too large")),
                "{content_type:?}: {outcome:?}"
            );
        }
        assert_eq!(
            extractor
                .extract(
                    TenantId::new(),
                    ContentType::PlainText,
                    b"8 bytes!".to_vec()
                )
                .await,
            Ok("8 bytes!".to_owned())
        );
    }
}
