#!/usr/bin/env python3
"""otsarchive scale-out benchmark: one snapshot backed up and restored by 1, 2 and 4 worker
processes on this machine.

    .venv/bin/python benches/workers.py                     # 1M rows, 1/2/4 workers
    .venv/bin/python benches/workers.py --rows 200000 --workers 1,2 --no-build

For each N: `backup --plan-only`, N `backup --resume ID --worker K/N` processes at once, `commit`;
then N `restore --worker K/N --create-table` processes at once into a fresh table. Each worker is a
child process measured with os.wait4 (CPU, peak RSS); the wall time is from the first start to the
last exit. The emulator is one process on the same cores, so its CPU is reported beside ours:
on a 2-core machine it and the workers share the cores, which caps what more workers can give.
Prints a table and writes JSON to benches/results/workers-<timestamp>.json.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import (BINARIES, BUILD, INSTANCE, MIB, RELEASE, ROOT, Bench, git_rev, log,  # noqa: E402
                 proc_cpu)


def run_workers(b, name, argvs):
    """Runs the argv lists at once; returns wall seconds and per-process (cpu, rss)."""
    emu0 = proc_cpu(b.emulator.pid)
    t0 = time.perf_counter()
    procs = []
    for i, argv in enumerate(argvs):
        out = open(os.path.join(b.work, f"{name}-{i}.stdout"), "w")
        err = open(os.path.join(b.work, f"{name}-{i}.stderr"), "w")
        procs.append((subprocess.Popen(argv, stdout=out, stderr=err, env=b.env, cwd=b.work), err))
    per = []
    for p, err in procs:
        _, status, ru = os.wait4(p.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            with open(err.name) as f:
                raise SystemExit(f"{name}: a worker failed:\n{f.read()[-3000:]}")
        per.append({"cpu_secs": ru.ru_utime + ru.ru_stime, "peak_rss_bytes": ru.ru_maxrss * 1024})
    wall = time.perf_counter() - t0
    emu = proc_cpu(b.emulator.pid) - emu0
    log(f"{name}: {wall:.1f}s wall, {sum(w['cpu_secs'] for w in per):.1f}s CPU over "
        f"{len(per)} workers, emulator {emu:.1f}s CPU")
    return {"wall_secs": wall, "workers": per, "emulator_cpu_secs": emu}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--out")
    a = p.parse_args()
    counts = [int(x) for x in a.workers.split(",") if x.strip()]
    if not a.no_build:
        log(" ".join(BUILD))
        subprocess.run(BUILD, cwd=ROOT, check=True)
    missing = [x for x in BINARIES if not os.path.exists(os.path.join(RELEASE, x))]
    if missing:
        raise SystemExit(f"missing release binaries {missing}; run: {' '.join(BUILD)}")
    work = tempfile.mkdtemp(prefix="otsarchive-workers-")
    b = Bench(a, work)
    results = {}
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        b.start_emulator()
        common = ["--endpoint", b.endpoint, "--instance", INSTANCE]
        cli = [os.path.join(RELEASE, "otsarchive"), *common]
        b.run("load", [os.path.join(RELEASE, "ots-bench-load"), *common, "--table", "w",
                       "--rows", str(a.rows)])
        for n in counts:
            dest = os.path.join(work, f"snaps-{n}")
            plan = subprocess.run([*cli, "backup", "--table", "w", "--to", dest, "--plan-only"],
                                  env=b.env, capture_output=True, text=True, check=True)
            url = plan.stdout.strip().splitlines()[-1]
            sid = url.rstrip("/").rsplit("/", 1)[-1]
            backup = run_workers(b, f"backup-{n}", [
                [*cli, "-q", "backup", "--table", "w", "--to", dest, "--resume", sid,
                 "--worker", f"{k}/{n}"] for k in range(n)])
            subprocess.run([*cli, "-q", "commit", url], env=b.env, check=True)
            restore = run_workers(b, f"restore-{n}", [
                [*cli, "-q", "restore", "--from", url, "--table", f"w_copy_{n}", "--create-table",
                 "--worker", f"{k}/{n}"] for k in range(n)])
            results[n] = {"backup": backup, "restore": restore}
            shutil.rmtree(dest, ignore_errors=True)
    finally:
        b.stop_emulator()
        shutil.rmtree(work, ignore_errors=True)

    m = a.rows / 1e6
    print(f"\n{'workers':>7} {'step':<8} {'wall s':>7} {'rows/s':>9} {'CPU s/Mrow':>11} "
          f"{'emu CPU s':>10} {'peak MiB/worker':>16}")
    for n, r in results.items():
        for step in ("backup", "restore"):
            s = r[step]
            cpu = sum(w["cpu_secs"] for w in s["workers"])
            rss = max(w["peak_rss_bytes"] for w in s["workers"]) / MIB
            print(f"{n:>7} {step:<8} {s['wall_secs']:>7.1f} {a.rows / s['wall_secs']:>9,.0f} "
                  f"{cpu / m:>11.1f} {s['emulator_cpu_secs']:>10.1f} {rss:>16.0f}")
    out = a.out or os.path.join(ROOT, "benches", "results",
                                f"workers-{started.strftime('%Y%m%dT%H%M%SZ')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"started": started.isoformat(), "git": git_rev(), "rows": a.rows,
                   "results": results}, f, indent=2)
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
