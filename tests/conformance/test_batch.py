"""BatchWriteRow and BatchGetRow (fact sheet §5.7)."""

from tablestore import (
    BatchGetRowRequest, BatchWriteRowRequest, ComparatorType, Condition, DeleteRowItem, PutRowItem,
    Row, SingleColumnCondition, TableInBatchGetRowItem, TableInBatchWriteRowItem, UpdateRowItem,
)

import ots_support as sup


def _get(client, table, pk):
    _, row, _ = client.get_row(table, pk, max_version=1)
    return row


def test_batch_write_partial_failure_reports_results_by_index(client, tables):
    t = tables.create([("pk", "INTEGER")])
    client.put_row(t, Row([("pk", 3)], [("v", "old")]))

    items = [
        PutRowItem(Row([("pk", 0)], [("v", "p0")]), Condition("IGNORE")),
        PutRowItem(Row([("pk", 1)], [("v", "p1")]), Condition("EXPECT_NOT_EXIST")),
        PutRowItem(Row([("pk", 2)], [("v", "p2")]), Condition("EXPECT_EXIST")),        # fails: absent
        PutRowItem(Row([("pk", 3)], [("v", "p3")]), Condition("EXPECT_NOT_EXIST")),    # fails: present
        PutRowItem(Row([("pk", 4)], [("v", "p4")]), Condition("IGNORE")),
    ]
    req = BatchWriteRowRequest()
    req.add(TableInBatchWriteRowItem(t, items))
    resp = client.batch_write_row(req)

    assert not resp.is_all_succeed()
    results = resp.get_put_by_table(t)
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert [r.is_ok for r in results] == [True, True, False, False, True]
    for r in (results[2], results[3]):
        assert (r.error_code, r.error_message) == ("OTSConditionCheckFail", "Condition check failed.")
    for r in (results[0], results[1], results[4]):
        assert r.error_code is None
        assert r.consumed is not None and r.consumed.write >= 1

    # The failed rows changed nothing; the others were written.
    assert sup.latest(_get(client, t, [("pk", 0)])) == {"v": "p0"}
    assert sup.latest(_get(client, t, [("pk", 1)])) == {"v": "p1"}
    assert _get(client, t, [("pk", 2)]) is None
    assert sup.latest(_get(client, t, [("pk", 3)])) == {"v": "old"}
    assert sup.latest(_get(client, t, [("pk", 4)])) == {"v": "p4"}


def test_batch_write_mixed_operations_over_two_tables(client, tables):
    a = tables.create([("pk", "STRING")])
    b = tables.create([("k1", "INTEGER"), ("k2", "STRING")])
    client.put_row(a, Row([("pk", "upd")], [("n", 1)]))
    client.put_row(a, Row([("pk", "del")], [("n", 1)]))
    client.put_row(b, Row([("k1", 1), ("k2", "x")], [("n", 1)]))

    req = BatchWriteRowRequest()
    req.add(TableInBatchWriteRowItem(a, [
        PutRowItem(Row([("pk", "new")], [("n", 10)]), Condition("IGNORE")),
        UpdateRowItem(Row([("pk", "upd")], {"put": [("m", 2)], "increment": [("n", 4)]}),
                      Condition("EXPECT_EXIST")),
        DeleteRowItem(Row([("pk", "del")]), Condition("EXPECT_EXIST",
                                                      SingleColumnCondition("n", 1, ComparatorType.EQUAL))),
        UpdateRowItem(Row([("pk", "missing")], {"put": [("m", 1)]}), Condition("EXPECT_EXIST")),
    ]))
    req.add(TableInBatchWriteRowItem(b, [
        DeleteRowItem(Row([("k1", 1), ("k2", "x")]), Condition("IGNORE")),
        PutRowItem(Row([("k1", 2), ("k2", "y")], [("n", 20)]), Condition("IGNORE")),
    ]))
    resp = client.batch_write_row(req)

    assert [r.is_ok for r in resp.get_put_by_table(a)] == [True]
    assert [(r.index, r.is_ok) for r in resp.get_update_by_table(a)] == [(1, True), (3, False)]
    failed = resp.get_update_by_table(a)[1]
    assert (failed.error_code, failed.error_message) == ("OTSConditionCheckFail", "Condition check failed.")
    assert [(r.index, r.is_ok) for r in resp.get_delete_by_table(a)] == [(2, True)]
    assert [(r.index, r.is_ok) for r in resp.get_delete_by_table(b)] == [(0, True)]
    assert [(r.index, r.is_ok) for r in resp.get_put_by_table(b)] == [(1, True)]

    assert sup.latest(_get(client, a, [("pk", "new")])) == {"n": 10}
    assert sup.latest(_get(client, a, [("pk", "upd")])) == {"n": 5, "m": 2}
    assert _get(client, a, [("pk", "del")]) is None
    assert _get(client, a, [("pk", "missing")]) is None
    assert _get(client, b, [("k1", 1), ("k2", "x")]) is None
    assert sup.latest(_get(client, b, [("k1", 2), ("k2", "y")])) == {"n": 20}


def test_batch_write_row_level_pk_error_is_a_partial_failure(client, tables):
    t = tables.create([("pk", "INTEGER")])
    req = BatchWriteRowRequest()
    req.add(TableInBatchWriteRowItem(t, [
        PutRowItem(Row([("pk", 1)], [("v", 1)]), Condition("IGNORE")),
        PutRowItem(Row([("wrong", 2)], [("v", 2)]), Condition("IGNORE")),
        PutRowItem(Row([("pk", 3)], [("v", 3)]), Condition("IGNORE")),
    ]))
    resp = client.batch_write_row(req)
    results = resp.get_put_by_table(t)
    assert [r.is_ok for r in results] == [True, False, True]
    assert (results[1].error_code, results[1].error_message) == \
        ("OTSInvalidPK", "Validate PK name fail. Input: wrong, Meta: pk.")
    assert _get(client, t, [("pk", 1)]) is not None
    assert _get(client, t, [("pk", 3)]) is not None


def test_batch_write_of_200_rows_is_accepted(client, tables):
    t = tables.create([("pk", "INTEGER")])
    rows = [Row([("pk", i)], [("v", i)]) for i in range(200)]
    sup.batch_put(client, t, rows, batch=200)
    got, _ = sup.scan_all(client, t, [("pk", sup.INF_MIN)], [("pk", sup.INF_MAX)])
    assert [sup.latest(r)["v"] for r in got] == list(range(200))


def test_batch_get_row_with_a_missing_row(client, tables):
    a = tables.create([("pk", "INTEGER")])
    b = tables.create([("pk", "STRING")])
    for i in (1, 3):
        client.put_row(a, Row([("pk", i)], [("v", i * 10), ("w", "x")]))
    client.put_row(b, Row([("pk", "only")], [("s", "b")]))

    req = BatchGetRowRequest()
    req.add(TableInBatchGetRowItem(a, [[("pk", 3)], [("pk", 2)], [("pk", 1)]], max_version=1))
    req.add(TableInBatchGetRowItem(b, [[("pk", "none")], [("pk", "only")]], max_version=1))
    resp = client.batch_get_row(req)
    assert resp.is_all_succeed()

    ra = resp.get_result_by_table(a)
    assert [r.is_ok for r in ra] == [True, True, True]
    assert ra[0].row.primary_key == [("pk", 3)]
    assert sup.latest(ra[0].row) == {"v": 30, "w": "x"}
    assert ra[1].row is None                               # missing: is_ok with no row
    assert sup.latest(ra[2].row) == {"v": 10, "w": "x"}
    for r in ra:
        assert r.consumed is not None and r.consumed.read >= 1

    rb = resp.get_result_by_table(b)
    assert rb[0].row is None
    assert sup.latest(rb[1].row) == {"s": "b"}


def test_batch_get_row_projection_and_versions(client, tables):
    t = tables.create([("pk", "INTEGER")], max_version=5, max_time_deviation=30 * 86400)
    ts = sup.now_ms() - 100_000
    client.put_row(t, Row([("pk", 1)], [("a", 1, ts), ("a", 2, ts + 1), ("b", 3, ts)]))
    req = BatchGetRowRequest()
    req.add(TableInBatchGetRowItem(t, [[("pk", 1)]], columns_to_get=["a"], max_version=5))
    (item,) = client.batch_get_row(req).get_result_by_table(t)
    assert sup.attrs_by_name(item.row) == {"a": [(2, ts + 1), (1, ts)]}


def test_batch_get_row_filter(client, tables):
    t = tables.create([("pk", "INTEGER")])
    for i in range(4):
        client.put_row(t, Row([("pk", i)], [("v", i)]))
    req = BatchGetRowRequest()
    req.add(TableInBatchGetRowItem(t, [[("pk", i)] for i in range(4)], max_version=1,
                                   column_filter=SingleColumnCondition("v", 2, ComparatorType.GREATER_EQUAL)))
    items = client.batch_get_row(req).get_result_by_table(t)
    assert [it.is_ok for it in items] == [True] * 4
    assert [None if it.row is None else sup.latest(it.row)["v"] for it in items] == [None, None, 2, 3]
