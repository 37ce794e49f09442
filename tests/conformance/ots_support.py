"""Helpers shared by the conformance tests (imported by conftest.py and the test modules).

Everything here goes through the official SDK's own request building, signing and response
verification (`OTSClient._request_helper`). Where a test needs a request the SDK refuses to build
(a DOUBLE primary-key value, a hand-made protobuf), it swaps in an encoder for that one call; the
bytes are still signed, sent and checked by the SDK.
"""

import contextlib
import logging
import os
import re
import time
import uuid

import pytest

# The SDK logs every service error at ERROR level, and warns at import that its C++ codec (built
# for CPython 3.12 only) is unavailable; neither is useful in test output.
logging.getLogger("tablestore").setLevel(logging.CRITICAL)
logging.getLogger("tablestore-client").setLevel(logging.CRITICAL)

# ruff: noqa: E402  (the loggers above must be quiet before the SDK is imported)
import tablestore
from tablestore import (  # noqa: F401  (INF_MIN/INF_MAX re-exported for the tests)
    INF_MAX, INF_MIN, BatchWriteRowRequest, CapacityUnit, Condition, OTSClient, OTSServiceError,
    PutRowItem, ReservedThroughput, TableInBatchWriteRowItem, TableMeta, TableOptions,
)
import tablestore.const_module as _const
from tablestore.plainbuffer.plain_buffer_coded_stream import (
    PlainBufferCodedInputStream, PlainBufferCodedOutputStream,
)
from tablestore.plainbuffer.plain_buffer_crc8 import PlainBufferCrc8
from tablestore.plainbuffer.plain_buffer_stream import PlainBufferInputStream, PlainBufferOutputStream
from tablestore.protocol import OTSProtocol
from tablestore.retry import NoRetryPolicy
import tablestore.protobuf.table_store_pb2 as pb2

AK_ID = "conformanceAK"
AK_SECRET = "conformance-secret-0123456789"
INSTANCE = "conformance"

_native_env = os.environ.get("OTS_SDK_NATIVE", "1").strip()
if _native_env not in ("0", "1"):
    raise RuntimeError(f"OTS_SDK_NATIVE must be 0 or 1, not {_native_env!r}")
NATIVE = _native_env == "1"

MB = 1024 * 1024


def make_client(endpoint, access_key_id=AK_ID, access_key_secret=AK_SECRET, instance_name=INSTANCE,
                **kwargs):
    """An OTSClient in the session's parser mode, with no retries (a retry would hide a defect)."""
    kwargs.setdefault("retry_policy", NoRetryPolicy())
    kwargs.setdefault("socket_timeout", 120)
    if NATIVE:
        kwargs.setdefault("enable_native", True)
        kwargs.setdefault("native_fallback", False)
    else:
        kwargs.setdefault("enable_native", False)
    c = OTSClient(endpoint, access_key_id, access_key_secret, instance_name, **kwargs)
    if NATIVE and not c.protocol.decoder._use_native_parser:
        raise RuntimeError("OTS_SDK_NATIVE=1 but the SDK's native PlainBuffer parser did not load")
    if not NATIVE and c.protocol.decoder._use_native_parser:
        raise RuntimeError("enable_native=False did not turn the native parser off")
    return c


def now_ms():
    return int(time.time() * 1000)


def unique_name(prefix="t"):
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


# ---------------------------------------------------------------------------------------------
# Tables


class TableFactory:
    def __init__(self, client):
        self.client = client
        self.names = []

    def create(self, pk_schema, name=None, max_version=1, time_to_live=-1, max_time_deviation=86400,
               defined_columns=None):
        name = name or unique_name()
        meta = TableMeta(name, pk_schema, defined_columns)
        options = TableOptions(time_to_live=time_to_live, max_version=max_version,
                               max_time_deviation=max_time_deviation)
        self.client.create_table(meta, options, ReservedThroughput(CapacityUnit(0, 0)))
        self.names.append(name)
        return name

    def adopt(self, name):
        """Drop `name` at the end of the test too (for tables a test created itself)."""
        self.names.append(name)

    def drop_all(self):
        for name in self.names:
            try:
                self.client.delete_table(name)
            except OTSServiceError as e:
                if e.get_error_code() != "OTSObjectNotExist":
                    raise
        self.names = []


# ---------------------------------------------------------------------------------------------
# Errors


@contextlib.contextmanager
def raises_ots(status, code, message=None, prefix=None, regex=None):
    """Expect an OTSServiceError with this HTTP status and code (or one of a tuple of codes), and a
    message that is exactly `message`, or starts with `prefix`, or fully matches `regex`."""
    with pytest.raises(OTSServiceError) as info:
        yield info
    e = info.value
    got = (e.get_http_status(), e.get_error_code(), e.get_error_message())
    codes = code if isinstance(code, tuple) else (code,)
    assert got[0] == status and got[1] in codes, f"expected {status} {code}, got {got}"
    if message is not None:
        assert got[2] == message, f"expected message {message!r}, got {got[2]!r}"
    if prefix is not None:
        assert got[2].startswith(prefix), f"expected a message starting {prefix!r}, got {got[2]!r}"
    if regex is not None:
        assert re.fullmatch(regex, got[2]), f"expected a message matching {regex!r}, got {got[2]!r}"


# ---------------------------------------------------------------------------------------------
# Requests the SDK will not build on its own


def send_pb(client, action, request_proto):
    """Send a hand-built protobuf request as `action` through the SDK's signing, sending,
    response verification and response decoding."""
    registered = action in OTSProtocol.api_list
    if not registered:
        OTSProtocol.api_list.append(action)
    encode_map = client.protocol.encoder.api_encode_map
    old = encode_map.get(action)
    encode_map[action] = lambda proto: proto
    try:
        return client._request_helper(action, request_proto)
    finally:
        if old is None:
            del encode_map[action]
        else:
            encode_map[action] = old
        if not registered:
            OTSProtocol.api_list.remove(action)


def pk_buffer(cells, delete_marker=False):
    """A PlainBuffer PK-only row whose values may be of any attribute type (e.g. a DOUBLE PK
    value, which the SDK's own PK writer refuses). PK cells and timestamp-less attribute cells
    have the same layout, so the SDK's attribute-cell writer produces a well-formed PK cell."""
    out = PlainBufferOutputStream(1 << 30)
    coded = PlainBufferCodedOutputStream(out)
    coded.write_header()
    coded.write_tag(_const.TAG_ROW_PK)
    crc = 0
    for name, value in cells:
        crc = coded.write_column(name, value, None, crc)
    if delete_marker:
        crc = coded.write_delete_marker(crc)
    else:
        crc = PlainBufferCrc8.crc_int8(crc, 0)
    coded.write_row_checksum(crc)
    return bytes(out.get_buffer())


def put_row_buffer(pk_cells, attrs):
    """A PutRow row whose PK cells are written like `pk_buffer` (any value type)."""
    out = PlainBufferOutputStream(1 << 30)
    coded = PlainBufferCodedOutputStream(out)
    coded.write_header()
    coded.write_tag(_const.TAG_ROW_PK)
    crc = 0
    for name, value in pk_cells:
        crc = coded.write_column(name, value, None, crc)
    crc = coded.write_columns(attrs, crc)
    crc = PlainBufferCrc8.crc_int8(crc, 0)
    coded.write_row_checksum(crc)
    return bytes(out.get_buffer())


def decode_pk_row(client, buf):
    """Decode a PK-only PlainBuffer row with the client's decoder (C parser or pure Python)."""
    if client.protocol.decoder._use_native_parser:
        from tablestore.native import parse_single_row
        pk, _ = parse_single_row(buf)
        return pk
    pk, _ = PlainBufferCodedInputStream(PlainBufferInputStream(buf)).read_row()
    return pk


# ---------------------------------------------------------------------------------------------
# ComputeSplitPointsBySize: the SDK 6.4.8 has its messages but no method (fact sheet §7).

SPLIT_ACTION = "ComputeSplitPointsBySize"


def enable_compute_split_points(client):
    if SPLIT_ACTION not in OTSProtocol.api_list:
        OTSProtocol.api_list.append(SPLIT_ACTION)

    def encode(table_name, split_size, split_size_unit_in_byte=None):
        req = pb2.ComputeSplitPointsBySizeRequest()
        req.table_name = table_name
        req.split_size = split_size
        if split_size_unit_in_byte is not None:
            req.split_size_unit_in_byte = split_size_unit_in_byte
        return req

    def decode(body, request_id):
        resp = pb2.ComputeSplitPointsBySizeResponse()
        resp.ParseFromString(body)
        schema = [(s.name, s.type, s.option if s.HasField("option") else None) for s in resp.schema]
        points = [decode_pk_row(client, bytes(p)) for p in resp.split_points]
        locations = [(loc.location, loc.repeat) for loc in resp.locations]
        consumed = (resp.consumed.capacity_unit.read, resp.consumed.capacity_unit.write)
        return (schema, points, locations, consumed), resp

    client.protocol.encoder.api_encode_map[SPLIT_ACTION] = encode
    client.protocol.decoder.api_decode_map[SPLIT_ACTION] = decode


def compute_split_points(client, table_name, split_size, split_size_unit_in_byte=None):
    enable_compute_split_points(client)
    return client._request_helper(SPLIT_ACTION, table_name, split_size, split_size_unit_in_byte)


# ---------------------------------------------------------------------------------------------
# Rows


def batch_put(client, table_name, rows, batch=200):
    """Write Row objects with BatchWriteRow in `batch`-row requests; every row must succeed."""
    for i in range(0, len(rows), batch):
        req = BatchWriteRowRequest()
        req.add(TableInBatchWriteRowItem(table_name, [PutRowItem(r, Condition("IGNORE"))
                                                      for r in rows[i:i + batch]]))
        resp = client.batch_write_row(req)
        failed = resp.get_failed_of_put()
        assert resp.is_all_succeed(), [(f.index, f.error_code, f.error_message) for f in failed]


def scan_all(client, table_name, start, end, direction="FORWARD", **kwargs):
    """GetRange until next_start_primary_key is None. Returns (rows, pages) where pages lists the
    row count of every response."""
    rows, pages = [], []
    nxt = start
    for _ in range(100000):
        _, nxt, page, _ = client.get_range(table_name, direction, nxt, end, **kwargs)
        rows.extend(page)
        pages.append(len(page))
        if nxt is None:
            return rows, pages
    raise AssertionError("GetRange did not finish within 100000 pages")


def pk_tuple(row):
    return tuple(v for _, v in row.primary_key)


def attrs_by_name(row):
    """{name: [(value, ts), ...]} keeping the order the server sent (newest version first)."""
    out = {}
    for name, value, ts in row.attribute_columns:
        out.setdefault(name, []).append((value, ts))
    return out


def latest(row):
    """{name: latest value}"""
    return {n: vs[0][0] for n, vs in attrs_by_name(row).items()}



def raw_response(client, action, response_cls, *args):
    """Call `action` with the SDK's usual encoder and signing, but return the response body parsed
    as `response_cls` (to check protobuf fields the SDK's decoder ignores)."""
    decode_map = client.protocol.decoder.api_decode_map
    old = decode_map[action]

    def keep(body, request_id):
        msg = response_cls()
        msg.ParseFromString(body)
        return msg, msg

    decode_map[action] = keep
    try:
        return client._request_helper(action, *args)
    finally:
        decode_map[action] = old
