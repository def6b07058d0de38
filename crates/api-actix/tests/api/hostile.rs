//! Hostile bodies: what any caller can send before authentication must cost bounded time and
//! memory. The times measured here are printed (docs/benchmarks.md quotes them); the bound
//! asserted is a hundred times what the work should take.

use std::io::Write;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Options, TestApp};

const GENEROUS: Duration = Duration::from_secs(5);

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Posts `body` to the login route (gzip-encoded when asked) while `/healthz` is asked
/// alongside; answers the login's status, how long it took, and whether `/healthz` answered
/// within the bound.
async fn login_with(app: &TestApp, body: Vec<u8>, gzipped: bool) -> (StatusCode, Duration, bool) {
    let mut request = app
        .request(Method::POST, "/v1/auth/login", None)
        .header("content-type", "application/json");
    if gzipped {
        request = request.header("content-encoding", "gzip");
    }
    let started = Instant::now();
    let login = tokio::time::timeout(GENEROUS * 4, request.body(body).send());
    let health = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let res =
            tokio::time::timeout(GENEROUS, app.request(Method::GET, "/healthz", None).send()).await;
        matches!(res, Ok(Ok(r)) if r.status() == StatusCode::OK)
    };
    let (login, healthy) = tokio::join!(login, health);
    let status = login
        .expect("the login answered at all")
        .expect("sent")
        .status();
    (status, started.elapsed(), healthy)
}

#[tokio::test]
async fn bodies_of_backslashes_are_refused_in_linear_time_while_the_server_answers_others() {
    // The JSON limit of a real deployment (1 MiB); the tests' server has one worker thread, so
    // any body that pins it also stops `/healthz`.
    let app = TestApp::spawn_with(Options {
        max_body_bytes: 1024 * 1024,
        ingest_workers: 0,
        ..Default::default()
    })
    .await;
    let just_under_limit = {
        let mut body = br#"{"tenant":""#.to_vec();
        body.extend(std::iter::repeat_n(b'\\', 1024 * 1024 - 64));
        body.extend_from_slice(br#"","email":"a@b.test","password":"x"}"#);
        body
    };
    let twenty_mib = vec![b'\\'; 20 * 1024 * 1024];
    for (what, body, gzipped) in [
        (
            "1 MiB of \\ in a JSON string",
            just_under_limit.clone(),
            false,
        ),
        ("the same, gzip", gzip(&just_under_limit), true),
        ("20 MiB of \\", twenty_mib.clone(), false),
        ("20 MiB of \\, gzip", gzip(&twenty_mib), true),
    ] {
        let sent = body.len();
        let (status, took, healthy) = login_with(&app, body, gzipped).await;
        eprintln!("{what} ({sent} bytes on the wire): {status} in {took:?}");
        assert!(status.is_client_error(), "{what}: {status}");
        assert!(took < GENEROUS, "{what}: {took:?}");
        assert!(healthy, "{what}: /healthz kept answering");
    }
}

/// Sends the head of a chunked request, then `chunks` chunks of 64 KiB without ever ending the
/// body, and answers the status line the server sent back (or `None` if it waited for more).
async fn chunked_without_end(app: &TestApp, head: &str, chunks: usize) -> Option<String> {
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("{head}Host: {address}\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let chunk = [
        format!("{:x}\r\n", 64 * 1024).into_bytes(),
        vec![b'a'; 64 * 1024],
        b"\r\n".to_vec(),
    ]
    .concat();
    for _ in 0..chunks {
        // The server may answer and close before every chunk is in.
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let mut reply = vec![0; 256];
    let read = tokio::time::timeout(GENEROUS, stream.read(&mut reply)).await;
    match read {
        Ok(Ok(n)) if n > 0 => String::from_utf8_lossy(&reply[..n])
            .lines()
            .next()
            .map(str::to_owned),
        _ => None,
    }
}

#[tokio::test]
async fn a_chunked_body_is_cut_off_at_its_routes_limit_while_it_is_read() {
    let app = TestApp::spawn_with(Options {
        max_body_bytes: 1024 * 1024,
        ingest_workers: 0,
        ..Default::default()
    })
    .await;
    // 1.5 MiB of a body that never ends: the login route's 1 MiB limit answers 413 as soon as it
    // is passed (the document limit, or waiting for the end, would never answer).
    let status = chunked_without_end(
        &app,
        "POST /v1/auth/login HTTP/1.1\r\nContent-Type: application/json\r\n",
        24,
    )
    .await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 413 Payload Too Large"));

    // A document upload is read only for an authenticated caller.
    let status = chunked_without_end(
        &app,
        &format!(
            "POST /v1/collections/{}/documents HTTP/1.1\r\nContent-Type: application/json\r\n\
             Authorization: Bearer ak_not-a-key\r\n",
            uuid::Uuid::new_v4()
        ),
        4,
    )
    .await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 401 Unauthorized"));
}
