//! The rules the server enforces on request values, written as JSON Schema so that the OpenAPI
//! document states them exactly (clients generate SDKs and forms from it). Each type here is for
//! the document only: the DTO field reads plain text, and the domain's value types check it. The
//! patterns mirror those checks in `domain::values`: the tests below hold the two together, and
//! `tests/api/contract.rs` the served document to the server.
//!
//! Character classes are spelled out because the document's readers differ in what `\s` means:
//! - controls are Unicode's Cc (`char::is_control`): U+0000–U+001F and U+007F–U+009F;
//! - whitespace is Unicode's `White_Space` (what `str::trim` removes); the ones that are not
//!   controls are U+0020, U+00A0, U+1680, U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.

use std::borrow::Cow;

use serde_json::json;
use utoipa::openapi::schema::{
    AdditionalProperties, Array, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType,
    Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// Any character but NUL: PostgreSQL text cannot hold U+0000, so no string the API reads may.
pub const NO_NUL: &str = "^[^\\u0000]*$";

/// Neither a control nor whitespace.
const VISIBLE: &str =
    "[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
/// Not a control.
const NOT_CONTROL: &str = "[^\\u0000-\\u001f\\u007f-\\u009f]";
/// Unicode whitespace, controls included (what `str::trim` removes).
const WHITESPACE: &str = "[\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

fn text(description: &str, pattern: String, min: Option<usize>, max: usize) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .min_length(min)
        .max_length(Some(max))
        .into()
}

/// Declares a document-only string type whose schema `$schema` builds.
macro_rules! rule {
    ($(#[$doc:meta])* $name:ident => $schema:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

rule!(
    /// A name (tenants, agents, collections, API keys, document titles).
    NameText => text(
        "1 to 200 characters, no control characters, not only whitespace; \
         leading and trailing whitespace is removed",
        format!("^{NOT_CONTROL}*{VISIBLE}{NOT_CONTROL}*$"),
        Some(1),
        200,
    )
);

rule!(
    /// A slug (tenants, agents).
    SlugText => text(
        "1 to 63 lowercase letters, digits and '-', not starting or ending with '-'",
        "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$".to_owned(),
        Some(1),
        63,
    )
);

rule!(
    /// An email address. Surrounding whitespace is removed and the address lower-cased.
    EmailText => {
        // One '@'; the host holds a '.' but neither starts nor ends with one.
        let part = VISIBLE.replacen("[^", "[^@", 1);
        let host_end = VISIBLE.replacen("[^", "[^.@", 1);
        text(
            "An email address: one '@', a host with a '.' inside it, no whitespace or control \
             characters, at most 254 characters; surrounding whitespace is removed and the \
             address lower-cased",
            format!("^{WHITESPACE}*{part}+@{host_end}{part}*\\.{part}*{host_end}{WHITESPACE}*$"),
            Some(1),
            254,
        )
    }
);

rule!(
    /// A password as set (creating users and tenants, changing and resetting passwords).
    PasswordText => text("8 to 256 characters", NO_NUL.to_owned(), Some(8), 256)
);

rule!(
    /// A model's provider (`local`, `openai`, …).
    ProviderText => text(
        "1 to 50 characters without whitespace or control characters",
        format!("^{VISIBLE}+$"),
        Some(1),
        50,
    )
);

rule!(
    /// A provider's model name.
    ModelNameText => text(
        "1 to 200 characters without whitespace or control characters",
        format!("^{VISIBLE}+$"),
        Some(1),
        200,
    )
);

rule!(
    /// A search query: any length (a long one is cut where a search stops reading, and the
    /// answer says so); NUL counts as a space.
    QueryText => ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "Not only whitespace; any length up to the body's limit (a search reads the \
             leading part of a long query: `query_truncated`)",
        ))
        // One character that is neither NUL nor whitespace; WHITESPACE's own `]` closes the class.
        .pattern(Some(format!("[^\\u0000{}", &WHITESPACE[1..])))
        .min_length(Some(1))
        .into()
);

/// Any JSON value without NUL in its strings or keys, nested as deep as the body allows.
pub struct JsonValue;

impl PartialSchema for JsonValue {
    fn schema() -> RefOr<Schema> {
        let value = || RefOr::Ref(Ref::from_schema_name("JsonValue"));
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(SchemaType::from_iter([
                Type::Number,
                Type::Boolean,
                Type::Null,
            ])))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(NO_NUL)),
            )
            .item(ArrayBuilder::new().items(value()))
            .item(object_of(value()))
            .into()
    }
}

impl ToSchema for JsonValue {}

fn object_of(values: RefOr<Schema>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(NO_NUL)),
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(values)))
}

rule!(
    /// Free-form metadata (agents, documents).
    Metadata => object_of(RefOr::Ref(Ref::from_schema_name("JsonValue")))
        .description(Some("A JSON object of at most 16 KiB (as compact JSON)"))
        .into()
);

rule!(
    /// A search's metadata filter.
    SearchFilter => {
        let scalar = || {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([
                    Type::String,
                    Type::Number,
                    Type::Boolean,
                    Type::Null,
                ]))
                .pattern(Some(NO_NUL))
        };
        let values = OneOfBuilder::new()
            .item(scalar())
            .item(Array::builder().items(scalar()).min_items(Some(1)).max_items(Some(100)));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Metadata equality (`{\"team\": \"hr\"}`) or membership (`{\"team\": [\"hr\", \
                 \"it\"]}`): at most 16 keys of 1 to 200 characters; a list holds 1 to 100 values",
            ))
            .max_properties(Some(16))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(NO_NUL))
                    .min_length(Some(1))
                    .max_length(Some(200)),
            ))
            .additional_properties(Some(AdditionalProperties::RefOr(values.into())))
            .into()
    }
);

/// Marks every plain string of the document (component schemas and parameters) as NUL-free: the
/// JSON extractor refuses `\u0000` anywhere in a body, as do the query and form readers. Strings
/// with a pattern, format or enum of their own say more already; problem details are the
/// server's own text.
pub fn forbid_nul(document: &mut serde_json::Value) {
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    {
        for (name, schema) in schemas.iter_mut() {
            if !name.starts_with("Problem") {
                walk(schema);
            }
        }
    }
    if let Some(paths) = document.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for item in paths.values_mut() {
            for operation in item
                .as_object_mut()
                .into_iter()
                .flat_map(|o| o.values_mut())
            {
                if let Some(parameters) = operation.get_mut("parameters") {
                    for parameter in parameters.as_array_mut().into_iter().flatten() {
                        if let Some(schema) = parameter.get_mut("schema") {
                            walk(schema);
                        }
                    }
                }
                if let Some(content) = operation.pointer_mut("/requestBody/content") {
                    for media in content
                        .as_object_mut()
                        .into_iter()
                        .flat_map(|c| c.values_mut())
                    {
                        if let Some(schema) = media.get_mut("schema") {
                            walk(schema);
                        }
                    }
                }
            }
        }
    }
}

fn walk(schema: &mut serde_json::Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let is_string = match object.get("type") {
        Some(serde_json::Value::String(t)) => t == "string",
        Some(serde_json::Value::Array(types)) => types.iter().any(|t| t == "string"),
        _ => false,
    };
    let says_more = ["pattern", "format", "enum", "const", "contentMediaType"]
        .iter()
        .any(|key| object.contains_key(*key));
    if is_string && !says_more {
        object.insert("pattern".into(), json!(NO_NUL));
    }
    for key in ["properties", "patternProperties"] {
        if let Some(children) = object.get_mut(key).and_then(|c| c.as_object_mut()) {
            children.values_mut().for_each(walk);
        }
    }
    for key in ["oneOf", "anyOf", "allOf", "prefixItems"] {
        if let Some(children) = object.get_mut(key).and_then(|c| c.as_array_mut()) {
            children.iter_mut().for_each(walk);
        }
    }
    for key in ["items", "additionalProperties", "propertyNames", "not"] {
        if let Some(child) = object.get_mut(key) {
            walk(child);
        }
    }
}

#[cfg(test)]
mod tests {
    use domain::values::{Email, ModelRef, Name, Password, Slug};
    use utoipa::PartialSchema;

    use super::*;

    /// Whether a value passes a rule as the document states it: its pattern and its lengths.
    fn allowed_by<T: PartialSchema>(value: &str) -> bool {
        let schema = serde_json::to_value(T::schema()).unwrap();
        let pattern = regex::Regex::new(schema["pattern"].as_str().unwrap()).unwrap();
        let chars = value.chars().count();
        let min = schema["minLength"].as_u64().unwrap_or(0);
        let max = schema["maxLength"].as_u64().unwrap();
        pattern.is_match(value) && (min..=max).contains(&(chars as u64))
    }

    /// Texts near every edge of the rules: lengths, whitespace (ASCII, Unicode, control), controls,
    /// NUL, '@' and '.' placement, case, and characters beyond the Basic Multilingual Plane.
    fn corpus() -> Vec<String> {
        let mut texts: Vec<String> = [
            "",
            " ",
            "a",
            " a ",
            "\u{3000}a\u{3000}",
            "\u{a0}",
            "a\u{85}",
            "\u{85}a",
            "a\tb",
            "\ta\n",
            "a\u{0}",
            "\u{1}a",
            "a\u{7f}",
            "a\u{9f}",
            "a\u{a0}b",
            "é",
            "𝔘𝔫𝔦",
            "a b",
            "Ada Lovelace",
            "x-1",
            "-x",
            "x-",
            "a--b",
            "UPPER",
            "ada@example.com",
            " Ada@Example.COM ",
            "\tada@example.com\n",
            "ada@example",
            "@example.com",
            "ada@",
            "ada@.com",
            "ada@example.",
            "a@b.c",
            "a@b..c",
            "a@@b.c",
            "a@b@c.d",
            "a b@c.d",
            "a@b.c\u{1}",
            "\u{2028}a@b.c",
            "İ@b.c",
            "password",
            "passwor",
            "pass word!",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for n in [
            7, 8, 49, 50, 51, 62, 63, 64, 199, 200, 201, 253, 254, 255, 256, 257,
        ] {
            texts.push("a".repeat(n));
            texts.push(format!(" {}", "é".repeat(n - 1)));
            texts.push(format!("{}@b.c", "x".repeat(n.saturating_sub(4))));
        }
        texts
    }

    #[test]
    fn the_documented_rules_are_the_servers_rules() {
        for text in corpus() {
            let agree = |rule: &str, documented: bool, enforced: bool| {
                assert_eq!(
                    documented, enforced,
                    "{rule} on {text:?}: the document says {documented}, the server {enforced}"
                );
            };
            agree(
                "name",
                allowed_by::<NameText>(&text),
                Name::parse(&text).is_ok(),
            );
            agree(
                "slug",
                allowed_by::<SlugText>(&text),
                Slug::parse(&text).is_ok(),
            );
            agree(
                "email",
                allowed_by::<EmailText>(&text),
                Email::parse(&text).is_ok(),
            );
            agree(
                "password",
                allowed_by::<PasswordText>(&text),
                Password::parse(&text).is_ok() && !text.contains('\0'),
            );
            agree(
                "provider",
                allowed_by::<ProviderText>(&text),
                ModelRef::parse(&text, "m").is_ok(),
            );
            agree(
                "model name",
                allowed_by::<ModelNameText>(&text),
                ModelRef::parse("p", &text).is_ok(),
            );
        }
    }

    #[test]
    fn every_plain_string_is_marked_nul_free() {
        let mut document = serde_json::json!({
            "components": {"schemas": {
                "A": {"type": "object", "properties": {
                    "s": {"type": "string"},
                    "n": {"type": ["string", "null"]},
                    "u": {"type": "string", "format": "uuid"},
                    "l": {"type": "array", "items": {"type": "string"}},
                }},
                "Problem": {"type": "object", "properties": {"detail": {"type": "string"}}},
            }},
            "paths": {"/x": {"get": {"parameters": [{"schema": {"type": "string"}}]}}},
        });
        forbid_nul(&mut document);
        let a = &document["components"]["schemas"]["A"]["properties"];
        for marked in [&a["s"], &a["n"], &a["l"]["items"]] {
            assert_eq!(marked["pattern"], NO_NUL);
        }
        assert!(a["u"].get("pattern").is_none());
        let problem = &document["components"]["schemas"]["Problem"];
        assert!(problem["properties"]["detail"].get("pattern").is_none());
        assert_eq!(
            document["paths"]["/x"]["get"]["parameters"][0]["schema"]["pattern"],
            NO_NUL
        );
    }
}
