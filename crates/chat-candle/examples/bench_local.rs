//! Generation speed of the local chat model: medians over a few greedy answers to one short
//! prompt (128 tokens at most), then to one long prompt (about 1500 tokens, as a question over
//! retrieved passages would be; 32 tokens at most).
//!
//! `cargo run --release -p chat-candle --example bench_local -- <model.gguf> [runs]` prints one
//! JSON line: tokens per second after the first token, time to the first token, completion
//! tokens, and the process's resident memory (now and at its peak); `long_*` for the long
//! prompt.

use std::path::PathBuf;
use std::time::Instant;

use chat_candle::{LocalChatModel, LocalChatOptions};
use domain::ports::{ChatDelta, ChatMessage, ChatModel, ChatRequest, ChatRole};

const PROMPT: &str =
    "Write a short story about a lighthouse keeper who finds a message in a bottle.";
const MAX_TOKENS: u32 = 128;
const LONG_MAX_TOKENS: u32 = 32;

struct Run {
    prompt_tokens: u32,
    tokens_per_s: f64,
    time_to_first_token_ms: f64,
    completion_tokens: u32,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let path = PathBuf::from(
        args.next()
            .ok_or("usage: bench_local <model.gguf> [runs]")?,
    );
    let runs: usize = match args.next() {
        Some(runs) => runs.to_string_lossy().parse()?,
        None => 5,
    };

    let loading = Instant::now();
    let model = LocalChatModel::load(&path, LocalChatOptions::default())?;
    let load_ms = loading.elapsed().as_secs_f64() * 1e3;

    // One unmeasured answer warms the caches and Candle's thread pool.
    let short = PROMPT.to_owned();
    generate(&model, &short, MAX_TOKENS).await?;
    let mut results = Vec::with_capacity(runs);
    for _ in 0..runs {
        results.push(generate(&model, &short, MAX_TOKENS).await?);
    }
    let long = long_prompt();
    let mut long_results = Vec::with_capacity(runs);
    for _ in 0..runs.min(3) {
        long_results.push(generate(&model, &long, LONG_MAX_TOKENS).await?);
    }

    let (rss, hwm) = memory_mib();
    println!(
        "{}",
        serde_json::json!({
            "tokens_per_s": round(median(results.iter().map(|r| r.tokens_per_s))),
            "time_to_first_token_ms": round(median(results.iter().map(|r| r.time_to_first_token_ms))),
            "completion_tokens": median(results.iter().map(|r| f64::from(r.completion_tokens))),
            "long_prompt_tokens": long_results.first().map(|r| r.prompt_tokens),
            "long_tokens_per_s": round(median(long_results.iter().map(|r| r.tokens_per_s))),
            "long_time_to_first_token_ms": round(median(long_results.iter().map(|r| r.time_to_first_token_ms))),
            "rss_mib": rss,
            "peak_rss_mib": hwm,
            "load_ms": round(load_ms),
            "runs": runs,
        })
    );
    Ok(())
}

/// Passages and a question about them.
fn long_prompt() -> String {
    let mut prompt = String::from("Answer from these passages.\n\n");
    for i in 1..=24 {
        prompt += &format!(
            "[{i}] Station {i} of the coastal survey recorded a mean tide of {}.{} metres in \
             spring, and its keeper noted {} ships passing in the fog season. The lamp was \
             refitted in {} after a storm broke the lens, and the log mentions seals on the \
             northern rocks every year since.\n\n",
            i % 5 + 1,
            i * 7 % 10,
            i * 13 % 40 + 3,
            1890 + i * 3
        );
    }
    prompt + "Question: which station saw the most ships, and when was its lamp refitted?"
}

async fn generate(
    model: &LocalChatModel,
    prompt: &str,
    max_tokens: u32,
) -> Result<Run, Box<dyn std::error::Error>> {
    let request = ChatRequest {
        messages: vec![ChatMessage::new(ChatRole::User, prompt)],
        temperature: 0.0,
        max_tokens,
        tools: Vec::new(),
    };
    let started = Instant::now();
    let mut stream = model.stream(request).await?;
    let mut first = None;
    while let Some(delta) = stream.next().await {
        match delta? {
            ChatDelta::Text(_) => {
                first.get_or_insert_with(Instant::now);
            }
            ChatDelta::Usage(usage) => {
                let ended = Instant::now();
                let first = first.ok_or("no text")?;
                // Every token after the first, over the time they took.
                let after_first = f64::from(usage.completion_tokens.saturating_sub(1));
                return Ok(Run {
                    prompt_tokens: usage.prompt_tokens,
                    tokens_per_s: after_first / (ended - first).as_secs_f64(),
                    time_to_first_token_ms: (first - started).as_secs_f64() * 1e3,
                    completion_tokens: usage.completion_tokens,
                });
            }
            ChatDelta::ToolCall { .. } => {
                return Err("a tool call from a model without tools".into());
            }
        }
    }
    Err("the stream ended without usage".into())
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// `VmRSS` and `VmHWM` from `/proc/self/status`, in MiB (Linux only; 0 elsewhere).
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kib| round(kib / 1024.0))
    };
    (field("VmRSS:"), field("VmHWM:"))
}
