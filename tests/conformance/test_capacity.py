"""Consumed capacity units (fact sheet §5.8): 1 CU = 4 KB rounded up; data size is the sum of
len(column name) + value size over PK and attribute columns (STRING = UTF-8 bytes, INTEGER 8)."""

import pytest
from tablestore import (
    INF_MAX, INF_MIN, BatchGetRowRequest, BatchWriteRowRequest, Condition, PutRowItem, Row,
    TableInBatchGetRowItem, TableInBatchWriteRowItem,
)

import ots_support as sup

PK_SIZE = len("pk") + 8          # one INTEGER PK column named "pk"


def cu(c):
    return (c.read, c.write)


@pytest.fixture
def t(tables):
    return tables.create([("pk", "INTEGER")])


def exactly_8k_row(pk):
    # 10 (PK) + 1 ("v") + 8181 = 8192 bytes = exactly 2 CU.
    return Row([("pk", pk)], [("v", "x" * (8192 - PK_SIZE - 1))])


def test_put_row_write_cu(client, t):
    consumed, _ = client.put_row(t, Row([("pk", 1)], [("v", "x")]))
    assert cu(consumed) == (0, 1)
    consumed, _ = client.put_row(t, exactly_8k_row(2))
    assert cu(consumed) == (0, 2)
    consumed, _ = client.put_row(t, Row([("pk", 3)], [("v", "x" * (8192 - PK_SIZE))]))  # 8193 bytes
    assert cu(consumed) == (0, 3)


def test_condition_adds_a_read_cu(client, t):
    consumed, _ = client.put_row(t, Row([("pk", 1)], [("v", "x")]), Condition("EXPECT_NOT_EXIST"))
    assert cu(consumed) == (1, 1)
    consumed, _ = client.update_row(t, Row([("pk", 1)], {"put": [("v", "y")]}), Condition("EXPECT_EXIST"))
    assert cu(consumed) == (1, 1)
    consumed, _ = client.delete_row(t, Row([("pk", 1)]), Condition("EXPECT_EXIST"))
    assert cu(consumed) == (1, 1)


def test_update_and_delete_write_cu(client, t):
    consumed, _ = client.update_row(t, Row([("pk", 1)], {"put": [("v", "x")]}), Condition("IGNORE"))
    assert cu(consumed) == (0, 1)
    consumed, _ = client.delete_row(t, Row([("pk", 1)]), Condition("IGNORE"))
    assert cu(consumed) == (0, 1)


def test_get_row_read_cu(client, t):
    client.put_row(t, exactly_8k_row(1))
    client.put_row(t, Row([("pk", 2)], [("v", "x" * (8192 - PK_SIZE))]))
    consumed, _, _ = client.get_row(t, [("pk", 1)], max_version=1)
    assert cu(consumed) == (2, 0)
    consumed, _, _ = client.get_row(t, [("pk", 2)], max_version=1)
    assert cu(consumed) == (3, 0)
    consumed, row, _ = client.get_row(t, [("pk", 404)], max_version=1)
    assert row is None and cu(consumed) == (1, 0)        # a missing row costs 1


def test_get_range_read_cu(client, t):
    # 10 rows of 10 + 1 + 1000 = 1011 bytes: 10110 bytes -> 3 CU.
    sup.batch_put(client, t, [Row([("pk", i)], [("v", "y" * 1000)]) for i in range(10)])
    consumed, _, rows, _ = client.get_range(t, "FORWARD", [("pk", INF_MIN)], [("pk", INF_MAX)])
    assert len(rows) == 10
    assert cu(consumed) == (3, 0)


def test_batch_rows_carry_their_own_cu(client, t):
    req = BatchWriteRowRequest()
    req.add(TableInBatchWriteRowItem(t, [PutRowItem(exactly_8k_row(1), Condition("IGNORE")),
                                         PutRowItem(Row([("pk", 2)], [("v", 1)]), Condition("IGNORE"))]))
    items = client.batch_write_row(req).get_put_by_table(t)
    assert [cu(i.consumed) for i in items] == [(0, 2), (0, 1)]

    req = BatchGetRowRequest()
    req.add(TableInBatchGetRowItem(t, [[("pk", 1)], [("pk", 2)], [("pk", 3)]], max_version=1))
    items = client.batch_get_row(req).get_result_by_table(t)
    assert [cu(i.consumed) for i in items] == [(2, 0), (1, 0), (1, 0)]
