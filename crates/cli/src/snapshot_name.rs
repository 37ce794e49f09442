//! Naming a snapshot on the command line: `DEST/ID`, `DEST/latest` (the newest committed
//! snapshot) or `DEST/ID-PREFIX` (a unique prefix of an id, e.g. `DEST/20261125T14`). A name
//! that points at the wrong thing (a destination, a folder inside a snapshot) says what it is and
//! what to pass instead.

use ots_format::is_snapshot_id;
use ots_manifest::{Snapshot, Snapshots};
use ots_writer::{Destination, open_destination};

use crate::common::{CliError, DestArgs, GlobalArgs};

/// The word that names the newest committed snapshot of a destination.
pub const LATEST: &str = "latest";

/// Matches listed in an ambiguity error before "… and N more".
const MAX_LISTED: usize = 10;

/// `url` split into the destination and the last path segment, or `None` when the URL has no
/// parent (`backups`, `oss://bucket`).
fn split_last(url: &str) -> Option<(&str, &str)> {
    let (parent, last) = url.rsplit_once('/')?;
    if parent.is_empty() || last.is_empty() || parent.ends_with(':') || parent.ends_with(":/") {
        return None;
    }
    Some((parent, last))
}

/// Opens the snapshot that `url` names: `DEST/ID`, `DEST/latest` or `DEST/ID-PREFIX`.
pub async fn open_snapshot(
    url: &str,
    args: &DestArgs,
    g: &GlobalArgs,
) -> Result<Snapshot, CliError> {
    let trimmed = url.trim_end_matches('/');
    let options = args.options(g)?;
    let usage = |why: String| {
        CliError::Usage(format!(
            "'{url}' {why}: expected DEST/SNAPSHOT_ID, DEST/{LATEST} or DEST/ID-PREFIX, \
             e.g. ./backups/20261125T143012Z-1a2b3c4d"
        ))
    };
    let Some((parent, name)) = split_last(trimmed) else {
        // No parent: the only thing it can be is a destination.
        return match open_destination(trimmed, &options) {
            Ok(dest) => Err(not_a_snapshot(trimmed, dest).await),
            Err(_) => Err(usage("is not a snapshot URL".into())),
        };
    };
    if is_snapshot_id(name) {
        let dest = open_destination(parent, &options)?;
        return Ok(Snapshot::new(dest, name));
    }
    let dest = open_destination(parent, &options)?;
    let snapshots = Snapshots::new(dest);
    let ids = snapshots.list_ids().await?;
    if name == LATEST {
        return latest(&snapshots, &ids, parent).await;
    }
    let matches: Vec<&String> = ids.iter().filter(|id| id.starts_with(name)).collect();
    match matches.as_slice() {
        [one] => return Ok(snapshots.snapshot(one)),
        [] => {}
        many => {
            let listed: Vec<&str> = many.iter().take(MAX_LISTED).map(|s| s.as_str()).collect();
            let more = many.len().saturating_sub(MAX_LISTED);
            let tail = if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            };
            return Err(CliError::Usage(format!(
                "'{name}' is ambiguous under {parent}: {} snapshots start with it ({}{tail}); \
                 give more of the id",
                many.len(),
                listed.join(", ")
            )));
        }
    }
    // Not a snapshot of `parent`: perhaps the URL is a destination itself, or a folder inside a
    // snapshot.
    if let Ok(dest) = open_destination(trimmed, &options) {
        let inner = Snapshots::new(dest.clone());
        if inner.list_ids().await.is_ok_and(|ids| !ids.is_empty()) {
            return Err(not_a_snapshot(trimmed, dest).await);
        }
    }
    if let Some((dest_url, id)) = split_last(parent)
        && is_snapshot_id(id)
    {
        return Err(CliError::Usage(format!(
            "'{url}' is a folder inside snapshot {id}; pass the snapshot itself: {dest_url}/{id}"
        )));
    }
    Err(CliError::Usage(format!(
        "no snapshot under {parent} is named '{name}' or has an id starting with it ({}); \
         `otsarchive ls {parent}` lists them",
        match ids.len() {
            0 => "it holds no snapshot".to_string(),
            n => format!("it holds {}", crate::text::count(n as u64, "snapshot")),
        }
    )))
}

/// The newest snapshot of `ids` that has a manifest.
async fn latest(snapshots: &Snapshots, ids: &[String], dest: &str) -> Result<Snapshot, CliError> {
    if let Some((snap, _)) = snapshots.newest_committed_in(ids, |_| true).await? {
        return Ok(snap);
    }
    Err(CliError::Usage(if ids.is_empty() {
        format!("{dest}/{LATEST}: there is no snapshot under {dest}")
    } else {
        format!(
            "{dest}/{LATEST}: no snapshot under {dest} is committed ({} found, none finished: \
             `otsarchive ls {dest}` lists them; `otsarchive backup --resume ID` finishes one)",
            ids.len()
        )
    }))
}

/// The error for a destination given where a snapshot is expected.
async fn not_a_snapshot(url: &str, dest: Destination) -> CliError {
    let n = Snapshots::new(dest)
        .list_ids()
        .await
        .map_or(0, |ids| ids.len());
    if n == 0 {
        return CliError::Usage(format!(
            "'{url}' is not a snapshot URL and holds no snapshot: expected DEST/SNAPSHOT_ID, \
             DEST/{LATEST} or DEST/ID-PREFIX"
        ));
    }
    CliError::Usage(format!(
        "'{url}' is a destination with {}, not a snapshot: pass DEST/ID, e.g. {url}/{LATEST} \
         (see `otsarchive ls {url}`)",
        crate::text::count(n as u64, "snapshot")
    ))
}

/// Whether `url` names a snapshot folder rather than a destination (for `ls`): its last segment
/// is a snapshot id and the folder holds no snapshots of its own.
pub async fn looks_like_snapshot(url: &str, dest: &Destination) -> bool {
    let trimmed = url.trim_end_matches('/');
    let Some((_, last)) = split_last(trimmed) else {
        return false;
    };
    is_snapshot_id(last)
        && Snapshots::new(dest.clone())
            .list_ids()
            .await
            .is_ok_and(|ids| ids.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_segments() {
        assert_eq!(split_last("./b/x"), Some(("./b", "x")));
        assert_eq!(
            split_last("oss://bucket/p/x"),
            Some(("oss://bucket/p", "x"))
        );
        assert_eq!(split_last("oss://bucket"), None);
        assert_eq!(split_last("backups"), None);
        assert_eq!(split_last("/x"), None);
    }
}
