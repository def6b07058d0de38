# Agentic Platform: the commands. `just services` once, then `just run` or `just test`.

set shell := ["bash", "-euo", "pipefail", "-c"]
set dotenv-load := false

export RUST_LOG := env_var_or_default("RUST_LOG", "info,sqlx=warn")

default:
    @just --list

# Start PostgreSQL (pgvector) and Redis, idempotently; writes .local/env.
services:
    deploy/local/services.sh start

# Stop the PostgreSQL cluster started by `just services`.
services-stop:
    deploy/local/services.sh stop

# Apply the schema migrations.
migrate: services
    source .local/env && cargo run -q -p api-actix --bin agentic -- migrate up

# Services, models, migrations, a demo tenant with an agent over this project's docs (credentials
# printed once), then the API on :8080.
run: migrate models
    #!/usr/bin/env bash
    set -euo pipefail
    source .local/env
    cargo build -q -p api-actix --bin agentic
    first=false
    if ./target/debug/agentic tenant create --name Demo --slug demo --admin-email admin@demo.test > .local/demo.json 2>/dev/null; then
        first=true
        echo "Demo tenant created. Sign in with (shown once):"
        python3 -c 'import json; d = json.load(open(".local/demo.json")); print("  tenant=demo email=" + d["admin"]["email"] + " password=" + d["admin_password"])'
    else
        rm -f .local/demo.json
        echo "Demo tenant already exists (its admin password was printed when it was created)."
    fi
    # Candle sizes its thread pool once; named, it stops re-reading the CPU list on every product.
    export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-$(nproc)}"
    bind="${AGENTIC_BIND:-127.0.0.1:8080}"
    echo "Serving on http://$bind (docs at /docs)"
    ./target/debug/agentic serve &
    server=$!
    trap 'kill $server 2>/dev/null' EXIT INT TERM
    if $first; then
        AGENTIC_URL="http://$bind" deploy/local/demo.sh .local/demo.json || echo "the demo agent could not be set up" >&2
        rm -f .local/demo.json
    fi
    wait $server

# Download the local models (all-MiniLM-L6-v2, SmolLM2) into .local/models, idempotently.
models:
    deploy/local/models.sh

# Services, then the whole test suite (unit and integration) with cargo-nextest, then the
# OpenAI-compatible routes through the official `openai` SDKs for Python and Node.js.
test: services models
    #!/usr/bin/env bash
    set -euo pipefail
    source .local/env
    deploy/local/drop-test-databases.sh
    cargo nextest run --workspace --no-fail-fast
    deploy/local/sdk-tests.sh

# The official OpenAI SDKs (Python and Node.js, installed on first use) against the server.
sdk-tests: services
    deploy/local/sdk-tests.sh

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Property-based API fuzzing with schemathesis against the OpenAPI document (budget: examples per operation).
fuzz examples="50": services
    deploy/local/fuzz.sh {{examples}}

# HTTP load benchmark of the agent routes (wrk, 64 connections, 30 s each); writes docs/benchmarks.md.
bench-api seconds="30": services
    deploy/local/bench-api.sh {{seconds}}

# Vector search in PostgreSQL + pgvector (exact, HNSW, the production planner): build time, p50/p99, recall@10; writes docs/benchmarks.md.
bench-search: services
    deploy/local/bench-search.sh

# Sentences/s of the Candle embedder against sentence-transformers (installed into .local/bench-venv on first use); writes docs/benchmarks.md.
bench-embed: models
    deploy/local/bench-embed.sh

# The same, with AVX-512 and AMX off on both sides: the AVX2 path most machines run; writes docs/benchmarks.md.
bench-embed-avx2: models
    ISA=avx2 deploy/local/bench-embed.sh

# Chunks/s of ingestion end to end against the raw embedder on the same chunks; writes docs/benchmarks.md.
bench-ingest: services models
    deploy/local/bench-ingest.sh

# The platform's own work per turn (open loop, 32 conversations, with and without retrieval over 10,000
# chunks), its delay on streamed tokens, and the local chat model's tokens/s; writes docs/benchmarks.md.
bench-agents: services models
    deploy/local/bench-agents.sh

# Two agentic release binaries side by side (batches alternating between them): for comparing
# builds on a machine whose speed drifts. Prints a table; writes nothing into the docs.
bench-agents-ab bin_a bin_b: services models
    deploy/local/bench-agents-ab.sh {{bin_a}} {{bin_b}}

# Hit@k, MRR@10 and latency of every search mode over Python's and the C library's docs, beside BM25/dense references and a fusion study; writes docs/benchmarks.md.
bench-retrieval: services models
    deploy/local/bench-retrieval.sh

# Every benchmark.
bench: bench-api bench-search bench-embed bench-ingest bench-agents bench-retrieval
