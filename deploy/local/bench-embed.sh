#!/usr/bin/env bash
# Embedding throughput: the Candle embedder against sentence-transformers (PyTorch, CPU) on the
# same 2,000 sentences at batch 32, vectors compared; writes its section of docs/benchmarks.md.
# sentence-transformers brings PyTorch (several GB), so it lives in its own virtualenv under
# .local/, installed here on first use and never by `just test`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$ROOT"
MODEL_DIR="$ROOT/.local/models/all-MiniLM-L6-v2"
OUT="$ROOT/.local/bench"
VENV="$ROOT/.local/bench-venv"
mkdir -p "$OUT"

if ! "$VENV/bin/python" -c 'import sentence_transformers' 2>/dev/null; then
    echo "[bench-embed] installing sentence-transformers (with PyTorch) into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q sentence-transformers
fi

"$VENV/bin/python" deploy/local/bench_embed.py sentences "$OUT/sentences.txt"

# ISA=avx2 (`just bench-embed-avx2`): both sides limited to AVX2 on a CPU that has AVX-512 and
# AMX, which is what most machines (AMD before Zen 4, Intel client chips) run. Candle is built
# without embed-candle's `avx512` feature and with AMX off; PyTorch, oneDNN and MKL are told
# their widest instruction set through their own variables.
ISA=${ISA:-native}
case $ISA in
    native) SECTION=bench-embed; FEATURES=(); REFERENCE_ENV=() ;;
    avx2) SECTION=bench-embed-avx2; FEATURES=(--no-default-features)
          REFERENCE_ENV=(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2) ;;
    *) echo "[bench-embed] ISA must be native or avx2, got $ISA" >&2; exit 2 ;;
esac

echo "[bench-embed] Candle"
# As the `agentic` binary runs it (see single_threaded_kernels in crates/api-actix/src/main.rs):
# AMX tiles where the CPU has them; then, on such a CPU, f32 products as well for comparison.
candle() {
    RAYON_NUM_THREADS=1 MODEL_DIR="$MODEL_DIR" SENTENCES="$OUT/sentences.txt" VECTORS_OUT="$OUT/$1.f32" \
        AMX="$2" cargo bench -q -p embed-candle "${FEATURES[@]}" --bench throughput | tee "$OUT/$1.json"
}
rm -f "$OUT/candle-f32.json"
if [[ $ISA == avx2 ]]; then
    candle candle 0
else
    candle candle 1
    if grep -q '"amx": true' "$OUT/candle.json"; then
        echo "[bench-embed] Candle, f32 products"
        candle candle-f32 0
    fi
fi
echo "[bench-embed] sentence-transformers"
env HF_HUB_OFFLINE=1 "${REFERENCE_ENV[@]}" \
    "$VENV/bin/python" deploy/local/bench_embed.py compare "$OUT" "$MODEL_DIR" docs/benchmarks.md "$SECTION"
