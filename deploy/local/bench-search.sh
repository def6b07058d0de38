#!/usr/bin/env bash
# `just bench-search`: vector search in PostgreSQL + pgvector as the platform runs it. The benchmark
# (crates/store-postgres/benches/search.rs, release profile) creates its own database
# (agentic_bench_search, dropped and recreated on each run, dropped at the end), loads 100,000
# synthetic 384-d chunks and 100,000 1,536-d chunks over 50 Zipf-sized tenants each, builds the
# HNSW indexes, measures latency and recall@10 of tenant-filtered top-10 queries, and writes its
# section of docs/benchmarks.md (between the bench-search markers). Takes about 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
source .local/env
cargo bench -q -p store-postgres --bench search
