//! `otsarchive expire`: retention. Deletes committed snapshots no policy keeps (per table) and
//! unfinished ones past a grace period, never a snapshot a kept incremental needs. With `gc`, one
//! of the two commands that delete; backups never do.

use std::time::SystemTime;

use clap::Args;
use ots_manifest::{ExpireOptions, ExpireReport, Policy, Snapshots, expire};
use ots_writer::open_destination;

use crate::common::{CliError, DestArgs, GlobalArgs, human_bytes};
use crate::gc_cmd::parse_duration;
use crate::text::{Align, Table, count, thousands};

#[derive(Args, Debug)]
#[command(after_help = "EXAMPLES:
  otsarchive expire ./backups --keep-last 7 --dry-run      # show what would go, delete nothing
  otsarchive expire ./backups --keep-daily 30 --keep-within 2d
  otsarchive expire oss://my-bucket/backups --table orders --keep-within 90d --oss-region cn-hangzhou

Policies apply per source table. Give at least one; with several, a snapshot is kept when ANY of
them keeps it. The newest committed snapshot of a table is always kept. A kept incremental keeps
its parent and base (transitively), however old. Snapshots never committed go once nothing in them
changed for --incomplete-grace, unless a live lease holds them.

Each snapshot goes manifest.json first (so a half-deleted snapshot never looks committed), then
everything else, newest snapshot first. A delete the store refuses (a WORM bucket before its
retention date, or no delete permission) is reported and expire goes on; the exit code is then 1.
If a manifest cannot be deleted, the snapshot is left whole and still committed.")]
pub struct ExpireArgs {
    /// Destination holding snapshots (default: the profile's `to`).
    pub dest_url: Option<String>,
    /// Only snapshots of this source table (default: every table, each on its own).
    #[arg(long)]
    pub table: Option<String>,
    /// Keep the newest N committed snapshots of each table (N ≥ 1).
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u64>,
    /// Keep committed snapshots whose time is within this of now, e.g. 12h, 30d, 2w.
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep the newest snapshot of each of the last N UTC days that have snapshots (N ≥ 1).
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u64>,
    /// Snapshots never committed are deleted once nothing in them changed for this long.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub incomplete_grace: String,
    /// Only show what would be kept and deleted, and why; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub dest: DestArgs,
}

/// A count flag of at least 1: 0 would delete a table's whole history, which is not retention.
fn at_least_one(flag: &str, n: Option<u64>) -> Result<Option<u32>, CliError> {
    match n {
        None => Ok(None),
        Some(0) => Err(CliError::Usage(format!(
            "--{flag} 0 would delete every snapshot: that is not a retention policy; give 1 or more \
             (to remove a whole table's snapshots, delete its folders by hand)"
        ))),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| CliError::Usage(format!("--{flag} {n} is too large"))),
    }
}

pub fn policy(a: &ExpireArgs) -> Result<Policy, CliError> {
    let keep_within = match &a.keep_within {
        None => None,
        Some(text) => {
            let d = parse_duration(text)?;
            if d.is_zero() {
                return Err(CliError::Usage(format!(
                    "--keep-within {text} keeps nothing: give a duration above zero, e.g. 30d"
                )));
            }
            Some(d)
        }
    };
    let p = Policy {
        keep_last: at_least_one("keep-last", a.keep_last)?,
        keep_within,
        keep_daily: at_least_one("keep-daily", a.keep_daily)?,
    };
    if p.is_empty() {
        return Err(CliError::Usage(
            "expire needs a retention policy: --keep-last N, --keep-within DURATION and/or \
             --keep-daily N (a snapshot is kept when any of them keeps it)"
                .into(),
        ));
    }
    Ok(p)
}

pub async fn run(g: &GlobalArgs, a: ExpireArgs) -> Result<(), CliError> {
    let policy = policy(&a)?;
    let grace = parse_duration(&a.incomplete_grace)?;
    let url = g.destination(a.dest_url.as_deref(), "the destination")?;
    let dest = open_destination(&url, &a.dest.options(g)?)?;
    let now = ots_format::time::unix_millis(SystemTime::now());
    let options = ExpireOptions {
        policy,
        table: a.table.clone(),
        incomplete_grace: grace,
        dry_run: a.dry_run,
    };
    let report = expire(&Snapshots::new(dest), &options, now)
        .await
        .map_err(|e| CliError::from_kind(e.kind(), format!("expire: {e}")))?;
    let failure = if report.unreadable > 0 && report.failed.is_empty() {
        Some(CliError::Failed(format!(
            "{} could not be read (listed above as skipped), so no committed snapshot was deleted: an unreadable incremental could need any of them. Fix access to it (or remove it with care), then run expire again",
            count(report.unreadable, "snapshot")
        )))
    } else {
        None
    };
    let failure = failure.or_else(|| {
        (!report.ok()).then(|| {
            CliError::Failed(format!(
                "expire could not delete {} ({} snapshot(s) affected); see the list above",
                count(report.failed.len() as u64, "object"),
                {
                    let mut ids: Vec<&str> = report
                        .failed
                        .iter()
                        .map(|f| f.snapshot_id.as_str())
                        .collect();
                    ids.dedup();
                    ids.len()
                }
            ))
        })
    });
    if g.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
        return failure.map_or(Ok(()), Err);
    }
    if !g.quiet {
        print!("{}", render(&url, &report));
    }
    if !report.failed.is_empty() {
        eprint!("{}", render_failures(&report));
    }
    failure.map_or(Ok(()), Err)
}

/// The human report: what stays and what goes, per table, newest first, and why.
fn render(url: &str, r: &ExpireReport) -> String {
    let mut out = format!(
        "expire {url}: {}{}; unfinished snapshots older than {} go{}\n",
        r.policy.describe(),
        match &r.table {
            Some(t) => format!(" (table {t} only)"),
            None => " (per table)".to_string(),
        },
        r.incomplete_grace,
        if r.dry_run {
            "\ndry run: nothing is deleted"
        } else {
            ""
        }
    );
    if r.snapshots_seen == 0 {
        out.push_str("no snapshots to look at\n");
        return out;
    }
    struct Line {
        time_ms: i64,
        /// TABLE, SNAPSHOT, TIME, STATUS, KIND, ACTION, OBJECTS, SIZE, WHY.
        cells: Vec<String>,
    }
    let line = |table: &str, id: &str, time: &str, status: &str, kind: &str, time_ms: i64| Line {
        time_ms,
        cells: [table, id, time, status, kind].map(str::to_string).to_vec(),
    };
    let mut lines: Vec<Line> = Vec::new();
    let deleted_word = if r.dry_run { "would delete" } else { "deleted" };
    for k in &r.kept {
        let mut l = line(
            &k.table,
            &k.snapshot_id,
            &k.time,
            k.status,
            k.kind,
            k.time_ms,
        );
        l.cells
            .extend(["keep", "-", "-", &k.reason].map(str::to_string));
        lines.push(l);
    }
    for d in &r.deleted {
        let mut l = line(
            &d.table,
            &d.snapshot_id,
            &d.time,
            d.status,
            d.kind,
            d.time_ms,
        );
        let action = if d.complete {
            deleted_word
        } else {
            "partly deleted"
        };
        l.cells.extend([
            action.to_string(),
            thousands(d.objects),
            human_bytes(d.bytes),
            d.reason.clone(),
        ]);
        lines.push(l);
    }
    for s in &r.skipped {
        let table = s.table.as_deref().unwrap_or("?");
        let time = s.time.as_deref().unwrap_or("-");
        let mut l = line(
            table,
            &s.snapshot_id,
            time,
            "-",
            "-",
            s.time_ms.unwrap_or(i64::MIN),
        );
        l.cells
            .extend(["left", "-", "-", &s.reason].map(str::to_string));
        lines.push(l);
    }
    // By table, newest first.
    lines.sort_by(|a, b| {
        (&a.cells[0], b.time_ms, &b.cells[1]).cmp(&(&b.cells[0], a.time_ms, &a.cells[1]))
    });
    let mut t = Table::new(&[
        ("TABLE", Align::Left),
        ("SNAPSHOT", Align::Left),
        ("TIME", Align::Left),
        ("STATUS", Align::Left),
        ("KIND", Align::Left),
        ("ACTION", Align::Left),
        ("OBJECTS", Align::Right),
        ("SIZE", Align::Right),
        ("WHY", Align::Left),
    ]);
    for l in lines {
        t.row(l.cells);
    }
    out.push('\n');
    out.push_str(&t.render());
    out.push('\n');
    let objects: u64 = r.deleted.iter().map(|d| d.objects).sum();
    out.push_str(&format!(
        "{}: {} kept; {} {} ({}, {}){}{}\n",
        count(r.snapshots_seen, "snapshot"),
        thousands(r.kept.len() as u64),
        deleted_word,
        count(r.deleted.len() as u64, "snapshot"),
        count(objects, "object"),
        human_bytes(r.bytes_deleted),
        if r.skipped.is_empty() {
            String::new()
        } else {
            format!("; {} left although due", thousands(r.skipped.len() as u64))
        },
        if r.dry_run {
            "; nothing was deleted (--dry-run)"
        } else {
            ""
        }
    ));
    out
}

/// Every refused delete, and what to do about it.
fn render_failures(r: &ExpireReport) -> String {
    let mut t = Table::new(&[
        ("SNAPSHOT", Align::Left),
        ("OBJECT", Align::Left),
        ("ERROR", Align::Left),
    ]);
    for f in &r.failed {
        t.row(vec![
            f.snapshot_id.clone(),
            if f.path.is_empty() {
                "(snapshot)".into()
            } else {
                f.path.clone()
            },
            f.error.clone(),
        ]);
    }
    let denied = r.failed.iter().any(|f| {
        let e = f.error.to_ascii_lowercase();
        e.contains("denied") || e.contains("403") || e.contains("forbidden")
    });
    let mut out = format!(
        "\nexpire could not delete {}:\n{}",
        count(r.failed.len() as u64, "object"),
        t.render()
    );
    if denied {
        out.push_str(
            "\nThe store refused these deletes. On a bucket with a retention (WORM) policy, objects \
             cannot be deleted before their retention date: run expire again after it. Otherwise \
             grant delete permission on the destination (backups do not need it).\n",
        );
    }
    out.push_str(
        "A snapshot whose manifest.json could not be deleted was left whole and still restores; \
         one whose manifest went but some objects stayed no longer looks committed, and the next \
         expire (or gc) removes the rest.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_manifest::expire::duration_text;

    fn args(last: Option<u64>, within: Option<&str>, daily: Option<u64>) -> ExpireArgs {
        ExpireArgs {
            dest_url: None,
            table: None,
            keep_last: last,
            keep_within: within.map(str::to_string),
            keep_daily: daily,
            incomplete_grace: "24h".into(),
            dry_run: true,
            dest: DestArgs::default(),
        }
    }

    #[test]
    fn refused_deletes_are_listed_with_what_to_do() {
        let report = ExpireReport {
            failed: vec![ots_manifest::ExpireFailure {
                snapshot_id: "20261206T020000Z-1a2b3c4d".into(),
                path: "manifest.json".into(),
                error: "oss://b/x/manifest.json: Operation not permitted: access denied".into(),
            }],
            ..Default::default()
        };
        let text = render_failures(&report);
        assert!(text.contains("could not delete 1 object:"), "{text}");
        assert!(
            text.contains("20261206T020000Z-1a2b3c4d  manifest.json"),
            "{text}"
        );
        assert!(text.contains("run expire again after it"), "{text}");
        assert!(text.contains("was left whole"), "{text}");
    }

    #[test]
    fn policies_are_checked() {
        assert_eq!(policy(&args(None, None, None)).unwrap_err().exit_code(), 2);
        assert_eq!(
            policy(&args(Some(0), None, None)).unwrap_err().exit_code(),
            2
        );
        assert_eq!(
            policy(&args(None, None, Some(0))).unwrap_err().exit_code(),
            2
        );
        assert_eq!(
            policy(&args(None, Some("0d"), None))
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            policy(&args(None, Some("soon"), None))
                .unwrap_err()
                .exit_code(),
            2
        );
        let p = policy(&args(Some(3), Some("2w"), Some(7))).unwrap();
        assert_eq!(p.keep_last, Some(3));
        assert_eq!(p.keep_within.map(duration_text).as_deref(), Some("2w"));
        assert_eq!(p.keep_daily, Some(7));
    }
}
