"""Secondary indexes (stream fact sheet §6): CreateTable with `index_metas`, DescribeTable,
CreateIndex, DropIndex, and index tables that cannot be written."""

import tablestore.protobuf.table_store_pb2 as pb2
from tablestore import (
    CapacityUnit, Condition, ReservedThroughput, Row, RowExistenceExpectation, SecondaryIndexMeta,
    SecondaryIndexType, TableMeta, TableOptions,
)

import ots_support as sup

BAD = dict(status=400, code="OTSParameterInvalid")
DEFINED = [("city", "STRING"), ("age", "INTEGER"), ("score", "DOUBLE")]
PK = [("pk1", "STRING"), ("pk2", "INTEGER")]


def index_fields(i):
    return (i.index_name, i.primary_key_names, i.defined_column_names, i.index_type)


def create_with_indexes(client, tables, indexes, max_version=1):
    name = sup.unique_name()
    client.create_table(TableMeta(name, PK, DEFINED), TableOptions(max_version=max_version),
                        ReservedThroughput(CapacityUnit(0, 0)), secondary_indexes=indexes)
    tables.adopt(name)
    return name


def test_create_table_with_indexes_describes_them(client, tables):
    g = SecondaryIndexMeta(sup.unique_name("g"), ["city", "pk1", "pk2"], ["age"])
    loc = SecondaryIndexMeta(sup.unique_name("l"), ["pk1", "age"], ["city", "score"],
                             index_type=SecondaryIndexType.LOCAL_INDEX)
    name = create_with_indexes(client, tables, [g, loc])

    d = client.describe_table(name)
    assert d.table_meta.defined_columns == DEFINED
    assert [index_fields(i) for i in d.secondary_indexes] == [index_fields(g), index_fields(loc)]
    # The SDK's decoder drops index_update_mode; the message has it, as CreateTable sent it (the
    # SDK hard-wires GLOBAL→async, LOCAL→sync).
    raw = sup.raw_response(client, "DescribeTable", pb2.DescribeTableResponse, name)
    assert [(m.name, m.index_type, m.index_update_mode) for m in raw.index_metas] == [
        (g.index_name, pb2.IT_GLOBAL_INDEX, pb2.IUM_ASYNC_INDEX),
        (loc.index_name, pb2.IT_LOCAL_INDEX, pb2.IUM_SYNC_INDEX),
    ]
    # Index tables are not listed as tables.
    listed = client.list_table()
    assert name in listed
    assert g.index_name not in listed and loc.index_name not in listed


def test_create_and_delete_secondary_index(client, tables):
    name = create_with_indexes(client, tables, None)
    assert client.describe_table(name).secondary_indexes == []
    a = SecondaryIndexMeta(sup.unique_name("a"), ["city"], [])
    b = SecondaryIndexMeta(sup.unique_name("b"), ["pk1", "score"], ["age"],
                           index_type=SecondaryIndexType.LOCAL_INDEX)
    client.create_secondary_index(name, a, True)
    client.create_secondary_index(name, b, False)
    assert [index_fields(i) for i in client.describe_table(name).secondary_indexes] == [
        index_fields(a), index_fields(b)]

    client.delete_secondary_index(name, a.index_name)
    assert [index_fields(i) for i in client.describe_table(name).secondary_indexes] == [
        index_fields(b)]
    with sup.raises_ots(**BAD, message=f"Index '{a.index_name}' does not exist on table '{name}'."):
        client.delete_secondary_index(name, a.index_name)


def test_index_tables_cannot_be_written(client, tables):
    idx = SecondaryIndexMeta(sup.unique_name("i"), ["city"], [])
    name = create_with_indexes(client, tables, [idx])
    client.put_row(name, Row([("pk1", "a"), ("pk2", 1)], [("city", "x")]))
    with sup.raises_ots(**BAD, message="Can't write index table directly."):
        client.put_row(idx.index_name, Row([("city", "x"), ("pk1", "a"), ("pk2", 1)], []),
                       Condition(RowExistenceExpectation.IGNORE))


def test_invalid_indexes_are_refused(client, tables, table_name):
    cases = [
        ([SecondaryIndexMeta("i_nope", ["nope"], [])], 1,
         f"The primary key column 'nope' of index 'i_nope' is neither a primary key column nor a "
         f"defined column of table '{table_name}'."),
        ([SecondaryIndexMeta("i_pk", ["city"], ["pk2"])], 1,
         f"The defined column 'pk2' of index 'i_pk' is not a defined column of table '{table_name}'."),
        ([SecondaryIndexMeta(f"i{k}", ["city"], []) for k in range(6)], 1,
         f"The number of indexes of table '{table_name}' exceeds the limit: 5."),
        ([SecondaryIndexMeta("i_dup", ["city"], []), SecondaryIndexMeta("i_dup", ["age"], [])], 1,
         "Duplicated index name: 'i_dup'."),
        ([SecondaryIndexMeta("i_mv", ["city"], [])], 2,
         f"A table with indexes must keep one version: table '{table_name}' has max_versions 2."),
    ]
    for indexes, max_version, message in cases:
        with sup.raises_ots(**BAD, message=message):
            client.create_table(TableMeta(table_name, PK, DEFINED),
                                TableOptions(max_version=max_version),
                                ReservedThroughput(CapacityUnit(0, 0)), secondary_indexes=indexes)
    assert table_name not in client.list_table()
