"""Table operations: CreateTable, DescribeTable, ListTable, UpdateTable, DeleteTable."""

from tablestore import (
    PK_AUTO_INCR, CapacityUnit, Condition, ReservedThroughput, Row, TableMeta, TableOptions,
)

import ots_support as sup


def test_create_then_describe_returns_schema_and_options(client, tables):
    schema = [("region", "STRING"), ("uid", "INTEGER"), ("blob", "BINARY")]
    name = tables.create(schema, max_version=3, time_to_live=2 * 86400, max_time_deviation=7 * 86400)

    d = client.describe_table(name)
    assert d.table_meta.table_name == name
    assert d.table_meta.schema_of_primary_key == schema
    assert d.table_meta.defined_columns == []
    assert d.table_options.time_to_live == 2 * 86400
    assert d.table_options.max_version == 3
    assert d.table_options.max_time_deviation == 7 * 86400
    cu = d.reserved_throughput_details.capacity_unit
    assert (cu.read, cu.write) == (0, 0)


def test_create_with_defined_columns_describes_them(client, tables):
    defined = [("i", "INTEGER"), ("d", "DOUBLE"), ("b", "BOOLEAN"), ("s", "STRING"), ("bin", "BINARY")]
    name = tables.create([("pk", "STRING")], defined_columns=defined)
    assert client.describe_table(name).table_meta.defined_columns == defined


def test_create_describes_reserved_throughput(client, tables):
    name = sup.unique_name()
    client.create_table(TableMeta(name, [("pk", "INTEGER")]), TableOptions(),
                        ReservedThroughput(CapacityUnit(2, 3)))
    tables.adopt(name)
    cu = client.describe_table(name).reserved_throughput_details.capacity_unit
    assert (cu.read, cu.write) == (2, 3)


def test_auto_increment_option_is_described(client, tables):
    schema = [("part", "STRING"), ("seq", "INTEGER", PK_AUTO_INCR)]
    name = tables.create(schema)
    assert client.describe_table(name).table_meta.schema_of_primary_key == schema


def test_list_table_shows_created_and_hides_deleted(client, tables):
    a = tables.create([("pk", "STRING")])
    b = tables.create([("pk", "INTEGER")])
    listed = client.list_table()
    assert isinstance(listed, tuple)
    assert a in listed and b in listed
    client.delete_table(a)
    listed = client.list_table()
    assert a not in listed and b in listed


def test_update_table_options(client, tables):
    name = tables.create([("pk", "STRING")], max_version=1, time_to_live=-1, max_time_deviation=86400)
    resp = client.update_table(name, TableOptions(time_to_live=3 * 86400, max_version=4,
                                                  max_time_deviation=2 * 86400))
    assert resp.table_options.time_to_live == 3 * 86400
    assert resp.table_options.max_version == 4
    assert resp.table_options.max_time_deviation == 2 * 86400

    d = client.describe_table(name)
    assert (d.table_options.time_to_live, d.table_options.max_version,
            d.table_options.max_time_deviation) == (3 * 86400, 4, 2 * 86400)
    # The PK schema is not touched by UpdateTable.
    assert d.table_meta.schema_of_primary_key == [("pk", "STRING")]


def test_update_table_changes_only_the_given_options(client, tables):
    # UpdateTable's TableOptions fields are optional: an absent field keeps its value.
    name = tables.create([("pk", "STRING")], max_version=2, time_to_live=5 * 86400,
                         max_time_deviation=3 * 86400)
    client.update_table(name, TableOptions(time_to_live=None, max_version=6, max_time_deviation=None))
    o = client.describe_table(name).table_options
    assert (o.time_to_live, o.max_version, o.max_time_deviation) == (5 * 86400, 6, 3 * 86400)


def test_update_table_reserved_throughput(client, tables):
    name = tables.create([("pk", "STRING")])
    resp = client.update_table(name, reserved_throughput=ReservedThroughput(CapacityUnit(5, 6)))
    cu = resp.reserved_throughput_details.capacity_unit
    assert (cu.read, cu.write) == (5, 6)
    cu = client.describe_table(name).reserved_throughput_details.capacity_unit
    assert (cu.read, cu.write) == (5, 6)


def test_delete_table_removes_it_and_its_rows(client, tables):
    name = tables.create([("pk", "STRING")])
    client.put_row(name, Row([("pk", "a")], [("v", 1)]))
    client.delete_table(name)
    assert name not in client.list_table()
    with sup.raises_ots(404, "OTSObjectNotExist", "Requested table does not exist."):
        client.describe_table(name)
    with sup.raises_ots(404, "OTSObjectNotExist", "Requested table does not exist."):
        client.get_row(name, [("pk", "a")], max_version=1)

    # Re-creating the name gives an empty table.
    tables.create([("pk", "STRING")], name=name)
    _, row, _ = client.get_row(name, [("pk", "a")], max_version=1)
    assert row is None


def test_table_names_are_case_sensitive(client, tables):
    base = sup.unique_name("Case")
    upper = tables.create([("pk", "STRING")], name=base)
    lower = tables.create([("pk", "STRING")], name=base.lower())
    client.put_row(upper, Row([("pk", "k")], [("v", "upper")]))
    _, row, _ = client.get_row(lower, [("pk", "k")], max_version=1)
    assert row is None
    _, row, _ = client.get_row(upper, [("pk", "k")], max_version=1)
    assert sup.latest(row) == {"v": "upper"}


def test_create_table_accepts_four_pk_columns(client, tables):
    schema = [("a", "STRING"), ("b", "INTEGER"), ("c", "BINARY"), ("d", "STRING")]
    name = tables.create(schema)
    pk = [("a", "x"), ("b", -1), ("c", bytearray(b"\x00")), ("d", "z")]
    client.put_row(name, Row(pk, [("v", True)]), Condition("EXPECT_NOT_EXIST"))
    _, row, _ = client.get_row(name, pk, max_version=1)
    assert row.primary_key == pk
