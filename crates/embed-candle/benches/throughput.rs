//! Throughput of the Candle embedder: sentences per second at batch 32 over a file of sentences,
//! end to end through the `Embedder` port (tokenising, sorting by length, inference, pooling).
//! Run by `just bench-embed`, which compares it with sentence-transformers on the same file.
//!
//! Environment: `MODEL_DIR` (Hugging Face layout), `SENTENCES` (one per line), `VECTORS_OUT`
//! (little-endian f32 rows, in input order, for the comparison), `RUNS` (default 3), `AMX`
//! (`0`: f32 products even where AMX tiles are available; default `1`).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Instant;

use domain::ports::Embedder;
use embed_candle::{CandleEmbedder, EmbedderOptions};

fn main() {
    let env = |key: &str| std::env::var(key).unwrap_or_else(|_| panic!("{key} is not set"));
    let model_dir = PathBuf::from(env("MODEL_DIR"));
    let sentences: Vec<String> = std::fs::read_to_string(env("SENTENCES"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let runs: usize = std::env::var("RUNS").map_or(3, |r| r.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    let started = Instant::now();
    let options = EmbedderOptions {
        amx: std::env::var("AMX").map_or(true, |v| v != "0"),
        ..EmbedderOptions::default()
    };
    let embedder = CandleEmbedder::load(&model_dir, options).unwrap();
    let load_secs = started.elapsed().as_secs_f64();
    // Warm-up: one batch.
    runtime
        .block_on(embedder.embed(&sentences[..32.min(sentences.len())]))
        .unwrap();

    let mut rates = Vec::with_capacity(runs);
    let mut vectors = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        vectors = runtime.block_on(embedder.embed(&sentences)).unwrap();
        #[allow(clippy::cast_precision_loss)]
        rates.push(sentences.len() as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];

    let mut bytes = Vec::with_capacity(vectors.len() * embedder.dimensions() * 4);
    for row in &vectors {
        for x in row {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(env("VECTORS_OUT"), bytes).unwrap();
    let peak_rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_default();
    let all: Vec<String> = rates.iter().map(|r| format!("{r:.1}")).collect();
    // One JSON line for the script.
    println!(
        "{{\"sentences\": {}, \"amx\": {}, \"runs\": [{}], \"median_per_s\": {median:.1}, \"load_s\": {load_secs:.2}, \"peak_rss_kib\": {}}}",
        sentences.len(),
        embedder.uses_amx(),
        all.join(", "),
        if peak_rss_kib.is_empty() {
            "null".to_owned()
        } else {
            peak_rss_kib
        },
    );
}
