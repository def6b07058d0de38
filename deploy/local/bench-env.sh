# Sourced by the benchmark and fuzz scripts: a dedicated, freshly migrated database, a demo tenant
# with an admin token and an admin API key, and the `agentic` server on its own port.
# Inputs: PROFILE (debug|release), PORT, DB_NAME; BENCH_REUSE_DB=1 (see below); BENCH_BIN, a
# binary already built, to run that one instead of building the tree (which may be mid-edit).
# Outputs: BASE_URL, TOKEN, API_KEY, SERVER_PID, BENCH_REUSED_DB (1 when the last run's database
# was kept).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$ROOT"
source .local/env
PROFILE=${PROFILE:-release}
PORT=${PORT:-18080}
DB_NAME=${DB_NAME:-agentic_bench}
psql_bin="$AGENTIC_PG_BIN/psql"

if [[ -n ${BENCH_BIN:-} ]]; then
    [[ -f $BENCH_BIN && -x $BENCH_BIN ]] || { echo "BENCH_BIN=$BENCH_BIN is not an executable file" >&2; exit 1; }
    BIN=$BENCH_BIN
elif [[ $PROFILE == release ]]; then
    cargo build -q --release -p api-actix --bin agentic
    BIN="$ROOT/target/release/agentic"
else
    cargo build -q -p api-actix --bin agentic
    BIN="$ROOT/target/debug/agentic"
fi

# A build leaves gigabytes of dirty pages that the kernel writes back over the next minutes; a
# commit's flush queued behind them took 30-120 ms here. Written now, before anything is measured.
sync

with_db() { echo "${1%/*}/$DB_NAME"; }
# BENCH_REUSE_DB=1 keeps the database of the last run (its admin's login is kept beside it) and
# only migrates it: a benchmark that ingests for minutes can measure a change of the search again.
PASSWORD_FILE="$ROOT/.local/bench/$DB_NAME.password"
mkdir -p "$ROOT/.local/bench"
REUSED=
if [[ ${BENCH_REUSE_DB:-} == 1 && -f $PASSWORD_FILE ]] &&
    "$psql_bin" "$DATABASE_OWNER_URL" -Atc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
    REUSED=1
else
    "$psql_bin" "$DATABASE_OWNER_URL" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null
    "$psql_bin" "$DATABASE_OWNER_URL" -qc "CREATE DATABASE $DB_NAME" >/dev/null
fi
export DATABASE_URL=$(with_db "$DATABASE_URL")
export DATABASE_OWNER_URL=$(with_db "$DATABASE_OWNER_URL")
export DATABASE_PLATFORM_URL=$(with_db "$DATABASE_PLATFORM_URL")
export REDIS_KEY_PREFIX="bench:$DB_NAME:"
export RUST_LOG=warn
"$BIN" migrate up

EMAIL=admin@bench.test
if [[ -n $REUSED ]]; then
    read -r EMAIL PASSWORD < "$PASSWORD_FILE"
else
    PASSWORD="bench-password-$(date +%s)"
    "$BIN" tenant create --name Bench --slug bench --admin-email "$EMAIL" --admin-password "$PASSWORD" >/dev/null
    printf '%s %s\n' "$EMAIL" "$PASSWORD" > "$PASSWORD_FILE"
fi
export BENCH_REUSED_DB=$REUSED
# A benchmark's own setup that must precede the server (registering a space, say).
if [[ -n ${BEFORE_SERVE:-} ]]; then eval "$BEFORE_SERVE"; fi

AGENTIC_BIND="127.0.0.1:$PORT" "$BIN" serve &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
BASE_URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do
    curl -fsS "$BASE_URL/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done

TOKEN=$(curl -fsS "$BASE_URL/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"tenant\":\"bench\",\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
API_KEY=$(curl -fsS "$BASE_URL/v1/api-keys" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"name":"bench","scopes":["read","write","admin"]}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
export BASE_URL TOKEN API_KEY SERVER_PID
