#!/usr/bin/env bash
# `just fuzz [examples]`: schemathesis (in .venv) generates requests from /openapi.json and checks
# that no input makes the server answer 500, that every status, header, content type and body it
# answers is the one the document declares, that what the document allows is taken and what it
# does not is refused. Runs against a dedicated database with an admin API
# key (so logout and revocation in the fuzzed requests cannot cut the run short).
set -euo pipefail
EXAMPLES=${1:-50}
ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
if [[ ! -x $ROOT/.venv/bin/schemathesis ]]; then
    python3 -m venv "$ROOT/.venv"
    "$ROOT/.venv/bin/pip" install -q schemathesis
fi
PROFILE=debug PORT=18082 DB_NAME=agentic_fuzz source "$(dirname "$0")/bench-env.sh"
# Something to find under the documented ids and lists.
curl -fsS "$BASE_URL/v1/agents" -H "authorization: Bearer $API_KEY" -H 'content-type: application/json' \
    -d '{"name":"Fuzz","slug":"fuzz","model":{"provider":"local","name":"smollm2"}}' >/dev/null

# Every check runs, positive data acceptance and ignored auth included: the document must state
# each rule the server enforces. schemathesis.toml lists the few statuses an operation may also
# answer where no schema can state the rule, and why.
# One worker: with two, hypothesis (inside schemathesis) has been seen to trip over its own shared
# caches and report a flaky internal error that says nothing about the API. FUZZ_SEED fixes the
# generated cases (CI uses it, so a red run can be replayed).
"$ROOT/.venv/bin/schemathesis" --config-file "$ROOT/deploy/local/schemathesis.toml" run "$BASE_URL/openapi.json" \
    --header "Authorization: Bearer $API_KEY" \
    --checks all \
    --max-examples "$EXAMPLES" \
    --workers 1 \
    --suppress-health-check all \
    --phases examples,coverage,fuzzing \
    ${FUZZ_SEED:+--seed "$FUZZ_SEED"}
