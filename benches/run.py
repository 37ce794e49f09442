#!/usr/bin/env python3
"""otsarchive benchmark: our backup and restore against the official Python SDK, same machine, same data.

    .venv/bin/python benches/run.py --rows 1000000     # standard
    .venv/bin/python benches/run.py --quick            # 100k rows

One run: builds the release binaries (cargo; skip with --no-build), starts `ots-emulator` on an
ephemeral port, loads the standard table (crates/datagen) through `ots-bench-load`, then measures

    backup        otsarchive backup --json to a local folder (default settings)
    verify        otsarchive verify: sizes, SHA-256 and footers of every file
    verify-table  otsarchive verify --against-table: every row and cell against the live table
    raw-scan      ots-bench-scan: same splits and concurrency, pages only decoded (the ceiling)
    sdk-csv       Python SDK get_range -> CSV               (benches/baselines.py)
    sdk-parquet   Python SDK get_range -> pyarrow Parquet zstd
    restore       otsarchive restore --create-table into a fresh table
    sdk-restore   pyarrow file -> SDK batch_write_row, 200-row batches, into a fresh table

Each step runs as a child process; wall time, CPU (user+sys) and peak RSS come from os.wait4, so
they are the measured process's own. The emulator shares the machine: its CPU per step is read
from /proc/<pid>/stat and reported beside. MB/s is table data (the PlainBuffer bytes of every
version of every row, as the raw scan receives them) per second. Prints one table and writes the
same as JSON to benches/results/<timestamp>.json.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
BINARIES = ["ots-emulator", "otsarchive", "ots-bench-load", "ots-bench-scan"]
BUILD = ["cargo", "build", "--release", "-p", "ots-emulator", "-p", "otsarchive", "-p", "ots-bench"]
AK, SK, INSTANCE = "benchAK", "bench-secret-0123456789", "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def proc_cpu(pid):
    """user+sys CPU seconds of a live process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def proc_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class Bench:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=AK,
                        ALIBABA_CLOUD_ACCESS_KEY_SECRET=SK, RUST_BACKTRACE="1")
        self.emulator = None
        self.endpoint = None
        self.steps = {}

    def start_emulator(self):
        argv = [os.path.join(RELEASE, "ots-emulator"), "--listen", "127.0.0.1:0",
                "--instance", INSTANCE]
        err = open(os.path.join(self.work, "emulator.stderr"), "w")
        self.emulator = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=self.env,
                                         text=True)
        line = self.emulator.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise SystemExit(f"ots-emulator did not start: {line!r} (see {err.name})")
        self.endpoint = line[len("listening on "):]
        log(f"emulator pid {self.emulator.pid} at {self.endpoint}")

    def stop_emulator(self):
        if self.emulator and self.emulator.poll() is None:
            self.emulator.terminate()
            try:
                self.emulator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.emulator.kill()
                self.emulator.wait()

    def run(self, name, argv, rows_key="rows"):
        """Runs one measured step as a child process; returns its JSON output."""
        log(f"{name}: {' '.join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in argv)}")
        out_path = os.path.join(self.work, f"{name}.stdout")
        err_path = os.path.join(self.work, f"{name}.stderr")
        emu0 = proc_cpu(self.emulator.pid)
        with open(out_path, "w") as out, open(err_path, "w") as err:
            t0 = time.perf_counter()
            p = subprocess.Popen(argv, stdout=out, stderr=err, env=self.env, cwd=ROOT)
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
        emu_cpu = proc_cpu(self.emulator.pid) - emu0
        if p.returncode != 0:
            with open(err_path) as f:
                tail = f.read()[-3000:]
            raise SystemExit(f"step {name} failed with exit code {p.returncode}:\n{tail}")
        with open(out_path) as f:
            lines = [ln for ln in f.read().splitlines() if ln.strip().startswith("{")]
        data = json.loads(lines[-1]) if lines else {}
        step = {
            "wall_secs": wall,
            "cpu_user_secs": ru.ru_utime,
            "cpu_sys_secs": ru.ru_stime,
            "cpu_secs": ru.ru_utime + ru.ru_stime,
            "peak_rss_bytes": ru.ru_maxrss * 1024,
            "emulator_cpu_secs": emu_cpu,
            "rows": data.get(rows_key),
            "output": data,
        }
        self.steps[name] = step
        log(f"{name}: {wall:.1f}s wall, {step['cpu_secs']:.1f}s CPU, "
            f"{step['peak_rss_bytes'] / MIB:.0f} MiB peak RSS, emulator {emu_cpu:.1f}s CPU")
        return data


def dir_bytes(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    return total


def git_rev():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="table size (default 1000000)")
    p.add_argument("--quick", action="store_true", help="100000 rows")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--concurrency", type=int, default=4,
                   help="otsarchive backup --concurrency and the raw scan's (default 4, the CLI's)")
    p.add_argument("--split-size-mb", type=int, default=128,
                   help="otsarchive backup --split-size-mb and the raw scan's (default 128, the CLI's)")
    p.add_argument("--load-concurrency", type=int, default=8)
    p.add_argument("--skip", default="", help="comma-separated steps to skip "
                   "(verify, sdk-csv, sdk-parquet, restore, sdk-restore)")
    p.add_argument("--no-build", action="store_true",
                   help="do not run cargo; the release binaries must exist")
    p.add_argument("--work", help="working folder (default: a temporary one, removed at the end)")
    p.add_argument("--keep", action="store_true", help="keep the working folder")
    p.add_argument("--out", help="JSON result path (default benches/results/<timestamp>.json)")
    a = p.parse_args()
    if a.quick:
        a.rows = 100_000
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}

    if not a.no_build:
        log(" ".join(BUILD))
        subprocess.run(BUILD, cwd=ROOT, check=True)
    missing = [b for b in BINARIES if not os.path.exists(os.path.join(RELEASE, b))]
    if missing:
        raise SystemExit(f"missing release binaries {missing}; run: {' '.join(BUILD)}")

    work = a.work or tempfile.mkdtemp(prefix="otsarchive-bench-")
    os.makedirs(work, exist_ok=True)
    b = Bench(a, work)
    py = sys.executable
    baselines = os.path.join(ROOT, "benches", "baselines.py")
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        b.start_emulator()
        common = ["--endpoint", b.endpoint, "--instance", INSTANCE]
        load = b.run("load", [os.path.join(RELEASE, "ots-bench-load"), *common, "--table", "bench",
                              "--rows", str(a.rows), "--seed", str(a.seed),
                              "--concurrency", str(a.load_concurrency)])
        emulator_rss_loaded = proc_rss(b.emulator.pid)
        cli = [os.path.join(RELEASE, "otsarchive"), *common]
        snapdir = os.path.join(work, "snapshots")
        backup = b.run("backup", [*cli, "backup", "--table", "bench", "--to", snapdir,
                                  "--concurrency", str(a.concurrency),
                                  "--split-size-mb", str(a.split_size_mb), "--json"])
        snapshot = os.path.join(snapdir, backup["snapshot_id"])
        b.steps["backup"]["output_bytes"] = dir_bytes(snapshot)
        b.steps["backup"]["parquet_bytes"] = backup.get("bytes")
        if "verify" not in skip:
            # Integrity alone (sizes, SHA-256, footers), then against the live table.
            out = b.run("verify", [*cli, "verify", snapshot, "--json"])
            b.steps["verify"]["rows"] = out["report"]["rows_in_footers"]
            b.steps["verify"]["output_bytes"] = 0
            out = b.run("verify-table", [*cli, "verify", snapshot, "--against-table", "bench",
                                         "--json"])
            b.steps["verify-table"]["rows"] = out["comparison"]["rows_in_table"]
            b.steps["verify-table"]["output_bytes"] = 0
        scan = b.run("raw-scan", [os.path.join(RELEASE, "ots-bench-scan"), *common,
                                  "--table", "bench", "--concurrency", str(a.concurrency),
                                  "--split-size-mb", str(a.split_size_mb)])
        b.steps["raw-scan"]["output_bytes"] = 0
        pq_path = os.path.join(work, "sdk.parquet")
        if "sdk-csv" not in skip:
            csv_path = os.path.join(work, "sdk.csv")
            b.run("sdk-csv", [py, baselines, "scan-csv", *common, "--table", "bench",
                              "--out", csv_path])
            b.steps["sdk-csv"]["output_bytes"] = os.path.getsize(csv_path)
            os.remove(csv_path)
        if "sdk-parquet" not in skip:
            b.run("sdk-parquet", [py, baselines, "scan-parquet", *common, "--table", "bench",
                                  "--out", pq_path])
            b.steps["sdk-parquet"]["output_bytes"] = os.path.getsize(pq_path)
        if "restore" not in skip:
            b.run("restore", [*cli, "restore", "--from", snapshot, "--table", "bench_restored",
                              "--create-table", "--json"], rows_key="rows_written")
            b.steps["restore"]["output_bytes"] = 0
        if "sdk-restore" not in skip and os.path.exists(pq_path):
            b.run("sdk-restore", [py, baselines, "restore", *common, "--table",
                                  "bench_restored_sdk", "--from", pq_path])
            b.steps["sdk-restore"]["output_bytes"] = 0
        # Both restored tables must hold what the source holds (not measured).
        verify = {}
        for t in ("bench_restored", "bench_restored_sdk"):
            if (t == "bench_restored" and "restore" in b.steps) or \
               (t == "bench_restored_sdk" and "sdk-restore" in b.steps):
                r = subprocess.run([os.path.join(RELEASE, "ots-bench-scan"), *common, "--table", t],
                                   env=b.env, capture_output=True, text=True, check=True)
                got = json.loads(r.stdout)
                verify[t] = {"rows": got["rows"], "cells": got["cells"],
                             "matches_source": got["rows"] == scan["rows"] and got["cells"] == scan["cells"]}
        emulator_rss_peak = proc_rss(b.emulator.pid)
    finally:
        b.stop_emulator()
        if not a.keep and not a.work:
            shutil.rmtree(work, ignore_errors=True)
        elif a.keep:
            log(f"kept {work}")

    table_bytes = scan["page_bytes"]
    for name, s in b.steps.items():
        rows = s["rows"] or 0
        s["rows_per_sec"] = rows / s["wall_secs"] if s["wall_secs"] else None
        s["table_mb_per_sec"] = table_bytes / 1e6 / s["wall_secs"] if name != "load" else \
            None
        s["cpu_secs_per_mrow"] = s["cpu_secs"] / rows * 1e6 if rows else None
        s["emulator_cpu_secs_per_mrow"] = s["emulator_cpu_secs"] / rows * 1e6 if rows else None
        if name != "load" and rows != a.rows:
            log(f"WARNING: {name} reports {rows} rows, expected {a.rows}")

    def ratio(x, y, key="rows_per_sec"):
        if x not in b.steps or y not in b.steps:
            return None
        return b.steps[x][key] / b.steps[y][key]

    ratios = {
        "backup_vs_sdk_csv": ratio("backup", "sdk-csv"),
        "backup_vs_sdk_parquet": ratio("backup", "sdk-parquet"),
        "backup_vs_raw_scan": ratio("backup", "raw-scan"),
        "restore_vs_sdk_restore": ratio("restore", "sdk-restore"),
        "snapshot_bytes_vs_sdk_parquet": ratio("backup", "sdk-parquet", "output_bytes"),
        "sdk_parquet_cpu_per_row_vs_backup": ratio("sdk-parquet", "backup", "cpu_secs_per_mrow"),
        "sdk_restore_cpu_per_row_vs_restore": ratio("sdk-restore", "restore", "cpu_secs_per_mrow"),
    }
    rss_limit = 512 * MIB
    def step(name, key):
        return b.steps[name][key] if name in b.steps else None

    # Issue 15's targets: 10x the SDK at 1M rows, 6x at 100k.
    sdk_factor = 10 if a.rows >= 1_000_000 else 6
    targets = {
        f"backup >= {sdk_factor}x sdk-parquet": (ratios["backup_vs_sdk_parquet"],
                                                 lambda r: r >= sdk_factor),
        "backup >= 0.85x raw scan": (ratios["backup_vs_raw_scan"], lambda r: r >= 0.85),
        "backup <= 2.5 CPU s/Mrow": (step("backup", "cpu_secs_per_mrow"), lambda r: r <= 2.5),
        "restore >= 140k rows/s": (step("restore", "rows_per_sec"), lambda r: r >= 140_000),
        "restore <= 5 CPU s/Mrow": (step("restore", "cpu_secs_per_mrow"), lambda r: r <= 5),
        "backup peak RSS < 512 MiB": (b.steps["backup"]["peak_rss_bytes"] / MIB,
                                      lambda r: r * MIB < rss_limit),
        "restore >= 5x sdk-restore": (ratios["restore_vs_sdk_restore"], lambda r: r >= 5),
        "snapshot <= sdk parquet file": (ratios["snapshot_bytes_vs_sdk_parquet"], lambda r: r <= 1),
    }
    target_results = {k: {"value": v, "met": None if v is None else bool(ok(v))}
                      for k, (v, ok) in targets.items()}

    result = {
        "started_at": started.isoformat(timespec="seconds"),
        "rows": a.rows,
        "seed": a.seed,
        "concurrency": a.concurrency,
        "split_size_mb": a.split_size_mb,
        "table_bytes": table_bytes,
        "table_cells": scan["cells"],
        "splits": scan["splits"],
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
                    "kernel": platform.release()},
        "git": git_rev(),
        "emulator": {"rss_after_load_bytes": emulator_rss_loaded,
                     "peak_rss_bytes": emulator_rss_peak},
        "steps": b.steps,
        "ratios": ratios,
        "targets": target_results,
        "restored_tables": verify,
    }

    # The table.
    print(f"\notsarchive benchmark: {a.rows:,} rows, {scan['cells']:,} cells, "
          f"{table_bytes / 1e6:.0f} MB of table data, {scan['splits']} split(s), concurrency "
          f"{a.concurrency}; {os.cpu_count()} CPUs ({cpu_model()}); git {result['git']}")
    print(f"load (ots-bench-load, concurrency {a.load_concurrency}): "
          f"{b.steps['load']['wall_secs']:.1f}s, {b.steps['load']['rows_per_sec']:,.0f} rows/s\n")
    head = (f"{'step':<12} {'wall s':>8} {'rows/s':>10} {'MB/s':>7} {'CPU s/Mrow':>11} "
            f"{'emu CPU s/Mrow':>15} {'peak RSS MiB':>13} {'output MiB':>11}")
    print(head)
    print("-" * len(head))
    for name in ("backup", "raw-scan", "verify", "verify-table", "sdk-csv", "sdk-parquet",
                 "restore", "sdk-restore"):
        s = b.steps.get(name)
        if not s:
            continue
        out = s.get("output_bytes")
        print(f"{name:<12} {s['wall_secs']:>8.1f} {s['rows_per_sec']:>10,.0f} "
              f"{fmt(s['table_mb_per_sec'], '>7.1f')} {fmt(s['cpu_secs_per_mrow'], '>11.1f')} "
              f"{fmt(s['emulator_cpu_secs_per_mrow'], '>15.1f')} "
              f"{s['peak_rss_bytes'] / MIB:>13.0f} "
              f"{(out / MIB if out else 0):>11.1f}")
    print()
    labels = {
        "backup_vs_sdk_csv": "backup rows/s ÷ sdk-csv",
        "backup_vs_sdk_parquet": "backup rows/s ÷ sdk-parquet",
        "backup_vs_raw_scan": "backup rows/s ÷ raw scan",
        "restore_vs_sdk_restore": "restore rows/s ÷ sdk-restore",
        "snapshot_bytes_vs_sdk_parquet": "snapshot bytes ÷ sdk-parquet file",
        "sdk_parquet_cpu_per_row_vs_backup": "sdk-parquet CPU/row ÷ backup CPU/row",
        "sdk_restore_cpu_per_row_vs_restore": "sdk-restore CPU/row ÷ restore CPU/row",
    }
    for k, label in labels.items():
        print(f"  {label:<40} {fmt(ratios[k], '.3f')}")
    print()
    for k, t in target_results.items():
        mark = "—" if t["met"] is None else ("met" if t["met"] else "MISSED")
        print(f"  target {k:<32} {fmt(t['value'], '.3f'):>8}  {mark}")
    for t, v in verify.items():
        print(f"  {t}: {v['rows']:,} rows, {v['cells']:,} cells, "
              f"{'matches the source' if v['matches_source'] else 'DOES NOT MATCH the source'}")

    out_path = a.out or os.path.join(ROOT, "benches", "results",
                                     started.strftime("%Y%m%dT%H%M%SZ") + f"-{a.rows}.json")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwrote {os.path.relpath(out_path, ROOT)}")


if __name__ == "__main__":
    main()
