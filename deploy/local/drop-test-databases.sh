#!/usr/bin/env bash
# Drops the per-test databases (agentic_test_*) that earlier test runs left behind: each
# integration test creates a fresh database, and tests run as separate processes that cannot
# clean up after themselves reliably. A database that cannot be dropped right now (autovacuum,
# which the owner may not terminate, is working in it) is left for the next run: it is harmless.
set -uo pipefail
: "${DATABASE_OWNER_URL:?source .local/env first}"
psql_bin="${AGENTIC_PG_BIN:+$AGENTIC_PG_BIN/}psql"
for db in $("$psql_bin" "$DATABASE_OWNER_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'agentic\_test\_%'"); do
    "$psql_bin" "$DATABASE_OWNER_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 ||
        echo "left $db for later (in use)" >&2
done
exit 0
