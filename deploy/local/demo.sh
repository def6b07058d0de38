#!/usr/bin/env bash
# The demo a newcomer's first question meets: in the demo tenant (credentials in the JSON file
# `agentic tenant create` wrote, given as $1), a collection of this project's own README and docs
# and an agent `guide` on the local model over it. Runs against a server at $AGENTIC_URL that is
# starting; idempotent enough to run once per new demo tenant. Needs nothing but curl and python3.
set -euo pipefail

credentials="$1"
url="${AGENTIC_URL:-http://127.0.0.1:8080}"
tenant="${AGENTIC_DEMO_TENANT:-demo}"
root="$(cd "$(dirname "$0")/../.." && pwd)"

for _ in $(seq 1 300); do
    curl -fsS "$url/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS "$url/readyz" >/dev/null || { echo "the server did not become ready at $url" >&2; exit 1; }

field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
password=$(field '["admin_password"]' < "$credentials")
email=$(field '["admin"]["email"]' < "$credentials")
token=$(curl -fsS "$url/v1/auth/login" -H 'content-type: application/json' \
    -d "$(python3 -c 'import json,sys; print(json.dumps({"tenant": sys.argv[3], "email": sys.argv[1], "password": sys.argv[2]}))' "$email" "$password" "$tenant")" \
    | field '["access_token"]')
auth=(-H "authorization: Bearer $token" -H 'content-type: application/json')

collection=$(curl -fsS "$url/v1/collections" "${auth[@]}" \
    -d '{"name": "Agentic Platform docs", "description": "This project'"'"'s README and docs"}' | field '["id"]')
for file in "$root/README.md" "$root"/docs/*.md; do
    python3 - "$file" <<'PY' | curl -fsS "$url/v1/collections/$collection/documents" "${auth[@]}" -d @- >/dev/null
import json, os, sys
path = sys.argv[1]
print(json.dumps({"title": os.path.basename(path), "content": open(path, encoding="utf-8").read(),
                  "content_type": "text/markdown"}))
PY
done
agent=$(curl -fsS "$url/v1/agents" "${auth[@]}" -d "$(python3 -c 'import json,sys; print(json.dumps({
    "name": "Guide", "slug": "guide",
    "description": "Answers questions about the Agentic Platform from its own docs",
    "system_prompt": "You answer questions about the Agentic Platform, a self-hosted backend for AI agents. Be brief.",
    "model": {"provider": "local", "name": "smollm2"},
    "temperature": 0.2, "max_tokens": 200,
    "collections": [sys.argv[1]], "retrieval": {"top_k": 3}}))' "$collection")" | field '["id"]')
conversation=$(curl -fsS -X POST "$url/v1/agents/$agent/conversations" -H "authorization: Bearer $token" | field '["id"]')

cat <<TXT
Demo agent "guide" (local SmolLM2, no network) answers from a collection of this project's docs
(ingestion takes a few seconds). Ask it, streaming the answer:

  curl -N $url/v1/conversations/$conversation/messages \\
    -H "authorization: Bearer $token" -H 'content-type: application/json' \\
    -d '{"content": "How do I run the tests?", "stream": true}'

(The token is valid for 15 minutes; sign in again with the credentials above for a new one.)
TXT
