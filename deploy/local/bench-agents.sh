#!/usr/bin/env bash
# `just bench-agents`: the platform's own work per turn and its delay on streamed tokens, against
# a mock OpenAI-compatible model and embedder that answer at once (release binary, over HTTP);
# the same for `/v1/chat/completions`, beside LiteLLM's proxy on the same mock when it installs;
# then the local model's speed. Writes its section of docs/benchmarks.md.
# BENCH_PROFILE=debug and BENCH_QUICK=1 try the harness itself (small counts, no local model):
# their figures mean nothing, so their report goes to .local/bench/benchmarks.md, not the docs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
OUT="$ROOT/.local/bench"
mkdir -p "$OUT"
MOCK_PORT=18093
LITELLM_PORT=18095
# Pinned: the version this harness was tried with, and the one pip settled on unpinned in December
# 2026 (1.110.2's `[proxy]` extra asks for a litellm-proxy 1.110.2 that was not published).
LITELLM_VERSION=${BENCH_LITELLM_VERSION:-1.108.7}
LITELLM_VENV="$ROOT/.local/bench-venv-litellm"

# LiteLLM's proxy in a venv of its own, before the server starts so that installing competes with
# nothing measured. A failed or slow install leaves the reason in the report, not a failed run.
LITELLM_SKIPPED=""
installed=$("$LITELLM_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || true)
if [[ $installed != "$LITELLM_VERSION" || ! -x $LITELLM_VENV/bin/litellm ]]; then
    echo "installing litellm[proxy]==$LITELLM_VERSION into $LITELLM_VENV" >&2
    set +e
    python3 -m venv "$LITELLM_VENV" &&
        timeout 600 "$LITELLM_VENV/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION" 2>&1 |
        sed -E 's#[a-z]+://[^ ]+#<address>#g' >"$OUT/litellm-install.log"
    status=${PIPESTATUS[0]}
    set -e
    # pip's last error says why in one line; addresses are left out of what the docs may quote.
    if ((status == 124)); then
        LITELLM_SKIPPED="installing litellm[proxy]==$LITELLM_VERSION took over 10 minutes"
    elif ((status != 0)); then
        LITELLM_SKIPPED="installing litellm[proxy]==$LITELLM_VERSION failed ($(grep '^ERROR' "$OUT/litellm-install.log" | tail -1 | cut -c1-200))"
    fi
fi

# The client that posts turns, compiled (see bench_agents.py), before the server's build and the
# `sync` that follows it in bench-env.sh.
if [[ ${BENCH_PROFILE:-release} == release ]]; then
    cargo build -q --release -p api-actix --example bench_client
    export BENCH_CLIENT="$ROOT/target/release/examples/bench_client"
else
    cargo build -q -p api-actix --example bench_client
    export BENCH_CLIENT="$ROOT/target/debug/examples/bench_client"
fi

# The server reaches the mock (served by the benchmark itself) as its OpenAI-compatible provider.
export OPENAI_BASE_URL="http://127.0.0.1:$MOCK_PORT/v1" OPENAI_API_KEY=bench OPENAI_SUPPORTS_TOOLS=false
export AGENTIC_RUNS_PER_TENANT=1024 AGENTIC_RUN_FOLLOWERS=1024
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-$(nproc)}"
BEFORE_SERVE='"$BIN" space register --id bench-mock --provider openai --model mock --dimensions 8 >/dev/null'
PROFILE=${BENCH_PROFILE:-release} PORT=18083 DB_NAME=agentic_bench_agents source "$ROOT/deploy/local/bench-env.sh"

LITELLM_PID=""
trap 'kill $SERVER_PID $LITELLM_PID 2>/dev/null || true' EXIT
if [[ -z $LITELLM_SKIPPED ]]; then
    # One model, `mock`, routed to the benchmark's mock; no database, a master key of this run's
    # (the proxy refuses to start without one), a worker per core as LiteLLM advises; its
    # defaults otherwise. A worker that imports LiteLLM on a busy machine takes longer than
    # uvicorn's health check allows (5 s), and is killed and restarted over and over.
    LITELLM_KEY="sk-$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
    cat >"$OUT/litellm.yaml" <<EOF
model_list:
  - model_name: mock
    litellm_params:
      model: openai/mock
      api_base: http://127.0.0.1:$MOCK_PORT/v1
      api_key: bench
general_settings:
  master_key: $LITELLM_KEY
litellm_settings:
  telemetry: false
EOF
    # The platform's own settings are in the environment, and LiteLLM would take DATABASE_URL and
    # REDIS_URL for its own. Without the local cost map it asks the network for one at start.
    env -u DATABASE_URL -u DATABASE_OWNER_URL -u DATABASE_PLATFORM_URL -u REDIS_URL \
        -u OPENAI_BASE_URL -u OPENAI_API_KEY LITELLM_LOCAL_MODEL_COST_MAP=True \
        "$LITELLM_VENV/bin/litellm" --config "$OUT/litellm.yaml" --host 127.0.0.1 --port "$LITELLM_PORT" \
        --num_workers "$(nproc)" --timeout_worker_healthcheck 120 \
        >"$OUT/litellm.log" 2>&1 &
    LITELLM_PID=$!
    for _ in $(seq 1 600); do
        curl -fsS "http://127.0.0.1:$LITELLM_PORT/health/liveliness" >/dev/null 2>&1 && break
        kill -0 "$LITELLM_PID" 2>/dev/null || break
        sleep 0.2
    done
    if curl -fsS "http://127.0.0.1:$LITELLM_PORT/health/liveliness" >/dev/null 2>&1; then
        export LITELLM_URL="http://127.0.0.1:$LITELLM_PORT" LITELLM_VERSION LITELLM_KEY
    elif kill -0 "$LITELLM_PID" 2>/dev/null; then
        LITELLM_SKIPPED="its proxy did not answer within 2 minutes of starting (see .local/bench/litellm.log)"
        kill "$LITELLM_PID" 2>/dev/null || true
    else
        LITELLM_SKIPPED="its proxy exited as it started (see .local/bench/litellm.log)"
    fi
fi
export LITELLM_SKIPPED

python3 "$ROOT/deploy/local/bench_agents.py" run "$BASE_URL" "$API_KEY" "$MOCK_PORT" > "$OUT/agents.json"
kill "$SERVER_PID" $LITELLM_PID 2>/dev/null || true
# Both shut down for a few seconds; the local model is measured on a quiet machine.
wait "$SERVER_PID" $LITELLM_PID 2>/dev/null || true
if [[ ${BENCH_QUICK:-} != 1 ]]; then
    cargo run -q --release -p chat-candle --example bench_local -- \
        "$ROOT/.local/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | tail -1 > "$OUT/local.json"
fi
# A trial's figures stay out of the docs.
DOC="$ROOT/docs/benchmarks.md"
if [[ ${BENCH_QUICK:-} == 1 || ${BENCH_PROFILE:-release} != release ]]; then
    cp "$DOC" "$OUT/benchmarks.md"
    DOC="$OUT/benchmarks.md"
fi
python3 "$ROOT/deploy/local/bench_agents.py" report "$OUT/agents.json" "$OUT/local.json" "$DOC"
