"""Ingestion benchmark helper for deploy/local/bench-ingest.sh.

  bench_ingest.py run BASE_URL TOKEN DIR     upload documents, wait for their jobs, write DIR/ingest.json
  bench_ingest.py report DIR DOC              compare with DIR/raw.json, write the docs section
"""

import json
import random
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

from bench_embed import write_section

DOCUMENTS = 12
WORDS_PER_DOCUMENT = 6000


def call(base, token, method, path, body=None):
    req = urllib.request.Request(
        base + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req) as res:
        return json.load(res)


def run(base, token, directory):
    d = Path(directory)
    sentences = (d / "sentences.txt").read_text().splitlines()
    rng = random.Random(7)
    collection = call(base, token, "POST", "/v1/collections", {"name": "Ingestion bench"})
    jobs = []
    for i in range(DOCUMENTS):
        words = []
        while len(words) < WORDS_PER_DOCUMENT:
            words.extend(rng.choice(sentences).split())
        text = " ".join(words[:WORDS_PER_DOCUMENT])
        up = call(base, token, "POST", f"/v1/collections/{collection['id']}/documents",
                  {"title": f"Document {i}", "content": text})
        jobs.append(up["job"]["id"])
    finished = []
    for job_id in jobs:
        while True:
            job = call(base, token, "GET", f"/v1/jobs/{job_id}")
            if job["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
        if job["state"] != "succeeded":
            sys.exit(f"job {job_id} ended {job['state']}: {job.get('error')}")
        finished.append(job)
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))
    started = min(parse(j["created_at"]) for j in finished)
    ended = max(parse(j["updated_at"]) for j in finished)
    chunks = sum(j["progress"]["total"] for j in finished)
    seconds = (ended - started).total_seconds()
    result = {"documents": DOCUMENTS, "chunks": chunks, "seconds": seconds, "chunks_per_s": chunks / seconds}
    (d / "ingest.json").write_text(json.dumps(result))
    print(json.dumps(result))


def report(directory, doc):
    d = Path(directory)
    ingest = json.loads((d / "ingest.json").read_text())
    raw = json.loads((d / "raw.json").read_text().strip().splitlines()[-1])
    ratio = ingest["chunks_per_s"] / raw["median_per_s"]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    now = datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
    verdict = "met" if ratio >= 0.8 else "not met"
    section = f"""<!-- bench-ingest:start -->
## Ingestion throughput (`just bench-ingest`)

{now}; {cpu}, {cores} cores; release build, one in-process worker, local all-MiniLM-L6-v2 space ({'linear layers on AMX tiles' if raw.get('amx') else 'f32 products'}).
{ingest['documents']} documents of {WORDS_PER_DOCUMENT:,} words uploaded over HTTP, chunked to at most 254 word pieces
with 32 of overlap: {ingest['chunks']} chunks. End to end is from the first job's creation to the last job's end
(chunking, embedding, storing, heartbeats). The raw embedder is the same model through the `Embedder` port on
the very same chunk texts, all at once at batch 32 (median of three runs).

| path | chunks/s |
|---|---|
| ingestion, end to end | {ingest['chunks_per_s']:.1f} ({ingest['seconds']:.1f} s) |
| raw embedder, same chunks | {raw['median_per_s']:.1f} (runs {', '.join(f'{r:.1f}' for r in raw['runs'])}) |

End to end / raw: **{ratio:.2f}** (goal: within 20 %, i.e. ≥ 0.80: {verdict}).
<!-- bench-ingest:end -->"""
    write_section(doc, "bench-ingest", section)


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(*sys.argv[2:5])
    elif sys.argv[1] == "report":
        report(*sys.argv[2:4])
    else:
        sys.exit(__doc__)
