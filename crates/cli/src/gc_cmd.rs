//! `otsarchive gc`: removes what no manifest lists, after a grace period. With `expire`
//! (retention), one of the two commands that delete; backups never do.

use std::time::{Duration, SystemTime};

use clap::Args;
use ots_manifest::{Snapshots, gc};
use ots_writer::open_destination;

use crate::common::{CliError, DestArgs, GlobalArgs, human_bytes};

#[derive(Args, Debug)]
#[command(after_help = "EXAMPLES:
  otsarchive gc ./backups --dry-run           # list what would be removed
  otsarchive gc oss://my-bucket/backups --older-than 7d --oss-region cn-hangzhou

Removed: data files and split records of attempts that a committed manifest does not list,
leases of finished processes, and snapshots that were never committed. Never removed: anything a
manifest lists, anything younger than --older-than, any snapshot with a live lease (a backup in
progress). Needs delete permission on the destination; backups do not.")]
pub struct GcArgs {
    /// Destination holding snapshots (default: the profile's `to`).
    pub dest_url: Option<String>,
    /// Grace period: only objects older than this are removed, e.g. 30m, 24h, 7d.
    #[arg(long, default_value = "24h")]
    pub older_than: String,
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub dest: DestArgs,
}

/// `90s`, `30m`, `24h`, `7d`, `2w` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "'{text}' is not a duration: write a number with s, m, h, d or w, e.g. 24h, 7d or 2w"
        ))
    };
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        "w" => n.checked_mul(604_800),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Duration::from_secs(secs))
}

pub async fn run(g: &GlobalArgs, a: GcArgs) -> Result<(), CliError> {
    let grace = parse_duration(&a.older_than)?;
    let dest = open_destination(
        &g.destination(a.dest_url.as_deref(), "the destination")?,
        &a.dest.options(g)?,
    )?;
    let now = ots_format::time::unix_millis(SystemTime::now());
    let report = gc(&Snapshots::new(dest), grace, a.dry_run, now)
        .await
        .map_err(|e| CliError::from_kind(e.kind(), format!("gc: {e}")))?;
    let failure = report.failed.first().map(|f| {
        let text = f.error.to_ascii_lowercase();
        let hint = if text.contains("denied") || text.contains("403") || text.contains("forbidden")
        {
            " (gc needs permission to delete objects on the destination)"
        } else {
            ""
        };
        CliError::Failed(format!(
            "gc could not finish {} snapshot(s); {}: {}{hint}",
            report.failed.len(),
            f.snapshot_id,
            f.error
        ))
    });
    if g.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
        return failure.map_or(Ok(()), Err);
    }
    if !g.quiet {
        for r in &report.removed {
            eprintln!(
                "{} {}/{} ({}, {})",
                if a.dry_run { "would remove" } else { "removed" },
                r.snapshot_id,
                r.path,
                human_bytes(r.bytes),
                r.reason
            );
        }
        for s in &report.skipped {
            eprintln!("kept {}: {}", s.snapshot_id, s.reason);
        }
        for f in &report.failed {
            eprintln!("FAILED {}: {}", f.snapshot_id, f.error);
        }
        eprintln!(
            "gc: {} snapshots looked at; {} {} objects ({}){}",
            report.snapshots_seen,
            if a.dry_run { "would remove" } else { "removed" },
            report.removed.len(),
            human_bytes(report.bytes_removed),
            if a.dry_run {
                "; nothing was deleted (--dry-run)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(
            parse_duration("2w").unwrap(),
            Duration::from_secs(1_209_600)
        );
        for bad in ["", "h", "7y", "-1d", "1.5h", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }
}
