"""Two servers side by side (see bench-agents-ab.sh): batches of turns alternate between them,
and each batch notes the platform's overhead per turn (as bench_agents.py measures it) and the
CPU time per turn of the server's process and of the PostgreSQL backends connected to its
database. Run by bench-agents-ab.sh: argv = mock port, then each side's file (base URL, API key,
server pid, database name, platform and owner URLs)."""

import asyncio
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_agents as b  # noqa: E402

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def cpu_ms(pid):
    """User and system CPU time of a process so far (all its threads), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) * TICK_MS


def backends(side):
    """The pids of the PostgreSQL backends connected to the side's database."""
    out = subprocess.run(
        [os.environ["AGENTIC_PG_BIN"] + "/psql", side["owner_url"], "-qAtc",
         f"SELECT pid FROM pg_stat_activity WHERE datname = '{side['db']}' AND pid <> pg_backend_pid()"],
        check=True, stdout=subprocess.PIPE, text=True).stdout
    return [int(p) for p in out.split()]


def snapshot(side):
    pg = {pid: cpu_ms(pid) for pid in backends(side)}
    return cpu_ms(side["pid"]), {pid: ms for pid, ms in pg.items() if ms is not None}


def spent(side, before):
    """CPU ms of the server and of its database's backends since `before` (backends that came
    and went in between are not seen)."""
    server_before, pg_before = before
    server_now, pg_now = snapshot(side)
    pg = sum(ms - pg_before.get(pid, 0.0) for pid, ms in pg_now.items())
    return server_now - server_before, pg


async def batch(side, kind):
    """One batch on one side: overhead p50/p99 and CPU per turn."""
    before = snapshot(side)
    if kind == "seq":
        rows = await b.client_turns(side["base"], side["key"], side["conversations"], "sequential",
                                    int(os.environ.get("AB_SEQ", "150")))
    else:
        rows = await b.client_turns(side["base"], side["key"], side["conversations"], "open",
                                    int(os.environ.get("AB_RATE", "100")),
                                    float(os.environ.get("AB_SECS", "5")))
    server, pg = spent(side, before)
    done = [(i, ms) for i, status, ms in rows if status == 200]
    figures = b.figures([ms for _, ms in done], [b.MOCK_MS.get(i, 0.0) for i, _ in done])
    n = max(1, len(rows))
    return {"p50": figures["p50_ms"], "p99": figures["p99_ms"], "errors": len(rows) - len(done),
            "server": server / n, "pg": pg / n}


def read_side(path):
    with open(path) as f:
        base, key, pid, db, platform_url, owner_url = f.read().split("\n")[:6]
    return {"base": base, "key": key, "pid": int(pid), "db": db, "platform_url": platform_url,
            "owner_url": owner_url}


async def main(mock_port, paths):
    sides = {name: read_side(path) for name, path in zip("AB", paths)}
    server = await asyncio.start_server(b.handle, "127.0.0.1", int(mock_port))
    async with server:
        for side in sides.values():
            collection = None
            if os.environ.get("AB_RETRIEVAL") == "1":
                # collection_of_10k writes its filler chunks through the side's own URLs.
                os.environ["DATABASE_PLATFORM_URL"] = side["platform_url"]
                os.environ["DATABASE_OWNER_URL"] = side["owner_url"]
                collection = await b.collection_of_10k(side["base"], side["key"])
            side["conversations"] = await b.setup(side["base"], side["key"], collection)
            # Warm up connections, caches and the planner.
            await b.client_turns(side["base"], side["key"], side["conversations"], "open", 50, 2)
        kinds = os.environ.get("AB_KINDS", "seq,rate").split(",")
        results = {(name, kind): [] for name in sides for kind in kinds}
        for cycle in range(int(os.environ.get("AB_CYCLES", "4"))):
            order = "AB" if cycle % 2 == 0 else "BA"
            for kind in kinds:
                for name in order:
                    r = await batch(sides[name], kind)
                    results[(name, kind)].append(r)
                    print(f"cycle {cycle} {kind:4} {name}: p50 {r['p50']:.2f} p99 {r['p99']:.2f} ms, "
                          f"errors {r['errors']}, CPU/turn server {r['server']:.2f} pg {r['pg']:.2f} ms",
                          flush=True)
        print("\nmedians of the cycles (A = first binary, B = second)")
        print("| batch | side | overhead p50 (ms) | overhead p99 (ms) | server CPU/turn (ms) | PostgreSQL CPU/turn (ms) | errors |")
        print("|---|---|---|---|---|---|---|")
        for kind in kinds:
            for name in sides:
                rs = results[(name, kind)]
                med = {k: statistics.median(r[k] for r in rs) for k in ("p50", "p99", "server", "pg")}
                print(f"| {kind} | {name} | {med['p50']:.2f} | {med['p99']:.2f} | {med['server']:.2f} | "
                      f"{med['pg']:.2f} | {sum(r['errors'] for r in rs)} |")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:4]))
