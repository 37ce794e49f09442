"""Request authentication (fact sheet §1.3, §1.4, §2.2 OTSAuthFailed, §7): a request signed with
the wrong secret, with a tampered body, with a stale date, from an unknown AccessKeyID or for
another instance is refused with 403 OTSAuthFailed, and changes nothing."""

import datetime

import pytest
from tablestore import Condition, Row
import tablestore.utils

import ots_support as sup

AUTH = dict(status=403, code="OTSAuthFailed")


@pytest.fixture
def seeded(client, tables):
    t = tables.create([("pk", "STRING")])
    client.put_row(t, Row([("pk", "k")], [("v", "original")]))
    return t


def _unchanged(client, table):
    _, row, _ = client.get_row(table, [("pk", "k")], max_version=1)
    assert sup.latest(row) == {"v": "original"}
    _, row, _ = client.get_row(table, [("pk", "new")], max_version=1)
    assert row is None


def _writes(c, table):
    """Every kind of write a refused client might attempt."""
    return [
        lambda: c.put_row(table, Row([("pk", "k")], [("v", "changed")])),
        lambda: c.put_row(table, Row([("pk", "new")], [("v", "x")])),
        lambda: c.update_row(table, Row([("pk", "k")], {"put": [("v", "changed")]}), Condition("IGNORE")),
        lambda: c.delete_row(table, Row([("pk", "k")]), Condition("IGNORE")),
        lambda: c.delete_table(table),
    ]


def test_wrong_secret_is_refused_and_changes_nothing(client, new_client, seeded):
    bad = new_client(access_key_secret=sup.AK_SECRET + "x")
    for write in _writes(bad, seeded):
        with sup.raises_ots(**AUTH, message="Signature mismatch."):
            write()
    with sup.raises_ots(**AUTH, message="Signature mismatch."):
        bad.get_row(seeded, [("pk", "k")], max_version=1)
    with sup.raises_ots(**AUTH, message="Signature mismatch."):
        bad.list_table()
    _unchanged(client, seeded)
    assert seeded in client.list_table()


def test_unknown_access_key_id(client, new_client, seeded):
    bad = new_client(access_key_id="someoneElse")
    with sup.raises_ots(**AUTH, message="The AccessKeyID does not exist."):
        bad.put_row(seeded, Row([("pk", "k")], [("v", "changed")]))
    _unchanged(client, seeded)


def test_unknown_instance(client, new_client, seeded):
    bad = new_client(instance_name="otherinstance")
    with sup.raises_ots(**AUTH, message="The instance is not found."):
        bad.put_row(seeded, Row([("pk", "k")], [("v", "changed")]))
    _unchanged(client, seeded)


def test_tampered_body_is_refused(client, new_client, seeded):
    """The body is changed after the SDK computed its MD5 and signature."""
    c = new_client()
    send = c.connection.send_receive

    def tamper(url, headers, body):
        body = bytes(body)
        assert b"changed" in body
        return send(url, headers, body.replace(b"changed", b"hacked!"))

    c.connection.send_receive = tamper
    writes = [
        lambda: c.put_row(seeded, Row([("pk", "k")], [("v", "changed")])),
        lambda: c.put_row(seeded, Row([("pk", "new")], [("v", "changed")])),
        lambda: c.update_row(seeded, Row([("pk", "k")], {"put": [("v", "changed")]}), Condition("IGNORE")),
    ]
    for write in writes:
        with sup.raises_ots(**AUTH, message="Mismatch between MD5 value of request body and "
                                            "x-ots-contentmd5 in header."):
            write()
    _unchanged(client, seeded)


def test_stale_date_is_refused(client, new_client, seeded):
    """x-ots-date 20 minutes in the past (the SDK signs it correctly)."""
    c = new_client()
    sent_dates = []
    make_request = c.protocol.make_request
    real_now = tablestore.utils.get_now_utc_datetime

    def stale_make_request(*args, **kwargs):
        tablestore.utils.get_now_utc_datetime = lambda: real_now() - datetime.timedelta(minutes=20)
        try:
            query, headers, body = make_request(*args, **kwargs)
        finally:
            tablestore.utils.get_now_utc_datetime = real_now
        sent_dates.append(headers["x-ots-date"])
        return query, headers, body

    c.protocol.make_request = stale_make_request
    for write in _writes(c, seeded)[:3]:
        with sup.raises_ots(**AUTH) as info:
            write()
        assert info.value.get_error_message() == \
            f"Mismatch between system time and x-ots-date: {sent_dates[-1]}."
    _unchanged(client, seeded)


def test_v4_signature_is_accepted(client, new_client, seeded):
    v4 = new_client(region="cn-hangzhou")
    assert type(v4._signer).__name__ == "SignV4"
    assert seeded in v4.list_table()
    v4.put_row(seeded, Row([("pk", "v4")], [("v", "signed v4")]))
    _, row, _ = v4.get_row(seeded, [("pk", "v4")], max_version=1)
    assert sup.latest(row) == {"v": "signed v4"}
    _, row, _ = client.get_row(seeded, [("pk", "v4")], max_version=1)
    assert sup.latest(row) == {"v": "signed v4"}


def test_v4_signature_with_wrong_secret_is_refused(client, new_client, seeded):
    bad = new_client(region="cn-hangzhou", access_key_secret=sup.AK_SECRET + "x")
    with sup.raises_ots(**AUTH, message="Signature mismatch."):
        bad.put_row(seeded, Row([("pk", "k")], [("v", "changed")]))
    _unchanged(client, seeded)


def test_future_date_is_refused(client, new_client, seeded):
    c = new_client()
    sign = c._signer.make_request_signature_and_add_headers
    sent = []

    def future(query, headers, request_context):
        t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=20)
        headers["x-ots-date"] = t.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        sent.append(headers["x-ots-date"])
        return sign(query, headers, request_context)

    c._signer.make_request_signature_and_add_headers = future
    with sup.raises_ots(**AUTH) as info:
        c.put_row(seeded, Row([("pk", "k")], [("v", "changed")]))
    assert info.value.get_error_message() == f"Mismatch between system time and x-ots-date: {sent[-1]}."
    _unchanged(client, seeded)


def test_invalid_date_format(client, new_client, seeded):
    c = new_client()
    sign = c._signer.make_request_signature_and_add_headers

    def bad_date(query, headers, request_context):
        headers["x-ots-date"] = "Tue, 25 Nov 2025 10:00:00 GMT"
        return sign(query, headers, request_context)

    c._signer.make_request_signature_and_add_headers = bad_date
    # §2.2: 400 OTSParameterInvalid "Invalid date format: …".
    with sup.raises_ots(400, "OTSParameterInvalid", prefix="Invalid date format: "):
        c.put_row(seeded, Row([("pk", "k")], [("v", "changed")]))
    _unchanged(client, seeded)


@pytest.mark.parametrize("header", ["x-ots-date", "x-ots-accesskeyid", "x-ots-instancename",
                                    "x-ots-contentmd5", "x-ots-signature"])
def test_missing_header(client, new_client, seeded, header):
    """The header is removed after the SDK signed the request."""
    c = new_client()
    send = c.connection.send_receive

    def drop(url, headers, body):
        headers = dict(headers)
        del headers[header]
        return send(url, headers, body)

    c.connection.send_receive = drop
    # §2.2: 400 OTSParameterInvalid "Missing header: …" (the emulator names the header).
    with sup.raises_ots(400, "OTSParameterInvalid", prefix="Missing header: ") as info:
        c.put_row(seeded, Row([("pk", "k")], [("v", "changed")]))
    assert header in info.value.get_error_message()
    _unchanged(client, seeded)
