#!/usr/bin/env python3
"""otsarchive memory benchmark: peak RSS of backup, restore and verify --against-table at default
settings, on tables whose rows range from ~600 bytes to 1 MB.

    .venv/bin/python benches/memory.py              # every table below
    .venv/bin/python benches/memory.py --tables std-1m,blob-100k --no-build
    .venv/bin/python benches/memory.py --otsarchive OLD/target/release/otsarchive --no-build
                                                    # the same tables, another build (before/after)

Tables (each loaded into one emulator through our BatchWriteRow path):

    std-1m, std-4m   the standard benchmark table (crates/datagen), 1M and 4M rows
    blob-10k         10 KB rows, blob-100k 100 KB rows, blob-1m 1 MB rows: incompressible binary
                     cells under one partition key, --blob-mb (default 512) MiB of data each

For each table: `otsarchive backup` to a local folder, `otsarchive restore --create-table` into a
fresh table, and `otsarchive verify --against-table` of the snapshot against that restored table,
each as a child process with its peak RSS from os.wait4 (run.py's Bench). The target is every
figure within the default --memory-mb (256 MiB), and std-1m vs std-4m within 10%. Prints one table
and writes the same as JSON to benches/results/memory-<timestamp>.json.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import BINARIES, BUILD, INSTANCE, MIB, RELEASE, ROOT, Bench, git_rev, log  # noqa: E402

TABLES = {
    "std-1m": {"rows": 1_000_000},
    "std-4m": {"rows": 4_000_000},
    "blob-10k": {"row_bytes": 10 * 1024},
    "blob-100k": {"row_bytes": 100 * 1024},
    "blob-1m": {"row_bytes": 1024 * 1024},
}
STEPS = ("backup", "restore", "verify")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables", default=",".join(TABLES),
                   help=f"comma-separated, from {', '.join(TABLES)}")
    p.add_argument("--blob-mb", type=int, default=512,
                   help="MiB of data in each blob table (default 512)")
    p.add_argument("--otsarchive", default=os.path.join(RELEASE, "otsarchive"),
                   help="the otsarchive binary to measure (e.g. an older build, for a before/after "
                        "table); the emulator and loader are always this checkout's")
    p.add_argument("--steps", default=",".join(STEPS),
                   help=f"comma-separated, from {', '.join(STEPS)}")
    p.add_argument("--no-build", action="store_true",
                   help="do not run cargo; the release binaries must exist")
    p.add_argument("--out", help="JSON result path (default benches/results/memory-<timestamp>.json)")
    a = p.parse_args()
    names = [t.strip() for t in a.tables.split(",") if t.strip()]
    steps = [s.strip() for s in a.steps.split(",") if s.strip()]
    if not steps or steps[0] != "backup" or any(s not in STEPS for s in steps):
        raise SystemExit(f"--steps: backup first, then any of {', '.join(STEPS[1:])}")
    unknown = [t for t in names if t not in TABLES]
    if unknown:
        raise SystemExit(f"unknown tables {unknown}; choose from {', '.join(TABLES)}")
    if not a.no_build:
        log(" ".join(BUILD))
        subprocess.run(BUILD, cwd=ROOT, check=True)
    missing = [b for b in BINARIES if not os.path.exists(os.path.join(RELEASE, b))]
    if missing:
        raise SystemExit(f"missing release binaries {missing}; run: {' '.join(BUILD)}")

    work = tempfile.mkdtemp(prefix="otsarchive-memory-")
    b = Bench(a, work)
    results = {}
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        b.start_emulator()
        common = ["--endpoint", b.endpoint, "--instance", INSTANCE]
        cli = [os.path.abspath(a.otsarchive), *common]
        for name in names:
            spec = TABLES[name]
            table = name.replace("-", "_")
            load = [os.path.join(RELEASE, "ots-bench-load"), *common, "--table", table]
            if "row_bytes" in spec:
                rows = a.blob_mb * MIB // spec["row_bytes"]
                load += ["--rows", str(rows), "--row-bytes", str(spec["row_bytes"])]
            else:
                rows = spec["rows"]
                load += ["--rows", str(rows)]
            b.run(f"{name} load", load)
            snapdir = os.path.join(work, "snapshots")
            backup = b.run(f"{name} backup", [*cli, "backup", "--table", table, "--to", snapdir,
                                             "--json"])
            snapshot = os.path.join(snapdir, backup["snapshot_id"])
            # Verified against the restored table when there is one, else against the source.
            against = table
            if "restore" in steps:
                against = f"{table}_restored"
                b.run(f"{name} restore", [*cli, "restore", "--from", snapshot, "--table", against,
                                         "--create-table", "--json"], rows_key="rows_written")
            if "verify" in steps:
                b.run(f"{name} verify", [*cli, "verify", snapshot, "--against-table", against,
                                        "--json"])
            results[name] = {
                "rows": rows,
                "parquet_bytes": backup.get("bytes"),
                **{s: {k: b.steps[f"{name} {s}"][k]
                       for k in ("wall_secs", "cpu_secs", "peak_rss_bytes")} for s in steps},
            }
            shutil.rmtree(snapshot, ignore_errors=True)
    finally:
        b.stop_emulator()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{'table':<10} {'rows':>10} " + " ".join(f"{s + ' MiB':>12}" for s in steps))
    for name, r in results.items():
        print(f"{name:<10} {r['rows']:>10,} " +
              " ".join(f"{r[s]['peak_rss_bytes'] / MIB:>12.0f}" for s in steps))
    worst = max((r[s]["peak_rss_bytes"] for r in results.values() for s in steps), default=0)
    print(f"\nworst peak RSS {worst / MIB:.0f} MiB (target: at most 256 MiB)")
    if "std-1m" in results and "std-4m" in results:
        for s in steps:
            x = results["std-1m"][s]["peak_rss_bytes"]
            y = results["std-4m"][s]["peak_rss_bytes"]
            print(f"{s}: 4M rows / 1M rows = {y / x:.2f} (target: within 1.10)")
    out = a.out or os.path.join(ROOT, "benches", "results",
                                f"memory-{started.strftime('%Y%m%dT%H%M%SZ')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"started": started.isoformat(), "git": git_rev(), "otsarchive": a.otsarchive,
                   "results": results}, f,
                  indent=2)
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
