//! Documents as files (multipart), replacement, and cancelling an ingestion under way.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, app_with_openai_space, assert_problem, json};
use crate::knowledge::titles;
use crate::reembed::wait_until_running;

const PDF: &[u8] = include_bytes!("fixtures/observatory.pdf");

/// (file name, declared type, bytes, other form fields)
type FileUpload<'a> = (&'a str, Option<&'a str>, &'a [u8], &'a [(&'a str, &'a str)]);

async fn fulltext(app: &TestApp, token: &str, collection: &str, query: &str) -> Vec<String> {
    let found = json(
        app.post(
            &format!("/v1/collections/{collection}/search"),
            token,
            json!({"query": query, "mode": "fulltext"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    titles(&found)
}

#[tokio::test]
async fn files_of_every_format_are_ingested_and_documents_can_be_replaced() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let id = &app.collection(t, "Files").await;
    let path = format!("/v1/collections/{id}/documents");
    let files: [FileUpload; 4] = [
        (
            "notes.md",
            None,
            b"# Northern lights\n\nThe **aurora** is best seen in February.",
            &[],
        ),
        (
            "page.html",
            Some("text/html"),
            b"<html><head><script>var hidden = 1;</script></head><body><p>Glacier tours start at nine.</p></body></html>",
            &[("title", "Tours")],
        ),
        (
            "observatory.pdf",
            Some("application/pdf"),
            PDF,
            &[("title", "Observatory"), ("metadata", r#"{"team": "science"}"#)],
        ),
        (
            "plain.txt",
            Some("application/octet-stream"),
            b"Plain words about kayaks.",
            &[],
        ),
    ];
    let mut documents = Vec::new();
    for (name, mime, bytes, fields) in files {
        let uploaded = json(
            app.send_file(Method::POST, &path, t, (name, mime, bytes), fields)
                .await,
            StatusCode::ACCEPTED,
        )
        .await;
        let job = app
            .wait_for_job(t, uploaded["job"]["id"].as_str().unwrap())
            .await;
        assert_eq!(job["state"], "succeeded", "{name}: {job}");
        documents.push(uploaded["document"].clone());
    }
    let types: Vec<&str> = documents
        .iter()
        .map(|d| d["content_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "text/markdown",
            "text/html",
            "application/pdf",
            "text/plain"
        ]
    );
    assert_eq!(
        documents[0]["title"], "notes.md",
        "the file name is the default title"
    );
    assert_eq!(documents[2]["metadata"]["team"], "science");
    assert_eq!(fulltext(&app, t, id, "aurora").await, ["notes.md"]);
    assert_eq!(fulltext(&app, t, id, "glacier").await, ["Tours"]);
    assert!(
        fulltext(&app, t, id, "hidden").await.is_empty(),
        "scripts are not text"
    );
    assert_eq!(
        fulltext(&app, t, id, "telescope budget").await,
        ["Observatory"]
    );
    assert_eq!(
        fulltext(&app, t, id, "dome repainted").await,
        ["Observatory"]
    );
    assert_eq!(fulltext(&app, t, id, "kayaks").await, ["plain.txt"]);
    let pdf_id = documents[2]["id"].as_str().unwrap();
    let pdf = json(
        app.get(&format!("/v1/documents/{pdf_id}"), t).await,
        StatusCode::OK,
    )
    .await;
    assert!(
        pdf["content"]
            .as_str()
            .unwrap()
            .contains("telescope budget"),
        "{pdf}"
    );

    // Files the server cannot read, and forms without a file.
    assert_problem(
        app.send_file(
            Method::POST,
            &path,
            t,
            ("logo.png", Some("image/png"), b"\x89PNG"),
            &[],
        )
        .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    assert_problem(
        app.send_file(
            Method::POST,
            &path,
            t,
            ("broken.pdf", None, b"%PDF-1.7 garbage"),
            &[],
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let problem = assert_problem(
        app.send_file(
            Method::POST,
            &path,
            t,
            ("a.txt", None, b"x"),
            &[("colour", "red")],
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "colour");
    let problem = assert_problem(
        app.send_file(
            Method::POST,
            &path,
            t,
            ("a.txt", None, b"x"),
            &[("metadata", "[1, 2]")],
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "metadata");

    // Replacing: the new text becomes searchable, the old one leaves, the counts follow.
    let tours = documents[1]["id"].as_str().unwrap();
    let replaced = json(
        app.put(
            &format!("/v1/documents/{tours}"),
            t,
            json!({"title": "Harbour tours", "content": "Boat tours now depart from the harbour.", "metadata": {"season": "summer"}}),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(replaced["document"]["id"], tours);
    assert_eq!(replaced["document"]["status"], "pending");
    let job = app
        .wait_for_job(t, replaced["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(fulltext(&app, t, id, "glacier").await.is_empty());
    assert_eq!(fulltext(&app, t, id, "harbour").await, ["Harbour tours"]);
    let filtered = json(
        app.post(
            &format!("/v1/collections/{id}/search"),
            t,
            json!({"query": "tours", "mode": "fulltext", "filter": {"season": "summer"}}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        titles(&filtered),
        ["Harbour tours"],
        "chunks carry the new metadata"
    );
    let same = json(
        app.put(
            &format!("/v1/documents/{tours}"),
            t,
            json!({"title": "Harbour tours", "content": "Boat tours now depart from the harbour.", "metadata": {"season": "summer"}}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(
        same["job"].is_null(),
        "the same document again changes nothing"
    );
    assert_problem(
        app.put(
            &format!("/v1/documents/{tours}"),
            t,
            json!({"title": "Copy", "content": "Plain words about kayaks."}),
        )
        .await,
        StatusCode::CONFLICT,
        "document_exists",
    )
    .await;
    // A file replaces too.
    let pdf_replaced = json(
        app.send_file(
            Method::PUT,
            &format!("/v1/documents/{pdf_id}"),
            t,
            (
                "observatory.md",
                None,
                b"The observatory closed for the winter.",
            ),
            &[("title", "Observatory")],
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(pdf_replaced["document"]["content_type"], "text/markdown");
    app.wait_for_job(t, pdf_replaced["job"]["id"].as_str().unwrap())
        .await;
    assert!(fulltext(&app, t, id, "telescope").await.is_empty());
    assert_eq!(fulltext(&app, t, id, "winter").await, ["Observatory"]);
    let collection = json(
        app.get(&format!("/v1/collections/{id}"), t).await,
        StatusCode::OK,
    )
    .await;
    let listed = json(
        app.get(&format!("/v1/collections/{id}/documents"), t).await,
        StatusCode::OK,
    )
    .await;
    let bytes: i64 = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["byte_count"].as_i64().unwrap())
        .sum();
    assert_eq!(collection["document_count"], 4);
    assert_eq!(collection["byte_count"], bytes);
}

#[tokio::test]
async fn a_running_ingestion_can_be_cancelled_and_leaves_nothing_indexed() {
    // Each embedding call takes 500 ms and the document needs several, so it is caught running.
    let (app, _server) = app_with_openai_space(Duration::from_millis(500), 1).await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let made = json(
        app.post(
            "/v1/collections",
            t,
            json!({"name": "Remote", "space_id": "openai-test"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let id = made["id"].as_str().unwrap();
    let long: Vec<String> = (0..12_000).map(|i| format!("zebra{i}")).collect();
    let uploaded = app.upload(t, id, "Long", &long.join(" "), json!({})).await;
    let jid = uploaded["job"]["id"].as_str().unwrap();
    let running = wait_until_running(&app, t, jid).await;
    assert_eq!(running["state"], "running", "{running}");
    // Cancel once part of it is embedded.
    for _ in 0..300 {
        let job = json(app.get(&format!("/v1/jobs/{jid}"), t).await, StatusCode::OK).await;
        if job["progress"]["done"].as_i64() > Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = json(
        app.post_empty(&format!("/v1/jobs/{jid}/cancel"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(asked["state"], "running");
    let job = app.wait_for_job(t, jid).await;
    assert_eq!(job["state"], "cancelled", "{job}");
    let (done, total) = (
        job["progress"]["done"].as_i64(),
        job["progress"]["total"].as_i64(),
    );
    assert!(Some(0) < done && done < total, "{job}");
    let did = uploaded["document"]["id"].as_str().unwrap();
    let doc: Value = json(
        app.get(&format!("/v1/documents/{did}"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["error"], "ingestion cancelled");
    assert!(fulltext(&app, t, id, "zebra1").await.is_empty());
}
