#!/usr/bin/env python3
"""Baselines for the benchmark: what a user does today with the official Tablestore Python SDK.

    baselines.py scan-csv     --endpoint E --instance I --table T --out FILE.csv
    baselines.py scan-parquet --endpoint E --instance I --table T --out FILE.parquet
    baselines.py restore      --endpoint E --instance I --table T2 --from FILE.parquet

Credentials come from ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET. Each command
prints one JSON line (rows, cells, output bytes) on stdout; benches/run.py measures time, CPU and
memory from outside.

The scans follow the recipe Tablestore's articles give: one `get_range` loop over
[INF_MIN, INF_MAX), every version (`time_range=(0, now+1)`), paging on `next_start_primary_key`.
The SDK runs with its defaults (the native C PlainBuffer parser when it loads).

Both outputs are lossless, like an otsarchive snapshot, so that sizes and restores compare like
for like:
- CSV: one line per cell: pk columns, column, type, timestamp, value (binary as base64).
- Parquet (zstd level 1, 256Ki-row row groups, as otsarchive's defaults): typed pk columns; one
  typed column per attribute column seen on the first page holding the row's latest version, with
  its timestamp in `__ts__<column>`; every other cell (older versions, other types, columns not
  seen on the first page) in `__other`, a list of structs. Rows are written 256Ki at a time, so
  memory stays bounded (a generous baseline: the simplest script keeps every row in a list).

The restore reads that Parquet file batch by batch and writes 200-row `batch_write_row` requests,
one at a time, with each cell's original timestamp.
"""

import argparse
import base64
import csv
import json
import logging
import os
import sys
import time

logging.getLogger("tablestore").setLevel(logging.CRITICAL)
logging.getLogger("tablestore-client").setLevel(logging.CRITICAL)

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from tablestore import (  # noqa: E402
    INF_MAX, INF_MIN, BatchWriteRowRequest, CapacityUnit, Condition, OTSClient, PutRowItem,
    ReservedThroughput, Row, RowExistenceExpectation, TableInBatchWriteRowItem, TableMeta,
    TableOptions,
)

ROW_GROUP_ROWS = 256 * 1024
BATCH_ROWS = 200


def client(a):
    ak = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID")
    sk = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    if not ak or not sk:
        sys.exit("baselines.py: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    return OTSClient(a.endpoint, ak, sk, a.instance, socket_timeout=120)


def scan(c, table):
    """Yields pages (lists of rows) of the whole table, every version up to now."""
    meta = c.describe_table(table).table_meta
    pk_names = [name for name, _ in meta.schema_of_primary_key]
    start = [(n, INF_MIN) for n in pk_names]
    end = [(n, INF_MAX) for n in pk_names]
    time_range = (0, int(time.time() * 1000) + 1)
    while start is not None:
        _, start, rows, _ = c.get_range(table, "FORWARD", start, end, max_version=None,
                                        time_range=time_range)
        if rows:
            yield rows


def type_name(v):
    t = type(v)
    if t is bool:
        return "BOOLEAN"
    if t is int:
        return "INTEGER"
    if t is float:
        return "DOUBLE"
    if t is str:
        return "STRING"
    return "BINARY"


def scan_csv(a):
    c = client(a)
    rows = cells = 0
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        header = False
        for page in scan(c, a.table):
            if not header:
                w.writerow([n for n, _ in page[0].primary_key] + ["column", "type", "timestamp", "value"])
                header = True
            for row in page:
                pk = [v for _, v in row.primary_key]
                for name, v, ts in row.attribute_columns:
                    t = type_name(v)
                    if t == "BINARY":
                        v = base64.b64encode(bytes(v)).decode()
                    w.writerow(pk + [name, t, ts, v])
                    cells += 1
                rows += 1
    return {"rows": rows, "cells": cells, "bytes": os.path.getsize(a.out)}


ARROW_TYPES = {"INTEGER": pa.int64(), "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_(),
               "STRING": pa.string(), "BINARY": pa.binary()}
OTHER_FIELDS = [("name", pa.string()), ("type", pa.string()), ("ts", pa.int64()),
                ("v_integer", pa.int64()), ("v_double", pa.float64()), ("v_boolean", pa.bool_()),
                ("v_string", pa.string()), ("v_binary", pa.binary())]
VALUE_FIELD = {"INTEGER": "v_integer", "DOUBLE": "v_double", "BOOLEAN": "v_boolean",
               "STRING": "v_string", "BINARY": "v_binary"}


def infer_schema(page):
    pk = [(n, type_name(v)) for n, v in page[0].primary_key]
    cols = {}
    for row in page:
        for name, v, _ in row.attribute_columns:
            cols.setdefault(name, type_name(v))
    cols = dict(sorted(cols.items()))
    fields = [pa.field(n, ARROW_TYPES[t], nullable=False) for n, t in pk]
    fields += [pa.field(n, ARROW_TYPES[t]) for n, t in cols.items()]
    fields += [pa.field("__ts__" + n, pa.int64()) for n in cols]
    fields.append(pa.field("__other", pa.list_(pa.struct(OTHER_FIELDS))))
    return pk, cols, pa.schema(fields)


def to_table(rows, pk, cols, schema):
    n = len(rows)
    pk_vals = [[None] * n for _ in pk]
    vals = {name: [None] * n for name in cols}
    tss = {name: [None] * n for name in cols}
    other = [None] * n
    for i, row in enumerate(rows):
        for j, (_, v) in enumerate(row.primary_key):
            pk_vals[j][i] = v
        seen = set()
        extra = None
        for name, v, ts in row.attribute_columns:
            t = type_name(v)
            if name not in seen and cols.get(name) == t:
                vals[name][i] = bytes(v) if t == "BINARY" else v
                tss[name][i] = ts
            else:
                if extra is None:
                    extra = []
                extra.append({"name": name, "type": t, "ts": ts,
                              VALUE_FIELD[t]: bytes(v) if t == "BINARY" else v})
            seen.add(name)
        other[i] = extra
    arrays = pk_vals + [vals[n] for n in cols] + [tss[n] for n in cols] + [other]
    return pa.Table.from_arrays([pa.array(x, type=f.type) for x, f in zip(arrays, schema)],
                                schema=schema)


def scan_parquet(a):
    c = client(a)
    rows = cells = 0
    writer = None
    pending = []
    try:
        for page in scan(c, a.table):
            if writer is None:
                pk, cols, schema = infer_schema(page)
                writer = pq.ParquetWriter(a.out, schema, compression="zstd", compression_level=1)
            for row in page:
                cells += len(row.attribute_columns)
            rows += len(page)
            pending.extend(page)
            if len(pending) >= ROW_GROUP_ROWS:
                writer.write_table(to_table(pending[:ROW_GROUP_ROWS], pk, cols, schema),
                                   row_group_size=ROW_GROUP_ROWS)
                pending = pending[ROW_GROUP_ROWS:]
        if writer is not None and pending:
            writer.write_table(to_table(pending, pk, cols, schema), row_group_size=ROW_GROUP_ROWS)
    finally:
        if writer is not None:
            writer.close()
    return {"rows": rows, "cells": cells, "bytes": os.path.getsize(a.out)}


def restore(a):
    c = client(a)
    f = pq.ParquetFile(getattr(a, "from"))
    schema = f.schema_arrow
    names = schema.names
    other_at = names.index("__other")
    ts_cols = [n for n in names if n.startswith("__ts__")]
    typed = [n[len("__ts__"):] for n in ts_cols]
    pk_names = names[:names.index(typed[0])] if typed else names[:other_at]
    pk_types = ["INTEGER" if pa.types.is_integer(schema.field(n).type) else
                "BINARY" if pa.types.is_binary(schema.field(n).type) else "STRING"
                for n in pk_names]
    c.create_table(TableMeta(a.table, list(zip(pk_names, pk_types))),
                   TableOptions(time_to_live=-1, max_version=3, max_time_deviation=86400),
                   ReservedThroughput(CapacityUnit(0, 0)))
    rows = cells = 0
    batch = []

    def flush():
        nonlocal batch
        req = BatchWriteRowRequest()
        req.add(TableInBatchWriteRowItem(a.table, batch))
        result = c.batch_write_row(req)
        if not result.is_all_succeed():
            failed = result.get_failed_of_put()
            raise SystemExit(f"baselines.py restore: {len(failed)} rows failed, first: "
                             f"{failed[0].error_code}: {failed[0].error_message}")
        batch = []

    cond = Condition(RowExistenceExpectation.IGNORE)
    for rb in f.iter_batches(batch_size=8192):
        cols = {n: rb.column(i).to_pylist() for i, n in enumerate(names)}
        for i in range(rb.num_rows):
            pk = [(n, cols[n][i]) for n in pk_names]
            attrs = []
            for n in typed:
                v = cols[n][i]
                if v is not None:
                    attrs.append((n, bytearray(v) if isinstance(v, bytes) else v,
                                  cols["__ts__" + n][i]))
            for cell in cols["__other"][i] or ():
                v = cell[VALUE_FIELD[cell["type"]]]
                attrs.append((cell["name"], bytearray(v) if isinstance(v, bytes) else v,
                              cell["ts"]))
            cells += len(attrs)
            batch.append(PutRowItem(Row(pk, attrs), cond))
            rows += 1
            if len(batch) >= BATCH_ROWS:
                flush()
    if batch:
        flush()
    return {"rows": rows, "cells": cells, "bytes": 0}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("scan-csv", "scan-parquet", "restore"):
        s = sub.add_parser(name)
        s.add_argument("--endpoint", required=True)
        s.add_argument("--instance", required=True)
        s.add_argument("--table", required=True)
        if name == "restore":
            s.add_argument("--from", required=True)
        else:
            s.add_argument("--out", required=True)
    a = p.parse_args()
    started = time.perf_counter()
    out = {"scan-csv": scan_csv, "scan-parquet": scan_parquet, "restore": restore}[a.cmd](a)
    out["elapsed_secs"] = time.perf_counter() - started
    print(json.dumps(out))


if __name__ == "__main__":
    main()
