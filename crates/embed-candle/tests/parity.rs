//! all-MiniLM-L6-v2 on Candle against sentence-transformers' own vectors, plus the port's
//! contract (no truncation, order, empty input).
//!
//! Needs the model: `just models` puts it in `<workspace>/.local/models/all-MiniLM-L6-v2`
//! (`AGENTIC_MINILM_DIR` overrides). The reference vectors are
//! `tests/fixtures/minilm-reference.jsonl` beside this file (`AGENTIC_FIXTURES_DIR` overrides the
//! folder). Missing either is a failure, never a skip.

use std::path::{Path, PathBuf};
use std::time::Instant;

use domain::ports::{EmbedError, Embedder};
use embed_candle::{CandleEmbedder, EmbedderOptions};

const MIN_COSINE: f64 = 0.999;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_dir() -> PathBuf {
    std::env::var_os("AGENTIC_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".local/models/all-MiniLM-L6-v2"))
}

fn fixtures_file() -> PathBuf {
    std::env::var_os("AGENTIC_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
        .join("minilm-reference.jsonl")
}

/// The model directory; fails (never skips) when the model is not there.
fn required_model_dir() -> PathBuf {
    let dir = model_dir();
    assert!(
        dir.join("model.safetensors").is_file(),
        "no all-MiniLM-L6-v2 model in {}: run `just models` (deploy/local/models.sh), \
         or set AGENTIC_MINILM_DIR to a model directory",
        dir.display()
    );
    dir
}

fn load(options: EmbedderOptions) -> CandleEmbedder {
    let dir = required_model_dir();
    CandleEmbedder::load(&dir, options).unwrap_or_else(|error| {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message += &format!(": {cause}");
            source = cause.source();
        }
        panic!("cannot load {}: {message}", dir.display())
    })
}

#[derive(serde::Deserialize)]
struct Reference {
    text: String,
    embedding: Vec<f32>,
}

fn references() -> Vec<Reference> {
    let path = fixtures_file();
    let content = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "cannot read the reference vectors {}: {error} (set AGENTIC_FIXTURES_DIR)",
            path.display()
        )
    });
    let references: Vec<Reference> = content
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line).unwrap_or_else(|error| {
                panic!(
                    "{}:{}: not a reference vector: {error}",
                    path.display(),
                    number + 1
                )
            })
        })
        .collect();
    assert!(
        references.len() >= 10,
        "only {} reference vectors in {}",
        references.len(),
        path.display()
    );
    references
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn texts(references: &[Reference]) -> Vec<String> {
    references.iter().map(|r| r.text.clone()).collect()
}

/// Every reference text, in a padded batch of all of them, in small batches, and alone, with the
/// linear layers on AMX tiles (where this machine has them) and in f32.
#[tokio::test]
async fn reproduces_sentence_transformers() {
    let references = references();
    let texts = texts(&references);
    for amx in [true, false] {
        for batch_size in [32, 3, 1] {
            let embedder = load(EmbedderOptions {
                batch_size,
                amx,
                ..EmbedderOptions::default()
            });
            assert!(amx || !embedder.uses_amx(), "AMX was switched off");
            let products = if embedder.uses_amx() {
                "AMX tiles"
            } else {
                "f32"
            };
            let vectors = embedder.embed(&texts).await.unwrap();
            assert_eq!(vectors.len(), references.len());
            let mut worst = (f64::INFINITY, 0);
            for (index, (reference, vector)) in references.iter().zip(&vectors).enumerate() {
                assert_eq!(vector.len(), 384);
                let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!((norm - 1.0).abs() < 1e-4, "text {index} has norm {norm}");
                let similarity = cosine(vector, &reference.embedding);
                assert!(
                    similarity >= MIN_COSINE,
                    "{products}, batch size {batch_size}: cosine {similarity} < {MIN_COSINE} for {:?}",
                    reference.text
                );
                if similarity < worst.0 {
                    worst = (similarity, index);
                }
            }
            println!(
                "{products}, batch size {batch_size}: minimum cosine {:.9} (1 - cos = {:.1e}, {:?})",
                worst.0,
                1.0 - worst.0,
                references[worst.1].text
            );
            // Both paths are as close to the reference as f32 arithmetic allows, far inside
            // the bound above: a product path that drifted (one bf16 term instead of three
            // gives 1 - cos ≈ 1e-5) fails here.
            assert!(
                1.0 - worst.0 < 1e-6,
                "{products}, batch size {batch_size}: 1 - cos = {:.1e}",
                1.0 - worst.0
            );
        }
    }
}

/// AMX tiles and f32 products give the same vectors, text for text, on longer inputs too
/// (chunks of up to the model's window, where rounding has the most sums to pile up in).
#[tokio::test]
async fn amx_and_f32_products_agree() {
    let with_amx = load(EmbedderOptions::default());
    if !with_amx.uses_amx() {
        println!(
            "no AMX on this machine: the f32 path is checked by reproduces_sentence_transformers"
        );
        return;
    }
    let f32_only = load(EmbedderOptions {
        amx: false,
        ..EmbedderOptions::default()
    });
    let mut texts = texts(&references());
    let words = "tenant collection chunk vector index query answer model token window";
    let long: Vec<&str> = words.split(' ').cycle().take(250).collect();
    texts.push(long.join(" "));
    texts.push(long[..100].join(", "));
    let a = with_amx.embed(&texts).await.unwrap();
    let b = f32_only.embed(&texts).await.unwrap();
    for (index, (x, y)) in a.iter().zip(&b).enumerate() {
        let similarity = cosine(x, y);
        assert!(
            1.0 - similarity < 1e-6,
            "text {index}: AMX against f32, 1 - cos = {:.1e}",
            1.0 - similarity
        );
    }
}

#[tokio::test]
async fn keeps_the_callers_order_when_lengths_differ() {
    let embedder = load(EmbedderOptions {
        batch_size: 2,
        ..EmbedderOptions::default()
    });
    let texts: Vec<String> = [
        "A retrieval-augmented generation pipeline chunks documents, embeds each chunk and stores the vectors.",
        "Hi.",
        "The weather in Reykjavik is cold and windy in November.",
        "",
        "Short text here.",
    ]
    .map(String::from)
    .to_vec();
    let together = embedder.embed(&texts).await.unwrap();
    assert_eq!(together.len(), texts.len());
    for (index, text) in texts.iter().enumerate() {
        let alone = embedder.embed(std::slice::from_ref(text)).await.unwrap();
        let similarity = cosine(&together[index], &alone[0]);
        assert!(
            similarity > 0.99999,
            "text {index} moved or changed: cosine {similarity}"
        );
        for (other, vector) in together
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
        {
            assert!(
                cosine(vector, &alone[0]) < 0.999,
                "text {index} looks like text {other}"
            );
        }
    }
}

#[tokio::test]
async fn refuses_a_text_beyond_the_window_instead_of_truncating() {
    let embedder = load(EmbedderOptions::default());
    let max = embedder.max_input_tokens();
    let words = |n: usize| vec!["word"; n].join(" ");
    assert_eq!(embedder.count_tokens(&words(max)).unwrap(), max);

    // Exactly at the limit: embedded.
    let at_limit = embedder
        .embed(&["fine".to_owned(), words(max)])
        .await
        .unwrap();
    assert_eq!(at_limit.len(), 2);

    // One token more: refused, with the offending index.
    let error = embedder
        .embed(&["fine".to_owned(), words(max + 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(error, EmbedError::TooLong { index: 1, tokens, max: m } if tokens == max + 1 && m == max),
        "{error:?}"
    );

    // Far beyond even the model's 512 positions: still a clean TooLong.
    let error = embedder.embed(&[words(1000)]).await.unwrap_err();
    assert!(
        matches!(
            error,
            EmbedError::TooLong {
                index: 0,
                tokens: 1000,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn empty_input_gives_empty_output() {
    let embedder = load(EmbedderOptions::default());
    assert!(embedder.embed(&[]).await.unwrap().is_empty());
}

#[test]
fn reports_the_models_shape_and_counts_tokens_without_special_tokens() {
    let embedder = load(EmbedderOptions::default());
    assert_eq!(embedder.dimensions(), 384);
    assert_eq!(embedder.max_input_tokens(), 254);
    assert_eq!(embedder.count_tokens("").unwrap(), 0);
    // how do i reset my password ?
    assert_eq!(
        embedder
            .count_tokens("How do I reset my password?")
            .unwrap(),
        7
    );

    let shorter = load(EmbedderOptions {
        max_seq_length: 128,
        ..EmbedderOptions::default()
    });
    assert_eq!(shorter.max_input_tokens(), 126);
}

#[test]
fn refuses_options_the_model_cannot_take() {
    let dir = required_model_dir();
    for options in [
        EmbedderOptions {
            max_seq_length: 513,
            ..EmbedderOptions::default()
        },
        EmbedderOptions {
            max_seq_length: 2,
            ..EmbedderOptions::default()
        },
        EmbedderOptions {
            batch_size: 0,
            ..EmbedderOptions::default()
        },
    ] {
        let result = CandleEmbedder::load(&dir, options.clone());
        assert!(
            matches!(result, Err(embed_candle::LoadError::InvalidOptions(_))),
            "{options:?} gave {result:?}"
        );
    }
}

#[test]
fn a_missing_directory_is_a_read_error() {
    let result = CandleEmbedder::load(Path::new("/nonexistent/model"), EmbedderOptions::default());
    assert!(
        matches!(result, Err(embed_candle::LoadError::Read { .. })),
        "{result:?}"
    );
}

/// A copy of the model directory with `config.json` edited by `edit`.
fn model_with_config(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let source = required_model_dir();
    let dir = std::env::temp_dir().join(format!("embed-candle-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    for file in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(source.join(file), dir.join(file)).expect("a copy of the model");
    }
    let config = std::fs::read_to_string(source.join("config.json")).expect("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&config).expect("JSON config");
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).expect("an edited config");
    dir
}

#[test]
fn refuses_a_configuration_the_encoder_cannot_run() {
    for (name, key, value) in [
        ("relative", "position_embedding_type", "relative_key"),
        ("swish", "hidden_act", "swish"),
    ] {
        let dir = model_with_config(name, |config| config[key] = value.into());
        let result = CandleEmbedder::load(&dir, EmbedderOptions::default());
        assert!(
            matches!(result, Err(embed_candle::LoadError::Config { .. })),
            "{key} = {value} gave {result:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
    // Weights that do not have the configured shape, and a RoBERTa-style model (positions
    // numbered differently), which BERT's weights would otherwise load for.
    for (name, key, value) in [
        ("wider", "intermediate_size", serde_json::json!(2048)),
        ("roberta", "model_type", serde_json::json!("roberta")),
    ] {
        let dir = model_with_config(name, |config| config[key] = value.clone());
        let result = CandleEmbedder::load(&dir, EmbedderOptions::default());
        assert!(
            matches!(result, Err(embed_candle::LoadError::Weights { .. })),
            "{key} = {value} gave {result:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// Throughput at batch 32: `cargo test --release -p embed-candle --test parity -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "benchmark; run in release"]
async fn throughput() {
    let embedder = load(EmbedderOptions::default());
    let base = texts(&references());
    let texts: Vec<String> = (0..20)
        .flat_map(|round| base.iter().map(move |text| format!("{text} ({round})")))
        .collect();
    embedder.embed(&texts[..32]).await.unwrap(); // warm-up
    let start = Instant::now();
    let vectors = embedder.embed(&texts).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(vectors.len(), texts.len());
    println!(
        "{} sentences in {:.2?}: {:.1} sentences/s",
        texts.len(),
        elapsed,
        texts.len() as f64 / elapsed.as_secs_f64()
    );
}
