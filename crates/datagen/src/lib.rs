//! The standard benchmark/demo table, generated deterministically from a seed and loaded through
//! our own BatchWriteRow path.
//!
//! Table: PK (`user_id` STRING ~16 bytes, `seq` INTEGER); attribute columns of every type —
//! `name` (short string), `bio` (long string), `age`, `balance` (integers), `score`, `ratio`
//! (doubles), `active`, `verified` (booleans), `digest` (64-byte binary), `city` (string); a sparse
//! column `coupon` in ~10% of rows; `level` is INTEGER but STRING in ~5% of rows (a type conflict);
//! ~10% of rows carry 2–3 versions of `status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ots_wire::pb;
use ots_wire::plainbuffer::encode_put_row;
use ots_wire::types::{Cell, PkColumn, PkValue, Row, Value};
use ots_wire::{Idempotency, OtsClient, OtsError};

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct DatasetSpec {
    pub rows: u64,
    pub seed: u64,
    /// Timestamp (ms) of the newest cells; older versions go back from here. Must be within the
    /// table's version deviation of the time of loading.
    pub base_ts_ms: i64,
}

impl DatasetSpec {
    pub fn new(rows: u64, seed: u64) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        DatasetSpec {
            rows,
            seed,
            // A minute ago, rounded: well inside the default one-day deviation window.
            base_ts_ms: (now - 60_000) / 1000 * 1000,
        }
    }
}

/// splitmix64: tiny, fast, good enough for test data, and stable forever.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const CITIES: [&str; 8] = [
    "Hangzhou", "Shanghai", "Beijing", "Shenzhen", "Chengdu", "Wuhan", "Xi'an", "Zürich",
];

/// Row `i` of the dataset (0-based). Rows are generated in primary-key order.
pub fn row(spec: &DatasetSpec, i: u64) -> Row {
    let r = |k: u64| mix(spec.seed ^ mix(i.wrapping_mul(31).wrapping_add(k)));
    let users = (spec.rows / 8).max(1);
    // user_id ordered with i so rows come out in PK order: 8 sequence numbers per user.
    let user = i * users / spec.rows.max(1);
    let ts = spec.base_ts_ms - (r(1) % 3_600_000) as i64;
    let mut cells = vec![
        Cell::new("active", Value::Boolean(r(2) % 2 == 0), Some(ts)),
        Cell::new("age", Value::Integer((r(3) % 90) as i64 + 10), Some(ts)),
        Cell::new(
            "balance",
            Value::Integer((r(4) % 10_000_000) as i64 - 1_000_000),
            Some(ts),
        ),
        Cell::new(
            "bio",
            Value::String(
                format!(
                    "User {user} likes {} and {}; joined in {}. ",
                    CITIES[(r(5) % 8) as usize],
                    CITIES[(r(6) % 8) as usize],
                    2000 + r(7) % 26
                )
                .repeat(1 + (r(8) % 3) as usize),
            ),
            Some(ts),
        ),
        Cell::new(
            "city",
            Value::String(CITIES[(r(9) % 8) as usize].into()),
            Some(ts),
        ),
    ];
    if r(10) % 10 == 0 {
        cells.push(Cell::new(
            "coupon",
            Value::String(format!("C{:06}", r(11) % 1_000_000)),
            Some(ts),
        ));
    }
    let digest: Vec<u8> = (0..64).map(|k| (r(100 + k) & 0xff) as u8).collect();
    cells.push(Cell::new("digest", Value::Binary(digest), Some(ts)));
    let level = if r(12) % 20 == 0 {
        Value::String(format!("L{}", r(13) % 10))
    } else {
        Value::Integer((r(13) % 10) as i64)
    };
    cells.push(Cell::new("level", level, Some(ts)));
    cells.push(Cell::new(
        "name",
        Value::String(format!("name-{:x}", r(14) % 0xffff_ffff)),
        Some(ts),
    ));
    cells.push(Cell::new(
        "ratio",
        Value::Double((r(15) % 10_000) as f64 / 10_000.0),
        Some(ts),
    ));
    cells.push(Cell::new(
        "score",
        Value::Double((r(16) % 1_000_000) as f64 / 100.0),
        Some(ts),
    ));
    let versions = if r(17) % 10 == 0 { 2 + r(18) % 2 } else { 1 };
    for v in 0..versions {
        cells.push(Cell::new(
            "status",
            Value::Integer((r(19 + v) % 5) as i64),
            Some(ts - v as i64 * 1000),
        ));
    }
    cells.push(Cell::new(
        "verified",
        Value::Boolean(r(22) % 3 == 0),
        Some(ts),
    ));
    Row {
        primary_key: vec![
            PkColumn::new("user_id", PkValue::String(format!("user-{user:011}"))),
            PkColumn::new("seq", PkValue::Integer(i as i64)),
        ],
        cells,
    }
}

/// Largest value of a [`blob_row`] cell (the service allows 2 MB per value).
const BLOB_CELL_BYTES: usize = 1 << 20;

/// Row `i` of a table of `row_bytes`-byte rows, all under one partition key (`user_id` = "doc"):
/// the wide-row tables of the memory benchmarks. Values are incompressible bytes, in cells
/// `part0`, `part1`, … of at most 1 MiB each.
pub fn blob_row(spec: &DatasetSpec, i: u64, row_bytes: usize) -> Row {
    let mut cells = Vec::new();
    let mut left = row_bytes.max(1);
    let mut part = 0u64;
    while left > 0 {
        let len = left.min(BLOB_CELL_BYTES);
        let seed = mix(spec.seed ^ mix(i.wrapping_mul(1 << 20).wrapping_add(part)));
        let mut value = Vec::with_capacity(len + 8);
        let mut k = 0u64;
        while value.len() < len {
            value.extend_from_slice(&mix(seed.wrapping_add(k)).to_le_bytes());
            k += 1;
        }
        value.truncate(len);
        cells.push(Cell::new(
            format!("part{part}"),
            Value::Binary(value),
            Some(spec.base_ts_ms),
        ));
        left -= len;
        part += 1;
    }
    Row {
        primary_key: vec![
            PkColumn::new("user_id", PkValue::String("doc".into())),
            PkColumn::new("seq", PkValue::Integer(i as i64)),
        ],
        cells,
    }
}

/// Bytes of a row as the service counts them for the 4 MB request limits.
fn row_data_size(row: &Row) -> usize {
    let key: usize = row
        .primary_key
        .iter()
        .map(|c| {
            c.name.len()
                + match &c.value {
                    PkValue::String(s) => s.len(),
                    PkValue::Binary(b) => b.len(),
                    _ => 8,
                }
        })
        .sum();
    let cells: usize = row
        .cells
        .iter()
        .map(|c| {
            c.name.len()
                + match &c.value {
                    Value::String(s) => s.len(),
                    Value::Binary(b) => b.len(),
                    Value::Boolean(_) => 1,
                    _ => 8,
                }
        })
        .sum();
    key + cells
}

/// CreateTable for the standard table: 3 versions kept, no TTL, one-day deviation.
pub fn create_table_request(table: &str) -> pb::CreateTableRequest {
    let pk = |name: &str, t: pb::PrimaryKeyType| pb::PrimaryKeySchema {
        name: name.into(),
        r#type: t as i32,
        option: None,
    };
    pb::CreateTableRequest {
        table_meta: pb::TableMeta {
            table_name: table.into(),
            primary_key: vec![
                pk("user_id", pb::PrimaryKeyType::String),
                pk("seq", pb::PrimaryKeyType::Integer),
            ],
            ..Default::default()
        },
        reserved_throughput: pb::ReservedThroughput {
            capacity_unit: pb::CapacityUnit {
                read: Some(0),
                write: Some(0),
            },
        },
        table_options: Some(pb::TableOptions {
            time_to_live: Some(-1),
            max_versions: Some(3),
            deviation_cell_version_in_sec: Some(86_400),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Ots(#[from] OtsError),
    #[error("{failed} rows failed to load, first: {code}: {message}")]
    Rows {
        failed: u64,
        code: String,
        message: String,
    },
}

/// Writes `rows` into `table` in BatchWriteRow batches of at most 200 rows and about 3 MB,
/// `concurrency` in flight. The puts carry explicit timestamps, so they are idempotent and safe
/// to retry.
pub async fn load_rows(
    client: &OtsClient,
    table: &str,
    rows: impl Iterator<Item = Row>,
    concurrency: usize,
    loaded: Arc<AtomicU64>,
) -> Result<(), LoadError> {
    let concurrency = concurrency.max(1);
    let mut set = tokio::task::JoinSet::new();
    let mut batch = Vec::with_capacity(200);
    let mut rows = rows.peekable();
    let mut batch_bytes = 0usize;
    while let Some(r) = rows.next() {
        batch_bytes += row_data_size(&r);
        batch.push(r);
        let next_fits = rows
            .peek()
            .is_some_and(|n| batch_bytes + row_data_size(n) <= BATCH_BYTES);
        if batch.len() < 200 && next_fits {
            continue;
        }
        batch_bytes = 0;
        // At most `concurrency` batches in flight; rows are generated only as fast as they load.
        if set.len() >= concurrency
            && let Some(done) = set.join_next().await
        {
            done.map_err(join_error)??;
        }
        spawn_batch(
            &mut set,
            client.clone(),
            table,
            std::mem::take(&mut batch),
            loaded.clone(),
        );
    }
    while let Some(done) = set.join_next().await {
        done.map_err(join_error)??;
    }
    Ok(())
}

/// Data per BatchWriteRow request: under the service's 4 MB, with room for the encoding.
const BATCH_BYTES: usize = 3 << 20;

fn join_error(e: tokio::task::JoinError) -> LoadError {
    LoadError::Rows {
        failed: 0,
        code: "task".into(),
        message: e.to_string(),
    }
}

fn spawn_batch(
    set: &mut tokio::task::JoinSet<Result<(), LoadError>>,
    client: OtsClient,
    table: &str,
    rows: Vec<Row>,
    loaded: Arc<AtomicU64>,
) {
    let table = table.to_string();
    set.spawn(async move {
        let n = rows.len() as u64;
        let req = put_batch_request(&table, &rows);
        let outcome = client
            .batch_write_row_retrying(&req, Idempotency::Idempotent)
            .await?;
        let failures: Vec<_> = outcome.failures().collect();
        if let Some((_, _, code, message)) = failures.first() {
            return Err(LoadError::Rows {
                failed: failures.len() as u64,
                code: code.to_string(),
                message: message.to_string(),
            });
        }
        loaded.fetch_add(n, Ordering::Relaxed);
        Ok(())
    });
}

/// A BatchWriteRow request putting `rows` into `table` (IGNORE condition).
pub fn put_batch_request(table: &str, rows: &[Row]) -> pb::BatchWriteRowRequest {
    pb::BatchWriteRowRequest {
        tables: vec![pb::TableInBatchWriteRowRequest {
            table_name: table.to_string(),
            rows: rows
                .iter()
                .map(|r| pb::RowInBatchWriteRowRequest {
                    r#type: pb::OperationType::Put as i32,
                    row_change: Bytes::from(encode_put_row(r)),
                    condition: pb::Condition {
                        row_existence: pb::RowExistenceExpectation::Ignore as i32,
                        column_condition: None,
                    },
                    return_content: None,
                })
                .collect(),
        }],
        ..Default::default()
    }
}

/// Creates a table of the standard key and loads `spec.rows` [`blob_row`]s of `row_bytes` bytes.
pub async fn create_and_load_blobs(
    client: &OtsClient,
    table: &str,
    spec: &DatasetSpec,
    row_bytes: usize,
    concurrency: usize,
    loaded: Arc<AtomicU64>,
) -> Result<(), LoadError> {
    client.create_table(&create_table_request(table)).await?;
    let spec = *spec;
    load_rows(
        client,
        table,
        (0..spec.rows).map(move |i| blob_row(&spec, i, row_bytes)),
        concurrency,
        loaded,
    )
    .await
}

/// Creates the standard table and loads `spec.rows` rows into it.
pub async fn create_and_load(
    client: &OtsClient,
    table: &str,
    spec: &DatasetSpec,
    concurrency: usize,
    loaded: Arc<AtomicU64>,
) -> Result<(), LoadError> {
    client.create_table(&create_table_request(table)).await?;
    let spec = *spec;
    load_rows(
        client,
        table,
        (0..spec.rows).map(move |i| row(&spec, i)),
        concurrency,
        loaded,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_deterministic_ordered_and_varied() {
        let spec = DatasetSpec {
            rows: 2000,
            seed: 7,
            base_ts_ms: 1_700_000_000_000,
        };
        assert_eq!(row(&spec, 5), row(&spec, 5));
        let rows: Vec<Row> = (0..spec.rows).map(|i| row(&spec, i)).collect();
        for w in rows.windows(2) {
            let a = &w[0].primary_key;
            let b = &w[1].primary_key;
            assert!(
                ots_wire::types::cmp_primary_keys(
                    a.iter().map(|c| c.value.as_ref()),
                    b.iter().map(|c| c.value.as_ref())
                ) == std::cmp::Ordering::Less
            );
        }
        let has = |f: &dyn Fn(&Row) -> bool| rows.iter().filter(|r| f(r)).count();
        let sparse = has(&|r| r.cells.iter().any(|c| c.name == "coupon"));
        let conflict = has(&|r| {
            r.cells
                .iter()
                .any(|c| c.name == "level" && matches!(c.value, Value::String(_)))
        });
        let versions = has(&|r| r.cells.iter().filter(|c| c.name == "status").count() > 1);
        assert!((100..300).contains(&sparse), "{sparse}");
        assert!((50..200).contains(&conflict), "{conflict}");
        assert!((100..300).contains(&versions), "{versions}");
    }
}
