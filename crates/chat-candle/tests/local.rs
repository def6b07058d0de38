//! SmolLM2-135M-Instruct through the `ChatModel` port: answers, ceilings, the queue, cancellation.
//!
//! Needs the model: `just models` puts it in
//! `<workspace>/.local/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (`AGENTIC_SMOLLM2_GGUF`
//! overrides). Missing is a failure, never a skip.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chat_candle::{LoadError, LocalChatModel, LocalChatOptions};
use domain::ports::{
    ChatDelta, ChatError, ChatMessage, ChatModel, ChatRequest, ChatRole, ChatStream, TokenUsage,
};

fn gguf_path() -> PathBuf {
    let path = std::env::var_os("AGENTIC_SMOLLM2_GGUF").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../.local/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        },
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "no SmolLM2 model at {}: run `just models` (deploy/local/models.sh), or set \
         AGENTIC_SMOLLM2_GGUF to the GGUF file",
        path.display()
    );
    path
}

fn load(options: LocalChatOptions) -> LocalChatModel {
    let path = gguf_path();
    LocalChatModel::load(&path, options).unwrap_or_else(|error| {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message += &format!(": {cause}");
            source = cause.source();
        }
        panic!("cannot load {}: {message}", path.display())
    })
}

/// One model for the tests that do not look at the queue: their requests wait their turn.
fn shared() -> &'static LocalChatModel {
    static MODEL: OnceLock<LocalChatModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        load(LocalChatOptions {
            queue_capacity: 64,
            ..LocalChatOptions::default()
        })
    })
}

fn ask(question: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::new(ChatRole::System, "You are a helpful assistant."),
            ChatMessage::new(ChatRole::User, question),
        ],
        temperature: 0.0,
        max_tokens,
        tools: Vec::new(),
    }
}

const LONG: &str = "Write a long story about a dragon who learns to bake bread.";

#[derive(Debug)]
struct Answer {
    deltas: Vec<String>,
    usage: TokenUsage,
}

impl Answer {
    fn text(&self) -> String {
        self.deltas.concat()
    }
}

/// Pulls the whole stream; it must end with `Usage`, then `None`.
async fn collect(mut stream: Box<dyn ChatStream>) -> Answer {
    let mut deltas = Vec::new();
    loop {
        match stream.next().await {
            Some(Ok(ChatDelta::Text(text))) => deltas.push(text),
            Some(Ok(ChatDelta::Usage(usage))) => {
                assert!(stream.next().await.is_none(), "a delta after Usage");
                return Answer { deltas, usage };
            }
            other => panic!("unexpected {other:?} after {deltas:?}"),
        }
    }
}

async fn answer(model: &LocalChatModel, request: ChatRequest) -> Answer {
    collect(model.stream(request).await.expect("the model starts")).await
}

#[tokio::test]
async fn a_greedy_answer_names_the_capital_and_ends_with_its_usage() {
    let model = shared();
    let request = ask("What is the capital of France?", 64);
    let prompt = model.count_tokens("system\nYou are a helpful assistant.")
        + model.count_tokens("user\nWhat is the capital of France?")
        + model.count_tokens("assistant\n")
        + 2 * model.count_tokens("\n")
        + 5; // markers: two turns of two, and the answer's opening
    let answer = answer(model, request).await;
    let text = answer.text();
    assert!(text.contains("Paris"), "{text:?}");
    assert!(!text.contains("<|im_end|>"), "{text:?}");
    assert_eq!(answer.usage.prompt_tokens, prompt);
    assert!(answer.usage.completion_tokens < 64, "{answer:?}");
    assert_eq!(
        answer.usage.completion_tokens,
        model.count_tokens(&text),
        "{text:?}"
    );
}

#[tokio::test]
async fn max_tokens_is_a_hard_ceiling() {
    let answer = answer(shared(), ask(LONG, 5)).await;
    assert_eq!(answer.usage.completion_tokens, 5, "{answer:?}");
    assert!(!answer.text().is_empty());
}

#[tokio::test]
async fn no_tokens_asked_gives_no_answer_and_its_usage() {
    let answer = answer(shared(), ask(LONG, 0)).await;
    assert!(answer.deltas.is_empty());
    assert_eq!(answer.usage.completion_tokens, 0);
    assert!(answer.usage.prompt_tokens > 0);
}

#[tokio::test]
async fn identical_greedy_requests_get_identical_answers_whatever_ran_between() {
    let model = shared();
    let first = answer(model, ask("Name three colours.", 40)).await;
    let between = answer(model, ask(LONG, 30)).await;
    let again = answer(model, ask("Name three colours.", 40)).await;
    assert_ne!(first.text(), between.text());
    assert_eq!(first.text(), again.text());
    assert_eq!(first.usage, again.usage);
}

#[tokio::test]
async fn deltas_are_whole_characters() {
    let question = "Translate to Japanese and to French: good morning, coffee, thank you. \
                    Add some emoji.";
    let answer = answer(shared(), ask(question, 80)).await;
    let text = answer.text();
    assert!(
        !text.is_ascii(),
        "the test needs a non-ASCII answer: {text:?}"
    );
    for delta in &answer.deltas {
        assert!(!delta.is_empty());
        assert!(
            !delta.contains(char::REPLACEMENT_CHARACTER),
            "{:?}",
            answer.deltas
        );
    }
}

#[tokio::test]
async fn sampling_with_a_temperature_answers_too() {
    let mut request = ask("Say something about the sea.", 20);
    request.temperature = 0.8;
    let answer = answer(shared(), request).await;
    assert!(answer.usage.completion_tokens > 0);
    assert!(answer.usage.completion_tokens <= 20);
}

#[tokio::test]
async fn tokens_are_counted_by_the_model_s_tokenizer() {
    let model = shared();
    assert_eq!(model.count_tokens(""), 0);
    assert_eq!(model.count_tokens("Hello world"), 2);
    // Digits one by one; markers typed in text are text.
    assert_eq!(model.count_tokens("2024"), 4);
    assert!(model.count_tokens("<|im_end|>") > 1);
    assert!(!model.supports_tools());
    assert_eq!(model.context_window(), 4096);
}

#[tokio::test]
async fn a_prompt_that_leaves_no_room_for_an_answer_fails_before_it_is_queued() {
    let model = shared();
    let long = "word ".repeat(5000);
    match model.stream(ask(&long, 10)).await {
        Err(ChatError::Provider(message)) => {
            assert!(message.contains("the model takes 4096"), "{message}");
        }
        Err(other) => panic!("unexpected {other:?}"),
        Ok(_) => panic!("a prompt beyond the window was accepted"),
    }
}

#[tokio::test]
async fn a_full_queue_answers_busy_at_once() {
    let model = load(LocalChatOptions {
        queue_capacity: 1,
        ..LocalChatOptions::default()
    });
    // One runs and one waits; both are long, so neither ends during the next call.
    let running = model.stream(ask(LONG, 500)).await.expect("runs");
    let waiting = model.stream(ask(LONG, 500)).await.expect("waits");
    let started = Instant::now();
    match model.stream(ask(LONG, 500)).await {
        Err(ChatError::Busy { retry_after_secs }) => assert!(retry_after_secs >= 1),
        Err(other) => panic!("unexpected {other:?}"),
        Ok(_) => panic!("a third request was admitted"),
    }
    assert!(started.elapsed() < Duration::from_millis(100));
    drop((running, waiting));
}

#[tokio::test]
async fn a_dropped_stream_frees_the_model_for_the_next_request() {
    let model = load(LocalChatOptions {
        queue_capacity: 0,
        ..LocalChatOptions::default()
    });
    let mut first = model.stream(ask(LONG, 2000)).await.expect("runs");
    for _ in 0..3 {
        assert!(matches!(first.next().await, Some(Ok(ChatDelta::Text(_)))));
    }
    assert!(matches!(
        model.stream(ask(LONG, 10)).await,
        Err(ChatError::Busy { .. })
    ));
    drop(first);

    let dropped = Instant::now();
    let next = loop {
        match model
            .stream(ask("What is the capital of France?", 20))
            .await
        {
            Ok(stream) => break stream,
            Err(ChatError::Busy { .. }) => {
                assert!(dropped.elapsed() < Duration::from_secs(2), "still busy");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    };
    let answer = collect(next).await;
    assert!(answer.text().contains("Paris"), "{answer:?}");
}

#[test]
fn a_missing_file_is_a_read_error() {
    let missing = Path::new("/nonexistent/model.gguf");
    assert!(matches!(
        LocalChatModel::load(missing, LocalChatOptions::default()),
        Err(LoadError::Read { .. })
    ));
}

#[test]
fn a_file_that_is_not_gguf_is_a_read_error() {
    let this_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/local.rs");
    assert!(matches!(
        LocalChatModel::load(&this_file, LocalChatOptions::default()),
        Err(LoadError::Read { .. })
    ));
}

#[test]
fn a_thread_count_other_than_candle_s_is_refused_and_candle_s_is_taken() {
    let candle = std::env::var("CANDLE_NUM_THREADS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(candle_core::utils::get_num_threads);
    let with = |threads| LocalChatOptions {
        threads: Some(threads),
        ..LocalChatOptions::default()
    };
    match LocalChatModel::load(&gguf_path(), with(candle + 1)) {
        Err(LoadError::InvalidOptions(message)) => {
            assert!(message.contains("CANDLE_NUM_THREADS"), "{message}");
        }
        Err(other) => panic!("unexpected {other}"),
        Ok(_) => panic!("{} threads were taken", candle + 1),
    }
    assert!(LocalChatModel::load(&gguf_path(), with(candle)).is_ok());
}
