"""The Stream API, carried by the official SDK's transport (stream fact sheet §1–§4).

SDK 6.4.8 has the stream messages but no stream client: the actions are registered in
`OTSProtocol.api_list`, requests are the SDK's own pb2 messages (signed, sent and their responses
verified by the SDK), and responses are parsed into the SDK's pb2 response classes. Writes go through
the SDK's ordinary put_row / update_row / delete_row / batch_write_row.

Each record is checked three ways: its sequence (the extension block, fact sheet §3) is parsed here;
its row part, with the extension taken out, is re-encoded with the SDK's own PlainBuffer writer from
the values it holds and must come out byte-identical (so every cell and row checksum agrees with the
SDK); and where the SDK's decoder can read the row (no cell operations) its decoding must agree.
"""

import json
import struct
import time

import pytest

import ots_support as sup
import tablestore.const_module as C
from ots_support import OTSProtocol, pb2
from tablestore import (
    BatchWriteRowRequest, Condition, DeleteRowItem, PutRowItem, Row, RowExistenceExpectation,
    TableInBatchWriteRowItem, UpdateRowItem,
)
from tablestore.plainbuffer.plain_buffer_coded_stream import PlainBufferCodedOutputStream
from tablestore.plainbuffer.plain_buffer_crc8 import PlainBufferCrc8
from tablestore.plainbuffer.plain_buffer_stream import PlainBufferOutputStream

PK_SCHEMA = [("pk1", "STRING"), ("pk2", "INTEGER")]
TRIMMED = "Requested stream data is already trimmed or does not exist."


# ---------------------------------------------------------------------------------------------
# Calls


def call(client, action, request, response_cls):
    """Send the pb2 message `request` as `action`; the response body parsed as `response_cls`."""
    registered = action in OTSProtocol.api_list
    if not registered:
        OTSProtocol.api_list.append(action)
    enc = client.protocol.encoder.api_encode_map
    dec = client.protocol.decoder.api_decode_map
    old = (enc.get(action), dec.get(action))

    def decode(body, request_id):
        msg = response_cls()
        msg.ParseFromString(body)
        return msg, msg

    enc[action] = lambda proto: proto
    dec[action] = decode
    try:
        return client._request_helper(action, request)
    finally:
        for m, o in zip((enc, dec), old):
            if o is None:
                del m[action]
            else:
                m[action] = o
        if not registered:
            OTSProtocol.api_list.remove(action)


def create_stream_table(client, tables, hours=24):
    name = sup.unique_name()
    req = pb2.CreateTableRequest()
    req.table_meta.table_name = name
    for n, t in PK_SCHEMA:
        pk = req.table_meta.primary_key.add()
        pk.name = n
        pk.type = pb2.STRING if t == "STRING" else pb2.INTEGER
    req.reserved_throughput.capacity_unit.read = 0
    req.reserved_throughput.capacity_unit.write = 0
    req.table_options.time_to_live = -1
    req.table_options.max_versions = 3
    req.table_options.deviation_cell_version_in_sec = 86400
    req.stream_spec.enable_stream = True
    req.stream_spec.expiration_time = hours
    call(client, "CreateTable", req, pb2.CreateTableResponse)
    tables.adopt(name)
    return name


def update_stream(client, table, enable, hours=None):
    req = pb2.UpdateTableRequest()
    req.table_name = table
    req.stream_spec.enable_stream = enable
    if hours is not None:
        req.stream_spec.expiration_time = hours
    return call(client, "UpdateTable", req, pb2.UpdateTableResponse)


def list_stream(client, table):
    req = pb2.ListStreamRequest()
    req.table_name = table
    return list(call(client, "ListStream", req, pb2.ListStreamResponse).streams)


def describe_all(client, stream_id, per_page=None):
    shards, start = [], None
    while True:
        req = pb2.DescribeStreamRequest()
        req.stream_id = stream_id
        if start is not None:
            req.inclusive_start_shard_id = start
        if per_page is not None:
            req.shard_limit = per_page
        resp = call(client, "DescribeStream", req, pb2.DescribeStreamResponse)
        assert resp.stream_id == stream_id
        assert resp.stream_status == pb2.STREAM_ACTIVE
        assert resp.creation_time > 0
        shards.extend(resp.shards)
        if not resp.HasField("next_shard_id"):
            return resp, shards
        start = resp.next_shard_id


def shard_iterator(client, stream_id, shard_id, timestamp=None):
    req = pb2.GetShardIteratorRequest()
    req.stream_id = stream_id
    req.shard_id = shard_id
    if timestamp is not None:
        # Field 3 (int64, µs) exists only in the Java/Go protos: appended as a varint by hand.
        req = Raw(req.SerializeToString() + b"\x18" + varint(timestamp))
    return call(client, "GetShardIterator", req, pb2.GetShardIteratorResponse).shard_iterator


class Raw:
    """Bytes that stand in for a pb2 request message."""

    def __init__(self, data):
        self.data = data

    def SerializeToString(self):
        return self.data


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def get_records(client, iterator, limit=None):
    req = pb2.GetStreamRecordRequest()
    req.shard_iterator = iterator
    if limit is not None:
        req.limit = limit
    return call(client, "GetStreamRecord", req, pb2.GetStreamRecordResponse)


def read_shard(client, stream_id, shard_id, limit=None):
    """(records, ended): to the end of a closed shard, or until caught up on an open one."""
    it = shard_iterator(client, stream_id, shard_id)
    out = []
    while True:
        resp = get_records(client, it, limit)
        out.extend(resp.stream_records)
        if not resp.HasField("next_shard_iterator"):
            return out, True
        if not resp.stream_records:
            assert resp.next_shard_iterator == it, "caught up: the same iterator"
            return out, False
        it = resp.next_shard_iterator


def read_stream(client, table):
    """ListStream → DescribeStream → GetShardIterator → GetStreamRecord: every record, decoded."""
    streams = list_stream(client, table)
    assert len(streams) == 1 and streams[0].table_name == table
    _, shards = describe_all(client, streams[0].stream_id)
    out = []
    for s in shards:
        records, _ = read_shard(client, streams[0].stream_id, s.shard_id)
        out.extend(check_record(client, r) for r in records)
    return out


# ---------------------------------------------------------------------------------------------
# Records


class Record:
    def __init__(self, action, pk, cells, delete_marker, seq):
        self.action = action
        self.pk = pk
        self.cells = cells          # [(name, value or None, op or None, ts or None)]
        self.delete_marker = delete_marker
        self.seq = seq              # (epoch, timestamp_us, row_index)


def split_extension(buf):
    """The row without its extension block, and the sequence the block carries (fact sheet §3):
    `0B u32:24  0C u32:19  0D u32:epoch  0E i64:ts_us  0F u32:row_index` right before `09 crc`."""
    at = len(buf) - 31
    assert at > 4 and buf[at] == 0x0B and buf[-2] == ord(C.TAG_ROW_CHECKSUM), buf.hex()
    ext_len, = struct.unpack_from("<I", buf, at + 1)
    assert ext_len == 24
    tag, seq_len, t1, epoch, t2, ts, t3, idx = struct.unpack_from("<BIBIBqBI", buf, at + 5)
    assert (tag, seq_len, t1, t2, t3) == (0x0C, 19, 0x0D, 0x0E, 0x0F)
    return buf[:at] + buf[-2:], (epoch, ts, idx)


class _Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def u8(self):
        self.pos += 1
        return self.buf[self.pos - 1]

    def unpack(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0]

    def take(self, n):
        self.pos += n
        return self.buf[self.pos - n:self.pos]

    def peek(self):
        return self.buf[self.pos]


def _value(r):
    r.unpack("<I")
    t = r.u8()
    if t == C.VT_INTEGER:
        return r.unpack("<q")
    if t == C.VT_DOUBLE:
        return r.unpack("<d")
    if t == C.VT_BOOLEAN:
        return r.u8() != 0
    n = r.unpack("<I")
    data = r.take(n)
    return data.decode("utf-8") if t == C.VT_STRING else bytearray(data)


def parse_row(buf):
    """The structure of a row (no checksum checks: `reencode` checks the bytes)."""
    r = _Reader(buf)
    assert r.unpack("<I") == C.HEADER
    assert r.u8() == ord(C.TAG_ROW_PK)
    pk, cells = [], []
    while r.peek() == ord(C.TAG_CELL):
        r.u8()
        assert r.u8() == ord(C.TAG_CELL_NAME)
        name = r.take(r.unpack("<I")).decode("utf-8")
        assert r.u8() == ord(C.TAG_CELL_VALUE)
        pk.append((name, _value(r)))
        assert r.u8() == ord(C.TAG_CELL_CHECKSUM)
        r.u8()
    if r.peek() == ord(C.TAG_ROW_DATA):
        r.u8()
        while r.peek() == ord(C.TAG_CELL):
            r.u8()
            assert r.u8() == ord(C.TAG_CELL_NAME)
            name = r.take(r.unpack("<I")).decode("utf-8")
            value = op = ts = None
            if r.peek() == ord(C.TAG_CELL_VALUE):
                r.u8()
                value = _value(r)
            if r.peek() == ord(C.TAG_CELL_TYPE):
                r.u8()
                op = r.u8()
            if r.peek() == ord(C.TAG_CELL_TIMESTAMP):
                r.u8()
                ts = r.unpack("<q")
            assert r.u8() == ord(C.TAG_CELL_CHECKSUM)
            r.u8()
            cells.append((name, value, op, ts))
    marker = r.peek() == ord(C.TAG_DELETE_ROW_MARKER)
    if marker:
        r.u8()
    assert r.u8() == ord(C.TAG_ROW_CHECKSUM)
    r.u8()
    assert r.pos == len(buf)
    return pk, cells, marker


OP_NAMES = {None: "PUT", C.DELETE_ONE_VERSION: "DELETE", C.DELETE_ALL_VERSION: "DELETE_ALL"}


def reencode(pk, cells, marker):
    """The same row written by the SDK's own PlainBuffer writer."""
    out = PlainBufferOutputStream(1 << 20)
    coded = PlainBufferCodedOutputStream(out)
    coded.write_header()
    crc = coded.write_primary_key(pk, 0)
    if cells:
        coded.write_tag(C.TAG_ROW_DATA)
        for name, value, op, ts in cells:
            if op is None:
                crc = coded.write_column(name, value, ts, crc)
            else:
                crc = coded.write_update_column(OP_NAMES[op], name, (value, ts), crc)
    crc = coded.write_delete_marker(crc) if marker else PlainBufferCrc8.crc_int8(crc, 0)
    coded.write_row_checksum(crc)
    return bytes(out.get_buffer())


def check_record(client, rec):
    row, seq = split_extension(bytes(rec.record))
    pk, cells, marker = parse_row(row)
    assert reencode(pk, cells, marker) == row, "the SDK's writer produces the same bytes"
    if all(op is None for _, _, op, _ in cells):
        # The SDK's own decoder (C parser or pure Python, per the session's mode) agrees.
        if client.protocol.decoder._use_native_parser:
            from tablestore.native import parse_single_row
            got_pk, got_attrs = parse_single_row(row)
        else:
            from tablestore.plainbuffer.plain_buffer_coded_stream import PlainBufferCodedInputStream
            from tablestore.plainbuffer.plain_buffer_stream import PlainBufferInputStream
            got_pk, got_attrs = PlainBufferCodedInputStream(PlainBufferInputStream(row)).read_row()
        assert [tuple(c) for c in got_pk] == pk
        assert [tuple(c) for c in (got_attrs or [])] == [(n, v, ts) for n, v, _, ts in cells]
    return Record(rec.action_type, pk, cells, marker, seq)


# ---------------------------------------------------------------------------------------------
# Tests


@pytest.fixture
def stream_table(client, tables):
    return create_stream_table(client, tables)


def pk_of(k, i=1):
    return [("pk1", k), ("pk2", i)]


def test_every_write_path_is_logged(client, stream_table):
    t = stream_table
    ts = sup.now_ms() - 10_000
    client.put_row(t, Row(pk_of("a"), [("s", "x"), ("i", 5, ts), ("b", bytearray(b"\x00\xff"))]))
    client.update_row(t, Row(pk_of("a"), {
        "PUT": [("s", "y", ts + 1), ("d", 1.5)],
        "DELETE": [("old", None, ts - 5)],
        "DELETE_ALL": ["gone"],
        "INCREMENT": [("i", 10)],
    }), Condition(RowExistenceExpectation.IGNORE))
    client.delete_row(t, Row(pk_of("a")), Condition(RowExistenceExpectation.IGNORE))
    with sup.raises_ots(403, "OTSConditionCheckFail"):
        client.put_row(t, Row(pk_of("z"), [("v", 1)]), Condition(RowExistenceExpectation.EXPECT_EXIST))

    req = BatchWriteRowRequest()
    req.add(TableInBatchWriteRowItem(t, [
        PutRowItem(Row(pk_of("b"), [("v", 1)]), Condition(RowExistenceExpectation.IGNORE)),
        # Fails its condition: not logged.
        PutRowItem(Row(pk_of("c"), [("v", 2)]), Condition(RowExistenceExpectation.EXPECT_EXIST)),
        UpdateRowItem(Row(pk_of("d"), {"PUT": [("v", 3)]}), Condition(RowExistenceExpectation.IGNORE)),
        DeleteRowItem(Row(pk_of("e")), Condition(RowExistenceExpectation.IGNORE)),
    ]))
    resp = client.batch_write_row(req)
    succeeded, failed = resp.get_put()
    assert (len(succeeded), len(failed)) == (1, 1)
    assert failed[0].error_code == "OTSConditionCheckFail"
    assert resp.get_failed_of_update() == [] and resp.get_failed_of_delete() == []

    recs = read_stream(client, t)
    assert [r.action for r in recs] == [pb2.PUT_ROW, pb2.UPDATE_ROW, pb2.DELETE_ROW,
                                        pb2.PUT_ROW, pb2.UPDATE_ROW, pb2.DELETE_ROW]
    put, upd, dele = recs[0], recs[1], recs[2]
    now = sup.now_ms()

    assert put.pk == pk_of("a")
    names = [c[0] for c in put.cells]
    assert names == ["s", "i", "b"]
    assert put.cells[0][1] == "x" and now - 60_000 <= put.cells[0][3] <= now
    assert put.cells[1] == ("i", 5, None, ts)
    assert put.cells[2][1] == bytearray(b"\x00\xff")
    assert not put.delete_marker

    # Request order (the SDK sends PUT, DELETE, DELETE_ALL, INCREMENT groups in that order).
    assert [(c[0], c[2]) for c in upd.cells] == [
        ("s", None), ("d", None), ("old", C.DELETE_ONE_VERSION), ("gone", C.DELETE_ALL_VERSION),
        ("i", None)]
    assert upd.cells[0] == ("s", "y", None, ts + 1)
    assert upd.cells[1][1] == 1.5 and now - 60_000 <= upd.cells[1][3] <= now
    assert upd.cells[2] == ("old", None, C.DELETE_ONE_VERSION, ts - 5)
    assert upd.cells[3] == ("gone", None, C.DELETE_ALL_VERSION, None)
    assert upd.cells[4][1] == 15, "an increment logs its result as a put"
    assert now - 60_000 <= upd.cells[4][3] <= now

    assert dele.pk == pk_of("a") and dele.cells == [] and dele.delete_marker

    # The batch: the rows that succeeded, one timestamp, row_index 0, 1, 2.
    batch = recs[3:]
    assert [r.pk for r in batch] == [pk_of("b"), pk_of("d"), pk_of("e")]
    assert len({r.seq[1] for r in batch}) == 1
    assert [r.seq[2] for r in batch] == [0, 1, 2]

    seqs = [r.seq for r in recs]
    assert all(s[0] == 1 for s in seqs)
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert abs(recs[0].seq[1] // 1000 - now) < 60_000, "timestamp_us is the write time in µs"


def test_describe_details_paging_and_iterators(client, tables, stream_table):
    t = stream_table
    streams = list_stream(client, t)
    sid = streams[0].stream_id
    assert streams[0].creation_time > 0

    resp = sup.raw_response(client, "DescribeTable", pb2.DescribeTableResponse, t)
    d = resp.stream_details
    assert d.enable_stream and d.stream_id == sid and d.expiration_time == 24
    assert d.last_enable_time == streams[0].creation_time

    for i in range(12):
        client.put_row(t, Row(pk_of("k", i), [("v", i)]))
    desc, shards = describe_all(client, sid, per_page=1)
    assert desc.expiration_time == 24 and desc.table_name == t
    assert len(shards) == 1
    it = shard_iterator(client, sid, shards[0].shard_id)
    sizes = []
    while True:
        resp = get_records(client, it, limit=5)
        sizes.append(len(resp.stream_records))
        assert resp.HasField("next_shard_iterator")
        if not resp.stream_records:
            assert resp.next_shard_iterator == it
            break
        it = resp.next_shard_iterator
    assert sizes == [5, 5, 2, 0]

    with sup.raises_ots(400, "OTSParameterInvalid"):
        get_records(client, "not-an-iterator")
    with sup.raises_ots(404, "OTSObjectNotExist"):
        describe_all(client, "no-such-stream")

    # A table without a stream lists none; an unknown table is the usual error.
    plain = tables.create(PK_SCHEMA)
    assert list_stream(client, plain) == []
    with sup.raises_ots(404, "OTSObjectNotExist"):
        list_stream(client, sup.unique_name())


def test_disable_and_reenable(client, stream_table):
    t = stream_table
    first = list_stream(client, t)[0].stream_id
    client.put_row(t, Row(pk_of("a"), [("v", 1)]))
    _, shards = describe_all(client, first)
    old_it = shard_iterator(client, first, shards[0].shard_id)

    with sup.raises_ots(400, "OTSParameterInvalid"):
        update_stream(client, t, True, 0)
    resp = update_stream(client, t, False)
    assert not resp.stream_details.enable_stream
    assert list_stream(client, t) == []
    resp = update_stream(client, t, True, 6)
    assert resp.stream_details.enable_stream and resp.stream_details.expiration_time == 6
    assert resp.stream_details.stream_id != first
    assert read_stream(client, t) == []
    with sup.raises_ots(400, "OTSParameterInvalid"):
        get_records(client, old_it)


def test_split_and_trim_through_the_binary(client, endpoint, stream_table):
    """Reading across a shard split, and trimmed data, driven by the signed admin actions."""
    t = stream_table
    for i in range(4):
        client.put_row(t, Row(pk_of(f"k{i}"), [("v", 0)]))
    admin(client, "AdminSplitStreamShards", {"table_name": t})
    for i in range(4):
        client.put_row(t, Row(pk_of(f"k{i}"), [("v", 1)]))
    sid = list_stream(client, t)[0].stream_id
    _, shards = describe_all(client, sid)
    assert len(shards) == 3 and shards[1].parent_id == shards[0].shard_id == shards[2].parent_id
    parent, ended = read_shard(client, sid, shards[0].shard_id)
    assert ended and len(parent) == 4
    recs = read_stream(client, t)
    assert len(recs) == 8
    for i in range(4):
        assert [r.cells[0][1] for r in recs if r.pk == pk_of(f"k{i}")] == [0, 1]

    it = shard_iterator(client, sid, shards[0].shard_id)
    out = admin(client, "AdminTrimStream", {"table_name": t, "before_us": recs[2].seq[1]})
    assert out["trimmed"] == 2
    with sup.raises_ots(400, "OTSTrimmedDataAccess", TRIMMED):
        get_records(client, it)
    with sup.raises_ots(400, "OTSTrimmedDataAccess", TRIMMED):
        shard_iterator(client, sid, shards[0].shard_id, timestamp=recs[0].seq[1])
    assert len(read_shard(client, sid, shards[0].shard_id)[0]) == 2
    # By time: the first record at or after it.
    it = shard_iterator(client, sid, shards[0].shard_id, timestamp=recs[3].seq[1])
    first = check_record(client, get_records(client, it, limit=1).stream_records[0])
    assert first.seq == recs[3].seq


def admin(client, action, body):
    """A signed admin action with a JSON body (the emulator's test hooks), through the SDK's signer."""
    registered = action in OTSProtocol.api_list
    if not registered:
        OTSProtocol.api_list.append(action)
    enc = client.protocol.encoder.api_encode_map
    dec = client.protocol.decoder.api_decode_map
    enc[action] = lambda raw: raw
    dec[action] = lambda body, request_id: (json.loads(body), None)
    try:
        return client._request_helper(action, Raw(json.dumps(body).encode()))
    finally:
        del enc[action]
        del dec[action]
        if not registered:
            OTSProtocol.api_list.remove(action)


def test_increments_and_fast(client, stream_table):
    """A burst of writes: sequences strictly increase, every record decodes (and quickly)."""
    t = stream_table
    start = time.monotonic()
    for i in range(30):
        client.update_row(t, Row(pk_of("counter"), {"INCREMENT": [("n", 1)]}),
                          Condition(RowExistenceExpectation.IGNORE))
    recs = read_stream(client, t)
    assert [r.cells[0][1] for r in recs] == list(range(1, 31))
    seqs = [r.seq for r in recs]
    assert all(a < b for a, b in zip(seqs, seqs[1:]))
    assert time.monotonic() - start < 10
