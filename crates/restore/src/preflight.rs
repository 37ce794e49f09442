//! Pre-flight: the target table is created from the snapshot's table meta, or an existing one is
//! checked (primary key, AUTO_INCREMENT, TTL and version deviation against the snapshot's cell
//! timestamps) before anything is written.

use std::collections::BTreeSet;

use ots_manifest::{Manifest, TableMeta};
use ots_wire::OtsClient;
use ots_wire::pb;

use crate::config::{AutoIncrementMode, RestoreConfig, TimestampMode};
use crate::error::RestoreError;
use crate::now_ms;

/// Oldest and newest cell timestamps of the snapshot (restricted to the restored columns).
fn timestamp_bounds(
    m: &Manifest,
    columns: &Option<BTreeSet<String>>,
) -> Option<(i64, i64, Vec<String>)> {
    let mut lo: Option<i64> = None;
    let mut hi: Option<i64> = None;
    let mut names = Vec::new();
    for (name, s) in &m.stats.columns {
        if columns.as_ref().is_some_and(|c| !c.contains(name)) {
            continue;
        }
        if let (Some(a), Some(b)) = (s.min_timestamp, s.max_timestamp) {
            lo = Some(lo.map_or(a, |l| l.min(a)));
            hi = Some(hi.map_or(b, |h| h.max(b)));
            names.push(name.clone());
        }
    }
    Some((lo?, hi?, names))
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

/// What the pre-flight found about the target.
pub(crate) struct Target {
    pub created: bool,
    pub auto_increment_note: Option<String>,
    pub warnings: Vec<String>,
}

/// Creates the target (with `create_table`) or checks the existing one; every check that can
/// fail runs before the table is created, so a failed pre-flight leaves nothing behind.
pub(crate) async fn prepare_target(
    client: &OtsClient,
    m: &Manifest,
    cfg: &RestoreConfig,
) -> Result<Target, RestoreError> {
    let meta = &m.source.table;
    let has_auto = meta.primary_key.iter().any(|c| c.auto_increment);
    let now = now_ms();
    let bounds = timestamp_bounds(m, &cfg.columns);
    let mut warnings = Vec::new();
    let existing = match client.describe_table(&cfg.table).await {
        Ok(d) => Some(d),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    // Decide the target's options first (existing, or those it would be created with), and run
    // the timestamp checks before anything is created: a failed pre-flight leaves nothing behind.
    let to_create = match (&existing, cfg.create_table) {
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
            let deviation = match (cfg.timestamps, &bounds) {
                (TimestampMode::Original, Some((lo, _, _))) => {
                    let needed = (now - lo) / 1000 + 86_400;
                    Some(needed.max(meta.deviation_cell_version_in_sec.unwrap_or(86_400)))
                }
                _ => None,
            };
            if let Some(d) = deviation
                && Some(d) != meta.deviation_cell_version_in_sec
            {
                warnings.push(format!(
                    "created with deviation_cell_version_in_sec = {d} (source: {}) so that the original timestamps are accepted",
                    meta.deviation_cell_version_in_sec
                        .map_or("not reported".to_string(), |s| s.to_string())
                ));
            }
            Some(create_table_request(
                meta,
                &cfg.table,
                cfg.auto_increment,
                deviation,
            ))
        }
        (None, false) => {
            return Err(RestoreError::Usage(format!(
                "table '{}' does not exist: pass --create-table to create it from the snapshot's table meta",
                cfg.table
            )));
        }
    };
    let options = match (&existing, &to_create) {
        (Some(d), _) => d.table_options,
        (None, Some(req)) => req.table_options.unwrap_or_default(),
        (None, None) => pb::TableOptions::default(),
    };
    check_timestamps(cfg, &bounds, &options, now)?;
    let (described, created) = match (existing, to_create) {
        (Some(d), _) => (d, false),
        (None, Some(req)) => {
            client.create_table(&req).await?;
            (client.describe_table(&cfg.table).await?, true)
        }
        (None, None) => {
            return Err(RestoreError::Usage(format!(
                "table '{}' does not exist",
                cfg.table
            )));
        }
    };
    // The primary key must match, name for name and type for type.
    let target_pk: Vec<(String, i32, bool)> = described
        .table_meta
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
    Ok(Target {
        created,
        auto_increment_note,
        warnings,
    })
}

/// Cells the target would refuse (version deviation) or expire at once (TTL).
fn check_timestamps(
    cfg: &RestoreConfig,
    bounds: &Option<(i64, i64, Vec<String>)>,
    opts: &pb::TableOptions,
    now: i64,
) -> Result<(), RestoreError> {
    let (TimestampMode::Original, Some((lo, hi, names))) = (cfg.timestamps, bounds) else {
        return Ok(());
    };
    let ttl = opts.time_to_live.unwrap_or(-1);
    if ttl > 0 && *lo < now - i64::from(ttl) * 1000 {
        return Err(RestoreError::Preflight(format!(
            "cells as old as {lo} ms (columns {}) would expire at once under the TTL of '{}' ({ttl} s). \
             Raise the table's TTL first, or restore with --timestamps now",
            names.join(", "),
            cfg.table
        )));
    }
    let dev = opts.deviation_cell_version_in_sec.unwrap_or(86_400);
    if *lo < now - dev * 1000 || *hi >= now + dev * 1000 {
        return Err(RestoreError::Preflight(format!(
            "'{}' accepts cell timestamps within {dev} s of now (deviation_cell_version_in_sec), but the snapshot \
             holds cells from {lo} to {hi} ms (columns {}). Raise the deviation (UpdateTable), restore into a new \
             table with --create-table (created with a wide enough deviation), or restore with --timestamps now",
            cfg.table,
            names.join(", ")
        )));
    }
    Ok(())
}

fn pk_text_pb(pk: &[(String, i32)]) -> String {
    pk.iter()
        .map(|(n, t)| format!("{n} {}", ots_scan::split::pk_type_name(*t)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub use ots_format::pk_text;
