#!/usr/bin/env bash
# Runs one backup spread over several pods: the plan Job, then the workers (an Indexed Job), then
# the commit Job, each waited for in turn. Between the plan and the workers it stores the planned
# snapshot's URL and id in the ConfigMap otsarchive-snapshot, from which the workers and the
# commit take $(SNAPSHOT_ID).
#
#   deploy/kubernetes/backup.sh [-n NAMESPACE] [--snapshot DEST/ID] [--timeout SECONDS]
#
#   -n NAMESPACE       namespace of the Jobs (default: kubectl's current one)
#   --snapshot URL     skip the plan: run the workers and the commit again for this planned
#                      snapshot (after a failed run; workers redo only unfinished splits)
#   --timeout SECONDS  how long to wait for each Job (default 86400)
#
# Needs kubectl, and the ConfigMap otsarchive-config and the Secret otsarchive-credentials applied.
# Prints the committed snapshot's URL as its last line on stdout; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
kubectl=${KUBECTL:-kubectl}
namespace=()
snapshot_url=""
timeout=86400

while [[ $# -gt 0 ]]; do
  case "$1" in
    -n|--namespace) namespace=(--namespace "$2"); shift 2 ;;
    --snapshot) snapshot_url="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "backup.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

k() { "$kubectl" "${namespace[@]}" "$@"; }
say() { echo "backup.sh: $*" >&2; }

# Job names are unique: a finished Job of an earlier run is deleted, a running one is not touched.
clear_job() {
  local job=$1 state
  state=$(k get job "$job" --ignore-not-found -o jsonpath='{.status.active}')
  if [[ -n "$state" && "$state" != "0" ]]; then
    say "job $job is still running ($state active pods): wait for it or delete it first"
    exit 1
  fi
  k delete job "$job" --ignore-not-found --wait=true >/dev/null
}

# Waits until the Job is Complete (returns 0) or Failed (returns 1).
wait_job() {
  local job=$1 deadline=$((SECONDS + timeout)) conditions
  while (( SECONDS < deadline )); do
    conditions=$(k get job "$job" -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')
    case " $conditions " in
      *" Complete "*) return 0 ;;
      *" Failed "*) return 1 ;;
    esac
    sleep 10
  done
  say "job $job did not finish within ${timeout}s"
  return 1
}

run_job() {
  local job=$1 file=$2
  clear_job "$job"
  k apply -f "$here/$file" >/dev/null
  say "job $job started"
  if ! wait_job "$job"; then
    say "job $job failed; its pods: kubectl get pods -l job-name=$job; logs: kubectl logs -l job-name=$job --tail=-1"
    return 1
  fi
  say "job $job complete"
}

if [[ -z "$snapshot_url" ]]; then
  for job in otsarchive-backup-plan otsarchive-backup-workers otsarchive-backup-commit; do
    clear_job "$job"
  done
  run_job otsarchive-backup-plan backup-plan-job.yaml
  pod=$(k get pods -l job-name=otsarchive-backup-plan --field-selector=status.phase=Succeeded \
        -o jsonpath='{.items[0].metadata.name}')
  # The URL is the last line of stdout; stderr (in the same log) never holds such a line.
  snapshot_url=$(k logs "$pod" -c otsarchive \
                 | grep -E '^[^[:space:]]+/[0-9]{8}T[0-9]{6}Z-[0-9a-f]+$' | tail -n 1 || true)
  if [[ -z "$snapshot_url" ]]; then
    say "no snapshot URL in the log of pod $pod"
    exit 1
  fi
  say "planned $snapshot_url"
fi
snapshot_id=${snapshot_url##*/}

k create configmap otsarchive-snapshot \
  --from-literal=SNAPSHOT_URL="$snapshot_url" --from-literal=SNAPSHOT_ID="$snapshot_id" \
  --dry-run=client -o yaml | k apply -f - >/dev/null

if ! run_job otsarchive-backup-workers backup-workers-job.yaml; then
  failed=$(k get job otsarchive-backup-workers -o jsonpath='{.status.failedIndexes}' || true)
  say "failed worker indexes: ${failed:-?}. Splits already scanned are kept: fix the cause, then run"
  say "  $0 ${namespace[*]} --snapshot $snapshot_url"
  exit 1
fi
run_job otsarchive-backup-commit backup-commit-job.yaml
echo "$snapshot_url"
