//! Hostile documents, made by the tests themselves: a decompression bomb in a PDF, HTML nested or
//! attributed beyond reason, pathological Markdown, invalid encodings. Each is read in a child
//! process under hard limits: it answers a 4xx (`extraction_limit` when a limit killed it), the
//! server's own memory stays flat, and other tenants carry on.

use std::io::Write;
use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::json;

use crate::helpers::{Options, TenantFixture, TestApp, assert_problem, json};

/// A one-page PDF whose content stream is `zeros` zero bytes under two FlateDecode filters: a few
/// kilobytes that inflate to gigabytes.
fn pdf_bomb(zeros: u64) -> Vec<u8> {
    let mut inner = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let block = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        inner.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    let once = inner.finish().unwrap();
    let mut outer = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    outer.write_all(&once).unwrap();
    let twice = outer.finish().unwrap();

    let mut pdf = b"%PDF-1.5\n".to_vec();
    let mut offsets = Vec::new();
    let objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".to_vec(),
        [
            format!(
                "<< /Length {} /Filter [/FlateDecode /FlateDecode] >>\nstream\n",
                twice.len()
            )
            .into_bytes(),
            twice,
            b"\nendstream".to_vec(),
        ]
        .concat(),
    ];
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        pdf.extend_from_slice(body);
        pdf.extend_from_slice(b"\nendobj\n");
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

/// The peak resident memory of this process (the server runs in it), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

async fn upload_file(
    app: &TestApp,
    tenant: &TenantFixture,
    collection: &str,
    name: &str,
    mime: &str,
    bytes: &[u8],
) -> Response {
    app.send_file(
        reqwest::Method::POST,
        &format!("/v1/collections/{collection}/documents"),
        &tenant.admin_token,
        (name, Some(mime), bytes),
        &[],
    )
    .await
}

async fn app() -> TestApp {
    TestApp::spawn_with(Options {
        ingest_workers: 0,
        extract_timeout_secs: 4,
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn a_pdf_decompression_bomb_is_killed_not_inflated_and_others_carry_on() {
    let app = app().await;
    let acme = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let collection = app.collection(&acme.admin_token, "Docs").await;
    // 2 GiB of zeros, twice deflated.
    let bomb = pdf_bomb(2 << 30);
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let before = peak_rss();
    let started = Instant::now();
    let (res, others) = tokio::join!(
        upload_file(
            &app,
            &acme,
            &collection,
            "bomb.pdf",
            "application/pdf",
            &bomb
        ),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let started = Instant::now();
            let res = app.get("/v1/agents", &other.admin_token).await;
            (res.status(), started.elapsed())
        }
    );
    let took = started.elapsed();
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "extraction_limit").await;
    let growth = peak_rss().saturating_sub(before);
    eprintln!(
        "PDF bomb ({} bytes): 422 in {took:?}; server peak memory grew {} MiB; another tenant's request took {:?}",
        bomb.len(),
        growth >> 20,
        others.1
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("memory")
            || problem["detail"].as_str().unwrap().contains("took longer"),
        "{problem}"
    );
    assert!(growth < 64 << 20, "the server grew {} MiB", growth >> 20);
    assert_eq!(others.0, StatusCode::OK);
    // Nothing was stored.
    let documents = json(
        app.get(
            &format!("/v1/collections/{collection}/documents"),
            &acme.admin_token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(documents["items"], json!([]));
}

#[tokio::test]
async fn hostile_markup_and_encodings_get_a_4xx_in_bounded_time() {
    let app = app().await;
    let acme = app.tenant("acme").await;
    let collection = app.collection(&acme.admin_token, "Docs").await;
    let deep_html = format!("<html><body>{}x</body></html>", "<div>".repeat(100_000));
    let attributes: String = (0..30_000).map(|i| format!(" a{i}=\"{i}\"")).collect();
    let wide_html = format!("<html><body><p{attributes}>x</p></body></html>");
    let deep_markdown = format!("{}x\n", "> ".repeat(100_000));
    let brackets = format!("{}x\n", "[".repeat(200_000));
    let cases: [(&str, &str, Vec<u8>); 6] = [
        ("deep.html", "text/html", deep_html.into_bytes()),
        ("wide.html", "text/html", wide_html.into_bytes()),
        ("deep.md", "text/markdown", deep_markdown.into_bytes()),
        ("brackets.md", "text/markdown", brackets.into_bytes()),
        ("latin1.txt", "text/plain", b"caf\xe9 \xff\xfe".to_vec()),
        (
            "bad-charset.html",
            "text/html",
            b"<meta charset=\"x-no-such-charset\"><p>\xff\xfe\xfd</p>".to_vec(),
        ),
    ];
    for (name, mime, bytes) in cases {
        let started = Instant::now();
        let res = upload_file(&app, &acme, &collection, name, mime, &bytes).await;
        let status = res.status();
        let took = started.elapsed();
        let body = res.text().await.unwrap();
        eprintln!("{name}: {status} in {took:?}");
        // Read (202) or refused as a 4xx, never a 5xx, and within the child's limit and a margin.
        assert!(
            status == StatusCode::ACCEPTED || status.is_client_error(),
            "{name}: {status} {body}"
        );
        assert!(took < Duration::from_secs(15), "{name}: {took:?}");
    }
    // The server still answers.
    json(
        app.get("/v1/agents", &acme.admin_token).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn one_tenant_reads_at_most_its_share_of_documents_at_once() {
    let app = app().await;
    let acme = app.tenant("acme").await;
    let collection = app.collection(&acme.admin_token, "Docs").await;
    let slow = format!("<html><body>{}x</body></html>", "<div>".repeat(100_000)).into_bytes();
    let (a, b, c) = tokio::join!(
        upload_file(&app, &acme, &collection, "1.html", "text/html", &slow),
        upload_file(&app, &acme, &collection, "2.html", "text/html", &slow),
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            upload_file(&app, &acme, &collection, "3.html", "text/html", &slow).await
        }
    );
    let statuses = [a.status(), b.status()];
    assert!(statuses.iter().all(|s| s.is_client_error()), "{statuses:?}");
    assert!(c.headers().contains_key("retry-after"));
    assert_problem(c, StatusCode::SERVICE_UNAVAILABLE, "server_busy").await;
}
