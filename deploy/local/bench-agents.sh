#!/usr/bin/env bash
# `just bench-agents`: the platform's own work per turn and its delay on streamed tokens, against
# a mock OpenAI-compatible model and embedder that answer at once (release binary, over HTTP);
# then the local model's speed. Writes its section of docs/benchmarks.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
OUT="$ROOT/.local/bench"
mkdir -p "$OUT"
MOCK_PORT=18093
# The server reaches the mock (served by the benchmark itself) as its OpenAI-compatible provider.
export OPENAI_BASE_URL="http://127.0.0.1:$MOCK_PORT/v1" OPENAI_API_KEY=bench OPENAI_SUPPORTS_TOOLS=false
export AGENTIC_RUNS_PER_TENANT=1024 AGENTIC_RUN_FOLLOWERS=1024
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-$(nproc)}"
BEFORE_SERVE='"$BIN" space register --id bench-mock --provider openai --model mock --dimensions 8 >/dev/null'
PROFILE=release PORT=18083 DB_NAME=agentic_bench_agents source "$ROOT/deploy/local/bench-env.sh"
python3 "$ROOT/deploy/local/bench_agents.py" run "$BASE_URL" "$API_KEY" "$MOCK_PORT" > "$OUT/agents.json"
kill "$SERVER_PID" 2>/dev/null || true
cargo run -q --release -p chat-candle --example bench_local -- \
    "$ROOT/.local/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | tail -1 > "$OUT/local.json"
python3 "$ROOT/deploy/local/bench_agents.py" report "$OUT/agents.json" "$OUT/local.json" "$ROOT/docs/benchmarks.md"
