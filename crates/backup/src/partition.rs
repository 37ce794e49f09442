//! Hive-style partition paths for rows: by a column's value, by day or hour of a time column or of
//! the row's latest write, or by a hash bucket of the primary key.

use ots_format::time::civil_from_days;
use ots_format::{Partitioning, TimeGranularity, TimeSource};
use ots_wire::types::{PkValueRef, RowRef, ValueRef};

/// Hive's name for a missing value.
pub const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// `key=value` segments of one row's partition, e.g. `[("dt", "2026-11-24")]`.
pub type PartitionValues = Vec<(String, String)>;

pub fn partition_of(p: &Partitioning, row: &RowRef<'_>) -> PartitionValues {
    match p {
        Partitioning::None => Vec::new(),
        Partitioning::Column { column } => {
            vec![(
                column.clone(),
                column_text(row, column).unwrap_or_else(|| DEFAULT_PARTITION.into()),
            )]
        }
        Partitioning::Time {
            source,
            granularity,
        } => {
            let ms = match source {
                TimeSource::EpochSeconds { column } => {
                    column_integer(row, column).and_then(|s| s.checked_mul(1000))
                }
                TimeSource::EpochMillis { column } => column_integer(row, column),
                TimeSource::IsoString { column } => {
                    let text = match pk(row, column) {
                        Some(PkValueRef::String(s)) => Some(ValueRef::String(s)),
                        Some(_) => None,
                        None => latest(row, column),
                    };
                    return iso_partition(text, *granularity);
                }
                TimeSource::LatestWrite => row.cells.iter().filter_map(|c| c.timestamp).max(),
            };
            match ms {
                Some(ms) => time_partition(ms, *granularity),
                None => default_time_partition(*granularity),
            }
        }
        Partitioning::HashBucket { buckets } => {
            vec![(
                "bucket".to_string(),
                (pk_hash(row) % u64::from((*buckets).max(1))).to_string(),
            )]
        }
    }
}

/// The folder of a partition: `k1=v1/k2=v2` with values escaped for object paths.
pub fn partition_path(values: &PartitionValues) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={}", escape(v)))
        .collect::<Vec<_>>()
        .join("/")
}

/// Percent-escapes everything but `[A-Za-z0-9._-]` (and keeps the result path-safe).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() || out == "." || out == ".." {
        return DEFAULT_PARTITION.to_string();
    }
    out
}

fn latest<'a>(row: &'a RowRef<'a>, column: &str) -> Option<ValueRef<'a>> {
    row.cells
        .iter()
        .find(|c| c.name == column)
        .and_then(|c| c.value)
}

fn pk<'a>(row: &'a RowRef<'a>, column: &str) -> Option<PkValueRef<'a>> {
    row.primary_key
        .iter()
        .find(|c| c.name == column)
        .map(|c| c.value)
}

fn column_text(row: &RowRef<'_>, column: &str) -> Option<String> {
    if let Some(v) = pk(row, column) {
        return match v {
            PkValueRef::Integer(i) => Some(i.to_string()),
            PkValueRef::String(s) => Some(s.to_string()),
            PkValueRef::Binary(b) => Some(hex::encode(b)),
            _ => None,
        };
    }
    match latest(row, column)? {
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Double(d) => Some(d.to_string()),
        ValueRef::Boolean(b) => Some(b.to_string()),
        ValueRef::String(s) => Some(s.to_string()),
        ValueRef::Binary(b) => Some(hex::encode(b)),
    }
}

fn column_integer(row: &RowRef<'_>, column: &str) -> Option<i64> {
    match pk(row, column) {
        Some(PkValueRef::Integer(i)) => return Some(i),
        Some(_) => return None,
        None => {}
    }
    match latest(row, column)? {
        ValueRef::Integer(i) => Some(i),
        _ => None,
    }
}

fn time_partition(ms: i64, g: TimeGranularity) -> PartitionValues {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let mut v = vec![("dt".to_string(), format!("{y:04}-{m:02}-{d:02}"))];
    if g == TimeGranularity::Hour {
        v.push((
            "hour".to_string(),
            format!("{:02}", secs.rem_euclid(86_400) / 3600),
        ));
    }
    v
}

fn default_time_partition(g: TimeGranularity) -> PartitionValues {
    let mut v = vec![("dt".to_string(), DEFAULT_PARTITION.to_string())];
    if g == TimeGranularity::Hour {
        v.push(("hour".to_string(), DEFAULT_PARTITION.to_string()));
    }
    v
}

/// `YYYY-MM-DD…` (and `THH` / ` HH` for hours) taken from the text; anything else is the default.
fn iso_partition(v: Option<ValueRef<'_>>, g: TimeGranularity) -> PartitionValues {
    let Some(ValueRef::String(s)) = v else {
        return default_time_partition(g);
    };
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let date_ok = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10);
    if !date_ok {
        return default_time_partition(g);
    }
    let mut out = vec![("dt".to_string(), s[..10].to_string())];
    if g == TimeGranularity::Hour {
        let hour_ok = matches!(b.get(10), Some(b'T' | b' ')) && digits(11..13);
        out.push((
            "hour".to_string(),
            if hour_ok {
                s[11..13].to_string()
            } else {
                DEFAULT_PARTITION.to_string()
            },
        ));
    }
    out
}

/// FNV-1a over a canonical encoding of the primary key: stable across runs and versions.
fn pk_hash(row: &RowRef<'_>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for c in &row.primary_key {
        match c.value {
            PkValueRef::Integer(i) => {
                feed(&[0]);
                feed(&i.to_le_bytes());
            }
            PkValueRef::String(s) => {
                feed(&[1]);
                feed(&(s.len() as u32).to_le_bytes());
                feed(s.as_bytes());
            }
            PkValueRef::Binary(b) => {
                feed(&[2]);
                feed(&(b.len() as u32).to_le_bytes());
                feed(b);
            }
            _ => feed(&[3]),
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_wire::types::{CellRef, PkCellRef};

    fn row<'a>(cells: Vec<CellRef<'a>>) -> RowRef<'a> {
        RowRef {
            primary_key: vec![PkCellRef {
                name: "id",
                value: PkValueRef::String("a/b"),
            }],
            cells,
            delete_marker: false,
            sequence: None,
        }
    }

    fn cell(name: &str, v: ValueRef<'static>, ts: i64) -> CellRef<'static> {
        CellRef {
            name: Box::leak(name.to_string().into_boxed_str()),
            value: Some(v),
            op: None,
            timestamp: Some(ts),
        }
    }

    #[test]
    fn column_values_are_escaped() {
        let p = Partitioning::Column {
            column: "id".into(),
        };
        assert_eq!(partition_path(&partition_of(&p, &row(vec![]))), "id=a%2Fb");
        let p = Partitioning::Column {
            column: "city".into(),
        };
        let r = row(vec![cell("city", ValueRef::String("Hang zhou"), 1)]);
        assert_eq!(partition_path(&partition_of(&p, &r)), "city=Hang%20zhou");
        assert_eq!(
            partition_path(&partition_of(&p, &row(vec![]))),
            format!("city={DEFAULT_PARTITION}")
        );
    }

    #[test]
    fn time_partitions() {
        let day = |source| Partitioning::Time {
            source,
            granularity: TimeGranularity::Hour,
        };
        let r = row(vec![
            cell("created", ValueRef::Integer(1_764_081_012), 5),
            cell(
                "iso",
                ValueRef::String("2026-11-24T07:15:00Z"),
                1_764_081_012_345,
            ),
        ]);
        let secs = day(TimeSource::EpochSeconds {
            column: "created".into(),
        });
        assert_eq!(
            partition_path(&partition_of(&secs, &r)),
            "dt=2025-11-25/hour=14"
        );
        let iso = day(TimeSource::IsoString {
            column: "iso".into(),
        });
        assert_eq!(
            partition_path(&partition_of(&iso, &r)),
            "dt=2026-11-24/hour=07"
        );
        let latest = day(TimeSource::LatestWrite);
        assert_eq!(
            partition_path(&partition_of(&latest, &r)),
            "dt=2025-11-25/hour=14"
        );
    }

    #[test]
    fn hash_buckets_are_stable_and_bounded() {
        let p = Partitioning::HashBucket { buckets: 8 };
        let r = row(vec![]);
        let a = partition_of(&p, &r);
        assert_eq!(a, partition_of(&p, &r));
        let n: u32 = a[0].1.parse().unwrap();
        assert!(n < 8);
    }
}
