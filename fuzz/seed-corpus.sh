#!/usr/bin/env bash
# Writes the reference PlainBuffer vectors as binary seed files into fuzz/corpus/<target>/.
# Rows and keys seed decode_rows; the filter_column_value_* bare variants seed decode_bare_value.
# The protobuf request body is not a PlainBuffer and is left out.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
vectors="${1:-$here/../../shared/reference/plainbuffer-vectors.json}"
[ -f "$vectors" ] || vectors=/work/shared/reference/plainbuffer-vectors.json
mkdir -p "$here/corpus/decode_rows" "$here/corpus/decode_bare_value"
python3 - "$vectors" "$here/corpus" <<'PY'
import json, os, sys
vectors, out = sys.argv[1], sys.argv[2]
n = {"decode_rows": 0, "decode_bare_value": 0}
for v in json.load(open(vectors))["vectors"]:
    name = v["name"]
    if name == "put_row_request_protobuf_body":
        continue
    target = "decode_bare_value" if name.startswith("filter_column_value_") else "decode_rows"
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(bytes.fromhex(v["hex"]))
    n[target] += 1
print(", ".join(f"{k}: {c} seeds" for k, c in n.items()))
PY
