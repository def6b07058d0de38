//! The OpenAPI document states what the server enforces, and the server takes what the document
//! allows: JSON Schema integers written as `3.0`, an optional body sent as `null`, an empty form
//! field; it refuses what the document does not allow: arrays in place of objects. (`just fuzz`
//! checks the same both ways, with generated requests.)

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, json};

/// Every string schema a request can carry, with where it is.
fn request_strings(document: &Value) -> Vec<(String, Value)> {
    fn walk(
        at: String,
        schema: &Value,
        document: &Value,
        seen: &mut Vec<String>,
        out: &mut Vec<(String, Value)>,
    ) {
        if let Some(target) = schema["$ref"].as_str() {
            let name = target.rsplit('/').next().unwrap().to_owned();
            if !seen.contains(&name) {
                seen.push(name.clone());
                walk(
                    name.clone(),
                    &document["components"]["schemas"][&name],
                    document,
                    seen,
                    out,
                );
            }
            return;
        }
        let is_string = schema["type"] == "string"
            || schema["type"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("string")));
        if is_string {
            out.push((at.clone(), schema.clone()));
        }
        for (key, child) in schema["properties"].as_object().into_iter().flatten() {
            walk(format!("{at}.{key}"), child, document, seen, out);
        }
        for key in ["oneOf", "anyOf", "allOf"] {
            for child in schema[key].as_array().into_iter().flatten() {
                walk(at.clone(), child, document, seen, out);
            }
        }
        for key in ["items", "additionalProperties", "propertyNames"] {
            if schema[key].is_object() {
                walk(format!("{at}[]"), &schema[key], document, seen, out);
            }
        }
    }
    let mut out = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let mut seen = Vec::new();
            for content in operation["requestBody"]["content"]
                .as_object()
                .into_iter()
                .flatten()
            {
                let at = format!("{method} {path}");
                walk(at, &content.1["schema"], document, &mut seen, &mut out);
            }
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let at = format!("{method} {path} ?{}", parameter["name"]);
                walk(at, &parameter["schema"], document, &mut seen, &mut out);
            }
        }
    }
    out
}

#[tokio::test]
async fn the_document_states_each_rule_of_what_clients_send() {
    let app = TestApp::spawn().await;
    let document = json(
        app.request(Method::GET, "/openapi.json", None)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let strings = request_strings(&document);
    assert!(
        strings.len() > 40,
        "only {} request strings found",
        strings.len()
    );
    for (at, schema) in &strings {
        // NUL is refused everywhere; a pattern, format or enum says which texts are taken.
        let stated = ["pattern", "format", "enum"]
            .iter()
            .any(|k| schema.get(*k).is_some());
        assert!(stated, "{at}: {schema} does not say what it takes");
    }
    let schemas = &document["components"]["schemas"];
    assert_eq!(schemas["NameText"]["maxLength"], 200);
    assert_eq!(schemas["SlugText"]["maxLength"], 63);
    assert_eq!(schemas["PasswordText"]["minLength"], 8);
    let agent = &schemas["CreateAgentRequest"]["properties"];
    assert_eq!(agent["max_tokens"]["maximum"], 128_000);
    assert_eq!(agent["max_tokens"]["minimum"], 1);
    assert_eq!(agent["name"]["$ref"], "#/components/schemas/NameText");
    let modes = &schemas["SearchModeName"]["enum"];
    assert_eq!(modes, &json!(["vector", "fulltext", "hybrid"]));
    let many = &schemas["MultiSearchRequestDto"]["properties"]["collection_ids"];
    assert_eq!(
        (many["minItems"].clone(), many["maxItems"].clone()),
        (json!(1), json!(20))
    );
    // The space of a collection changes only by re-embedding: not a field of the patch.
    let patch = &schemas["PatchCollectionRequest"];
    assert!(patch["properties"].get("space_id").is_none());
    assert_eq!(patch["additionalProperties"], false);
}

#[tokio::test]
async fn what_the_document_allows_is_taken_and_what_it_does_not_is_refused() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let model = json!({"provider": "local", "name": "smollm2"});

    // JSON Schema integers: 3 and 3.0 alike; a fraction is not one.
    let agent = json(
        app.post(
            "/v1/agents",
            t,
            json!({"name": "  Bot ", "slug": "bot", "model": model, "max_tokens": 512.0}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(agent["max_tokens"], 512);
    assert_eq!(agent["name"], "Bot", "kept trimmed");
    let refused = |body: Value, field: &'static str| {
        let app = &app;
        async move {
            let problem = assert_problem(
                app.post("/v1/agents", t, body).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            )
            .await;
            assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        }
    };
    refused(
        json!({"name": "B", "slug": "b", "model": model, "max_tokens": 2.5}),
        "max_tokens",
    )
    .await;
    // A name is counted as sent: 199 letters and two spaces are 201 characters.
    let long = format!(" {} ", "a".repeat(199));
    refused(json!({"name": long, "slug": "b", "model": model}), "name").await;
    // Objects only: a derived reader would take the fields' values in order from an array.
    refused(
        json!({"name": "B", "slug": "b", "model": ["local", "smollm2"]}),
        "model",
    )
    .await;
    let problem = assert_problem(
        app.post("/v1/agents", t, json!(["B", "b", model])).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "body");

    // Search: an integral float is an integer; the mode is one of three.
    let collection = app.collection(t, "Docs").await;
    let path = format!("/v1/collections/{collection}/search");
    let found = json(
        app.post(
            &path,
            t,
            json!({"query": "x", "top_k": 2.0, "mode": "fulltext"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(found["results"].is_array());
    let problem = assert_problem(
        app.post(&path, t, json!({"query": "x", "mode": "semantic"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "mode");

    // A form's empty metadata field is no metadata (form builders send one for an empty input).
    let res = app
        .send_file(
            Method::POST,
            &format!("/v1/collections/{collection}/documents"),
            t,
            ("notes.txt", Some("text/plain"), b"Some notes."),
            &[("metadata", "")],
        )
        .await;
    let uploaded = json(res, StatusCode::ACCEPTED).await;
    assert_eq!(uploaded["document"]["metadata"], json!({}));

    // An optional body may be absent, `{}` or `null`.
    let res = app
        .request(Method::POST, "/v1/auth/logout", Some(t))
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}
