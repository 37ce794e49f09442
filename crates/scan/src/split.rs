//! Splits: owned, serialisable primary-key ranges that partition a table, planned with
//! ComputeSplitPointsBySize. A plan can be written down and run by several workers.

use ots_wire::pb;
use ots_wire::plainbuffer::decode_primary_key;
use ots_wire::types::{PkColumn, PkType, PkValue, cmp_pk_columns};
use ots_wire::{OtsClient, OtsError};
use serde::{Deserialize, Serialize};

pub use ots_format::{KeyPart, KeyValue, Split};

/// The table's primary key as ComputeSplitPointsBySize reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PkSchemaEntry {
    pub name: String,
    #[serde(rename = "type")]
    pub pk_type: String,
    #[serde(default)]
    pub auto_increment: bool,
}

impl PkSchemaEntry {
    pub fn pk_type(&self) -> Option<PkType> {
        match self.pk_type.as_str() {
            "INTEGER" => Some(PkType::Integer),
            "STRING" => Some(PkType::String),
            "BINARY" => Some(PkType::Binary),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitPlan {
    pub table: String,
    pub primary_key: Vec<PkSchemaEntry>,
    pub splits: Vec<Split>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Ots(#[from] OtsError),
    #[error("split plan: {0}")]
    Plan(String),
    #[error("split plan: {0}")]
    Key(#[from] ots_format::KeyError),
    #[error("GetRange on split {split}: {detail}")]
    Page { split: u32, detail: String },
    /// A GetRange response that breaks the range-scan contract (rows out of order or outside the
    /// split, a next start key that does not advance, a page that does not decode).
    #[error("GetRange on split {split} broke the protocol: {detail}")]
    Protocol { split: u32, detail: String },
    /// The task fetching a split's pages ahead stopped (panicked, was cancelled, or already failed)
    /// before the scanner reported the end of the split.
    #[error("split {split}: the page fetcher stopped before the end of the split: {detail}")]
    FetcherDied { split: u32, detail: String },
}

/// How big splits should be. `unit_bytes` is ComputeSplitPointsBySize's `split_size_unit_in_byte`
/// (the service default is 100 MiB); tests ask for small units to get many splits on small tables.
#[derive(Clone, Copy, Debug)]
pub struct SplitSize {
    pub units: i64,
    pub unit_bytes: i64,
}

impl Default for SplitSize {
    /// 128 MiB splits: enough of them to keep several scanners busy on a table of a few GB.
    fn default() -> Self {
        SplitSize {
            units: 128,
            unit_bytes: 1024 * 1024,
        }
    }
}

pub fn pk_type_name(t: i32) -> String {
    match pb::PrimaryKeyType::try_from(t) {
        Ok(pb::PrimaryKeyType::Integer) => "INTEGER".into(),
        Ok(pb::PrimaryKeyType::String) => "STRING".into(),
        Ok(pb::PrimaryKeyType::Binary) => "BINARY".into(),
        _ => format!("UNKNOWN({t})"),
    }
}

/// Plans splits of `table`. The points cut [all INF_MIN, all INF_MAX) into N+1 ranges; a point
/// that lists only a prefix of the key means INF_MIN for the remaining columns.
pub async fn plan_splits(
    client: &OtsClient,
    table: &str,
    size: SplitSize,
) -> Result<SplitPlan, ScanError> {
    let req = pb::ComputeSplitPointsBySizeRequest {
        table_name: table.to_string(),
        split_size: size.units,
        split_size_unit_in_byte: Some(size.unit_bytes),
        split_point_limit: None,
    };
    let resp = client.compute_split_points_by_size(&req).await?;
    if resp.schema.is_empty() {
        return Err(ScanError::Plan(
            "ComputeSplitPointsBySize returned no primary-key schema".into(),
        ));
    }
    let primary_key: Vec<PkSchemaEntry> = resp
        .schema
        .iter()
        .map(|s| PkSchemaEntry {
            name: s.name.clone(),
            pk_type: pk_type_name(s.r#type),
            auto_increment: s.option == Some(pb::PrimaryKeyOption::AutoIncrement as i32),
        })
        .collect();
    let bound = |v: PkValue| -> Vec<PkColumn> {
        primary_key
            .iter()
            .map(|c| PkColumn::new(&c.name, v.clone()))
            .collect()
    };
    let mut points: Vec<Vec<PkColumn>> = Vec::with_capacity(resp.split_points.len());
    for (i, raw) in resp.split_points.iter().enumerate() {
        let cols = decode_primary_key(raw)
            .map_err(|e| ScanError::Plan(format!("split point {i}: {e}")))?
            .ok_or_else(|| ScanError::Plan(format!("split point {i} is empty")))?;
        if cols.is_empty() || cols.len() > primary_key.len() {
            return Err(ScanError::Plan(format!(
                "split point {i} has {} columns, the key has {}",
                cols.len(),
                primary_key.len()
            )));
        }
        let mut full = cols;
        for (j, c) in primary_key.iter().enumerate() {
            match full.get(j) {
                Some(p) if p.name != c.name => {
                    return Err(ScanError::Plan(format!(
                        "split point {i} names column '{}' where the key has '{}'",
                        p.name, c.name
                    )));
                }
                Some(_) => {}
                None => full.push(PkColumn::new(&c.name, PkValue::InfMin)),
            }
        }
        if let Some(prev) = points.last()
            && cmp_pk_columns(prev, &full) != std::cmp::Ordering::Less
        {
            return Err(ScanError::Plan(format!(
                "split points are not strictly increasing at point {i}"
            )));
        }
        points.push(full);
    }
    let mut bounds = Vec::with_capacity(points.len() + 2);
    bounds.push(bound(PkValue::InfMin));
    bounds.extend(points);
    bounds.push(bound(PkValue::InfMax));
    let splits = bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| Split {
            id: i as u32,
            start: w[0].iter().map(KeyPart::from_column).collect(),
            end: w[1].iter().map(KeyPart::from_column).collect(),
        })
        .collect();
    Ok(SplitPlan {
        table: table.to_string(),
        primary_key,
        splits,
    })
}

/// [`plan_splits`] for `concurrency` scanners: a table cut into fewer splits than that would
/// leave scanners idle, so it is asked once more with a proportionally smaller split size (a
/// table too small to split stays one split).
pub async fn plan_splits_for(
    client: &OtsClient,
    table: &str,
    size: SplitSize,
    concurrency: usize,
) -> Result<SplitPlan, ScanError> {
    let plan = plan_splits(client, table, size).await?;
    let n = plan.splits.len();
    if n > 1 && n < concurrency && size.units > 1 {
        let finer = SplitSize {
            units: (size.units * n as i64 / concurrency as i64).max(1),
            ..size
        };
        let again = plan_splits(client, table, finer).await?;
        if again.splits.len() > n {
            return Ok(again);
        }
    }
    Ok(plan)
}
