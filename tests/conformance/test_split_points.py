"""ComputeSplitPointsBySize, sent through the SDK's own signing and response verification
(fact sheet §5.6 and §7: the SDK 6.4.8 has the messages but no method, so the action is appended to
OTSProtocol.api_list and an encoder/decoder pair is registered; see ots_support)."""

import pytest
from tablestore import INF_MAX, INF_MIN, Row
import tablestore.protobuf.table_store_pb2 as pb2

import ots_support as sup

ROWS = 3000
SCHEMA = [("shard", "STRING"), ("id", "INTEGER")]


@pytest.fixture(scope="module")
def splittable(endpoint):
    """~3000 rows of ~250 bytes each (about 750 KB of data)."""
    client = sup.make_client(endpoint)
    factory = sup.TableFactory(client)
    t = factory.create(SCHEMA)
    rows = [Row([("shard", f"s{k % 7}"), ("id", k)], [("payload", f"{k:08d}" + "p" * 240)])
            for k in range(ROWS)]
    sup.batch_put(client, t, rows, batch=200)
    yield t
    factory.drop_all()


def _bound(point, fill):
    """A split point may list only a prefix of the PK; the missing columns mean INF_MIN."""
    names = [n for n, _ in SCHEMA]
    given = dict(point)
    assert [n for n, _ in point] == names[:len(point)], f"split point {point} is not a PK prefix"
    return [(n, given[n] if n in given else fill) for n in names]


def _key(point):
    # Compare prefixes: a shorter prefix sorts before any extension of it (trailing INF_MIN).
    return tuple(v for _, v in point)


def test_small_split_unit_yields_several_increasing_points_covering_every_row(client, splittable):
    schema, points, locations, consumed = sup.compute_split_points(
        client, splittable, split_size=1, split_size_unit_in_byte=64 * 1024)

    assert schema == [("shard", pb2.STRING, None), ("id", pb2.INTEGER, None)]
    assert len(points) >= 3, f"expected several split points for ~750 KB in 64 KiB splits, got {points}"
    assert all(1 <= len(p) <= len(SCHEMA) for p in points)
    assert [_key(p) for p in points] == sorted(_key(p) for p in points)
    assert len({_key(p) for p in points}) == len(points), "split points must be strictly increasing"

    # locations are run-length encoded and may cover at most N+1 splits.
    assert locations, "at least one location is required"
    assert all(repeat >= 1 for _, repeat in locations)
    assert sum(repeat for _, repeat in locations) <= len(points) + 1
    assert consumed[0] >= 0 and consumed[1] >= 0

    # The points cut [INF_MIN, INF_MAX) into N+1 ranges; together they hold every row exactly once.
    starts = [[(n, INF_MIN) for n, _ in SCHEMA]] + [_bound(p, INF_MIN) for p in points]
    ends = [_bound(p, INF_MIN) for p in points] + [[(n, INF_MAX) for n, _ in SCHEMA]]
    seen = []
    sizes = []
    for start, end in zip(starts, ends):
        rows, _ = sup.scan_all(client, splittable, start, end)
        sizes.append(len(rows))
        seen.extend(sup.pk_tuple(r) for r in rows)
    assert len(seen) == ROWS
    assert sorted(seen) == sorted((f"s{k % 7}", k) for k in range(ROWS))
    assert seen == sorted(seen), "ranges in split order must follow PK order"
    # By size: no split holds the bulk of the table.
    assert max(sizes) < ROWS // 2, f"split sizes {sizes}"


def test_default_unit_on_a_small_table_gives_no_split_point(client, splittable):
    # The default unit is 100 MiB (fact sheet §5.6), far above this table's size.
    schema, points, locations, _ = sup.compute_split_points(client, splittable, split_size=1)
    assert points == []
    assert [n for n, _, _ in schema] == ["shard", "id"]
    assert sum(repeat for _, repeat in locations) <= 1


def test_larger_units_give_fewer_points(client, splittable):
    _, small, _, _ = sup.compute_split_points(client, splittable, split_size=1,
                                              split_size_unit_in_byte=32 * 1024)
    _, large, _, _ = sup.compute_split_points(client, splittable, split_size=4,
                                              split_size_unit_in_byte=32 * 1024)
    assert len(small) > len(large) >= 1


def test_split_points_of_a_missing_table(client):
    with sup.raises_ots(404, "OTSObjectNotExist", "Requested table does not exist."):
        sup.compute_split_points(client, sup.unique_name("missing"), split_size=1)


def test_empty_table_has_no_split_point(client, tables):
    t = tables.create(SCHEMA)
    schema, points, locations, _ = sup.compute_split_points(client, t, split_size=1,
                                                            split_size_unit_in_byte=1024)
    assert points == []
    assert [n for n, _, _ in schema] == ["shard", "id"]
    assert sum(repeat for _, repeat in locations) <= 1
