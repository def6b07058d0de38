"""Retrieval benchmark helper for deploy/local/bench-retrieval.sh.

  bench_retrieval.py run BASE_URL TOKEN DIR   ingest DIR/pages.jsonl into one collection, ask
                                              DIR/questions.jsonl in every mode, compute the
                                              references and the fusion study; writes DIR/results.json
  bench_retrieval.py report DIR DOC           write the docs section from DIR/results.json

Everything is scored at page level: a search answers chunks, which are mapped to their page and
deduplicated (first occurrence kept) before the top 10 are judged. BENCH_QUICK=1 takes a small
subset (40 questions and 150 pages per corpus) to try the harness.
"""

import base64
import json
import math
import os
import random
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench_embed import write_section
from retrieval_corpus import overlap_stats, tokens

QUICK = os.environ.get("BENCH_QUICK") == "1"
QUICK_QUESTIONS, QUICK_PAGES = 40, 150
MODES = ("vector", "fulltext", "hybrid")
TOP_K, STUDY_K, JUDGED = 50, 100, 10
# The platform reads two documents of a tenant at once by default (AGENTIC_EXTRACT_PER_TENANT).
UPLOADERS = 2
WINDOW_WORDS, WINDOW_STRIDE = 180, 150
EMBED_BATCH = 32
HYBRID_WEIGHTS = (0.3, 0.5, 0.7)


class HttpError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status, self.body = status, body


def call(base, token, method, path, body=None, timeout=120):
    """One request; a 503 `server_busy` (the platform's back-pressure) is retried after its
    Retry-After, up to a minute in all."""
    req = urllib.request.Request(
        base + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    waited = 0.0
    while True:
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                return json.load(res)
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            if e.code != 503 or waited > 60:
                raise HttpError(e.code, text) from None
            pause = min(float(e.headers.get("retry-after") or 1), 5.0)
            time.sleep(pause)
            waited += pause


def subset(pages, questions):
    """Per corpus, the first questions, their pages, and seeded others up to QUICK_PAGES."""
    rng = random.Random(7)
    keep_pages, keep_questions = [], []
    for corpus in ("python", "man"):
        qs = [q for q in questions if q["corpus"] == corpus][:QUICK_QUESTIONS]
        wanted = {q["page"] for q in qs}
        others = [p["id"] for p in pages if p["corpus"] == corpus and p["id"] not in wanted]
        wanted |= set(rng.sample(others, max(0, QUICK_PAGES - len(wanted))))
        keep_pages += [p for p in pages if p["id"] in wanted]
        keep_questions += qs
    return keep_pages, keep_questions


# --- Ingestion ------------------------------------------------------------------------------


def ingest(base, token, pages):
    collection = call(base, token, "POST", "/v1/collections", {"name": "Retrieval bench"})
    cid = collection["id"]
    def upload(page):
        up = call(base, token, "POST", f"/v1/collections/{cid}/documents",
                  {"title": page["title"][:200], "content": page["text"], "content_type": "text/plain",
                   "metadata": {"corpus": page["corpus"], "page": page["id"]}})
        if up.get("job") is None:
            sys.exit(f"page {page['id']} was taken for a duplicate of another; its job is missing")
        return page["id"], up["document"]["id"], up["job"]["id"]
    started = time.perf_counter()
    with ThreadPoolExecutor(UPLOADERS) as pool:
        uploaded = list(pool.map(upload, pages))
    print(f"uploaded {len(uploaded)} documents in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    # Jobs run roughly in order: wait on the oldest unfinished one, as long as something moves.
    pending, finished, last_note = list(uploaded), {}, time.perf_counter()
    moved, seen = time.perf_counter(), None
    while pending:
        page, _, job_id = pending[0]
        job = call(base, token, "GET", f"/v1/jobs/{job_id}")
        if job["state"] in ("failed", "cancelled"):
            sys.exit(f"ingesting {page} ended {job['state']}: {job.get('error')}")
        if job["state"] == "succeeded":
            finished[page] = job
            pending.pop(0)
            moved = time.perf_counter()
            continue
        if (job_id, job["state"], job["progress"]["done"]) != seen:
            seen, moved = (job_id, job["state"], job["progress"]["done"]), time.perf_counter()
        elif time.perf_counter() - moved > 600:
            sys.exit(f"ingestion stalled: the job of {page} stayed {job['state']} for 10 minutes")
        if time.perf_counter() - last_note > 30:
            print(f"  {len(finished)}/{len(uploaded)} documents ingested", file=sys.stderr)
            last_note = time.perf_counter()
        time.sleep(0.5)
    wall = time.perf_counter() - started
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
    jobs = list(finished.values())
    seconds = (max(parse(j["updated_at"]) for j in jobs) - min(parse(j["created_at"]) for j in jobs)).total_seconds()
    chunks = {page: job["progress"]["total"] for page, job in finished.items()}
    print(f"ingested {sum(chunks.values())} chunks in {wall:.1f} s", file=sys.stderr)
    return collection, {doc: page for page, doc, _ in uploaded}, chunks, seconds


# --- Searching ------------------------------------------------------------------------------


def search(base, token, cid, query, mode, top_k, **extra):
    started = time.perf_counter()
    hits = call(base, token, "POST", f"/v1/collections/{cid}/search",
                {"query": query, "top_k": top_k, "mode": mode, **extra})["results"]
    return hits, (time.perf_counter() - started) * 1000


def pages_of(chunk_ids, page_of_chunk):
    """Chunk ranking to page ranking: first occurrence kept, the judged depth at most."""
    seen = []
    for c in chunk_ids:
        p = page_of_chunk[c]
        if p not in seen:
            seen.append(p)
            if len(seen) == JUDGED:
                break
    return seen


def metrics(rankings, questions):
    """hit@1/5/10 and MRR@10 of page rankings (one per question) against the right pages."""
    ranks = []
    for ranking, q in zip(rankings, questions):
        top = ranking[:JUDGED]
        ranks.append(top.index(q["page"]) + 1 if q["page"] in top else None)
    n = len(ranks) or 1
    return {"hit1": sum(r == 1 for r in ranks) / n, "hit5": sum(r is not None and r <= 5 for r in ranks) / n,
            "hit10": sum(r is not None for r in ranks) / n, "mrr10": sum(1 / r for r in ranks if r) / n}


def percentile(values, p):
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)] if s else float("nan")


# --- Fusion, offline, over the platform's own lists -----------------------------------------


def rrf(lists, k, weights=None):
    scores = defaultdict(float)
    for i, ranked in enumerate(lists):
        w = 1.0 if weights is None else weights[i]
        for rank, item in enumerate(ranked, 1):
            scores[item] += w / (k + rank)
    return sorted(scores, key=lambda x: -scores[x])


def convex(vector, fulltext, alpha, minmax):
    """α·vector + (1-α)·fulltext over the union of two {chunk: score} lists. With `minmax` both are
    min-max normalised (absent counts 0); otherwise the cosine stays raw (absent: the list's
    lowest, a bound on its own) and the full-text score is divided by the list's maximum (absent: 0)."""
    def norm(scores):
        if not scores:
            return {}
        lo, hi = min(scores.values()), max(scores.values())
        return {c: (s - lo) / (hi - lo) if hi > lo else 1.0 for c, s in scores.items()}
    if minmax:
        v, f, v_absent = norm(vector), norm(fulltext), 0.0
    else:
        top = max(fulltext.values(), default=1.0) or 1.0
        v, f = vector, {c: s / top for c, s in fulltext.items()}
        v_absent = min(vector.values(), default=0.0)
    union = set(v) | set(f)
    score = {c: alpha * v.get(c, v_absent) + (1 - alpha) * f.get(c, 0.0) for c in union}
    return sorted(union, key=lambda c: -score[c])


def fusion_study(lists, page_of_chunk):
    """Page rankings per fusion method, from each question's (vector, fulltext) top-100 lists."""
    methods = {}
    def add(name, fuse):
        methods[name] = [pages_of(fuse(v, f), page_of_chunk) for v, f in lists]
    ids = lambda hits: [h["chunk_id"] for h in hits]
    scores = lambda hits: {h["chunk_id"]: h["score"] for h in hits}
    add("vector alone (top 100)", lambda v, f: ids(v))
    add("fulltext alone (top 100)", lambda v, f: ids(f))
    for k in (10, 30, 60):
        add(f"RRF k={k}", lambda v, f, k=k: rrf([ids(v), ids(f)], k))
    for w in (0.3, 0.5, 0.7):
        add(f"weighted RRF k=60, vector w={w}", lambda v, f, w=w: rrf([ids(v), ids(f)], 60, [w, 1 - w]))
    for a in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        add(f"convex min-max, α={a}", lambda v, f, a=a: convex(scores(v), scores(f), a, True))
    for a in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        add(f"convex raw cosine + fulltext/max, α={a}", lambda v, f, a=a: convex(scores(v), scores(f), a, False))
    return methods


# --- References: BM25 and exact dense over pages --------------------------------------------


def bm25_rankings(pages, questions, k1=1.5, b=0.75, epsilon=0.25):
    """Okapi BM25 as rank_bm25's BM25Okapi computes it, negative idf floored at ε·mean idf."""
    docs = [Counter(tokens(p["text"])) for p in pages]
    lengths = [sum(d.values()) for d in docs]
    avgdl = sum(lengths) / len(docs)
    df = Counter(t for d in docs for t in d)
    idf = {t: math.log(len(docs) - n + 0.5) - math.log(n + 0.5) for t, n in df.items()}
    floor = epsilon * sum(idf.values()) / len(idf)
    idf = {t: (v if v >= 0 else floor) for t, v in idf.items()}
    postings = defaultdict(list)
    for i, d in enumerate(docs):
        for t, tf in d.items():
            postings[t].append((i, tf))
    out = []
    for q in questions:
        score = defaultdict(float)
        for t in tokens(q["question"]):
            for i, tf in postings.get(t, ()):
                score[i] += idf[t] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * lengths[i] / avgdl))
        best = sorted(score, key=lambda i: -score[i])[:STUDY_K]
        out.append([pages[i]["id"] for i in best])
    return out


def embed(base, token, space, texts):
    """Vectors from the platform's /v1/embeddings; a text longer than the model takes is split
    in two (and so on) and its parts returned as separate rows with the same owner index."""
    rows, owners = [], []
    queue = [(i, t) for i, t in enumerate(texts)]
    while queue:
        batch, queue = queue[:EMBED_BATCH], queue[EMBED_BATCH:]
        try:
            got = call(base, token, "POST", "/v1/embeddings",
                       {"model": space, "input": [t for _, t in batch], "encoding_format": "base64"}, timeout=600)
        except HttpError as e:
            too_long = {int(i) for i in re.findall(r"input\[(\d+)\]", e.body)} if e.status in (400, 422) else set()
            if not too_long:
                raise
            for j, (owner, text) in enumerate(batch):
                words = text.split()
                if j in too_long and len(words) > 1:
                    queue += [(owner, " ".join(words[: len(words) // 2])), (owner, " ".join(words[len(words) // 2:]))]
                else:
                    queue.append((owner, text))
            continue
        for item, (owner, _) in zip(sorted(got["data"], key=lambda d: d["index"]), batch):
            rows.append(np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4"))
            owners.append(owner)
    m = np.vstack(rows)
    return m / np.linalg.norm(m, axis=1, keepdims=True), np.array(owners)


def dense_rankings(base, token, space, pages, questions):
    windows, window_page = [], []
    for i, p in enumerate(pages):
        words = p["text"].split()
        for start in range(0, max(1, len(words) - WINDOW_WORDS + WINDOW_STRIDE), WINDOW_STRIDE):
            windows.append(" ".join(words[start:start + WINDOW_WORDS]))
            window_page.append(i)
    started = time.perf_counter()
    vectors, owners = embed(base, token, space, windows)
    print(f"embedded {len(windows)} windows ({len(vectors)} parts) in {time.perf_counter() - started:.1f} s",
          file=sys.stderr)
    queries, _ = embed(base, token, space, [q["question"] for q in questions])
    part_page = np.array(window_page)[owners]
    order = np.argsort(part_page, kind="stable")
    part_page, vectors = part_page[order], vectors[order]
    starts = np.flatnonzero(np.r_[True, part_page[1:] != part_page[:-1]])
    page_index = part_page[starts]
    sims = queries @ vectors.T
    # A page scores as its best window.
    page_scores = np.maximum.reduceat(sims, starts, axis=1)
    out = []
    for row in page_scores:
        best = np.argsort(-row, kind="stable")[:STUDY_K]
        out.append([pages[page_index[i]]["id"] for i in best])
    return out, len(windows), len(vectors)


# --- The run --------------------------------------------------------------------------------


def run(base, token, directory):
    d = Path(directory)
    pages = [json.loads(l) for l in open(d / "pages.jsonl")]
    questions = [json.loads(l) for l in open(d / "questions.jsonl")]
    if QUICK:
        pages, questions = subset(pages, questions)
    corpus_of = {p["id"]: p["corpus"] for p in pages}
    # BENCH_REUSE_DB=1 (bench-env.sh kept the last run's database): search what it ingested.
    # Files of a quick run and of a full one are kept apart: their pages and questions differ.
    suffix = "-quick" if QUICK else ""
    reuse = os.environ.get("BENCH_REUSED_DB") == "1"
    ingested = d / f"ingested{suffix}.json"
    if reuse and ingested.exists():
        kept = json.loads(ingested.read_text())
        collection, page_of_doc, chunks, ingest_seconds = (kept["collection"], kept["page_of_doc"],
                                                           kept["chunks"], kept["ingest_seconds"])
        print(f"reusing collection {collection['id']} ingested by an earlier run", file=sys.stderr)
    else:
        collection, page_of_doc, chunks, ingest_seconds = ingest(base, token, pages)
        ingested.write_text(json.dumps({"collection": collection, "page_of_doc": page_of_doc,
                                        "chunks": chunks, "ingest_seconds": ingest_seconds}))
    cid = collection["id"]
    space = (collection.get("space") or {}).get("id")
    if not space:
        space = next(s["id"] for s in call(base, token, "GET", "/v1/spaces")["items"] if s["provider"] == "local")

    page_of_chunk = {}
    def remember(hits):
        for h in hits:
            page_of_chunk[h["chunk_id"]] = page_of_doc[h["document_id"]]
        return hits
    for q in questions[:10]:
        for mode in MODES:
            search(base, token, cid, q["question"], mode, TOP_K)
    try:
        search(base, token, cid, questions[0]["question"], "hybrid", TOP_K, hybrid_weight=0.5)
        weights, weight_note = HYBRID_WEIGHTS, None
    except HttpError as e:
        if e.status >= 500:
            raise
        weights, weight_note = (), f"the server refuses `hybrid_weight` ({e.status})"
    runs = {m: [] for m in MODES} | {f"hybrid, hybrid_weight={w}": [] for w in weights}
    latency = {name: [] for name in runs}
    study_lists = []
    started = time.perf_counter()
    for n, q in enumerate(questions):
        for mode in MODES:
            hits, ms = search(base, token, cid, q["question"], mode, TOP_K)
            runs[mode].append(pages_of([h["chunk_id"] for h in remember(hits)], page_of_chunk))
            latency[mode].append(ms)
        for w in weights:
            name = f"hybrid, hybrid_weight={w}"
            hits, ms = search(base, token, cid, q["question"], "hybrid", TOP_K, hybrid_weight=w)
            runs[name].append(pages_of([h["chunk_id"] for h in remember(hits)], page_of_chunk))
            latency[name].append(ms)
        v, _ = search(base, token, cid, q["question"], "vector", STUDY_K)
        f, _ = search(base, token, cid, q["question"], "fulltext", STUDY_K)
        study_lists.append((remember(v), remember(f)))
        if (n + 1) % 50 == 0:
            print(f"  {n + 1}/{len(questions)} questions asked ({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    # The references depend on the pages, the questions and the model only: kept for runs that
    # reuse the database.
    references = d / f"references{suffix}.json"
    if reuse and references.exists():
        print("references: kept from an earlier run", file=sys.stderr)
        kept = json.loads(references.read_text())
        bm25, dense, windows, parts = kept["bm25"], kept["dense"], kept["windows"], kept["parts"]
    else:
        print("references: BM25", file=sys.stderr)
        bm25 = bm25_rankings(pages, questions)
        print("references: dense (embedding the pages through /v1/embeddings)", file=sys.stderr)
        dense, windows, parts = dense_rankings(base, token, space, pages, questions)
        references.write_text(json.dumps({"bm25": bm25, "dense": dense, "windows": windows, "parts": parts}))
    fused = [rrf([a, b], 60)[:STUDY_K] for a, b in zip(bm25, dense)]
    study = fusion_study(study_lists, page_of_chunk)

    result = {"quick": QUICK, "space": space, "ingest_seconds": ingest_seconds, "windows": windows, "parts": parts,
              "hybrid_weight": weight_note, "corpora": {}}
    for corpus in ("python", "man"):
        idx = [i for i, q in enumerate(questions) if q["corpus"] == corpus]
        qs = [questions[i] for i in idx]
        pick = lambda rankings: [rankings[i] for i in idx]
        rows = [{"name": f"platform, {name}", **metrics(pick(r), qs),
                 "p50": percentile(pick(latency[name]), 50), "p99": percentile(pick(latency[name]), 99)}
                for name, r in runs.items()]
        rows += [{"name": name, **metrics(pick(r), qs)} for name, r in
                 (("reference: BM25 (Okapi, pages)", bm25), ("reference: dense, exact cosine (pages)", dense),
                  ("reference: RRF k=60 of BM25 and dense", fused))]
        result["corpora"][corpus] = {
            "pages": sum(1 for p in pages if p["corpus"] == corpus),
            "chunks": sum(n for p, n in chunks.items() if corpus_of[p] == corpus),
            "questions": len(qs), "overlap": overlap_stats([q["overlap"] for q in qs]),
            "rows": rows, "study": [{"name": name, **metrics(pick(r), qs)} for name, r in study.items()]}
    (d / "results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({c: {r["name"]: round(r["mrr10"], 3) for r in v["rows"]} for c, v in result["corpora"].items()},
                     indent=1))


# --- The report -----------------------------------------------------------------------------


def report(directory, doc):
    d = Path(directory)
    r = json.loads((d / "results.json").read_text())
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
    has = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f", "amx_tile"))
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    profile = os.environ.get("PROFILE", "release")
    debs = ", ".join(sorted(p.read_text().strip() for p in (d / "debs").glob("*/.done")))
    c = r["corpora"]
    chunks = sum(v["chunks"] for v in c.values())
    f3 = lambda x: f"{x:.3f}"
    ms = lambda x: f"{x:.1f}" if x is not None else "—"
    parts = [f"""<!-- bench-retrieval:start -->
## Retrieval quality (`just bench-retrieval`)

{now}; {cpu} ({has}), {cores} cores; {profile} build{', quick subset' if r['quick'] else ''}; space `{r['space']}`.

Two corpora of public documentation from Debian packages ({debs}), built by
`deploy/local/retrieval_corpus.py`: **python**, the standard library reference, one page per documented
object (function, class, method, ...) or section's own prose; **man**, the C library and system call
manual pages (sections 2 and 3), one page each. A page keeps at most 3,000 words. All pages go into one
collection: {chunks:,} chunks, ingested in {r['ingest_seconds']:.0f} s ({chunks / max(r['ingest_seconds'], 1e-9):.1f} chunks/s).

A question is a page's one-line description (a man page's NAME line, a Python object's first sentence)
put in a question template, with some words swapped for synonyms from a small table; the sentence is
removed from the page that is ingested, and each question has exactly one right page. Term overlap is
the share of a question's content terms (stop words removed, unstemmed) that its page contains;
questions at 1.0 or under 0.2 are left out.

| corpus | pages | chunks | questions | overlap mean | median | histogram 0-0.2 / -0.4 / -0.6 / -0.8 / -1.0 |
|---|---|---|---|---|---|---|"""]
    for name, v in c.items():
        o = v["overlap"]
        parts.append(f"| {name} | {v['pages']:,} | {v['chunks']:,} | {v['questions']} | {o['mean']:.2f} | "
                     f"{o['median']:.2f} | {' / '.join(map(str, o['histogram']))} |")
    parts.append(f"""
Searches return chunks (top {TOP_K}); they are mapped to pages, first occurrence kept, and the first
{JUDGED} pages judged. Latency is the client's wall time per request, one at a time after a warm-up. The
references rank whole pages with the same questions: BM25 (Okapi, k1 1.5, b 0.75, rank_bm25's ε floor;
lowercase alphanumeric terms, English stop words, no stemming); all-MiniLM-L6-v2 with exact cosine, its
vectors from `/v1/embeddings`, pages cut into {WINDOW_WORDS}-word windows (every {WINDOW_STRIDE} words; one
longer than the model takes is halved until it fits) and scored by their best window ({r['windows']:,}
windows, {r['parts']:,} embedded); and their reciprocal rank fusion (k 60).""")
    if r["hybrid_weight"]:
        parts.append(f"\nHybrid with `hybrid_weight` is not measured: {r['hybrid_weight']}.")
    for name, v in c.items():
        parts.append(f"\n### {name}\n\n| mode | hit@1 | hit@5 | hit@10 | MRR@10 | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|")
        for row in v["rows"]:
            parts.append(f"| {row['name']} | {f3(row['hit1'])} | {f3(row['hit5'])} | {f3(row['hit10'])} | "
                         f"**{f3(row['mrr10'])}** | {ms(row.get('p50'))} | {ms(row.get('p99'))} |")
    parts.append(f"""
### Fusion study

The platform's own vector and full-text lists (top {STUDY_K} each, per question) fused offline at
chunk level, then mapped to pages: reciprocal rank fusion, weighted RRF (vector weight w), and the
convex combination α·vector + (1-α)·fulltext, either of min-max normalised scores or of the raw
cosine with the full-text score divided by its list's maximum. MRR@10 (hit@10) per corpus.

| fusion | python MRR@10 | python hit@10 | man MRR@10 | man hit@10 |
|---|---|---|---|---|""")
    for py, mn in zip(c["python"]["study"], c["man"]["study"]):
        parts.append(f"| {py['name']} | {f3(py['mrr10'])} | {f3(py['hit10'])} | {f3(mn['mrr10'])} | {f3(mn['hit10'])} |")
    parts.append("<!-- bench-retrieval:end -->")
    write_section(doc, "bench-retrieval", "\n".join(parts))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "run":
        run(*sys.argv[2:5])
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        report(*sys.argv[2:4])
    else:
        sys.exit(__doc__)
