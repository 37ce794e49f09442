"""HTTP-level and cross-cutting behaviour: the x-ots-date forms other SDKs send (fact sheet §1.2),
concurrent clients, the ~4 MB GetRange page cap (§5.5) and TTL visibility (§5.2)."""

import threading

import pytest
from tablestore import INF_MAX, INF_MIN, PK_AUTO_INCR, Condition, ReturnType, Row, TableOptions

import ots_support as sup


@pytest.mark.parametrize("fraction", ["", ".1", ".123", ".123456", ".123456789"])
def test_request_dates_with_0_to_9_fraction_digits_are_accepted(new_client, fraction):
    """Python sends .000, Java real milliseconds, Go other digits: all must be accepted (§1.2).
    The date is rewritten before the SDK signs the request, so the signature stays valid."""
    c = new_client()
    sign = c._signer.make_request_signature_and_add_headers
    sent = []

    def sign_with_other_date(query, headers, request_context):
        headers["x-ots-date"] = headers["x-ots-date"][:19] + fraction + "Z"
        sent.append(headers["x-ots-date"])
        return sign(query, headers, request_context)

    c._signer.make_request_signature_and_add_headers = sign_with_other_date
    assert isinstance(c.list_table(), tuple)
    assert len(sent) == 1 and len(sent[0]) == 20 + len(fraction)


def test_concurrent_clients(endpoint, client, tables):
    t = tables.create([("w", "INTEGER"), ("k", "INTEGER")])
    auto = tables.create([("p", "STRING"), ("seq", "INTEGER", PK_AUTO_INCR)])
    workers, per_worker = 8, 300
    errors = []
    generated = []
    lock = threading.Lock()

    def work(w):
        try:
            c = sup.make_client(endpoint)
            sup.batch_put(c, t, [Row([("w", w), ("k", k)], [("v", w * 1000 + k)])
                                 for k in range(per_worker)], batch=100)
            for k in range(0, per_worker, 50):
                c.update_row(t, Row([("w", w), ("k", k)], {"increment": [("n", 1)]}), Condition("EXPECT_EXIST"))
            for _ in range(10):
                _, ret = c.put_row(auto, Row([("p", "same"), ("seq", PK_AUTO_INCR)], [("w", w)]),
                                   return_type=ReturnType.RT_PK)
                with lock:
                    generated.append(ret.primary_key[1][1])
            got, _ = sup.scan_all(c, t, [("w", w), ("k", INF_MIN)], [("w", w), ("k", INF_MAX)])
            assert len(got) == per_worker
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    rows, _ = sup.scan_all(client, t, [("w", INF_MIN), ("k", INF_MIN)], [("w", INF_MAX), ("k", INF_MAX)])
    assert [sup.pk_tuple(r) for r in rows] == [(w, k) for w in range(workers) for k in range(per_worker)]
    assert all(sup.latest(r)["v"] == r.primary_key[0][1] * 1000 + r.primary_key[1][1] for r in rows)
    assert sum(1 for r in rows if sup.latest(r).get("n") == 1) == workers * (per_worker // 50)
    # AUTO_INCREMENT values are unique within the partition key even under concurrency.
    assert len(generated) == workers * 10 and len(set(generated)) == len(generated)


def test_get_range_page_stops_near_4mb(client, tables):
    t = tables.create([("pk", "INTEGER")])
    value = "v" * (300 * 1024)
    for i in range(30):                                     # 30 x 300 KB = 9 MB
        client.put_row(t, Row([("pk", i)], [("s", value)]))
    _, nxt, first, _ = client.get_range(t, "FORWARD", [("pk", INF_MIN)], [("pk", INF_MAX)])
    assert 1 <= len(first) < 30
    assert nxt == [("pk", len(first))]
    assert len(first) * len(value) <= 4 * sup.MB + len(value)   # stops at about 4 MB
    rows, pages = sup.scan_all(client, t, [("pk", INF_MIN)], [("pk", INF_MAX)])
    assert len(pages) >= 3
    assert [r.primary_key[0][1] for r in rows] == list(range(30))
    assert all(sup.latest(r)["s"] == value for r in rows)


def test_versions_older_than_the_ttl_are_invisible_at_once(client, tables):
    t = tables.create([("pk", "INTEGER")], max_version=5, time_to_live=-1, max_time_deviation=10 * 86400)
    now = sup.now_ms()
    old, recent = now - 2 * 86400 * 1000, now - 1000
    client.put_row(t, Row([("pk", 1)], [("v", "old", old), ("v", "recent", recent)]))
    client.put_row(t, Row([("pk", 2)], [("v", "old", old)]))
    _, row, _ = client.get_row(t, [("pk", 1)], max_version=5)
    assert sup.attrs_by_name(row)["v"] == [("recent", recent), ("old", old)]

    client.update_table(t, TableOptions(time_to_live=86400, max_version=None, max_time_deviation=None))
    _, row, _ = client.get_row(t, [("pk", 1)], max_version=5)
    assert sup.attrs_by_name(row)["v"] == [("recent", recent)]
    # A row whose every cell expired no longer exists.
    _, row, _ = client.get_row(t, [("pk", 2)], max_version=5)
    assert row is None
    _, _, rows, _ = client.get_range(t, "FORWARD", [("pk", INF_MIN)], [("pk", INF_MAX)], max_version=5)
    assert [r.primary_key for r in rows] == [[("pk", 1)]]
