"""Primary-key ordering (fact sheet §5.1): INTEGER as signed i64, BINARY as unsigned bytes with
the shorter first on a common prefix, STRING as UTF-8 bytes, rows by (pk1, pk2, ...); and paging
on next keys of every PK type."""

import pytest
from tablestore import INF_MAX, INF_MIN, Row

import ots_support as sup

INTS = [-(2 ** 63), -5, -1, 0, 1, 3, 2 ** 31, 2 ** 63 - 1]
BINS = [b"\x00", b"\x00\x00", b"\x01", b"\x01\x00", b"\x7f", b"\x80", b"\xfe\xff", b"\xff"]
# Only characters whose UTF-8 byte order equals their code point order (and UTF-16 order):
# the supplementary-plane case is unverified against the service (§5.1), so it is not asserted.
STRS = ["A", "Z", "_", "a", "a\x00", "ab", "b", "z", "é", "é0", "ÿ", "中"]


@pytest.mark.parametrize("pk_type,values", [
    ("INTEGER", INTS),
    ("BINARY", [bytearray(b) for b in BINS]),
    ("STRING", STRS),
], ids=["integer", "binary", "string"])
def test_single_column_order_and_paging(client, tables, pk_type, values):
    t = tables.create([("pk", pk_type)])
    shuffled = values[1::2] + values[0::2]
    for v in shuffled:
        client.put_row(t, Row([("pk", v)], [("v", 1)]))

    _, nxt, rows, _ = client.get_range(t, "FORWARD", [("pk", INF_MIN)], [("pk", INF_MAX)])
    assert nxt is None
    assert [r.primary_key[0][1] for r in rows] == values

    _, _, rows, _ = client.get_range(t, "BACKWARD", [("pk", INF_MAX)], [("pk", INF_MIN)])
    assert [r.primary_key[0][1] for r in rows] == values[::-1]

    # Page by 2 on the next key; the key comes back with its type intact.
    got, pages = sup.scan_all(client, t, [("pk", INF_MIN)], [("pk", INF_MAX)], limit=2)
    assert [r.primary_key[0][1] for r in got] == values
    _, nxt, _, _ = client.get_range(t, "FORWARD", [("pk", INF_MIN)], [("pk", INF_MAX)], limit=2)
    assert nxt == [("pk", values[2])]
    assert type(nxt[0][1]) is type(values[2])

    # A bound between two keys.
    mid = values[len(values) // 2]
    _, _, rows, _ = client.get_range(t, "FORWARD", [("pk", mid)], [("pk", INF_MAX)])
    assert [r.primary_key[0][1] for r in rows] == values[len(values) // 2:]


def test_rows_sort_by_the_first_column_then_the_next(client, tables):
    t = tables.create([("a", "INTEGER"), ("b", "STRING"), ("c", "BINARY")])
    keys = [(a, b, c) for a in (-1, 0, 2) for b in ("w", "x", "xy") for c in (b"\x00", b"\x00\x01", b"\x10")]
    for a, b, c in reversed(keys):
        client.put_row(t, Row([("a", a), ("b", b), ("c", bytearray(c))], [("v", 1)]))
    start = [("a", INF_MIN), ("b", INF_MIN), ("c", INF_MIN)]
    end = [("a", INF_MAX), ("b", INF_MAX), ("c", INF_MAX)]
    got, _ = sup.scan_all(client, t, start, end, limit=5)
    assert [(a, b, bytes(c)) for a, b, c in map(sup.pk_tuple, got)] == keys

    # INF in the middle of a bound: all rows with a == 0 and b >= "x".
    _, _, rows, _ = client.get_range(t, "FORWARD", [("a", 0), ("b", "x"), ("c", INF_MIN)],
                                     [("a", 0), ("b", INF_MAX), ("c", INF_MAX)])
    assert [(a, b, bytes(c)) for a, b, c in map(sup.pk_tuple, rows)] == \
        [k for k in keys if k[0] == 0 and k[1] >= "x"]
