"""Bad requests: the exact HTTP status, error code and message (fact sheet §2.2 and §5).

Where §2.2 gives an exact text it is asserted exactly. Where it gives only the start of a message
("Invalid table name: …") the start is asserted. Where the fact sheet gives no text at all (§8.7:
unverified message texts), the status and code are asserted and the comment says so.

Client-side checks of the SDK 6.4.8 that would stop a request before it reaches the server, and
how each test gets around them:
  * a DOUBLE primary-key type or value: the SDK's PK writer refuses floats, so the PlainBuffer row
    is built by hand (ots_support.put_row_buffer) and sent as a PutRow through the SDK's signing;
  * a BatchWriteRow naming one table twice: BatchWriteRowRequest keys tables by name, so the
    protobuf is built by hand (ots_support.send_pb);
  * everything else below is sent by the SDK as is (it does not check names, limits, bounds,
    counts, sizes or timestamps).
"""

import math

import pytest
from tablestore import (
    INF_MAX, INF_MIN, PK_AUTO_INCR, BatchGetRowRequest, BatchWriteRowRequest, CapacityUnit, Condition,
    PutRowItem, ReservedThroughput, Row, TableInBatchGetRowItem, TableInBatchWriteRowItem, TableMeta,
    TableOptions, UpdateRowItem,
)
import tablestore.protobuf.table_store_pb2 as pb2

import ots_support as sup

BAD = dict(status=400, code="OTSParameterInvalid")
BAD_PK = dict(status=400, code="OTSInvalidPK")
NOT_EXIST = dict(status=404, code="OTSObjectNotExist", message="Requested table does not exist.")


def create(client, name, schema, options=None):
    client.create_table(TableMeta(name, schema), options or TableOptions(),
                        ReservedThroughput(CapacityUnit(0, 0)))


@pytest.fixture
def t2(tables):
    """Two-column PK table: PK1 INTEGER, PK2 STRING."""
    return tables.create([("PK1", "INTEGER"), ("PK2", "STRING")])


@pytest.fixture
def t1(tables):
    return tables.create([("pk", "INTEGER")])


# --- table operations --------------------------------------------------------------------------

def test_duplicated_primary_key_name(client, table_name):
    with sup.raises_ots(**BAD, message="Duplicated primary key name: 'PK0'."):
        create(client, table_name, [("PK0", "STRING"), ("PK0", "INTEGER")])
    assert table_name not in client.list_table()


def test_boolean_primary_key_type(client, table_name):
    # The SDK sends BOOLEAN as PK_BOOLEAN (5); the service rejects it (fact sheet §3, §5.1).
    with sup.raises_ots(**BAD, message="BOOLEAN is an invalid type for the primary key."):
        create(client, table_name, [("PK0", "BOOLEAN")])
    assert table_name not in client.list_table()


def test_table_already_exists(client, tables):
    name = tables.create([("pk", "STRING")])
    with sup.raises_ots(409, "OTSObjectAlreadyExist", "Requested table already exists."):
        create(client, name, [("pk", "INTEGER")])
    # The original table is untouched.
    assert client.describe_table(name).table_meta.schema_of_primary_key == [("pk", "STRING")]


@pytest.mark.parametrize("op", ["describe", "delete", "update", "get_row", "put_row", "update_row",
                                "delete_row", "get_range", "split_points"])
def test_table_does_not_exist(client, op):
    name = sup.unique_name("missing")
    calls = {
        "describe": lambda: client.describe_table(name),
        "delete": lambda: client.delete_table(name),
        "update": lambda: client.update_table(name, TableOptions(max_version=2)),
        "get_row": lambda: client.get_row(name, [("pk", 1)], max_version=1),
        "put_row": lambda: client.put_row(name, Row([("pk", 1)], [("v", 1)])),
        "update_row": lambda: client.update_row(name, Row([("pk", 1)], {"put": [("v", 1)]}),
                                                Condition("IGNORE")),
        "delete_row": lambda: client.delete_row(name, Row([("pk", 1)]), Condition("IGNORE")),
        "get_range": lambda: client.get_range(name, "FORWARD", [("pk", INF_MIN)], [("pk", INF_MAX)]),
        "split_points": lambda: sup.compute_split_points(client, name, 1),
    }
    with sup.raises_ots(**NOT_EXIST):
        calls[op]()


@pytest.mark.parametrize("bad_name", ["3t", "a-b", "with space", "中文"])
def test_invalid_table_name(client, bad_name):
    # §2.2 gives "Invalid table name: …"; the emulator quotes the name: Invalid table name: '<name>'.
    with sup.raises_ots(**BAD, prefix="Invalid table name: ") as info:
        create(client, bad_name, [("pk", "STRING")])
    assert bad_name in info.value.get_error_message()


def test_too_many_primary_key_columns(client, table_name):
    # §5.1: 1-4 PK columns. No exact text in the fact sheet: status and code only.
    with sup.raises_ots(**BAD):
        create(client, table_name, [(f"p{i}", "INTEGER") for i in range(5)])
    assert table_name not in client.list_table()


@pytest.mark.parametrize("options", [
    TableOptions(time_to_live=3600),        # TTL must be -1 or >= 86400
    TableOptions(max_version=0),            # max_versions must be > 0
], ids=["ttl_below_one_day", "zero_max_versions"])
def test_invalid_table_options(client, table_name, options):
    # §5.2 limits; no exact text in the fact sheet: status and code only.
    with sup.raises_ots(**BAD):
        create(client, table_name, [("pk", "STRING")], options)
    assert table_name not in client.list_table()


@pytest.mark.parametrize("schema", [
    [("seq", "INTEGER", PK_AUTO_INCR), ("b", "STRING")],   # the first (partition) PK column
    [("a", "STRING"), ("seq", "STRING", PK_AUTO_INCR)],    # not INTEGER
    [("a", "STRING"), ("x", "INTEGER", PK_AUTO_INCR), ("y", "INTEGER", PK_AUTO_INCR)],  # two
], ids=["first_column", "string", "two_columns"])
def test_invalid_auto_increment_schema(client, table_name, schema):
    # §5.4; no exact text in the fact sheet: status and code only.
    with sup.raises_ots(**BAD):
        create(client, table_name, schema)
    assert table_name not in client.list_table()


# --- primary keys ------------------------------------------------------------------------------

def test_double_primary_key_value(client, t1):
    req = pb2.PutRowRequest()
    req.table_name = t1
    req.row = sup.put_row_buffer([("pk", 1.5)], [("v", 1)])
    req.condition.row_existence = pb2.IGNORE
    with sup.raises_ots(**BAD, message="DOUBLE is an invalid type for the primary key."):
        sup.send_pb(client, "PutRow", req)


def test_validate_pk_name_fail(client, tables):
    t = tables.create([("PK1", "INTEGER")])
    with sup.raises_ots(**BAD_PK, message="Validate PK name fail. Input: PK2, Meta: PK1."):
        client.get_row(t, [("PK2", 1)], max_version=1)
    with sup.raises_ots(**BAD_PK, message="Validate PK name fail. Input: PK2, Meta: PK1."):
        client.put_row(t, Row([("PK2", 1)], [("v", 1)]))


def test_validate_pk_size_fail(client, t2):
    with sup.raises_ots(**BAD_PK, message="Validate PK size fail. Input: 1, Meta: 2."):
        client.get_row(t2, [("PK1", 1)], max_version=1)
    with sup.raises_ots(**BAD_PK, message="Validate PK size fail. Input: 3, Meta: 2."):
        client.put_row(t2, Row([("PK1", 1), ("PK2", "a"), ("PK3", "b")], [("v", 1)]))
    with sup.raises_ots(**BAD_PK, message="Validate PK size fail. Input: 1, Meta: 2."):
        client.get_range(t2, "FORWARD", [("PK1", INF_MIN)], [("PK1", INF_MAX)])


def test_pk_value_of_the_wrong_type(client, t2):
    # §5.1: PK values must match the schema's types (OTSInvalidPK). The fact sheet gives no
    # message for a type mismatch: status and code only.
    with sup.raises_ots(**BAD_PK):
        client.put_row(t2, Row([("PK1", "not-an-int"), ("PK2", "a")], [("v", 1)]))


def test_string_pk_value_longer_than_1kb(client, tables):
    t = tables.create([("pk", "STRING")])
    client.put_row(t, Row([("pk", "k" * 1024)], [("v", 1)]))     # exactly 1 KB is allowed
    # §5.1: STRING/BINARY PK values are <= 1 KB. No exact text in the fact sheet.
    with sup.raises_ots(**BAD):
        client.put_row(t, Row([("pk", "k" * 1025)], [("v", 1)]))


# --- writes ------------------------------------------------------------------------------------

def test_condition_check_failed(client, t1):
    with sup.raises_ots(403, "OTSConditionCheckFail", "Condition check failed."):
        client.update_row(t1, Row([("pk", 1)], {"put": [("v", 1)]}), Condition("EXPECT_EXIST"))


def test_timestamp_outside_the_version_deviation(client, tables):
    t = tables.create([("pk", "INTEGER")], max_time_deviation=86400)
    day = 86400 * 1000
    client.put_row(t, Row([("pk", 1)], [("v", "ok", sup.now_ms() - day // 2)]))
    for ts in (sup.now_ms() - 2 * day, sup.now_ms() + 2 * day):
        with sup.raises_ots(**BAD, prefix="Invalid timestamp"):
            client.put_row(t, Row([("pk", 2)], [("v", "bad", ts)]))
    _, row, _ = client.get_row(t, [("pk", 2)], max_version=1)
    assert row is None


def test_timestamp_older_than_the_ttl(client, tables):
    # Valid window: ts/1000 in [max(now - deviation, now - TTL), now + deviation).
    t = tables.create([("pk", "INTEGER")], time_to_live=86400, max_time_deviation=10 * 86400)
    with sup.raises_ots(**BAD, prefix="Invalid timestamp"):
        client.put_row(t, Row([("pk", 1)], [("v", 1, sup.now_ms() - 2 * 86400 * 1000)]))


def test_delete_one_version_without_timestamp(client, t1):
    # {"delete": ["v"]} sends a DELETE_ONE_VERSION cell with no timestamp.
    with sup.raises_ots(**BAD, message="Timestamp must be given when type is DELETE_ONE_VERSION."):
        client.update_row(t1, Row([("pk", 1)], {"delete": ["v"]}), Condition("IGNORE"))


def test_delete_all_versions_with_timestamp(client, t1):
    # §5.3: DELETE_ALL_VERSIONS must have no timestamp. No exact text in the fact sheet.
    with sup.raises_ots(**BAD):
        client.update_row(t1, Row([("pk", 1)], {"delete_all": [("v", None, sup.now_ms())]}),
                          Condition("IGNORE"))


def test_update_row_without_cells(client, t1):
    # §5.3: UpdateRow without cells -> 400. No exact text in the fact sheet.
    with sup.raises_ots(**BAD):
        client.update_row(t1, Row([("pk", 1)], {}), Condition("IGNORE"))


def test_invalid_column_name(client, t1):
    with sup.raises_ots(**BAD, prefix="Invalid column name: ") as info:
        client.put_row(t1, Row([("pk", 1)], [("0bad", 1)]))
    assert "0bad" in info.value.get_error_message()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_nan_and_infinite_doubles(client, t1, value):
    # §5.1: rejected with 400. No exact text in the fact sheet.
    with sup.raises_ots(**BAD):
        client.put_row(t1, Row([("pk", 1)], [("d", value)]))


def test_attribute_value_larger_than_2mb(client, t1):
    client.put_row(t1, Row([("pk", 1)], [("s", "x" * (2 * sup.MB))]))        # exactly 2 MB is allowed
    _, row, _ = client.get_row(t1, [("pk", 1)], max_version=1)
    assert len(sup.latest(row)["s"]) == 2 * sup.MB
    # §5.1: STRING/BINARY values are <= 2 MB. No exact text in the fact sheet.
    with sup.raises_ots(**BAD):
        client.put_row(t1, Row([("pk", 2)], [("s", "x" * (2 * sup.MB + 1))]))
    with sup.raises_ots(**BAD):
        client.put_row(t1, Row([("pk", 2)], [("b", bytearray(2 * sup.MB + 1))]))


def test_request_body_too_large(new_client, t1):
    # A client of its own: see the next test for what the 413 may do to its connection pool.
    with sup.raises_ots(413, "OTSRequestBodyTooLarge", "The size of POST data is too large."):
        new_client().put_row(t1, Row([("pk", 1)], [("s", "x" * (6 * sup.MB))]))


def test_request_body_too_large_leaves_the_client_usable(new_client, t1):
    """After a 413 the SDK keeps the connection in its pool unless the response says
    `Connection: close` (RFC 9112 §9.6). A server that answers early and then drops the connection
    without saying so makes the SDK's next request fail at random (urllib3 does not retry a POST)."""
    import time
    c = new_client()
    send = c.connection.send_receive
    seen = []

    def spy(url, headers, body):
        r = send(url, headers, body)
        seen.append({k.lower(): v for k, v in r[2].items()})
        return r

    c.connection.send_receive = spy
    with sup.raises_ots(413, "OTSRequestBodyTooLarge", "The size of POST data is too large."):
        c.put_row(t1, Row([("pk", 1)], [("s", "x" * (6 * sup.MB))]))
    announced_close = "close" in seen[-1].get("connection", "").lower()
    time.sleep(0.5)
    pool = c.connection.pool.connection_from_url(c.host)
    idle = [conn for conn in list(pool.pool.queue) if conn is not None and conn.sock is not None]
    dropped = [conn for conn in idle if not conn.is_connected]
    assert announced_close or not dropped, \
        "the server closed the connection after the 413 without a `Connection: close` header"
    for _ in range(3):
        assert c.describe_table(t1).table_meta.table_name == t1


def test_auto_increment_with_a_row_condition(client, tables):
    # §5.4: the condition must be IGNORE. No exact text in the fact sheet.
    t = tables.create([("a", "STRING"), ("seq", "INTEGER", PK_AUTO_INCR)])
    with sup.raises_ots(**BAD):
        client.put_row(t, Row([("a", "x"), ("seq", PK_AUTO_INCR)], [("v", 1)]), Condition("EXPECT_NOT_EXIST"))


def test_auto_increment_placeholder_in_a_read_or_delete(client, tables):
    # §5.4: reads and deletes cannot use the placeholder. The fact sheet gives neither code nor
    # text: any 400 with OTSParameterInvalid (the service's error list) or OTSInvalidPK (what the
    # emulator answers: "Validate PK type fail. Input: VT_AUTO_INCREMENT, Meta: VT_INTEGER.").
    t = tables.create([("a", "STRING"), ("seq", "INTEGER", PK_AUTO_INCR)])
    codes = ("OTSParameterInvalid", "OTSInvalidPK")
    with sup.raises_ots(400, codes):
        client.get_row(t, [("a", "x"), ("seq", PK_AUTO_INCR)], max_version=1)
    with sup.raises_ots(400, codes):
        client.delete_row(t, Row([("a", "x"), ("seq", PK_AUTO_INCR)]), Condition("IGNORE"))
    with sup.raises_ots(400, codes):
        client.get_range(t, "FORWARD", [("a", "x"), ("seq", PK_AUTO_INCR)], [("a", "y"), ("seq", INF_MAX)])


# --- reads -------------------------------------------------------------------------------------

def test_no_version_condition(client, t1):
    with sup.raises_ots(**BAD, message="No version condition is specified while querying row."):
        client.get_row(t1, [("pk", 1)], max_version=None, time_range=None)
    with sup.raises_ots(**BAD, message="No version condition is specified while querying row."):
        client.get_range(t1, "FORWARD", [("pk", INF_MIN)], [("pk", INF_MAX)], max_version=None)


def test_forward_range_with_begin_not_below_end(client, t1):
    msg = "Begin key must less than end key in FORWARD"
    with sup.raises_ots(**BAD, message=msg):
        client.get_range(t1, "FORWARD", [("pk", INF_MAX)], [("pk", INF_MIN)])
    with sup.raises_ots(**BAD, message=msg):
        client.get_range(t1, "FORWARD", [("pk", 5)], [("pk", 5)])     # equal bounds


def test_backward_range_with_begin_not_above_end(client, t1):
    msg = "Begin key must more than end key in BACKWARD"
    with sup.raises_ots(**BAD, message=msg):
        client.get_range(t1, "BACKWARD", [("pk", INF_MIN)], [("pk", INF_MAX)])
    with sup.raises_ots(**BAD, message=msg):
        client.get_range(t1, "BACKWARD", [("pk", 5)], [("pk", 5)])


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_must_be_positive(client, t1, limit):
    with sup.raises_ots(**BAD, message="The limit must be greater than 0."):
        client.get_range(t1, "FORWARD", [("pk", INF_MIN)], [("pk", INF_MAX)], limit=limit)


# --- batches -----------------------------------------------------------------------------------

def test_empty_batch_write_row(client):
    with sup.raises_ots(**BAD, message="No row is specified in BatchWriteRow."):
        client.batch_write_row(BatchWriteRowRequest())


def test_empty_batch_get_row(client):
    with sup.raises_ots(**BAD, message="No row specified in the request of BatchGetRow."):
        client.batch_get_row(BatchGetRowRequest())


def test_batch_write_table_without_rows(client, t1):
    req = BatchWriteRowRequest()
    req.add(TableInBatchWriteRowItem(t1, []))
    with sup.raises_ots(**BAD, message=f"No operation is specified for table: '{t1}'."):
        client.batch_write_row(req)


def test_batch_write_more_than_200_rows(client, t1):
    req = BatchWriteRowRequest()
    req.add(TableInBatchWriteRowItem(t1, [PutRowItem(Row([("pk", i)], [("v", i)]), Condition("IGNORE"))
                                          for i in range(201)]))
    with sup.raises_ots(**BAD, prefix="Rows count exceeds the upper limit"):
        client.batch_write_row(req)
    # The whole request was refused: not even the first row was written.
    _, nxt, rows, _ = client.get_range(t1, "FORWARD", [("pk", INF_MIN)], [("pk", INF_MAX)])
    assert rows == []


def test_batch_write_more_than_4mb(client, t1):
    # 3 x 1.5 MB = 4.5 MB of data: over the 4 MB BatchWriteRow limit, under the 5 MB body limit.
    big = "x" * (3 * sup.MB // 2)
    req = BatchWriteRowRequest()
    req.add(TableInBatchWriteRowItem(t1, [PutRowItem(Row([("pk", i)], [("s", big)]), Condition("IGNORE"))
                                          for i in range(3)]))
    with sup.raises_ots(**BAD, prefix="The total data size of BatchWriteRow request exceeds the limit"):
        client.batch_write_row(req)


def test_batch_get_more_than_100_rows(client, t1):
    # §5.1: BatchGetRow <= 100 rows. No exact text in the fact sheet.
    req = BatchGetRowRequest()
    req.add(TableInBatchGetRowItem(t1, [[("pk", i)] for i in range(101)], max_version=1))
    with sup.raises_ots(**BAD):
        client.batch_get_row(req)


def test_batch_write_same_table_twice(client, t1):
    # §5.7: a duplicate table name -> 400 (docs). The SDK keys tables by name, so the protobuf is
    # built by hand. No exact text in the fact sheet.
    req = pb2.BatchWriteRowRequest()
    for i in range(2):
        tbl = req.tables.add()
        tbl.table_name = t1
        row = tbl.rows.add()
        row.type = pb2.PUT
        row.row_change = sup.put_row_buffer([("pk", i)], [("v", i)])
        row.condition.row_existence = pb2.IGNORE
    with sup.raises_ots(**BAD):
        sup.send_pb(client, "BatchWriteRow", req)


def test_batch_write_same_row_twice_with_a_condition(client, t1):
    # §5.7: the same row twice is allowed only with IGNORE and no column condition.
    req = BatchWriteRowRequest()
    req.add(TableInBatchWriteRowItem(t1, [
        PutRowItem(Row([("pk", 1)], [("v", 1)]), Condition("EXPECT_NOT_EXIST")),
        UpdateRowItem(Row([("pk", 1)], {"put": [("w", 2)]}), Condition("IGNORE")),
    ]))
    with sup.raises_ots(**BAD):
        client.batch_write_row(req)

    ok = BatchWriteRowRequest()
    ok.add(TableInBatchWriteRowItem(t1, [
        PutRowItem(Row([("pk", 2)], [("v", 1)]), Condition("IGNORE")),
        UpdateRowItem(Row([("pk", 2)], {"put": [("w", 2)]}), Condition("IGNORE")),
    ]))
    assert client.batch_write_row(ok).is_all_succeed()


# --- protocol ----------------------------------------------------------------------------------

def test_unsupported_operation(client):
    with sup.raises_ots(**BAD, prefix="Unsupported operation: "):
        sup.send_pb(client, "NoSuchAction", pb2.ListTableRequest())


# --- names and counts (§5.1) -------------------------------------------------------------------

def test_table_name_length_limit(client, tables):
    ok = "t" + "x" * 254                                     # 255 bytes
    tables.adopt(ok)
    create(client, ok, [("pk", "STRING")])
    assert ok in client.list_table()
    too_long = "t" + "x" * 255                               # 256 bytes
    with sup.raises_ots(**BAD, prefix="Invalid table name: "):
        create(client, too_long, [("pk", "STRING")])


def test_column_name_length_limit(client, t1):
    ok = "c" * 255
    client.put_row(t1, Row([("pk", 1)], [(ok, 1)]))
    _, row, _ = client.get_row(t1, [("pk", 1)], max_version=1)
    assert sup.latest(row) == {ok: 1}
    with sup.raises_ots(**BAD, prefix="Invalid column name: "):
        client.put_row(t1, Row([("pk", 2)], [("c" * 256, 1)]))


def test_attribute_columns_per_write_limit(client, t1):
    # §5.1: at most 1024 attribute columns may be written per request. The fact sheet does not say
    # which code: OTSParameterInvalid (the service's "number of columns from the request" error) or
    # OTSOutOfColumnCountLimit, which the emulator answers with its §2.2 text.
    client.put_row(t1, Row([("pk", 1)], [(f"c{i}", i) for i in range(1024)]))
    _, row, _ = client.get_row(t1, [("pk", 1)], max_version=1)
    assert len(row.attribute_columns) == 1024
    with sup.raises_ots(400, ("OTSParameterInvalid", "OTSOutOfColumnCountLimit")):
        client.put_row(t1, Row([("pk", 2)], [(f"c{i}", i) for i in range(1025)]))


def test_columns_to_get_limit(client, t1):
    # §5.1: columns_to_get holds at most 128 names. No exact text.
    client.put_row(t1, Row([("pk", 1)], [("c0", 0)]))
    _, row, _ = client.get_row(t1, [("pk", 1)], columns_to_get=[f"c{i}" for i in range(128)],
                               max_version=1)
    assert sup.latest(row) == {"c0": 0}
    with sup.raises_ots(**BAD):
        client.get_row(t1, [("pk", 1)], columns_to_get=[f"c{i}" for i in range(129)], max_version=1)


def test_defined_columns_limit(client, table_name):
    # §5.1: 0-32 defined columns. No exact text.
    meta = TableMeta(table_name, [("pk", "STRING")], [(f"d{i}", "INTEGER") for i in range(33)])
    with sup.raises_ots(**BAD):
        client.create_table(meta, TableOptions(), ReservedThroughput(CapacityUnit(0, 0)))
    assert table_name not in client.list_table()


def test_table_count_quota(client, tables):
    # §5.1: up to 64 tables per instance; §2.2: 403 OTSQuotaExhausted (the non-retryable text).
    existing = len(client.list_table())
    for _ in range(64 - existing):
        tables.create([("pk", "STRING")])
    assert len(client.list_table()) == 64
    name = sup.unique_name()
    with sup.raises_ots(403, "OTSQuotaExhausted", "Number of tables exceeded the quota."):
        create(client, name, [("pk", "STRING")])
    assert name not in client.list_table()


# --- malformed row changes (§5.3) ---------------------------------------------------------------

def test_increment_with_timestamp(client, t1):
    # INCREMENT must carry no timestamp. No exact text.
    with sup.raises_ots(**BAD):
        client.update_row(t1, Row([("pk", 1)], {"increment": [("n", 1, sup.now_ms())]}), Condition("IGNORE"))


def test_delete_marker_in_put_row(client, t1):
    # A delete marker in PutRow -> 400 (the row is built by hand). No exact text.
    req = pb2.PutRowRequest()
    req.table_name = t1
    req.row = sup.pk_buffer([("pk", 1)], delete_marker=True)
    req.condition.row_existence = pb2.IGNORE
    with sup.raises_ots(**BAD):
        sup.send_pb(client, "PutRow", req)


def test_delete_row_without_delete_marker(client, t1):
    # DeleteRow requires the delete marker. No exact text.
    client.put_row(t1, Row([("pk", 1)], [("v", 1)]))
    req = pb2.DeleteRowRequest()
    req.table_name = t1
    req.primary_key = sup.pk_buffer([("pk", 1)])
    req.condition.row_existence = pb2.IGNORE
    with sup.raises_ots(**BAD):
        sup.send_pb(client, "DeleteRow", req)
    _, row, _ = client.get_row(t1, [("pk", 1)], max_version=1)
    assert row is not None


def test_corrupt_plainbuffer_checksum(client, t1):
    # §2.2: "Cell data broken, checksum is mismatch, …".
    row = bytearray(sup.put_row_buffer([("pk", 1)], [("v", 1)]))
    row[-1] ^= 0xFF                                          # the row checksum
    req = pb2.PutRowRequest()
    req.table_name = t1
    req.row = bytes(row)
    req.condition.row_existence = pb2.IGNORE
    with sup.raises_ots(**BAD, prefix="Cell data broken, checksum is mismatch"):
        sup.send_pb(client, "PutRow", req)
