"""Single-row operations: PutRow, GetRow, UpdateRow, DeleteRow; conditions, timestamps, versions,
attribute types and AUTO_INCREMENT primary keys (fact sheet §5.2-§5.4)."""

import pytest
from tablestore import (
    INF_MAX, INF_MIN, PK_AUTO_INCR, BatchGetRowRequest, BatchWriteRowRequest, ComparatorType,
    CompositeColumnCondition, Condition, LogicalOperator, PutRowItem, ReturnType, Row,
    SingleColumnCondition, TableInBatchGetRowItem, TableInBatchWriteRowItem, TableOptions,
)

import ots_support as sup

INT64_MAX = 2 ** 63 - 1
INT64_MIN = -(2 ** 63)
COND_FAIL = dict(status=403, code="OTSConditionCheckFail", message="Condition check failed.")


def get(client, table, pk, **kw):
    kw.setdefault("max_version", 1)
    _, row, _ = client.get_row(table, pk, **kw)
    return row


@pytest.fixture
def kv(tables):
    """A table with one STRING PK `pk`, max_versions 1."""
    return tables.create([("pk", "STRING")])


@pytest.fixture
def versioned(tables):
    """A table keeping 3 versions, accepting timestamps up to 30 days old."""
    return tables.create([("pk", "STRING")], max_version=3, max_time_deviation=30 * 86400)


# --- types and timestamps ----------------------------------------------------------------------

ALL_TYPES = [
    ("i", -3),
    ("i_max", INT64_MAX),
    ("i_min", INT64_MIN),
    ("d", 1.5),
    ("d_neg", -1234.5e-300),
    ("b_true", True),
    ("b_false", False),
    ("s", "x"),
    ("s_unicode", "中文 ✓ é"),
    ("s_empty", ""),
    ("bin", bytearray(b"\x00\x01\xff")),
    ("bin_empty", bytearray()),
]


def _check_types(row, ts):
    got = sup.attrs_by_name(row)
    assert sorted(got) == sorted(n for n, _ in ALL_TYPES)
    for name, value in ALL_TYPES:
        assert len(got[name]) == 1, name
        v, t = got[name][0]
        assert t == ts, name
        assert type(v) is type(value), (name, type(v))
        assert v == value, name


def test_every_attribute_type_round_trips_through_get_row(client, kv):
    ts = sup.now_ms() - 60_000
    pk = [("pk", "types")]
    client.put_row(kv, Row(pk, [(n, v, ts) for n, v in ALL_TYPES]))
    row = get(client, kv, pk)
    assert row.primary_key == pk
    _check_types(row, ts)


def test_every_attribute_type_round_trips_through_get_range_and_batch_get(client, kv):
    ts = sup.now_ms() - 60_000
    pk = [("pk", "types")]
    client.put_row(kv, Row(pk, [(n, v, ts) for n, v in ALL_TYPES]))

    _, nxt, rows, _ = client.get_range(kv, "FORWARD", [("pk", INF_MIN)], [("pk", INF_MAX)])
    assert nxt is None and len(rows) == 1
    _check_types(rows[0], ts)

    req = BatchGetRowRequest()
    req.add(TableInBatchGetRowItem(kv, [pk], max_version=1))
    items = client.batch_get_row(req).get_result_by_table(kv)
    assert len(items) == 1 and items[0].is_ok
    _check_types(items[0].row, ts)


def test_binary_and_string_pk_values_round_trip(client, tables):
    t = tables.create([("s", "STRING"), ("b", "BINARY"), ("i", "INTEGER")])
    pk = [("s", "ключ"), ("b", bytearray(b"\x00\xfe\xff")), ("i", INT64_MIN)]
    client.put_row(t, Row(pk, [("v", 1)]))
    row = get(client, t, pk)
    assert row.primary_key == pk
    assert type(row.primary_key[1][1]) is bytearray


def test_server_assigns_the_current_time_when_no_timestamp_is_given(client, kv):
    before = sup.now_ms()
    client.put_row(kv, Row([("pk", "a")], [("v", "x")]))
    after = sup.now_ms()
    (value, ts), = sup.attrs_by_name(get(client, kv, [("pk", "a")]))["v"]
    assert value == "x"
    assert before - 5 <= ts <= after + 5


def test_explicit_timestamp_is_kept_exactly(client, kv):
    ts = sup.now_ms() - 3_600_000 + 123
    client.put_row(kv, Row([("pk", "a")], [("v", 7, ts)]))
    assert sup.attrs_by_name(get(client, kv, [("pk", "a")]))["v"] == [(7, ts)]


def test_get_missing_row_returns_none(client, kv):
    consumed, row, _ = client.get_row(kv, [("pk", "nothing")], max_version=1)
    assert row is None


def test_columns_to_get_projects_attributes(client, kv):
    pk = [("pk", "a")]
    client.put_row(kv, Row(pk, [("a", 1), ("b", 2), ("c", 3)]))
    row = get(client, kv, pk, columns_to_get=["a", "c"])
    assert row.primary_key == pk
    assert sup.latest(row) == {"a": 1, "c": 3}


# --- PutRow / UpdateRow / DeleteRow ------------------------------------------------------------

def test_put_row_replaces_the_whole_row(client, versioned):
    pk = [("pk", "a")]
    t0 = sup.now_ms() - 10_000
    client.update_row(versioned, Row(pk, {"put": [("a", 1, t0), ("b", 2, t0)]}), Condition("IGNORE"))
    client.update_row(versioned, Row(pk, {"put": [("a", 11, t0 + 1)]}), Condition("IGNORE"))
    client.put_row(versioned, Row(pk, [("c", 3, t0 + 2)]))
    row = get(client, versioned, pk, max_version=10)
    # All versions of a and b are gone; only c remains.
    assert sup.attrs_by_name(row) == {"c": [(3, t0 + 2)]}


def test_put_row_row_existence_conditions(client, kv):
    pk = [("pk", "a")]
    # EXPECT_EXIST on an absent row fails and writes nothing.
    with sup.raises_ots(**COND_FAIL):
        client.put_row(kv, Row(pk, [("v", 0)]), Condition("EXPECT_EXIST"))
    assert get(client, kv, pk) is None

    client.put_row(kv, Row(pk, [("v", 1)]), Condition("EXPECT_NOT_EXIST"))
    assert sup.latest(get(client, kv, pk)) == {"v": 1}

    # EXPECT_NOT_EXIST on a present row fails and leaves it unchanged.
    with sup.raises_ots(**COND_FAIL):
        client.put_row(kv, Row(pk, [("v", 2)]), Condition("EXPECT_NOT_EXIST"))
    assert sup.latest(get(client, kv, pk)) == {"v": 1}

    client.put_row(kv, Row(pk, [("v", 3)]), Condition("EXPECT_EXIST"))
    assert sup.latest(get(client, kv, pk)) == {"v": 3}
    client.put_row(kv, Row(pk, [("v", 4)]), Condition("IGNORE"))
    assert sup.latest(get(client, kv, pk)) == {"v": 4}


def test_single_column_conditions(client, kv):
    pk = [("pk", "a")]
    client.put_row(kv, Row(pk, [("n", 5), ("s", "abc")]))

    ok = Condition("EXPECT_EXIST", SingleColumnCondition("n", 5, ComparatorType.EQUAL))
    client.update_row(kv, Row(pk, {"put": [("n", 6)]}), ok)
    assert sup.latest(get(client, kv, pk))["n"] == 6

    # The same condition now fails (n is 6): nothing changes.
    with sup.raises_ots(**COND_FAIL):
        client.update_row(kv, Row(pk, {"put": [("n", 100)]}), ok)
    assert sup.latest(get(client, kv, pk))["n"] == 6

    for comparator, value, passes in [
        (ComparatorType.NOT_EQUAL, 6, False), (ComparatorType.NOT_EQUAL, 7, True),
        (ComparatorType.GREATER_THAN, 6, False), (ComparatorType.GREATER_THAN, 5, True),
        (ComparatorType.GREATER_EQUAL, 6, True), (ComparatorType.GREATER_EQUAL, 7, False),
        (ComparatorType.LESS_THAN, 6, False), (ComparatorType.LESS_THAN, 7, True),
        (ComparatorType.LESS_EQUAL, 6, True), (ComparatorType.LESS_EQUAL, 5, False),
    ]:
        cond = Condition("IGNORE", SingleColumnCondition("n", value, comparator))
        marker = f"{comparator}-{value}"
        if passes:
            client.update_row(kv, Row(pk, {"put": [("last", marker)]}), cond)
            assert sup.latest(get(client, kv, pk))["last"] == marker
        else:
            with sup.raises_ots(**COND_FAIL):
                client.update_row(kv, Row(pk, {"put": [("last", marker)]}), cond)
            assert sup.latest(get(client, kv, pk)).get("last") != marker

    # String comparison.
    client.update_row(kv, Row(pk, {"put": [("m", 1)]}),
                      Condition("IGNORE", SingleColumnCondition("s", "abb", ComparatorType.GREATER_THAN)))
    with sup.raises_ots(**COND_FAIL):
        client.update_row(kv, Row(pk, {"put": [("m", 2)]}),
                          Condition("IGNORE", SingleColumnCondition("s", "abd", ComparatorType.GREATER_THAN)))
    assert sup.latest(get(client, kv, pk))["m"] == 1


def test_column_condition_on_a_missing_column(client, kv):
    pk = [("pk", "a")]
    client.put_row(kv, Row(pk, [("n", 5)]))
    # A missing column passes unless the filter asks to fail it (pass_if_missing=False).
    passes = Condition("IGNORE", SingleColumnCondition("absent", 1, ComparatorType.EQUAL,
                                                      pass_if_missing=True))
    client.put_row(kv, Row(pk, [("n", 6)]), passes)
    assert sup.latest(get(client, kv, pk)) == {"n": 6}
    fails = Condition("IGNORE", SingleColumnCondition("absent", 1, ComparatorType.EQUAL,
                                                     pass_if_missing=False))
    with sup.raises_ots(**COND_FAIL):
        client.put_row(kv, Row(pk, [("n", 7)]), fails)
    assert sup.latest(get(client, kv, pk)) == {"n": 6}


def test_composite_column_conditions(client, kv):
    pk = [("pk", "a")]
    client.put_row(kv, Row(pk, [("n", 5), ("s", "x")]))

    def comp(op, *subs):
        c = CompositeColumnCondition(op)
        for s in subs:
            c.add_sub_condition(s)
        return c

    n_is_5 = SingleColumnCondition("n", 5, ComparatorType.EQUAL)
    s_is_y = SingleColumnCondition("s", "y", ComparatorType.EQUAL)
    cases = [
        (comp(LogicalOperator.AND, n_is_5, s_is_y), False),
        (comp(LogicalOperator.OR, n_is_5, s_is_y), True),
        (comp(LogicalOperator.NOT, s_is_y), True),
        (comp(LogicalOperator.NOT, n_is_5), False),
        (comp(LogicalOperator.AND, n_is_5, comp(LogicalOperator.NOT, s_is_y)), True),
    ]
    for i, (cond, passes) in enumerate(cases):
        row = Row(pk, {"put": [("case", i)]})
        if passes:
            client.update_row(kv, row, Condition("EXPECT_EXIST", cond))
            assert sup.latest(get(client, kv, pk))["case"] == i
        else:
            with sup.raises_ots(**COND_FAIL):
                client.update_row(kv, row, Condition("EXPECT_EXIST", cond))
            assert sup.latest(get(client, kv, pk)).get("case") != i


def test_update_row_cell_operations(client, versioned):
    pk = [("pk", "a")]
    t0 = sup.now_ms() - 100_000
    client.put_row(versioned, Row(pk, [("a", "a0", t0), ("a", "a1", t0 + 1), ("b", "b0", t0),
                                       ("c", "keep", t0), ("n", 10, t0)]))
    client.update_row(versioned, Row(pk, {
        "put": [("x", "new", t0 + 5)],
        "delete": [("a", None, t0)],      # DELETE_ONE_VERSION of a@t0
        "delete_all": ["b"],              # DELETE_ALL_VERSIONS of b
        "increment": [("n", 5)],
    }), Condition("EXPECT_EXIST"))
    got = sup.attrs_by_name(get(client, versioned, pk, max_version=10))
    assert got["a"] == [("a1", t0 + 1)]
    assert "b" not in got
    assert got["c"] == [("keep", t0)]
    assert got["x"] == [("new", t0 + 5)]
    assert got["n"][0][0] == 15


def test_increment_is_cumulative(client, kv):
    pk = [("pk", "counter")]
    client.put_row(kv, Row(pk, [("cnt", 100)]))
    for delta in (1, 2, -10, 1000):
        client.update_row(kv, Row(pk, {"increment": [("cnt", delta)]}), Condition("IGNORE"))
    assert sup.latest(get(client, kv, pk)) == {"cnt": 1093}


def test_update_row_creates_an_absent_row_unless_expect_exist(client, kv):
    pk = [("pk", "fresh")]
    with sup.raises_ots(**COND_FAIL):
        client.update_row(kv, Row(pk, {"put": [("v", 1)]}), Condition("EXPECT_EXIST"))
    assert get(client, kv, pk) is None
    client.update_row(kv, Row(pk, {"put": [("v", 2)]}), Condition("IGNORE"))
    assert sup.latest(get(client, kv, pk)) == {"v": 2}
    with sup.raises_ots(**COND_FAIL):
        client.update_row(kv, Row(pk, {"put": [("v", 3)]}), Condition("EXPECT_NOT_EXIST"))
    assert sup.latest(get(client, kv, pk)) == {"v": 2}


def test_deleting_every_column_deletes_the_row(client, kv):
    pk = [("pk", "a")]
    client.put_row(kv, Row(pk, [("v", 1)]))
    client.update_row(kv, Row(pk, {"delete_all": ["v"]}), Condition("IGNORE"))
    assert get(client, kv, pk) is None
    _, nxt, rows, _ = client.get_range(kv, "FORWARD", [("pk", INF_MIN)], [("pk", INF_MAX)])
    assert rows == [] and nxt is None


def test_delete_row_and_its_conditions(client, kv):
    pk = [("pk", "a")]
    with sup.raises_ots(**COND_FAIL):
        client.delete_row(kv, Row(pk), Condition("EXPECT_EXIST"))
    client.delete_row(kv, Row(pk), Condition("IGNORE"))   # deleting an absent row is fine

    client.put_row(kv, Row(pk, [("n", 1)]))
    with sup.raises_ots(**COND_FAIL):
        client.delete_row(kv, Row(pk), Condition("EXPECT_EXIST",
                                                 SingleColumnCondition("n", 2, ComparatorType.EQUAL)))
    assert sup.latest(get(client, kv, pk)) == {"n": 1}
    client.delete_row(kv, Row(pk), Condition("EXPECT_EXIST",
                                             SingleColumnCondition("n", 1, ComparatorType.EQUAL)))
    assert get(client, kv, pk) is None


def test_get_row_with_filter(client, kv):
    pk = [("pk", "a")]
    client.put_row(kv, Row(pk, [("n", 5)]))
    assert get(client, kv, pk, column_filter=SingleColumnCondition("n", 5, ComparatorType.EQUAL)) is not None
    assert get(client, kv, pk, column_filter=SingleColumnCondition("n", 6, ComparatorType.EQUAL)) is None


# --- versions --------------------------------------------------------------------------------

def _write_versions(client, table, pk, column, versions):
    for value, ts in versions:
        client.update_row(table, Row(pk, {"put": [(column, value, ts)]}), Condition("IGNORE"))


def test_max_versions_and_time_range(client, versioned):
    pk = [("pk", "v")]
    t = sup.now_ms() - 600_000
    _write_versions(client, versioned, pk, "v", [("v0", t), ("v1", t + 1000), ("v2", t + 2000),
                                                 ("v3", t + 3000)])
    newest3 = [("v3", t + 3000), ("v2", t + 2000), ("v1", t + 1000)]
    # The table keeps 3 versions: the oldest is invisible at once. Newest first.
    assert sup.attrs_by_name(get(client, versioned, pk, max_version=10))["v"] == newest3
    assert sup.attrs_by_name(get(client, versioned, pk, max_version=2))["v"] == newest3[:2]
    assert sup.attrs_by_name(get(client, versioned, pk, max_version=1))["v"] == newest3[:1]

    # time_range is [start, end) in ms.
    row = get(client, versioned, pk, max_version=None, time_range=(t + 1000, t + 3000))
    assert sup.attrs_by_name(row)["v"] == [("v2", t + 2000), ("v1", t + 1000)]
    # Both: up to N versions inside the range.
    row = get(client, versioned, pk, max_version=1, time_range=(t + 1000, t + 3001))
    assert sup.attrs_by_name(row)["v"] == [("v3", t + 3000)]
    # A specific version.
    row = get(client, versioned, pk, max_version=None, time_range=t + 2000)
    assert sup.attrs_by_name(row)["v"] == [("v2", t + 2000)]
    # A range holding no version of any column: no row.
    assert get(client, versioned, pk, max_version=None, time_range=(t + 5000, t + 6000)) is None


def test_writing_the_same_timestamp_overwrites_that_version(client, versioned):
    pk = [("pk", "v")]
    t = sup.now_ms() - 600_000
    _write_versions(client, versioned, pk, "v", [("a", t), ("b", t + 1)])
    _write_versions(client, versioned, pk, "v", [("a2", t)])
    assert sup.attrs_by_name(get(client, versioned, pk, max_version=10))["v"] == [("b", t + 1), ("a2", t)]


def test_versions_are_kept_per_column(client, versioned):
    pk = [("pk", "v")]
    t = sup.now_ms() - 600_000
    _write_versions(client, versioned, pk, "a", [(1, t), (2, t + 1)])
    _write_versions(client, versioned, pk, "b", [(10, t + 2)])
    got = sup.attrs_by_name(get(client, versioned, pk, max_version=10))
    assert got == {"a": [(2, t + 1), (1, t)], "b": [(10, t + 2)]}


def test_lowering_max_versions_hides_older_versions(client, versioned):
    pk = [("pk", "v")]
    t = sup.now_ms() - 600_000
    _write_versions(client, versioned, pk, "v", [("v0", t), ("v1", t + 1), ("v2", t + 2)])
    client.update_table(versioned, TableOptions(time_to_live=None, max_version=1, max_time_deviation=None))
    assert sup.attrs_by_name(get(client, versioned, pk, max_version=10))["v"] == [("v2", t + 2)]


# --- AUTO_INCREMENT ----------------------------------------------------------------------------

@pytest.fixture
def auto_incr(tables):
    return tables.create([("part", "STRING"), ("seq", "INTEGER", PK_AUTO_INCR)])


def test_auto_increment_put_returns_increasing_generated_values(client, auto_incr):
    generated = []
    for i in range(6):
        _, ret = client.put_row(auto_incr, Row([("part", "p1"), ("seq", PK_AUTO_INCR)], [("i", i)]),
                                Condition("IGNORE"), return_type=ReturnType.RT_PK)
        assert ret is not None, "RT_PK must return the primary key"
        assert [n for n, _ in ret.primary_key] == ["part", "seq"]
        assert ret.primary_key[0][1] == "p1"
        seq = ret.primary_key[1][1]
        assert type(seq) is int
        generated.append(seq)
    assert generated == sorted(generated) and len(set(generated)) == len(generated)

    # Each generated key addresses the row that was written.
    for i, seq in enumerate(generated):
        row = get(client, auto_incr, [("part", "p1"), ("seq", seq)])
        assert sup.latest(row) == {"i": i}

    # A range scan sees them in generation order.
    _, _, rows, _ = client.get_range(auto_incr, "FORWARD", [("part", "p1"), ("seq", INF_MIN)],
                                     [("part", "p1"), ("seq", INF_MAX)])
    assert [sup.latest(r)["i"] for r in rows] == list(range(6))


def test_auto_increment_in_batch_write_returns_keys(client, auto_incr):
    req = BatchWriteRowRequest()
    req.add(TableInBatchWriteRowItem(auto_incr, [
        PutRowItem(Row([("part", "b"), ("seq", PK_AUTO_INCR)], [("i", i)]), Condition("IGNORE"),
                   return_type=ReturnType.RT_PK) for i in range(3)]))
    resp = client.batch_write_row(req)
    assert resp.is_all_succeed()
    items = resp.get_put_by_table(auto_incr)
    seqs = [it.row.primary_key[1][1] for it in items]
    assert all(type(s) is int for s in seqs)
    assert len(set(seqs)) == 3
    for i, s in enumerate(seqs):
        assert sup.latest(get(client, auto_incr, [("part", "b"), ("seq", s)])) == {"i": i}


def test_put_without_return_type_returns_no_row(client, auto_incr):
    _, ret = client.put_row(auto_incr, Row([("part", "p"), ("seq", PK_AUTO_INCR)], [("i", 1)]))
    assert ret is None


def test_an_older_timestamp_does_not_hide_the_newest_version(client, kv):
    # max_versions 1: writing an older version keeps the newer one visible (versions are ordered
    # by timestamp, not by write order).
    pk = [("pk", "a")]
    t = sup.now_ms() - 60_000
    client.update_row(kv, Row(pk, {"put": [("v", "new", t)]}), Condition("IGNORE"))
    client.update_row(kv, Row(pk, {"put": [("v", "old", t - 1000)]}), Condition("IGNORE"))
    assert sup.attrs_by_name(get(client, kv, pk, max_version=5))["v"] == [("new", t)]


def test_versions_beyond_max_versions_are_invisible_even_inside_a_time_range(client, versioned):
    pk = [("pk", "v")]
    t = sup.now_ms() - 600_000
    _write_versions(client, versioned, pk, "v", [("v0", t), ("v1", t + 1), ("v2", t + 2), ("v3", t + 3)])
    assert get(client, versioned, pk, max_version=None, time_range=(t, t + 1)) is None
    assert get(client, versioned, pk, max_version=None, time_range=t) is None


def test_deleting_a_version_that_does_not_exist_changes_nothing(client, versioned):
    pk = [("pk", "v")]
    t = sup.now_ms() - 600_000
    _write_versions(client, versioned, pk, "v", [("v0", t)])
    client.update_row(versioned, Row(pk, {"delete": [("v", None, t + 7)]}), Condition("IGNORE"))
    assert sup.attrs_by_name(get(client, versioned, pk, max_version=3))["v"] == [("v0", t)]


def test_increment_of_a_non_integer_column_fails(client, kv):
    # §5.3: INCREMENT adds to an INTEGER column. No exact text in the fact sheet.
    pk = [("pk", "a")]
    client.put_row(kv, Row(pk, [("s", "text")]))
    with sup.raises_ots(400, "OTSParameterInvalid"):
        client.update_row(kv, Row(pk, {"increment": [("s", 1)]}), Condition("IGNORE"))
    assert sup.latest(get(client, kv, pk)) == {"s": "text"}


@pytest.mark.parametrize("bound", [INF_MIN, INF_MAX], ids=["inf_min", "inf_max"])
def test_inf_is_not_a_row_key(client, kv, bound):
    # INF_MIN/INF_MAX are range bounds only. No exact text in the fact sheet.
    with sup.raises_ots(400, ("OTSParameterInvalid", "OTSInvalidPK")):
        client.put_row(kv, Row([("pk", bound)], [("v", 1)]))
    with sup.raises_ots(400, ("OTSParameterInvalid", "OTSInvalidPK")):
        client.get_row(kv, [("pk", bound)], max_version=1)
