//! Clients that reset their connections mid-request (the end of any load test does it) must leave
//! nothing behind: no session inside a transaction, no write without its audit entry, no span
//! left entered, and every later request answered for its own tenant.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::FromQueryResult;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::{Options, TestApp, json, setting};

/// Everything the server logs, kept to look at the lines' lengths.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends a request and resets the connection `after` later, whatever the server was doing.
async fn send_and_reset(address: String, request: String, after: Duration) {
    let Ok(mut stream) = TcpStream::connect(&address).await else {
        return;
    };
    let _ = stream.write_all(request.as_bytes()).await;
    tokio::time::sleep(after).await;
    // SO_LINGER 0: closing sends RST, as a client that gives up does. (Deprecated because a
    // non-zero linger blocks the thread on drop; a zero one does not.)
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

#[tokio::test]
async fn connections_reset_mid_request_leave_no_transaction_no_orphan_and_no_entered_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let pg_log = setting("AGENTIC_PG_LOG");
    let log_from = pg_log
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());

    let app = TestApp::spawn_with(Options {
        ingest_workers: 0,
        ..Default::default()
    })
    .await;
    let acme = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let address = app.address.trim_start_matches("http://").to_owned();

    // 400 requests, creates and lists of both tenants, each reset 0 to 7 ms after it was sent.
    let mut storm = Vec::new();
    for i in 0..400u64 {
        let (token, tenant) = if i % 2 == 0 {
            (&acme.admin_token, "acme")
        } else {
            (&other.admin_token, "other")
        };
        let request = if i % 3 == 0 {
            format!(
                "GET /v1/agents?limit=100 HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
        } else {
            let body = json!({
                "name": format!("Storm {i}"),
                "slug": format!("storm-{tenant}-{i}"),
                "model": {"provider": "local", "name": "smollm2"}
            })
            .to_string();
            format!(
                "POST /v1/agents HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        storm.push(tokio::spawn(send_and_reset(
            address.clone(),
            request,
            Duration::from_millis(i * 7 % 8),
        )));
        if storm.len() == 16 {
            for task in storm.drain(..) {
                task.await.unwrap();
            }
        }
    }
    for task in storm {
        task.await.unwrap();
    }
    // What was cut off finishes or rolls back.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // No application session is left inside a transaction.
    #[derive(FromQueryResult)]
    struct Count {
        n: i64,
    }
    let app_db = app.app_connection().await;
    let idle_in_transaction = Count::find_by_statement(sea_orm::Statement::from_string(
        sea_orm::DbBackend::Postgres,
        "SELECT count(*) AS n FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND state LIKE 'idle in transaction%'"
            .to_owned(),
    ))
    .one(&app_db)
    .await
    .unwrap()
    .unwrap()
    .n;
    assert_eq!(idle_in_transaction, 0, "sessions left inside a transaction");

    // Every agent that was stored has its audit entry (they commit together or not at all).
    let platform = app.platform_connection().await;
    let orphans = Count::find_by_statement(sea_orm::Statement::from_string(
        sea_orm::DbBackend::Postgres,
        "SELECT count(*) AS n FROM agents a
         WHERE NOT EXISTS (SELECT 1 FROM audit_log l
                           WHERE l.tenant_id = a.tenant_id AND l.resource_id = a.id
                             AND l.action = 'created')"
            .to_owned(),
    ))
    .one(&platform)
    .await
    .unwrap()
    .unwrap()
    .n;
    assert_eq!(orphans, 0, "agents without their audit entry");
    let stored = Count::find_by_statement(sea_orm::Statement::from_string(
        sea_orm::DbBackend::Postgres,
        "SELECT count(*) AS n FROM agents".to_owned(),
    ))
    .one(&platform)
    .await
    .unwrap()
    .unwrap()
    .n;
    eprintln!("{stored} of 266 creations were stored before their connection was reset");

    // Every later request is answered, for its own tenant.
    for (tenant, fixture) in [("acme", &acme), ("other", &other)] {
        for _ in 0..25 {
            let listed = json(
                app.get("/v1/agents?limit=100", &fixture.admin_token).await,
                StatusCode::OK,
            )
            .await;
            for agent in listed["items"].as_array().unwrap() {
                let slug = agent["slug"].as_str().unwrap();
                assert!(slug.starts_with(&format!("storm-{tenant}-")), "{slug}");
            }
        }
        json(
            app.post(
                "/v1/agents",
                &fixture.admin_token,
                json!({"name": "After", "slug": "after", "model": {"provider": "local", "name": "smollm2"}}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
    }

    // PostgreSQL saw no BEGIN inside a transaction left open.
    if let Some(path) = pg_log {
        let log = std::fs::read(&path).unwrap_or_default();
        let since =
            String::from_utf8_lossy(&log[usize::try_from(log_from).unwrap().min(log.len())..])
                .into_owned();
        assert!(
            !since.contains("there is already a transaction in progress"),
            "PostgreSQL's log ({path}) says a session was reused inside a transaction"
        );
    }

    // Log lines are of normal length: no request span was left entered for later ones to nest in.
    let refused = app.get("/v1/agents", "not-a-token").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let logged = captured.0.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&logged);
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(
        text.contains("authentication refused"),
        "the refusal was logged"
    );
    assert!(longest < 2_000, "a log line of {longest} bytes");
}
