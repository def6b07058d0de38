"""Embedding benchmark helper for deploy/local/bench-embed.sh.

  bench_embed.py sentences OUT          write 2,000 deterministic sentences, one per line
  bench_embed.py compare DIR MODEL DOC [SECTION]
                                        time sentence-transformers on DIR/sentences.txt (batch 32,
                                        2 threads), compare its vectors with DIR/candle.f32 (and
                                        DIR/candle-f32.f32, f32 products, where the first used AMX
                                        tiles), and write the results into DOC between the SECTION
                                        markers (bench-embed, or bench-embed-avx2 for the run
                                        limited to AVX2)
"""

import json
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

WORDS = """the of and to in is was for on that with as by at from it his an were are which this be
has had not but or have one their they he she all been its new more who first after also two time
when there into other would some can only three year years over most city people during such world
made between under while then about many where these could through part later both since before
state school known may game film team season war work called including well used first became
several four long national government company life high music including family area number group
series river album member history local main north south east west early until small large around
another public university same however second based system against house place general water
region village following station near without five form line each power county album field light
policy report budget market garden office library museum bridge harbour island valley mountain
forest coast train bus flight ticket hotel kitchen recipe bread coffee tea cheese apple winter
summer spring autumn morning evening night password login account email server database network
engine rocket planet star telescope doctor patient hospital medicine law court judge contract tax
invoice payment customer order delivery warehouse product price discount support question answer
manual guide policy vacation holiday meeting project deadline review release version update error
""".split()


def write_section(doc: str, name: str, section: str) -> None:
    """Puts `section` (which carries its own markers) between `<!-- name:start/end -->` in DOC,
    or appends it when the markers are not there yet."""
    path = Path(doc)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    print(section)


def sentences(out: str) -> None:
    rng = random.Random(20261125)
    lines = []
    for _ in range(2000):
        # Mostly sentence-sized, some paragraph-sized: like the chunks a collection holds.
        n = rng.choice([rng.randint(5, 20)] * 6 + [rng.randint(20, 60)] * 3 + [rng.randint(60, 150)])
        words = [rng.choice(WORDS) for _ in range(n)]
        lines.append(" ".join(words).capitalize() + ".")
    Path(out).write_text("\n".join(lines) + "\n")


def compare(directory: str, model_dir: str, doc: str, name: str = "bench-embed") -> None:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    d = Path(directory)
    texts = (d / "sentences.txt").read_text().splitlines()
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 256
    model.encode(texts[:32], batch_size=32)
    rates, reference = [], None
    for _ in range(3):
        started = time.perf_counter()
        reference = model.encode(texts, batch_size=32, normalize_embeddings=True)
        rates.append(len(texts) / (time.perf_counter() - started))
    st = statistics.median(rates)
    def candle(name: str):
        """The run DIR/name.json describes, with its vectors' cosines to sentence-transformers'."""
        run = json.loads((d / f"{name}.json").read_text().strip().splitlines()[-1])
        vectors = np.fromfile(d / f"{name}.f32", dtype="<f4").reshape(len(texts), -1)
        cosines = (vectors * reference).sum(axis=1) / (
            np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1)
        )
        return run, cosines

    runs = [candle("candle")]
    if (d / "candle-f32.json").exists():
        runs.append(candle("candle-f32"))
    with open("/proc/self/status") as f:
        st_rss = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    cpu = next(
        (l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
        platform.processor(),
    )
    tokens = model.tokenizer(texts, add_special_tokens=True)["input_ids"]
    lengths = sorted(len(t) for t in tokens)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def label(run) -> str:
        if run.get("amx"):
            return "Candle (`embed-candle`, through the `Embedder` port), linear layers on AMX tiles (bf16 in three terms, f32 sums)"
        return "Candle (`embed-candle`, through the `Embedder` port), f32 products (gemm)"

    rows = "\n".join(
        f"| {label(run)} | {run['median_per_s']:.1f} | {', '.join(f'{r:.1f}' for r in run['runs'])} "
        f"| {int(run['peak_rss_kib'] or 0) // 1024} MB | {run['median_per_s'] / st:.2f}× "
        f"| {cosines.min():.8f} / {cosines.mean():.8f} |"
        for run, cosines in runs
    )
    (default, cosines) = runs[0]
    ratio = default["median_per_s"] / st
    goal = "met" if ratio >= 1.5 and cosines.min() >= 0.999 else "not met"
    cores = subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()
    if name == "bench-embed-avx2":
        title = "### On the AVX2 path (`just bench-embed-avx2`)"
        how = f"""{now}; {cpu}, {cores} cores, with AVX-512 and AMX switched off on both sides: Candle built without
embed-candle's `avx512` feature (gemm and pulp stop at AVX2) and AMX off; PyTorch with
`ATEN_CPU_CAPABILITY=avx2`, `ONEDNN_MAX_CPU_ISA=AVX2`, `MKL_ENABLE_INSTRUCTIONS=AVX2`. This is the
code most machines run (AMD before Zen 4, Intel client chips since Alder Lake); the same sentences,
batch and runs as above, measured in one run of its own, so compare its ratio, not its rates."""
    else:
        title = "## Embedding throughput (`just bench-embed`)"
        how = f"""{now}; {cpu}, {cores} cores; all-MiniLM-L6-v2 on the CPU, batch 32, 2 threads each.
{len(texts)} synthetic sentences (`deploy/local/bench_embed.py`), {lengths[len(lengths) // 2]} tokens at the median, {lengths[-1]} at most (special tokens included).
Each side embeds the whole file three times after a warm-up batch; the median run is quoted. The first
Candle row is what the platform runs on this machine; the second, where there is one, is its f32 path
(`EmbedderOptions::amx` off), which CPUs without AMX run."""
    section = f"""<!-- {name}:start -->
{title}

{how}

| embedder | sentences/s (median) | runs | peak RSS | / sentence-transformers | cosine to sentence-transformers, min / mean |
|---|---|---|---|---|---|
{rows}
| sentence-transformers {__import__('sentence_transformers').__version__} (PyTorch {torch.__version__}, f32) | {st:.1f} | {', '.join(f'{r:.1f}' for r in rates)} | {st_rss // 1024} MB | 1.00× | |

Candle / sentence-transformers: **{ratio:.2f}×** (goal ≥ 1.5× with identical vectors: {goal}).
<!-- {name}:end -->"""
    write_section(doc, name, section)


if __name__ == "__main__":
    if sys.argv[1] == "sentences":
        sentences(sys.argv[2])
    elif sys.argv[1] == "compare":
        compare(*sys.argv[2:6])
    else:
        sys.exit(__doc__)
