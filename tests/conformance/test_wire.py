"""Protobuf-level rules for responses (fact sheet §3 interop rule, §8.3): Java's and Go's protobuf
parsers reject a response that lacks a proto2 `required` field, so the emulator must always send
them, even though the Python SDK would not notice. The SDK still signs, sends and verifies."""

from google.protobuf.unknown_fields import UnknownFieldSet
from tablestore import INF_MAX, INF_MIN, BatchGetRowRequest, BatchWriteRowRequest, Condition, \
    PutRowItem, Row, TableInBatchGetRowItem, TableInBatchWriteRowItem
import tablestore.protobuf.table_store_pb2 as pb2

import ots_support as sup


def _has_both_cu(consumed):
    return consumed.capacity_unit.HasField("read") and consumed.capacity_unit.HasField("write")


def test_describe_table_sends_table_status_active(client, tables):
    # Field 4 (table_status) is in the Go proto only, where it is required: always ACTIVE = 1.
    t = tables.create([("pk", "STRING")])
    resp = sup.raw_response(client, "DescribeTable", pb2.DescribeTableResponse, t)
    assert resp.HasField("table_meta") and resp.HasField("reserved_throughput_details")
    assert resp.HasField("table_options")
    assert resp.reserved_throughput_details.HasField("last_increase_time")
    status = [(f.wire_type, f.data) for f in UnknownFieldSet(resp) if f.field_number == 4]
    assert status == [(0, 1)]


def test_get_row_of_a_missing_row_sends_an_empty_row_and_both_cu(client, tables):
    t = tables.create([("pk", "STRING")])
    resp = sup.raw_response(client, "GetRow", pb2.GetRowResponse, t, [("pk", "none")], None, None,
                            1, None, None, None, None, None)
    assert resp.HasField("row") and resp.row == b""
    assert _has_both_cu(resp.consumed)


def test_get_range_with_no_rows_sends_empty_rows_and_no_next_key(client, tables):
    t = tables.create([("pk", "STRING")])
    resp = sup.raw_response(client, "GetRange", pb2.GetRangeResponse, t, "FORWARD",
                            [("pk", INF_MIN)], [("pk", INF_MAX)], None, None, None, 1, None, None,
                            None, None, None)
    assert resp.HasField("rows") and resp.rows == b""
    assert resp.next_start_primary_key == b""
    assert _has_both_cu(resp.consumed)


def test_write_responses_send_both_cu(client, tables):
    t = tables.create([("pk", "STRING")])
    resp = sup.raw_response(client, "PutRow", pb2.PutRowResponse, t, Row([("pk", "a")], [("v", 1)]),
                            None, None, None)
    assert _has_both_cu(resp.consumed)
    resp = sup.raw_response(client, "UpdateRow", pb2.UpdateRowResponse, t,
                            Row([("pk", "a")], {"put": [("v", 2)]}), Condition("IGNORE"), None, None)
    assert _has_both_cu(resp.consumed)
    resp = sup.raw_response(client, "DeleteRow", pb2.DeleteRowResponse, t, [("pk", "a")],
                            Condition("IGNORE"), None, None)
    assert _has_both_cu(resp.consumed)


def test_batch_responses_have_one_entry_per_request_row(client, tables):
    t = tables.create([("pk", "STRING")])
    req = BatchWriteRowRequest()
    req.add(TableInBatchWriteRowItem(t, [
        PutRowItem(Row([("pk", "a")], [("v", 1)]), Condition("IGNORE")),
        PutRowItem(Row([("pk", "b")], [("v", 1)]), Condition("EXPECT_EXIST")),
    ]))
    resp = sup.raw_response(client, "BatchWriteRow", pb2.BatchWriteRowResponse, req)
    assert [tb.table_name for tb in resp.tables] == [t]
    rows = resp.tables[0].rows
    assert [r.is_ok for r in rows] == [True, False]
    assert _has_both_cu(rows[0].consumed)
    assert rows[1].error.code == "OTSConditionCheckFail"

    req = BatchGetRowRequest()
    req.add(TableInBatchGetRowItem(t, [[("pk", "a")], [("pk", "zzz")]], max_version=1))
    resp = sup.raw_response(client, "BatchGetRow", pb2.BatchGetRowResponse, req)
    assert [tb.table_name for tb in resp.tables] == [t]
    rows = resp.tables[0].rows
    assert [r.is_ok for r in rows] == [True, True]
    assert rows[1].row == b""
    assert all(_has_both_cu(r.consumed) for r in rows)
