#!/usr/bin/env bash
# `just bench-retrieval`: retrieval quality (hit@k, MRR@10) and latency of the search API in every
# mode, over two corpora of public documentation (Python's library reference, the C library's
# manual pages) with generated questions, beside BM25 and exact dense references and a study of
# fusion methods on the platform's own lists; writes its section of docs/benchmarks.md.
# BENCH_QUICK=1 (a small subset) and PROFILE=debug try the harness: their figures mean nothing, so
# their report goes to .local/bench/benchmarks-retrieval.md. BENCH_BIN runs a binary already built.
# BENCH_REUSE_DB=1 migrates the last run's database and searches it again (its ingestion and the
# references, which do not depend on the server, are read from that run).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$ROOT"
DATA="$ROOT/.local/bench-retrieval"
VENV="$ROOT/.local/bench-venv-retrieval"
mkdir -p "$ROOT/.local/bench"

# Seeded, so rebuilding gives the same pages and questions; the packages are downloaded once.
python3 deploy/local/retrieval_corpus.py "$DATA"

# numpy only, for the exact dense reference; a venv of its own keeps it out of the others.
if ! "$VENV/bin/python" -c 'import numpy' 2>/dev/null; then
    echo "[bench-retrieval] installing numpy into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q numpy
fi

# Candle sizes its thread pool once; named, it stops re-reading the CPU list on every product.
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-$(nproc)}"
export PROFILE=${PROFILE:-release}
PORT=18086 DB_NAME=agentic_bench_retrieval source "$ROOT/deploy/local/bench-env.sh"
"$VENV/bin/python" deploy/local/bench_retrieval.py run "$BASE_URL" "$API_KEY" "$DATA"
kill "$SERVER_PID" 2>/dev/null || true

DOC="$ROOT/docs/benchmarks.md"
if [[ ${BENCH_QUICK:-} == 1 || $PROFILE != release ]]; then
    cp "$DOC" "$ROOT/.local/bench/benchmarks-retrieval.md"
    DOC="$ROOT/.local/bench/benchmarks-retrieval.md"
fi
"$VENV/bin/python" deploy/local/bench_retrieval.py report "$DATA" "$DOC"
