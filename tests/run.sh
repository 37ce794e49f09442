#!/usr/bin/env bash
# Runs every test of the workspace. This is the README's test command; .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Independent referees (the official Tablestore Python SDK, DuckDB, pyarrow) live in an ignored
# virtual environment with pinned versions, created on first use.
if [[ -f tests/requirements.txt ]]; then
  if [[ ! -x .venv/bin/python ]] || ! cmp -s tests/requirements.txt .venv/requirements.txt; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
    cp tests/requirements.txt .venv/requirements.txt
  fi
  export OTSARCHIVE_TEST_PYTHON="$PWD/.venv/bin/python"
fi

# A CI checkout builds once: incremental compilation state would only cost disk there.
if [[ -n "${CI:-}" ]]; then
  export CARGO_INCREMENTAL=0
fi

cargo test --workspace --locked

# Conformance of the emulator, refereed by the official Tablestore Python SDK: once with the SDK's
# native (C) PlainBuffer parser, once with its pure-Python decoder (enable_native=False).
cargo build --locked -p ots-emulator --bin ots-emulator
OTS_SDK_NATIVE=1 .venv/bin/python -m pytest -q tests/conformance
OTS_SDK_NATIVE=0 .venv/bin/python -m pytest -q tests/conformance

# The Kubernetes manifests under deploy/kubernetes: schema-validated with the official Kubernetes
# client's models, and each Job's command run as written against the emulator (plan, workers,
# commit, restore workers, the incremental CronJob), refereed by the official Tablestore SDK.
cargo build --locked -p otsarchive --bin otsarchive
.venv/bin/python -m pytest -q tests/deploy
