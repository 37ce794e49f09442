#!/usr/bin/env python3
"""otsarchive change-capture benchmark: throughput (changes per second) and peak RSS of an
incremental snapshot and of restoring its chain.

    .venv/bin/python benches/capture.py                    # 1,000,000 changes
    .venv/bin/python benches/capture.py --changes 200000 --no-build

Steps, each a child process measured like benches/run.py (wall, CPU, peak RSS from os.wait4):

    load       the standard table (crates/datagen), --base-rows rows, then its stream enabled
    full       `otsarchive backup`: a consistent full snapshot (few changes: the table is quiet)
    changes    --changes rows written again with another seed (same keys, new values): one
               PUT_ROW record each in the stream, 600 bytes on average
    incr       `otsarchive backup --incremental-from latest`: the changes read from the stream and
               written as change files                       -> changes/s, CPU-s per 1M changes
    restore    `otsarchive restore` of the incremental: the base's data files, then the replay of
               every change through BatchWriteRow            -> changes/s

The emulator runs in its own process on the same 2 cores, and its CPU is reported beside ours.
Prints a table and writes JSON to benches/results/capture-<timestamp>.json.
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


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--changes", type=int, default=1_000_000, help="changes to capture")
    p.add_argument("--base-rows", type=int, default=100_000, help="rows of the base table")
    p.add_argument("--no-build", action="store_true",
                   help="do not run cargo; the release binaries must exist")
    p.add_argument("--out", help="JSON result path")
    a = p.parse_args()
    if not a.no_build:
        log(" ".join(BUILD))
        subprocess.run(BUILD, cwd=ROOT, check=True)
    missing = [b for b in BINARIES if not os.path.exists(os.path.join(RELEASE, b))]
    if missing:
        raise SystemExit(f"missing release binaries {missing}; run: {' '.join(BUILD)}")

    work = tempfile.mkdtemp(prefix="otsarchive-capture-")
    b = Bench(a, work)
    started = datetime.datetime.now(datetime.timezone.utc)
    table = "cap"
    try:
        b.start_emulator()
        common = ["--endpoint", b.endpoint, "--instance", INSTANCE]
        cli = [os.path.join(RELEASE, "otsarchive"), *common]
        load = [os.path.join(RELEASE, "ots-bench-load"), *common, "--table", table]
        b.run("load", [*load, "--rows", str(a.base_rows), "--stream-hours", "24"])
        snapdir = os.path.join(work, "snapshots")
        b.run("full", [*cli, "backup", "--table", table, "--to", snapdir, "--json"])
        # Rows 0..changes of another seed: the base's keys updated, then new keys appended.
        b.run("changes", [*load, "--rows", str(a.changes), "--seed", "7", "--existing"])
        incr = b.run("incr", [*cli, "backup", "--table", table, "--to", snapdir,
                              "--incremental-from", "latest", "--json"])
        snapshot = os.path.join(snapdir, incr["snapshot_id"])
        b.run("restore", [*cli, "restore", "--from", snapshot, "--table", f"{table}_restored",
                          "--create-table", "--json"], rows_key="rows_written")
    finally:
        b.stop_emulator()
        shutil.rmtree(work, ignore_errors=True)

    captured = (incr.get("changes") or {}).get("put_row", 0)
    rows = {}
    for name in ("full", "incr", "restore"):
        s = b.steps[name]
        rows[name] = {k: s[k] for k in ("wall_secs", "cpu_secs", "peak_rss_bytes",
                                        "emulator_cpu_secs")}
    inc, res = b.steps["incr"], b.steps["restore"]
    summary = {
        "changes": captured,
        "change_files": incr.get("change_files"),
        "change_bytes": incr.get("change_bytes"),
        "capture_changes_per_sec": captured / max(inc["wall_secs"], 1e-9),
        "capture_cpu_secs_per_million": inc["cpu_secs"] / max(captured, 1) * 1e6,
        "capture_peak_rss_mib": inc["peak_rss_bytes"] / MIB,
        "restore_changes_per_sec": captured / max(res["wall_secs"], 1e-9),
        "restore_peak_rss_mib": res["peak_rss_bytes"] / MIB,
    }
    print(f"\n{'step':<8} {'wall s':>8} {'CPU s':>8} {'emu CPU s':>10} {'peak MiB':>9}")
    for name, r in rows.items():
        print(f"{name:<8} {r['wall_secs']:>8.1f} {r['cpu_secs']:>8.1f} "
              f"{r['emulator_cpu_secs']:>10.1f} {r['peak_rss_bytes'] / MIB:>9.0f}")
    print(f"\ncapture: {captured:,} changes at {summary['capture_changes_per_sec']:,.0f}/s, "
          f"{summary['capture_cpu_secs_per_million']:.1f} CPU-s per 1M changes, "
          f"{summary['capture_peak_rss_mib']:.0f} MiB peak RSS, "
          f"{summary['change_files']} change files of {(summary['change_bytes'] or 0) / MIB:.1f} MiB")
    print(f"restore (base + replay): {summary['restore_changes_per_sec']:,.0f} changes/s, "
          f"{summary['restore_peak_rss_mib']:.0f} MiB peak RSS")
    out = a.out or os.path.join(ROOT, "benches", "results",
                                f"capture-{started.strftime('%Y%m%dT%H%M%SZ')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"started": started.isoformat(), "git": git_rev(), "steps": rows,
                   "summary": summary}, f, indent=2)
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
