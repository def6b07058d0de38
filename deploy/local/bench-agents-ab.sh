#!/usr/bin/env bash
# `just bench-agents-ab BIN_A BIN_B`: two server binaries measured side by side, for a machine
# whose speed drifts between runs (see docs/benchmarks.md). Both servers run at once, each on a
# database of its own, against one mock model (bench_agents.py's); batches of turns alternate
# between them, the order swapped each cycle, and the medians of the cycles are compared.
# Knobs: AB_CYCLES (4), AB_SEQ (turns one at a time per batch, 150), AB_RATE (turns/s, 100),
# AB_SECS (seconds at that rate per batch, 5), AB_RETRIEVAL=1 (agents over 10,000 chunks).
# Prints a table; writes nothing into the docs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
(($# == 2)) || { echo "usage: $0 BIN_A BIN_B (two agentic release binaries)" >&2; exit 2; }
BIN_A=$(realpath "$1")
BIN_B=$(realpath "$2")
OUT="$ROOT/.local/bench/ab"
mkdir -p "$OUT"
MOCK_PORT=18094

if [[ -z ${BENCH_CLIENT:-} ]]; then
    cargo build -q --release -p api-actix --example bench_client
    export BENCH_CLIENT="$ROOT/target/release/examples/bench_client"
fi
export OPENAI_BASE_URL="http://127.0.0.1:$MOCK_PORT/v1" OPENAI_API_KEY=bench OPENAI_SUPPORTS_TOOLS=false
export AGENTIC_RUNS_PER_TENANT=1024 AGENTIC_RUN_FOLLOWERS=1024
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-$(nproc)}"

# Each side in a subshell of its own: bench-env.sh starts its server and stops it on exit.
start_side() {
    local side=$1 bin=$2 port=$3
    (
        BEFORE_SERVE='"$BIN" space register --id bench-mock --provider openai --model mock --dimensions 8 >/dev/null'
        BENCH_BIN=$bin PORT=$port DB_NAME=agentic_ab_$side source "$ROOT/deploy/local/bench-env.sh"
        printf '%s\n' "$BASE_URL" "$API_KEY" "$SERVER_PID" "agentic_ab_$side" "$DATABASE_PLATFORM_URL" \
            "$DATABASE_OWNER_URL" >"$OUT/$side.side"
        wait "$SERVER_PID"
    ) &
}
rm -f "$OUT"/*.side
start_side a "$BIN_A" 18111
SIDE_A=$!
start_side b "$BIN_B" 18112
SIDE_B=$!
trap 'pkill -P $SIDE_A 2>/dev/null; pkill -P $SIDE_B 2>/dev/null; kill $SIDE_A $SIDE_B 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    [[ -s $OUT/a.side && -s $OUT/b.side ]] && break
    sleep 0.2
done
[[ -s $OUT/a.side && -s $OUT/b.side ]] || { echo "a server did not start" >&2; exit 1; }

source "$ROOT/.local/env"
python3 "$ROOT/deploy/local/bench_agents_ab.py" "$MOCK_PORT" "$OUT/a.side" "$OUT/b.side"
