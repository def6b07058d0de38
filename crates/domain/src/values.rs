//! Validated values: if one exists, it is valid. Constructors return the message for the field error.

use std::fmt;

/// A URL-safe identifier: 1–63 characters of `a-z`, `0-9` and `-`, starting with a letter or digit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Slug(String);

impl Slug {
    /// # Errors
    /// The reason the text is not a slug.
    pub fn parse(text: &str) -> Result<Self, String> {
        let valid_chars = text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if text.is_empty() || text.len() > 63 {
            Err("must be 1 to 63 characters".into())
        } else if !valid_chars {
            Err("may contain only lowercase letters, digits and '-'".into())
        } else if text.starts_with('-') || text.ends_with('-') {
            Err("must not start or end with '-'".into())
        } else {
            Ok(Self(text.to_owned()))
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address, trimmed and lower-cased so that uniqueness ignores case.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// # Errors
    /// The reason the text is not an email address.
    pub fn parse(text: &str) -> Result<Self, String> {
        // Counted as sent, before trimming, so that the limit is the one the API document states.
        if text.chars().count() > 254 {
            return Err("must be at most 254 characters".into());
        }
        let text = text.trim().to_lowercase();
        let Some((local, host)) = text.split_once('@') else {
            return Err("must be an email address".into());
        };
        let plausible = !local.is_empty()
            && host.contains('.')
            && !host.starts_with('.')
            && !host.ends_with('.')
            && !host.contains('@')
            && !text.chars().any(|c| c.is_whitespace() || c.is_control());
        if plausible {
            Ok(Self(text))
        } else {
            Err("must be an email address".into())
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A human-readable name: at most 200 characters as sent, no control characters, not only
/// whitespace; kept trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// # Errors
    /// The reason the text is not a usable name.
    pub fn parse(text: &str) -> Result<Self, String> {
        // The length is counted before trimming, so that it is the one the API document states.
        let trimmed = text.trim();
        if trimmed.is_empty() || text.chars().count() > 200 {
            Err("must be 1 to 200 characters".into())
        } else if text.chars().any(char::is_control) {
            Err("must not contain control characters".into())
        } else {
            Ok(Self(trimmed.to_owned()))
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A password as typed: 8–256 characters. Never stored; only its hash is.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// # Errors
    /// The reason the password is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let len = text.chars().count();
        if len < 8 {
            Err("must be at least 8 characters".into())
        } else if len > 256 {
            Err("must be at most 256 characters".into())
        } else {
            Ok(Self(text.to_owned()))
        }
    }

    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Sampling temperature, 0.0–2.0 as OpenAI-compatible servers accept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Temperature(f32);

impl Temperature {
    /// # Errors
    /// When the value is not a finite number in 0.0..=2.0.
    pub fn parse(value: f64) -> Result<Self, String> {
        if value.is_finite() && (0.0..=2.0).contains(&value) {
            #[allow(clippy::cast_possible_truncation)]
            Ok(Self(value as f32))
        } else {
            Err("must be between 0.0 and 2.0".into())
        }
    }

    #[must_use]
    pub const fn value(self) -> f32 {
        self.0
    }
}

impl Default for Temperature {
    fn default() -> Self {
        Self(0.7)
    }
}

/// Upper bound on tokens an agent may generate in one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxTokens(u32);

impl MaxTokens {
    pub const LIMIT: i64 = 128_000;

    /// # Errors
    /// When the value is outside 1..=128000.
    pub fn parse(value: i64) -> Result<Self, String> {
        if (1..=Self::LIMIT).contains(&value) {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(Self(value as u32))
        } else {
            Err(format!("must be between 1 and {}", Self::LIMIT))
        }
    }

    #[must_use]
    pub const fn value(self) -> u32 {
        self.0
    }
}

impl Default for MaxTokens {
    fn default() -> Self {
        Self(1024)
    }
}

/// Which model serves an agent: a provider (`local`, `openai`, …) and the provider's model name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRef {
    provider: String,
    name: String,
}

impl ModelRef {
    /// # Errors
    /// When either part is empty, too long, or has whitespace or control characters.
    pub fn parse(provider: &str, name: &str) -> Result<Self, String> {
        let ok = |s: &str, max: usize| {
            !s.is_empty()
                && s.chars().count() <= max
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        };
        if !ok(provider, 50) {
            Err("provider must be 1 to 50 characters without spaces".into())
        } else if !ok(name, 200) {
            Err("name must be 1 to 200 characters without spaces".into())
        } else {
            Ok(Self {
                provider: provider.to_owned(),
                name: name.to_owned(),
            })
        }
    }

    #[must_use]
    pub fn provider(&self) -> &str {
        &self.provider
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Bounded free text (descriptions, system prompts): at most `max` characters.
///
/// # Errors
/// When the text is longer than `max` characters.
pub fn bounded_text(text: &str, max: usize) -> Result<String, String> {
    if text.chars().count() > max {
        Err(format!("must be at most {max} characters"))
    } else if text.contains('\0') {
        Err("must not contain NUL characters".into())
    } else {
        Ok(text.to_owned())
    }
}

/// `text` cut to its first `max` characters, with an ellipsis when something was cut (on a
/// character boundary, never inside one).
#[must_use]
pub fn truncated(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Metadata must be a JSON object of bounded size, so it stays indexable and cheap to return.
///
/// # Errors
/// When the value is not an object or is larger than 16 KiB serialised.
pub fn metadata(value: serde_json::Value) -> Result<serde_json::Value, String> {
    if !value.is_object() {
        return Err("must be a JSON object".into());
    }
    if value.to_string().len() > 16 * 1024 {
        return Err("must be at most 16 KiB".into());
    }
    if value.to_string().contains("\\u0000") {
        return Err("must not contain NUL characters".into());
    }
    // PostgreSQL keeps a number's exact decimal digits; near the edge of a double they no longer
    // read back as one, so such numbers are refused before they are stored.
    if has_huge_number(&value) {
        return Err("numbers must lie between -1e300 and 1e300".into());
    }
    Ok(value)
}

fn has_huge_number(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|x| x.abs() > 1e300),
        serde_json::Value::Array(items) => items.iter().any(has_huge_number),
        serde_json::Value::Object(fields) => fields.values().any(has_huge_number),
        _ => false,
    }
}

/// The formats documents are accepted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentType {
    PlainText,
    Markdown,
    Html,
    Pdf,
}

impl ContentType {
    #[must_use]
    pub const fn mime(self) -> &'static str {
        match self {
            Self::PlainText => "text/plain",
            Self::Markdown => "text/markdown",
            Self::Html => "text/html",
            Self::Pdf => "application/pdf",
        }
    }

    /// From a MIME type (parameters such as `; charset=utf-8` are ignored).
    #[must_use]
    pub fn from_mime(mime: &str) -> Option<Self> {
        let essence = mime
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "text/plain" => Some(Self::PlainText),
            "text/markdown" | "text/x-markdown" => Some(Self::Markdown),
            "text/html" => Some(Self::Html),
            "application/pdf" => Some(Self::Pdf),
            _ => None,
        }
    }

    /// From a file name's extension, for uploads whose type was not declared.
    #[must_use]
    pub fn from_file_name(name: &str) -> Option<Self> {
        let (_, extension) = name.rsplit_once('.')?;
        match extension.to_ascii_lowercase().as_str() {
            "txt" | "text" => Some(Self::PlainText),
            "md" | "markdown" => Some(Self::Markdown),
            "html" | "htm" => Some(Self::Html),
            "pdf" => Some(Self::Pdf),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(Slug::parse("support-bot-2").is_ok());
        for bad in ["", "-a", "a-", "Upper", "sp ace", "ü", &"a".repeat(64)] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            Email::parse(" Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.d",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_are_counted_as_sent_and_kept_trimmed() {
        assert_eq!(Name::parse("  Ada ").unwrap().as_str(), "Ada");
        assert!(Name::parse(&"a".repeat(200)).is_ok());
        assert!(Name::parse(&format!(" {}", "a".repeat(200))).is_err());
        for bad in ["", " \u{3000} ", "a\tb", "a\u{85}"] {
            assert!(Name::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ModelRef::parse(&"é".repeat(50), "m").is_ok());
        assert!(ModelRef::parse(&"é".repeat(51), "m").is_err());
    }

    #[test]
    fn numbers_are_bounded() {
        assert!(Temperature::parse(f64::NAN).is_err());
        assert!(Temperature::parse(2.5).is_err());
        assert!(MaxTokens::parse(0).is_err());
        assert_eq!(MaxTokens::parse(256).unwrap().value(), 256);
    }

    #[test]
    fn metadata_numbers_must_read_back_as_doubles() {
        assert!(metadata(serde_json::json!({"a": 1.797_693_134_862_315_5e308})).is_err());
        assert!(metadata(serde_json::json!({"a": [{"b": -1e301}]})).is_err());
        assert!(metadata(serde_json::json!({"a": 1e300, "b": -2.2e-311})).is_ok());
    }

    #[test]
    fn metadata_must_be_an_object() {
        assert!(metadata(serde_json::json!([1])).is_err());
        assert!(metadata(serde_json::json!({"a": "\u{0}"})).is_err());
        assert!(metadata(serde_json::json!({"team": "support"})).is_ok());
    }
}
