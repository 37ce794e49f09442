//! Pre-flight: the target table as the restore would find or create it is checked against the
//! snapshot (primary key, AUTO_INCREMENT, version deviation, TTL, `max_versions`, rows already
//! there, secondary indexes it lacks) by [`check_target`], which only reads; [`create_target`] then
//! creates it when needed, with the snapshot's defined columns and secondary indexes (index tables
//! are never copied: the service builds them from the restored rows).
//! Nothing is created or written unless every check passed.

use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use ots_format::{IndexMetaDoc, SnapshotStats};
use ots_manifest::{Manifest, TableMeta};
use ots_wire::OtsClient;
use ots_wire::pb;
use ots_wire::types::{PkColumn, PkValue};
use serde::Serialize;

use crate::config::{AutoIncrementMode, RestoreConfig, TimestampMode};
use crate::error::RestoreError;
use crate::now_ms;

/// The oldest and newest cell timestamps of each column of the snapshot that is restored (and
/// has cells), by name.
fn column_bounds<'a>(
    m: &'a Manifest,
    columns: &Option<BTreeSet<String>>,
) -> Vec<(&'a str, i64, i64)> {
    m.stats
        .columns
        .iter()
        .filter(|(name, _)| columns.as_ref().is_none_or(|c| c.contains(*name)))
        .filter_map(|(name, s)| Some((name.as_str(), s.min_timestamp?, s.max_timestamp?)))
        .collect()
}

/// `2026-11-25T14:35:36.828Z (1795617336828 ms)`.
fn ms_text(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(u) => format!(
            "{} ({ms} ms)",
            ots_format::time::rfc3339(UNIX_EPOCH + Duration::from_millis(u))
        ),
        Err(_) => format!("{ms} ms"),
    }
}

/// The most versions of one column that one row of the snapshot holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionsNeeded {
    /// The number of versions (a target needs `max_versions` at least this).
    pub versions: u64,
    /// A column that reaches it.
    pub column: String,
    /// `true`: the snapshot's statistics record it (`max_versions_per_row`). `false`: they do not
    /// (written by an older otsarchive), and `versions` is the safe bound they allow: see
    /// [`versions_needed`].
    pub exact: bool,
}

/// The most versions of one column that one row of the snapshot holds, over the restored
/// columns (`None`: no cell at all).
///
/// Statistics that record `max_versions_per_row` give it exactly. Older ones give a bound that
/// never undercounts: a column with `c` cells of which `r` are latest versions (typed values
/// plus type conflicts; 0 for a column that is not typed) spread over at least `r` rows, so one
/// row holds at most `c - max(r, 1) + 1` of them, and never more than the source table's
/// `max_versions`. A typed column without older versions gets exactly 1.
pub fn versions_needed(m: &Manifest, columns: &Option<BTreeSet<String>>) -> Option<VersionsNeeded> {
    let typed: BTreeSet<&str> = m.schema.columns.iter().map(|c| c.name.as_str()).collect();
    versions_needed_by_stats(&m.stats, &typed, m.source.table.max_versions, columns)
}

fn versions_needed_by_stats(
    stats: &SnapshotStats,
    typed: &BTreeSet<&str>,
    source_max_versions: Option<i32>,
    columns: &Option<BTreeSet<String>>,
) -> Option<VersionsNeeded> {
    let source_max = source_max_versions
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0);
    let mut best: Option<VersionsNeeded> = None;
    for (name, s) in &stats.columns {
        if columns.as_ref().is_some_and(|c| !c.contains(name)) {
            continue;
        }
        let cells: u64 = s.cells_by_type.values().sum();
        if cells == 0 {
            continue;
        }
        let (versions, exact) = match s.max_versions_per_row {
            Some(n) => (n, true),
            None => {
                let latest = if typed.contains(name.as_str()) {
                    s.typed_values + s.type_conflicts
                } else {
                    0
                };
                let bound = cells - latest.clamp(1, cells) + 1;
                (source_max.map_or(bound, |mv| bound.min(mv)), false)
            }
        };
        if best.as_ref().is_none_or(|b| versions > b.versions) {
            best = Some(VersionsNeeded {
                versions,
                column: name.clone(),
                exact,
            });
        }
    }
    best
}

/// The CreateTable request that recreates the snapshot's table as `table` (see
/// [`TableMeta::create_table_request`]): AUTO_INCREMENT is declared only when the service is to
/// assign new values.
pub fn create_table_request(
    meta: &TableMeta,
    table: &str,
    auto_increment: AutoIncrementMode,
    deviation_sec: Option<i64>,
) -> pb::CreateTableRequest {
    meta.create_table_request(
        table,
        auto_increment == AutoIncrementMode::Regenerate,
        deviation_sec,
    )
}

/// The target table as the restore finds it, or would create it (what `--dry-run` shows).
#[derive(Clone, Debug, Serialize)]
pub struct TargetPlan {
    pub table: String,
    /// The table exists already.
    pub exists: bool,
    /// The restore creates it (`--create-table`, and it does not exist).
    pub create: bool,
    /// `user_id STRING, seq INTEGER` (AUTO_INCREMENT columns marked).
    pub primary_key: String,
    pub max_versions: Option<i32>,
    pub time_to_live: Option<i32>,
    pub deviation_cell_version_in_sec: Option<i64>,
    pub allow_update: Option<bool>,
    /// The target's defined columns (`name TYPE`): the existing table's, or those it is created with.
    pub defined_columns: Vec<String>,
    /// The target's secondary indexes (`name (key…) + [columns…] TYPE MODE`): the existing
    /// table's, or those it is created with (the snapshot's; index tables are never copied, the
    /// service fills them from the restored rows).
    pub indexes: Vec<String>,
    /// Whether the existing table holds rows: looked at (one GetRange of one row) only when no
    /// `--mode` was given and no checkpoint is resumed; `None` when not looked at.
    pub holds_rows: Option<bool>,
    /// The most versions of one column one restored row holds, which `max_versions` must reach.
    pub versions_needed: Option<VersionsNeeded>,
}

/// What the pre-flight found about the target.
pub(crate) struct Target {
    pub plan: TargetPlan,
    /// The table to create, when it is created.
    pub create: Option<pb::CreateTableRequest>,
    pub auto_increment_note: Option<String>,
    pub warnings: Vec<String>,
}

/// Checks the target (existing, or as `--create-table` would create it) against the snapshot
/// and the options. Only reads: DescribeTable, and a GetRange of one row when the table exists,
/// no `--mode` was given and `resuming` is false (a resume continues into rows it wrote itself).
pub(crate) async fn check_target(
    client: &OtsClient,
    m: &Manifest,
    cfg: &RestoreConfig,
    resuming: bool,
) -> Result<Target, RestoreError> {
    let meta = &m.source.table;
    let has_auto = meta.primary_key.iter().any(|c| c.auto_increment);
    let now = now_ms();
    let bounds = column_bounds(m, &cfg.columns);
    let oldest = bounds.iter().map(|b| b.1).min();
    let mut warnings = Vec::new();
    let existing = match client.describe_table(&cfg.table).await {
        Ok(d) => Some(d),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    // The target's meta and options: the existing table's, or those it would be created with.
    let create = match (&existing, cfg.create_table) {
        (Some(_), true) if cfg.worker.is_some() => None,
        (Some(_), true) => {
            warnings.push(format!(
                "table '{}' already exists: --create-table did nothing; its schema was checked instead",
                cfg.table
            ));
            None
        }
        (Some(_), false) => None,
        (None, true) => {
            // A new table must accept the snapshot's original timestamps: widen its version
            // deviation to cover the oldest cell.
            let deviation = match (cfg.timestamps, oldest) {
                (TimestampMode::Original, Some(lo)) => {
                    let needed = (now - lo) / 1000 + 86_400;
                    Some(needed.max(meta.deviation_cell_version_in_sec.unwrap_or(86_400)))
                }
                _ => None,
            };
            if let Some(d) = deviation
                && Some(d) != meta.deviation_cell_version_in_sec
            {
                let source = meta
                    .deviation_cell_version_in_sec
                    .map_or_else(|| "not recorded".to_string(), |s| s.to_string());
                warnings.push(format!(
                    "the new table's deviation_cell_version_in_sec is {d} (the source's: {source}), so that the \
                     original timestamps are accepted"
                ));
            }
            let mut req = create_table_request(meta, &cfg.table, cfg.auto_increment, deviation);
            if let Some(suffix) = &cfg.index_suffix {
                // Index names share the instance's namespace: beside the source, new names.
                for m in &mut req.index_metas {
                    m.name.push_str(suffix);
                }
            }
            Some(req)
        }
        (None, false) => {
            return Err(RestoreError::Usage(format!(
                "table '{}' does not exist in instance '{}': pass --create-table to create it from the snapshot's table meta",
                cfg.table,
                client.config().instance
            )));
        }
    };
    let (target_meta, options) = match (&existing, &create) {
        (Some(d), _) => (&d.table_meta, d.table_options),
        (None, Some(req)) => (&req.table_meta, req.table_options.unwrap_or_default()),
        (None, None) => unreachable!("a missing table without --create-table was refused"),
    };

    // The primary key must match, name for name and type for type.
    let target_pk: Vec<(String, i32, bool)> = target_meta
        .primary_key
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.r#type,
                c.option == Some(pb::PrimaryKeyOption::AutoIncrement as i32),
            )
        })
        .collect();
    let want: Vec<(String, i32)> = meta
        .primary_key
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                ots_format::table::pk_type_to_pb(c.pk_type) as i32,
            )
        })
        .collect();
    let got: Vec<(String, i32)> = target_pk.iter().map(|(n, t, _)| (n.clone(), *t)).collect();
    if want != got {
        return Err(RestoreError::Preflight(format!(
            "the primary key of '{}' ({}) does not match the snapshot's ({})",
            cfg.table,
            pk_text_pb(&got),
            pk_text_pb(&want)
        )));
    }
    let target_auto = target_pk
        .iter()
        .find(|(_, _, a)| *a)
        .map(|(n, _, _)| n.clone());
    let auto_increment_note = match (&target_auto, cfg.auto_increment, has_auto) {
        (Some(col), AutoIncrementMode::Keep, _) => {
            return Err(RestoreError::Preflight(format!(
                "'{}' declares '{col}' AUTO_INCREMENT: the service assigns its values and refuses explicit ones, \
                 so the original keys cannot be kept. Restore into a new table with --create-table (the column \
                 is created as a plain INTEGER and keeps the original values), or pass --auto-increment regenerate",
                cfg.table
            )));
        }
        (None, AutoIncrementMode::Regenerate, true) => {
            return Err(RestoreError::Usage(format!(
                "--auto-increment regenerate needs a target whose column is AUTO_INCREMENT; '{}' has none",
                cfg.table
            )));
        }
        (Some(col), AutoIncrementMode::Regenerate, _) => Some(format!(
            "'{col}' was regenerated by the service: restored rows have NEW key values, so references to the old \
             values elsewhere no longer match, and running this restore again would add the rows again"
        )),
        (None, AutoIncrementMode::Keep, true) => {
            let col = meta
                .primary_key
                .iter()
                .find(|c| c.auto_increment)
                .map(|c| c.name.clone())
                .unwrap_or_default();
            Some(format!(
                "'{col}' was AUTO_INCREMENT in the source; in '{}' it is a plain INTEGER holding the original values \
                 (new rows written to this table must supply '{col}' themselves)",
                cfg.table
            ))
        }
        _ => None,
    };

    warnings.extend(check_timestamps(cfg, &bounds, &options, now)?);
    let needed = versions_needed(m, &cfg.columns);
    warnings.extend(check_versions(cfg, needed.as_ref(), &options)?);

    // Rows already in an existing table are replaced only by an explicit choice. Workers given
    // --create-table share a table one of them created: rows another worker wrote are expected.
    let sibling_table = cfg.worker.is_some() && cfg.create_table;
    let holds_rows = if existing.is_some() && cfg.mode.is_none() && !resuming && !sibling_table {
        let first = first_row(client, &cfg.table, &target_meta.primary_key).await?;
        if let Some(first) = first {
            return Err(RestoreError::Usage(format!(
                "table '{}' {first}; choose what happens to them: --mode overwrite \
                 (a row of the snapshot replaces the table's row with the same key, every version of every \
                 column; other rows stay) or --mode only-if-absent (only rows the table does not have are \
                 written). Or restore into a new table with --create-table. --dry-run shows what would be written",
                cfg.table,
            )));
        }
        Some(false)
    } else {
        None
    };

    // Indexes are recreated only with the table; an existing target keeps its own. Say which of
    // the snapshot's it lacks (or has with another definition): a note, the rows restore anyway.
    if existing.is_some() {
        warnings.extend(index_notes(meta, &cfg.table, existing_indexes(&existing)));
    }

    let primary_key = target_pk
        .iter()
        .map(|(n, t, auto)| {
            format!(
                "{n} {}{}",
                ots_scan::split::pk_type_name(*t),
                if *auto { " AUTO_INCREMENT" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let plan = TargetPlan {
        table: cfg.table.clone(),
        exists: existing.is_some(),
        create: create.is_some(),
        primary_key,
        max_versions: options.max_versions,
        time_to_live: options.time_to_live,
        deviation_cell_version_in_sec: options.deviation_cell_version_in_sec,
        allow_update: options.allow_update,
        defined_columns: target_meta
            .defined_column
            .iter()
            .map(|c| format!("{} {}", c.name, defined_type_name(c.r#type)))
            .collect(),
        indexes: match (&existing, &create) {
            (Some(_), _) => existing_indexes(&existing),
            (None, Some(req)) => req.index_metas.iter().map(IndexMetaDoc::from_pb).collect(),
            (None, None) => Vec::new(),
        }
        .iter()
        .map(IndexMetaDoc::text)
        .collect(),
        holds_rows,
        versions_needed: needed,
    };
    Ok(Target {
        plan,
        create,
        auto_increment_note,
        warnings,
    })
}

fn existing_indexes(existing: &Option<pb::DescribeTableResponse>) -> Vec<IndexMetaDoc> {
    existing
        .iter()
        .flat_map(|d| d.index_metas.iter().map(IndexMetaDoc::from_pb))
        .collect()
}

/// `STRING`, `INTEGER`, …: a defined column's type as DescribeTable codes it.
fn defined_type_name(code: i32) -> String {
    match pb::DefinedColumnType::try_from(code) {
        Ok(pb::DefinedColumnType::DctInteger) => "INTEGER".into(),
        Ok(pb::DefinedColumnType::DctDouble) => "DOUBLE".into(),
        Ok(pb::DefinedColumnType::DctBoolean) => "BOOLEAN".into(),
        Ok(pb::DefinedColumnType::DctString) => "STRING".into(),
        Ok(pb::DefinedColumnType::DctBlob) => "BINARY".into(),
        Err(_) => format!("type {code}"),
    }
}

/// Notes on the snapshot's indexes that the existing target `table` lacks or defines otherwise.
pub(crate) fn index_notes(meta: &TableMeta, table: &str, target: Vec<IndexMetaDoc>) -> Vec<String> {
    let mut notes = Vec::new();
    for want in &meta.indexes {
        match target.iter().find(|t| t.name == want.name) {
            None => notes.push(format!(
                "the snapshot's table had secondary index {}, which '{table}' lacks: the restore writes rows only (index tables are never copied); create the index with CreateIndex (include_base_data) if you need it",
                want.text()
            )),
            Some(got) if got != want => notes.push(format!(
                "secondary index '{}' of '{table}' ({}) differs from the snapshot's ({})",
                want.name,
                got.text(),
                want.text()
            )),
            Some(_) => {}
        }
    }
    notes
}

/// Creates the table [`check_target`] decided to create; `true` when it did.
pub(crate) async fn create_target(client: &OtsClient, t: &Target) -> Result<bool, RestoreError> {
    match &t.create {
        Some(req) => match client.create_table(req).await {
            Ok(_) => Ok(true),
            // Another worker created it between our check and our CreateTable: take it if it is
            // the table we would have created (same primary key).
            Err(e) if e.code() == Some("OTSObjectAlreadyExist") => {
                let d = client.describe_table(&req.table_meta.table_name).await?;
                if d.table_meta.primary_key == req.table_meta.primary_key {
                    Ok(false)
                } else {
                    Err(RestoreError::Preflight(format!(
                        "table '{}' appeared while this restore was creating it, with another primary key: {e}",
                        req.table_meta.table_name
                    )))
                }
            }
            // Index names are the instance's: the likeliest reason beside the source.
            Err(e) if !req.index_metas.is_empty() && e.code() == Some("OTSParameterInvalid") => {
                Err(RestoreError::Preflight(format!(
                    "creating table '{}' with the snapshot's secondary indexes ({}) was refused: {e};                      index names are unique in an instance, so beside the source table pass                      --index-suffix SUFFIX to give the copy's indexes other names",
                    req.table_meta.table_name,
                    req.index_metas
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
            Err(e) => Err(e.into()),
        },
        None => Ok(false),
    }
}

/// Pages of a GetRange that come back empty but with a next key (the service stopped before
/// finding a row) are followed this many times; after that the table counts as holding rows.
const PROBE_PAGES: usize = 8;

/// `None` when `table` holds no row; else what it holds, in words (with the first row's key).
async fn first_row(
    client: &OtsClient,
    table: &str,
    pk: &[pb::PrimaryKeySchema],
) -> Result<Option<String>, RestoreError> {
    let bound = |v: PkValue| -> Vec<PkColumn> {
        pk.iter()
            .map(|c| PkColumn::new(&c.name, v.clone()))
            .collect()
    };
    let end = Bytes::from(ots_wire::plainbuffer::encode_primary_key(&bound(
        PkValue::InfMax,
    )));
    let mut start = Bytes::from(ots_wire::plainbuffer::encode_primary_key(&bound(
        PkValue::InfMin,
    )));
    for _ in 0..PROBE_PAGES {
        let req = pb::GetRangeRequest {
            table_name: table.to_string(),
            direction: pb::Direction::Forward as i32,
            max_versions: Some(1),
            limit: Some(1),
            inclusive_start_primary_key: start.clone(),
            exclusive_end_primary_key: end.clone(),
            ..Default::default()
        };
        let resp = client.get_range(&req).await?;
        let rows = ots_wire::plainbuffer::decode_rows(&resp.rows).map_err(|source| {
            RestoreError::DecodePage {
                table: table.to_string(),
                source,
            }
        })?;
        if let Some(r) = rows.first() {
            return Ok(Some(format!(
                "already holds rows (the first is {})",
                ots_format::display_columns(&r.to_row().primary_key)
            )));
        }
        match resp.next_start_primary_key.filter(|k| !k.is_empty()) {
            Some(next) => start = next,
            None => return Ok(None),
        }
    }
    Ok(Some(format!(
        "may hold rows (GetRange found none in {PROBE_PAGES} pages, but did not reach the end of the table)"
    )))
}

/// Cells the target would refuse (version deviation) or expire at once (TTL, refused unless
/// `allow_expiry`); the warnings of what was accepted.
fn check_timestamps(
    cfg: &RestoreConfig,
    bounds: &[(&str, i64, i64)],
    opts: &pb::TableOptions,
    now: i64,
) -> Result<Vec<String>, RestoreError> {
    let mut warnings = Vec::new();
    if cfg.timestamps != TimestampMode::Original || bounds.is_empty() {
        return Ok(warnings);
    }
    let lo = bounds.iter().map(|b| b.1).min().unwrap_or(now);
    let hi = bounds.iter().map(|b| b.2).max().unwrap_or(now);
    let names = |pick: &dyn Fn(&(&str, i64, i64)) -> bool| -> String {
        bounds
            .iter()
            .filter(|b| pick(b))
            .map(|b| b.0)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ttl = opts.time_to_live.unwrap_or(-1);
    if ttl > 0 {
        let cutoff = now - i64::from(ttl) * 1000;
        if lo < cutoff {
            let expiring = names(&|b| b.1 < cutoff);
            if !cfg.allow_expiry {
                return Err(RestoreError::Preflight(format!(
                    "'{}' keeps cells for {ttl} s (time_to_live), but the snapshot holds older cells (columns \
                     {expiring}; the oldest from {}): they would expire as soon as they are written. Raise the \
                     table's TTL (UpdateTable; -1 keeps cells forever), restore with --timestamps now, or pass \
                     --allow-expiry to write them anyway",
                    cfg.table,
                    ms_text(lo)
                )));
            }
            warnings.push(format!(
                "--allow-expiry: cells older than {} (columns {expiring}) expire at once under the TTL of '{}' ({ttl} s)",
                ms_text(cutoff),
                cfg.table
            ));
        }
    }
    let dev = opts.deviation_cell_version_in_sec.unwrap_or(86_400);
    if lo < now - dev * 1000 || hi >= now + dev * 1000 {
        return Err(RestoreError::Preflight(format!(
            "'{}' accepts cell timestamps within {dev} s of now (deviation_cell_version_in_sec), but the snapshot \
             holds cells from {lo} to {hi} ms (columns {}). Raise the deviation (UpdateTable), restore into a new \
             table with --create-table (created with a wide enough deviation), or restore with --timestamps now",
            cfg.table,
            names(&|b| b.1 < now - dev * 1000 || b.2 >= now + dev * 1000)
        )));
    }
    Ok(warnings)
}

/// Versions the target would hide (`max_versions` below what a row holds), refused unless
/// `allow_version_loss`; the warnings of what was accepted.
fn check_versions(
    cfg: &RestoreConfig,
    needed: Option<&VersionsNeeded>,
    opts: &pb::TableOptions,
) -> Result<Vec<String>, RestoreError> {
    let (Some(need), Some(keeps)) = (needed, opts.max_versions) else {
        return Ok(Vec::new());
    };
    if u64::try_from(keeps).is_ok_and(|k| k >= need.versions) {
        return Ok(Vec::new());
    }
    let how = if need.exact {
        format!(
            "rows of the snapshot hold up to {} versions of one column ('{}')",
            need.versions, need.column
        )
    } else {
        format!(
            "rows of the snapshot may hold up to {} versions of one column ('{}'; the snapshot's statistics, \
             written by an older otsarchive, do not record the exact number, and this is the bound they allow)",
            need.versions, need.column
        )
    };
    if !cfg.allow_version_loss {
        return Err(RestoreError::Preflight(format!(
            "'{}' keeps max_versions = {keeps}, but {how}: the service would hide the older versions as soon as \
             the newer ones are written. Raise the table's max_versions to {} (UpdateTable), restore into a new \
             table with --create-table, or pass --allow-version-loss to keep only the newest {keeps} version(s) \
             of each column",
            cfg.table, need.versions
        )));
    }
    Ok(vec![format!(
        "--allow-version-loss: '{}' keeps max_versions = {keeps}, but {how}; the older versions are hidden \
         (`verify --against-table` reports those rows as different)",
        cfg.table
    )])
}

fn pk_text_pb(pk: &[(String, i32)]) -> String {
    pk.iter()
        .map(|(n, t)| format!("{n} {}", ots_scan::split::pk_type_name(*t)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub use ots_format::pk_text;

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(ttl: i32, max_versions: i32) -> pb::TableOptions {
        pb::TableOptions {
            time_to_live: Some(ttl),
            max_versions: Some(max_versions),
            deviation_cell_version_in_sec: Some(10 * 86_400),
            ..Default::default()
        }
    }

    fn message(r: Result<Vec<String>, RestoreError>) -> String {
        match r {
            Err(RestoreError::Preflight(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn cells_older_than_the_ttl_are_refused_unless_allowed() {
        let now = 100 * 86_400_000;
        let two_days_ago = now - 2 * 86_400_000;
        let bounds = [
            ("a", two_days_ago, now - 1000),
            ("b", now - 1000, now - 1000),
        ];
        let mut cfg = RestoreConfig::new("t", "s");
        let m = message(check_timestamps(&cfg, &bounds, &opts(86_400, 1), now));
        assert!(
            m.contains("--allow-expiry") && m.contains("columns a;"),
            "{m}"
        );
        // A TTL longer than the oldest cell's age, or none, is fine.
        assert!(
            check_timestamps(&cfg, &bounds, &opts(3 * 86_400, 1), now)
                .unwrap()
                .is_empty()
        );
        assert!(
            check_timestamps(&cfg, &bounds, &opts(-1, 1), now)
                .unwrap()
                .is_empty()
        );
        cfg.allow_expiry = true;
        let w = check_timestamps(&cfg, &bounds, &opts(86_400, 1), now).unwrap();
        assert!(w[0].contains("expire at once"), "{w:?}");
        // Rewritten timestamps never expire on arrival.
        cfg.allow_expiry = false;
        cfg.timestamps = TimestampMode::Now;
        assert!(
            check_timestamps(&cfg, &bounds, &opts(86_400, 1), now)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn versions_needed_are_exact_when_recorded_and_a_safe_bound_otherwise() {
        use ots_format::ColumnStats;
        let column = |cells: u64, typed_values: u64, conflicts: u64, recorded: Option<u64>| {
            let mut c = ColumnStats::default();
            c.cells_by_type.insert("INTEGER".into(), cells);
            c.typed_values = typed_values;
            c.type_conflicts = conflicts;
            c.overflow_cells = cells - typed_values;
            c.max_versions_per_row = recorded;
            c
        };
        let typed: BTreeSet<&str> = ["a", "s"].into();
        let mut stats = SnapshotStats::default();
        stats
            .columns
            .insert("a".into(), column(100, 100, 0, Some(1)));
        stats
            .columns
            .insert("s".into(), column(120, 95, 5, Some(3)));
        stats.columns.insert("u".into(), column(7, 0, 0, Some(2)));
        let need = |stats: &SnapshotStats, src: Option<i32>, cols: Option<&[&str]>| {
            let cols = cols.map(|c| c.iter().map(|s| s.to_string()).collect());
            versions_needed_by_stats(stats, &typed, src, &cols)
                .map(|n| (n.versions, n.column, n.exact))
        };
        assert_eq!(need(&stats, Some(10), None), Some((3, "s".into(), true)));
        assert_eq!(
            need(&stats, Some(10), Some(&["a"])),
            Some((1, "a".into(), true))
        );
        assert_eq!(
            need(&stats, Some(10), Some(&["u"])),
            Some((2, "u".into(), true))
        );
        // Statistics of an older otsarchive: typed columns without older versions need 1; `s`
        // has 120 cells over at least 100 rows, so at most 21 in one row, capped by the source's
        // max_versions; an untyped column at most all its cells.
        for c in stats.columns.values_mut() {
            c.max_versions_per_row = None;
        }
        assert_eq!(
            need(&stats, Some(3), Some(&["a"])),
            Some((1, "a".into(), false))
        );
        assert_eq!(need(&stats, Some(3), None), Some((3, "s".into(), false)));
        assert_eq!(
            need(&stats, None, Some(&["a", "s"])),
            Some((21, "s".into(), false))
        );
        assert_eq!(
            need(&stats, None, Some(&["u"])),
            Some((7, "u".into(), false))
        );
        assert_eq!(need(&SnapshotStats::default(), Some(3), None), None);
    }

    #[test]
    fn fewer_versions_than_a_row_holds_are_refused_unless_allowed() {
        let mut cfg = RestoreConfig::new("t", "s");
        let need = VersionsNeeded {
            versions: 3,
            column: "status".into(),
            exact: true,
        };
        let m = message(check_versions(&cfg, Some(&need), &opts(-1, 2)));
        assert!(
            m.contains("max_versions = 2")
                && m.contains("up to 3 versions")
                && m.contains("'status'")
                && m.contains("--allow-version-loss"),
            "{m}"
        );
        assert!(
            check_versions(&cfg, Some(&need), &opts(-1, 3))
                .unwrap()
                .is_empty()
        );
        assert!(check_versions(&cfg, None, &opts(-1, 1)).unwrap().is_empty());
        cfg.allow_version_loss = true;
        let w = check_versions(&cfg, Some(&need), &opts(-1, 1)).unwrap();
        assert!(w[0].contains("hidden"), "{w:?}");
    }

    #[test]
    fn indexes_an_existing_target_lacks_are_noted() {
        use ots_format::{IndexType, IndexUpdateMode};
        let idx = |name: &str, key: &[&str]| IndexMetaDoc {
            name: name.into(),
            primary_key: key.iter().map(|s| s.to_string()).collect(),
            defined_columns: vec![],
            update_mode: IndexUpdateMode::Async,
            index_type: IndexType::Global,
        };
        let meta: TableMeta = serde_json::from_value(serde_json::json!({
            "table_name": "src", "primary_key": [{"name": "id", "type": "STRING"}],
            "defined_columns": [{"name": "c", "type": "STRING"}], "max_versions": 1,
            "time_to_live": -1, "deviation_cell_version_in_sec": 86400, "allow_update": true,
        }))
        .unwrap();
        assert!(index_notes(&meta, "dst", vec![]).is_empty());
        let meta = TableMeta {
            indexes: vec![
                idx("a", &["c"]),
                idx("b", &["c", "id"]),
                idx("same", &["c"]),
            ],
            ..meta
        };
        let notes = index_notes(&meta, "dst", vec![idx("b", &["c"]), idx("same", &["c"])]);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with(
                "the snapshot's table had secondary index a (c) IT_GLOBAL_INDEX IUM_ASYNC_INDEX, which 'dst' lacks"
            ),
            "{}",
            notes[0]
        );
        assert_eq!(
            notes[1],
            "secondary index 'b' of 'dst' (b (c) IT_GLOBAL_INDEX IUM_ASYNC_INDEX) differs from the \
             snapshot's (b (c, id) IT_GLOBAL_INDEX IUM_ASYNC_INDEX)"
        );
    }
}
