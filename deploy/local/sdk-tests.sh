#!/usr/bin/env bash
# The OpenAI-compatible routes through the official SDKs, Python's and Node's: what a client
# written for OpenAI sees when pointed at the platform. The platform's provider is a mock model
# (tests/sdk/mock_model.py) whose answers and usage are a function of the request, so the tests
# can say exactly what must come back.
#
#   deploy/local/sdk-tests.sh              build, serve a fresh database, run both SDKs' tests
#   deploy/local/sdk-tests.sh --mock-only  run the tests against the mock alone (no build, no
#                                          database): checks the tests and the mock themselves
#
# Installs what it needs on first use: Node.js and npm (Debian packages), the `openai` npm package
# at the version pinned in tests/sdk/node/package.json, the `openai` Python package into .venv.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$ROOT"
SDK="$ROOT/tests/sdk"
# Pinned: the tests check the SDKs' typed errors and stream parsing, which move between releases.
PYTHON_OPENAI=3.63.0
MOCK_PORT=${MOCK_PORT:-18094}
OUT="$ROOT/.local/sdk-tests"
say() { echo "[sdk-tests] $*" >&2; }
as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

# --- The SDKs ---------------------------------------------------------------------------------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "installing Node.js and npm"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
# FILE KEY...: the value at that path in a JSON file.
json_at() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); [d := d[k] for k in sys.argv[2:]]; print(d)' "$@"; }
want=$(json_at "$SDK/node/package.json" dependencies openai)
have=$(json_at "$SDK/node/node_modules/openai/package.json" version 2>/dev/null || true)
if [[ $want != "$have" ]]; then
    say "installing openai $want (npm)"
    # No lock file (tests/sdk/node/.npmrc): the exact pin is the whole tree, openai has no dependencies.
    # 6.x, not 7.x: 7 requires Node 22, and Debian's nodejs is older (18 in bookworm, 20 in trixie).
    (cd "$SDK/node" && npm install --no-package-lock --no-audit --no-fund --loglevel=error >/dev/null)
fi
[[ -x .venv/bin/python ]] || python3 -m venv .venv
if [[ $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("openai"))' 2>/dev/null) != "$PYTHON_OPENAI" ]]; then
    say "installing openai $PYTHON_OPENAI (pip)"
    .venv/bin/pip install -q "openai==$PYTHON_OPENAI"
fi

# --- The mock model -----------------------------------------------------------------------------
mkdir -p "$OUT"
export MOCK_LOG="$OUT/mock-log.jsonl"
: > "$MOCK_LOG"
# Given our pid, the mock also ends with this script when no trap runs (see exit_with).
python3 "$SDK/mock_model.py" "$MOCK_PORT" $$ &
MOCK_PID=$!
trap 'kill $MOCK_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
    curl -fsS "http://127.0.0.1:$MOCK_PORT/v1/models" >/dev/null 2>&1 && break
    sleep 0.1
done
# An old mock still on the port would answer the probe above while ours died on the bind.
kill -0 "$MOCK_PID" 2>/dev/null || { say "the mock model could not listen on $MOCK_PORT"; exit 1; }

run_tests() {
    local failed=0
    .venv/bin/python "$SDK/python/test_openai_sdk.py" || failed=1
    node "$SDK/node/test.mjs" || failed=1
    if ((failed)); then say "failed; what the mock model was asked and answered: $MOCK_LOG"; fi
    return $failed
}

if [[ ${1:-} == --mock-only ]]; then
    BASE_URL="http://127.0.0.1:$MOCK_PORT" API_KEY=sdk SDK_DRY_RUN=1 run_tests
    exit
fi

# --- The platform -------------------------------------------------------------------------------
if [[ ! -f .local/env ]] || ! deploy/local/services.sh status >/dev/null; then
    deploy/local/services.sh start
fi
# The server's OpenAI-compatible provider is the mock, with tools, since the tests pass them on.
export OPENAI_BASE_URL="http://127.0.0.1:$MOCK_PORT/v1" OPENAI_API_KEY=sdk OPENAI_SUPPORTS_TOOLS=true
BEFORE_SERVE='"$BIN" space register --id sdk-mock --provider openai --model mock --dimensions 8 >/dev/null'
PROFILE=debug PORT=18084 DB_NAME=agentic_sdk source "$ROOT/deploy/local/bench-env.sh"
# bench-env.sh's trap stops the server; this one replaces it and stops both.
trap 'kill $SERVER_PID 2>/dev/null || true; kill $MOCK_PID 2>/dev/null || true' EXIT

# METHOD PATH TOKEN [BODY]: the answer's body, or a failure that shows it.
api() {
    local answer status
    answer=$(curl -sS -X "$1" "$BASE_URL$2" -H "authorization: Bearer $3" -H 'content-type: application/json' \
        ${4:+-d "$4"} -w '\n%{http_code}')
    status=${answer##*$'\n'}
    answer=${answer%$'\n'*}
    if [[ $status != 2?? ]]; then
        say "$1 $2 answered $status: $answer"
        return 1
    fi
    printf '%s\n' "$answer"
}
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

api POST /v1/agents "$API_KEY" \
    '{"name":"SDK","slug":"sdk-agent","model":{"provider":"openai","name":"mock"},"max_tokens":64}' >/dev/null
PLATFORM_KEY=$("$BIN" platform-key create --name sdk | field key)
TENANT_ID=$(api GET /v1/tenant "$API_KEY" | field id)
export PLATFORM_KEY TENANT_ID

run_tests
