#!/usr/bin/env bash
# `just bench-ingest`: chunks/s of ingestion end to end (HTTP upload, queue, chunking, local
# embedding, storage) against the raw Candle embedder on the same chunk texts; writes its section
# of docs/benchmarks.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
OUT="$ROOT/.local/bench"
mkdir -p "$OUT"
python3 "$ROOT/deploy/local/bench_embed.py" sentences "$OUT/sentences.txt"
PROFILE=release PORT=18082 DB_NAME=agentic_bench_ingest source "$ROOT/deploy/local/bench-env.sh"
python3 deploy/local/bench_ingest.py run "$BASE_URL" "$TOKEN" "$OUT"
kill "$SERVER_PID" 2>/dev/null || true
# The chunks as stored, one per line, for the raw embedder.
"$AGENTIC_PG_BIN/psql" "$DATABASE_PLATFORM_URL" -Atc \
    "SELECT regexp_replace(content, '\s+', ' ', 'g') FROM chunks ORDER BY document_id, position" > "$OUT/chunks.txt"
RAYON_NUM_THREADS=1 MODEL_DIR="$ROOT/.local/models/all-MiniLM-L6-v2" SENTENCES="$OUT/chunks.txt" VECTORS_OUT="$OUT/chunks.f32" \
    cargo bench -q -p embed-candle --bench throughput | tee "$OUT/raw.json"
python3 deploy/local/bench_ingest.py report "$OUT" docs/benchmarks.md
