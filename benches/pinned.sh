#!/usr/bin/env bash
# CPU per million rows of backup and restore, with the noise of a shared 2-core machine kept out:
# the emulator runs on CPU 0, otsarchive on CPU 1, each step N times (the median is the figure).
# Release binaries first: cargo build --release -p ots-emulator -p otsarchive -p ots-bench
#
#   bash benches/pinned.sh            # 1M rows, 3 runs of each step
#   ROWS=100000 N=5 bash benches/pinned.sh
set -euo pipefail
cd "$(dirname "$0")/.."
R=target/release
ROWS=${ROWS:-1000000}
N=${N:-3}
PORT=${PORT:-18800}
export ALIBABA_CLOUD_ACCESS_KEY_ID=benchAK ALIBABA_CLOUD_ACCESS_KEY_SECRET=bench-secret-0123456789
work=$(mktemp -d)
trap 'kill $emu 2>/dev/null || true; rm -rf "$work"' EXIT
taskset -c 0 "$R/ots-emulator" --listen "127.0.0.1:$PORT" --instance bench >"$work/emu.out" 2>"$work/emu.err" &
emu=$!
for _ in $(seq 50); do grep -q listening "$work/emu.out" 2>/dev/null && break; sleep 0.1; done
ots=("$R/otsarchive" --endpoint "http://127.0.0.1:$PORT" --instance bench -q)
"$R/ots-bench-load" --endpoint "http://127.0.0.1:$PORT" --instance bench --table bench \
  --rows "$ROWS" --seed 42 --concurrency 8 >/dev/null
step() { # name, command…: prints wall, user+sys CPU per million rows, peak RSS
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" taskset -c 1 "$@" >/dev/null
  read -r wall user sys rss <"$work/time"
  awk -v n="$name" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v rows="$ROWS" \
    'BEGIN { printf "%-8s wall %6.2f s   CPU %5.2f s/Mrow   peak RSS %4d MiB\n", n, w, (u+s)*1e6/rows, r/1024 }'
}
for i in $(seq "$N"); do
  rm -rf "$work/snaps"
  step backup "${ots[@]}" backup --table bench --to "$work/snaps"
done
snap=$(ls -d "$work"/snaps/*/ | head -1)
for i in $(seq "$N"); do
  step restore "${ots[@]}" restore --from "$snap" --table "restored_$i" --create-table
done
