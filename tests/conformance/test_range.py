"""GetRange: directions, INF bounds, limits, projections, filters, versions, paging on the returned
next key, and the SDK's xget_range iterator (fact sheet §5.5)."""

import pytest
from tablestore import (
    INF_MAX, INF_MIN, CapacityUnit, ComparatorType, CompositeColumnCondition, LogicalOperator, Row,
    SingleColumnCondition,
)

import ots_support as sup

GROUPS = ["a", "b", "c"]
ALL_KEYS = [(g, i) for g in GROUPS for i in range(10)]
FULL_START = [("g", INF_MIN), ("i", INF_MIN)]
FULL_END = [("g", INF_MAX), ("i", INF_MAX)]


@pytest.fixture(scope="module")
def grid(endpoint):
    """30 rows (g in a,b,c) x (i in 0..9): v=i, s=g+str(i), and odd=True on odd i only."""
    client = sup.make_client(endpoint)
    factory = sup.TableFactory(client)
    t = factory.create([("g", "STRING"), ("i", "INTEGER")])
    rows = []
    for g, i in ALL_KEYS:
        attrs = [("v", i), ("s", f"{g}{i}")]
        if i % 2:
            attrs.append(("odd", True))
        rows.append(Row([("g", g), ("i", i)], attrs))
    sup.batch_put(client, t, rows)
    yield t
    factory.drop_all()


def keys(rows):
    return [sup.pk_tuple(r) for r in rows]


def test_forward_full_range_with_inf_bounds(client, grid):
    _, nxt, rows, _ = client.get_range(grid, "FORWARD", FULL_START, FULL_END)
    assert nxt is None
    assert keys(rows) == ALL_KEYS
    assert rows[0].primary_key == [("g", "a"), ("i", 0)]
    assert sup.latest(rows[13]) == {"v": 3, "s": "b3", "odd": True}
    assert sup.latest(rows[14]) == {"v": 4, "s": "b4"}


def test_backward_full_range_with_inf_bounds(client, grid):
    _, nxt, rows, _ = client.get_range(grid, "BACKWARD", FULL_END, FULL_START)
    assert nxt is None
    assert keys(rows) == ALL_KEYS[::-1]


def test_bounds_are_inclusive_start_exclusive_end(client, grid):
    _, nxt, rows, _ = client.get_range(grid, "FORWARD", [("g", "b"), ("i", 3)], [("g", "c"), ("i", 2)])
    assert nxt is None
    assert keys(rows) == [("b", i) for i in range(3, 10)] + [("c", 0), ("c", 1)]

    _, nxt, rows, _ = client.get_range(grid, "BACKWARD", [("g", "c"), ("i", 2)], [("g", "b"), ("i", 3)])
    assert nxt is None
    assert keys(rows) == [("c", 2), ("c", 1), ("c", 0)] + [("b", i) for i in range(9, 3, -1)]


def test_inf_bounds_inside_the_key(client, grid):
    _, _, rows, _ = client.get_range(grid, "FORWARD", [("g", "b"), ("i", INF_MIN)], [("g", "b"), ("i", INF_MAX)])
    assert keys(rows) == [("b", i) for i in range(10)]
    _, _, rows, _ = client.get_range(grid, "BACKWARD", [("g", "b"), ("i", INF_MAX)], [("g", "a"), ("i", INF_MAX)])
    assert keys(rows) == [("b", i) for i in range(9, -1, -1)]
    # Keys between existing rows, and a range with no rows at all.
    _, _, rows, _ = client.get_range(grid, "FORWARD", [("g", "a0"), ("i", INF_MIN)], [("g", "b"), ("i", 1)])
    assert keys(rows) == [("b", 0)]
    _, nxt, rows, _ = client.get_range(grid, "FORWARD", [("g", "d"), ("i", INF_MIN)], FULL_END)
    assert rows == [] and nxt is None


def test_limit_pages_forward_on_the_next_key(client, grid):
    _, nxt, rows, _ = client.get_range(grid, "FORWARD", FULL_START, FULL_END, limit=7)
    assert keys(rows) == ALL_KEYS[:7]
    assert nxt == [("g", "a"), ("i", 7)]        # the first row not yet read

    got, pages = sup.scan_all(client, grid, FULL_START, FULL_END, limit=7)
    assert pages == [7, 7, 7, 7, 2]
    assert keys(got) == ALL_KEYS


def test_limit_pages_backward_on_the_next_key(client, grid):
    _, nxt, rows, _ = client.get_range(grid, "BACKWARD", FULL_END, FULL_START, limit=4)
    assert keys(rows) == [("c", 9), ("c", 8), ("c", 7), ("c", 6)]
    assert nxt == [("g", "c"), ("i", 5)]        # the next smaller row

    got, pages = sup.scan_all(client, grid, FULL_END, FULL_START, direction="BACKWARD", limit=4)
    assert pages == [4] * 7 + [2]
    assert keys(got) == ALL_KEYS[::-1]


def test_columns_to_get(client, grid):
    _, _, rows, _ = client.get_range(grid, "FORWARD", FULL_START, FULL_END, columns_to_get=["s"])
    assert keys(rows) == ALL_KEYS
    assert all(list(sup.latest(r)) == ["s"] for r in rows)

    # Rows holding none of the requested attribute columns are omitted.
    _, nxt, rows, _ = client.get_range(grid, "FORWARD", FULL_START, FULL_END, columns_to_get=["odd"])
    assert nxt is None
    assert keys(rows) == [k for k in ALL_KEYS if k[1] % 2]
    assert all(sup.latest(r) == {"odd": True} for r in rows)


def test_single_column_filter(client, grid):
    f = SingleColumnCondition("v", 7, ComparatorType.GREATER_EQUAL)
    _, nxt, rows, _ = client.get_range(grid, "FORWARD", FULL_START, FULL_END, column_filter=f)
    assert nxt is None
    assert keys(rows) == [(g, i) for g in GROUPS for i in (7, 8, 9)]

    f = SingleColumnCondition("s", "b5", ComparatorType.EQUAL)
    _, _, rows, _ = client.get_range(grid, "BACKWARD", FULL_END, FULL_START, column_filter=f)
    assert keys(rows) == [("b", 5)]


def test_filter_on_a_column_some_rows_lack(client, grid):
    strict = SingleColumnCondition("odd", True, ComparatorType.EQUAL, pass_if_missing=False)
    _, _, rows, _ = client.get_range(grid, "FORWARD", FULL_START, FULL_END, column_filter=strict)
    assert keys(rows) == [k for k in ALL_KEYS if k[1] % 2]
    lenient = SingleColumnCondition("odd", True, ComparatorType.EQUAL, pass_if_missing=True)
    _, _, rows, _ = client.get_range(grid, "FORWARD", FULL_START, FULL_END, column_filter=lenient)
    assert keys(rows) == ALL_KEYS


def test_composite_filters(client, grid):
    def comp(op, *subs):
        c = CompositeColumnCondition(op)
        for s in subs:
            c.add_sub_condition(s)
        return c

    ge3 = SingleColumnCondition("v", 3, ComparatorType.GREATER_EQUAL)
    lt5 = SingleColumnCondition("v", 5, ComparatorType.LESS_THAN)
    is_b = SingleColumnCondition("s", "b", ComparatorType.GREATER_EQUAL)
    before_c = SingleColumnCondition("s", "c", ComparatorType.LESS_THAN)

    _, _, rows, _ = client.get_range(grid, "FORWARD", FULL_START, FULL_END,
                                     column_filter=comp(LogicalOperator.AND, ge3, lt5))
    assert keys(rows) == [(g, i) for g in GROUPS for i in (3, 4)]

    _, _, rows, _ = client.get_range(grid, "FORWARD", FULL_START, FULL_END,
                                     column_filter=comp(LogicalOperator.OR, comp(LogicalOperator.NOT, ge3),
                                                        SingleColumnCondition("v", 9, ComparatorType.EQUAL)))
    assert keys(rows) == [(g, i) for g in GROUPS for i in (0, 1, 2, 9)]

    only_b_34 = comp(LogicalOperator.AND, comp(LogicalOperator.AND, is_b, before_c),
                     comp(LogicalOperator.AND, ge3, lt5))
    _, _, rows, _ = client.get_range(grid, "BACKWARD", FULL_END, FULL_START, column_filter=only_b_34)
    assert keys(rows) == [("b", 4), ("b", 3)]


def test_filter_is_applied_after_projection(client, grid):
    # v is projected away, so the filter on v sees it missing (fact sheet §5.5).
    f = SingleColumnCondition("v", 7, ComparatorType.GREATER_EQUAL, pass_if_missing=False)
    got, _ = sup.scan_all(client, grid, FULL_START, FULL_END, columns_to_get=["s"], column_filter=f)
    assert got == []
    f = SingleColumnCondition("v", 7, ComparatorType.GREATER_EQUAL, pass_if_missing=True)
    got, _ = sup.scan_all(client, grid, FULL_START, FULL_END, columns_to_get=["s"], column_filter=f)
    assert keys(got) == ALL_KEYS


def test_filter_with_limit_pages_until_the_next_key_is_absent(client, grid):
    # Pages may come back empty while the next key is still set: only the absent key ends the scan.
    f = SingleColumnCondition("v", 9, ComparatorType.EQUAL)
    got, pages = sup.scan_all(client, grid, FULL_START, FULL_END, limit=2, column_filter=f)
    assert keys(got) == [("a", 9), ("b", 9), ("c", 9)]
    assert all(p <= 2 for p in pages)


def test_versions_in_range(client, tables):
    t = tables.create([("pk", "INTEGER")], max_version=3, max_time_deviation=30 * 86400)
    base = sup.now_ms() - 1_000_000
    rows = [Row([("pk", k)], [("v", f"{k}-{n}", base + n) for n in range(3)]) for k in range(4)]
    sup.batch_put(client, t, rows)

    _, _, got, _ = client.get_range(t, "FORWARD", [("pk", INF_MIN)], [("pk", INF_MAX)], max_version=3)
    assert [sup.attrs_by_name(r)["v"] for r in got] == [
        [(f"{k}-2", base + 2), (f"{k}-1", base + 1), (f"{k}-0", base)] for k in range(4)]

    _, _, got, _ = client.get_range(t, "FORWARD", [("pk", INF_MIN)], [("pk", INF_MAX)],
                                    max_version=None, time_range=(base, base + 2))
    assert [sup.attrs_by_name(r)["v"] for r in got] == [
        [(f"{k}-1", base + 1), (f"{k}-0", base)] for k in range(4)]

    _, _, got, _ = client.get_range(t, "BACKWARD", [("pk", INF_MAX)], [("pk", INF_MIN)],
                                    max_version=None, time_range=base + 1)
    assert [sup.attrs_by_name(r)["v"] for r in got] == [[(f"{k}-1", base + 1)] for k in (3, 2, 1, 0)]


def test_xget_range_iterates_and_counts(client, grid):
    consumed = CapacityUnit(0, 0)
    got = list(client.xget_range(grid, "FORWARD", FULL_START, FULL_END, consumed))
    assert keys(got) == ALL_KEYS
    assert consumed.read >= 1

    got = list(client.xget_range(grid, "BACKWARD", FULL_END, FULL_START, CapacityUnit(0, 0), count=12))
    assert keys(got) == ALL_KEYS[::-1][:12]


# --- more than one page ------------------------------------------------------------------------

BIG_ROWS = 5321


@pytest.fixture(scope="module")
def big(endpoint):
    """A table larger than one GetRange page (> 5000 rows), written in 200-row BatchWriteRow calls."""
    client = sup.make_client(endpoint)
    factory = sup.TableFactory(client)
    t = factory.create([("h", "STRING"), ("id", "INTEGER")])
    rows = [Row([("h", f"h{k % 3}"), ("id", k)], [("v", k), ("pad", "x" * 16)]) for k in range(BIG_ROWS)]
    sup.batch_put(client, t, rows, batch=200)
    yield t
    factory.drop_all()


BIG_KEYS = sorted((f"h{k % 3}", k) for k in range(BIG_ROWS))
BIG_START = [("h", INF_MIN), ("id", INF_MIN)]
BIG_END = [("h", INF_MAX), ("id", INF_MAX)]


def test_paging_forward_over_more_than_one_page(client, big):
    _, nxt, first, _ = client.get_range(big, "FORWARD", BIG_START, BIG_END)
    assert 0 < len(first) <= 5000
    assert nxt is not None
    assert sup.pk_tuple(Row(nxt)) == BIG_KEYS[len(first)]

    got, pages = sup.scan_all(client, big, BIG_START, BIG_END)
    assert len(pages) >= 2 and max(pages) <= 5000
    assert keys(got) == BIG_KEYS
    assert all(sup.latest(r)["v"] == r.primary_key[1][1] for r in got)


def test_paging_backward_over_more_than_one_page(client, big):
    got, pages = sup.scan_all(client, big, BIG_END, BIG_START, direction="BACKWARD")
    assert len(pages) >= 2 and max(pages) <= 5000
    assert keys(got) == BIG_KEYS[::-1]


def test_a_limit_above_the_page_cap_still_pages(client, big):
    got, pages = sup.scan_all(client, big, BIG_START, BIG_END, limit=20000)
    assert len(pages) >= 2 and max(pages) <= 5000
    assert keys(got) == BIG_KEYS


def test_paging_with_projection_and_filter(client, big):
    f = SingleColumnCondition("v", BIG_ROWS - 10, ComparatorType.GREATER_EQUAL)
    got, _ = sup.scan_all(client, big, BIG_START, BIG_END, columns_to_get=["v"], column_filter=f)
    assert keys(got) == sorted((f"h{k % 3}", k) for k in range(BIG_ROWS - 10, BIG_ROWS))
    assert all(list(sup.latest(r)) == ["v"] for r in got)


def test_xget_range_over_more_than_one_page(client, big):
    consumed = CapacityUnit(0, 0)
    got = list(client.xget_range(big, "FORWARD", BIG_START, BIG_END, consumed))
    assert keys(got) == BIG_KEYS
    assert consumed.read >= 2


def test_rows_without_versions_in_the_time_range_are_omitted(client, tables):
    t = tables.create([("pk", "INTEGER")], max_time_deviation=30 * 86400)
    base = sup.now_ms() - 1_000_000
    sup.batch_put(client, t, [Row([("pk", k)], [("v", k, base + k)]) for k in range(6)])
    _, nxt, rows, _ = client.get_range(t, "FORWARD", [("pk", INF_MIN)], [("pk", INF_MAX)],
                                       max_version=None, time_range=(base + 2, base + 4))
    assert nxt is None
    assert [sup.pk_tuple(r) for r in rows] == [(2,), (3,)]
