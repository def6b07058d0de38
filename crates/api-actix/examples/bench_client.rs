//! The client side of `just bench-agents`: posts turns to conversations over HTTP/1.1, one
//! connection per request as a browser's or SDK's first request would, and prints each
//! request's status and latency. It is compiled so that what it measures is the platform: a
//! client in Python spent more CPU per turn than the server's own PostgreSQL round trips, on
//! the same cores.
//!
//! ```text
//! bench_client BASE TOKEN CONVERSATIONS sequential N
//! bench_client BASE TOKEN CONVERSATIONS open RATE SECONDS
//! ```
//!
//! CONVERSATIONS is a comma-separated list of conversation ids, used round robin. The i-th
//! request asks "Question i about rockets and fuel?", so that the mock it reaches can count its
//! own time under i. Prints one JSON array of `[i, status, latency_ms]` (status 0: no answer).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Target {
    address: String,
    token: String,
    conversations: Vec<String>,
}

impl Target {
    /// One turn on a connection of its own: its status (0 when the server hung up without an
    /// answer) and its latency.
    async fn turn(&self, i: usize) -> (u16, f64) {
        let body = format!(r#"{{"content":"Question {i} about rockets and fuel?"}}"#);
        let conversation = &self.conversations[i % self.conversations.len()];
        let request = format!(
            "POST /v1/conversations/{conversation}/messages HTTP/1.1\r\nhost: {}\r\n\
             authorization: Bearer {}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            self.address,
            self.token,
            body.len()
        );
        let sent = Instant::now();
        let status = match exchange(&self.address, request.as_bytes()).await {
            Ok(received) => status_of(&received),
            Err(_) => 0,
        };
        (status, sent.elapsed().as_secs_f64() * 1000.0)
    }
}

async fn exchange(address: &str, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    stream.write_all(request).await?;
    let mut received = Vec::with_capacity(4096);
    tokio::time::timeout(Duration::from_secs(120), stream.read_to_end(&mut received))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    Ok(received)
}

fn status_of(received: &[u8]) -> u16 {
    received
        .strip_prefix(b"HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: bench_client BASE TOKEN CONVERSATIONS (sequential N | open RATE SECONDS)";
    assert!(args.len() >= 6, "{usage}");
    let target = Target {
        address: args[1].trim_start_matches("http://").to_owned(),
        token: args[2].clone(),
        conversations: args[3].split(',').map(str::to_owned).collect(),
    };
    // One thread, as the server's clients are not what is measured: it stays off the cores the
    // server, PostgreSQL and Redis share as much as it can.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime.block_on(async {
        match args[4].as_str() {
            "sequential" => {
                let n: usize = args[5].parse().expect(usage);
                let mut results = Vec::with_capacity(n);
                for i in 0..n {
                    let (status, ms) = target.turn(i).await;
                    results.push((i, status, ms));
                }
                results
            }
            "open" => {
                let rate: f64 = args[5].parse().expect(usage);
                let seconds: f64 = args.get(6).expect(usage).parse().expect(usage);
                open_loop(target, rate, seconds).await
            }
            _ => panic!("{usage}"),
        }
    });
    let rows: Vec<String> = results
        .iter()
        .map(|(i, status, ms)| format!("[{i},{status},{ms:.4}]"))
        .collect();
    println!("[{}]", rows.join(","));
}

/// Requests at `rate` per second for `seconds`, whatever the answers' pace.
async fn open_loop(target: Target, rate: f64, seconds: f64) -> Vec<(usize, u16, f64)> {
    let target = std::sync::Arc::new(target);
    // Truncation is meant: a whole number of requests.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total = (rate * seconds) as usize;
    let start = tokio::time::Instant::now();
    // Spawned on the one thread of the current-thread runtime.
    let tasks: Vec<_> = (0..total)
        .map(|i| {
            #[allow(clippy::cast_precision_loss)]
            let at = start + Duration::from_secs_f64(i as f64 / rate);
            let target = target.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                let (status, ms) = target.turn(i).await;
                (i, status, ms)
            })
        })
        .collect();
    let mut results = Vec::with_capacity(total);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}
