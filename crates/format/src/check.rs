//! What a manifest must satisfy on its own and against its plan and records, without reading any
//! data: the checks `verify` runs before it reads a byte of Parquet. A manifest edited to drop a
//! split (totals recomputed) fails here: the splits no longer cover the key space.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::key::{DisplayKey, KeyPart, KeyValue, cmp_keys};
use crate::layout::data_file_attempt;
use crate::snapshot::{FileEntry, Manifest, Plan, SplitRecord, SplitStatus};

/// One problem with a manifest: the object it concerns (`manifest.json`, a file or record path)
/// and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ManifestProblem {
    pub path: String,
    pub problem: String,
}

fn problem(out: &mut Vec<ManifestProblem>, path: &str, text: String) {
    out.push(ManifestProblem {
        path: path.to_string(),
        problem: text,
    });
}

const MANIFEST: &str = crate::layout::MANIFEST_FILE;

fn all_bound(key: &[KeyPart], min: bool) -> bool {
    !key.is_empty()
        && key.iter().all(|p| {
            if min {
                p.value == KeyValue::InfMin
            } else {
                p.value == KeyValue::InfMax
            }
        })
}

/// Every check on the manifest alone, plus agreement with the plan when it is given.
pub fn check_manifest(m: &Manifest, id: &str, plan: Option<&Plan>) -> Vec<ManifestProblem> {
    let mut out = Vec::new();
    if m.snapshot_id != id {
        problem(
            &mut out,
            MANIFEST,
            format!(
                "the manifest names snapshot '{}', not '{id}'",
                m.snapshot_id
            ),
        );
    }
    let incremental = m
        .changes
        .as_ref()
        .is_some_and(|c| c.kind == crate::change::LinkKind::Incremental);
    if incremental {
        // An incremental holds changes only: no split, no data file.
        if !m.splits.is_empty() || !m.files.is_empty() {
            problem(
                &mut out,
                MANIFEST,
                "an incremental snapshot lists splits or data files".into(),
            );
        }
    } else {
        check_splits(m, &mut out);
    }
    check_files(m, &mut out);
    if let Some(c) = &m.changes {
        check_changes(m, c, &mut out);
    } else if plan.is_some_and(|p| p.changes.is_some()) {
        problem(
            &mut out,
            MANIFEST,
            "the plan captures changes but the manifest has no change set".into(),
        );
    }
    check_totals(m, &mut out);
    if let Some(plan) = plan {
        check_against_plan(m, plan, &mut out);
    }
    out
}

/// The change set: a window that moves forward, change files of the chosen capture attempt,
/// unique, with counts that add up; the chain fields agree with the link's kind.
fn check_changes(m: &Manifest, c: &crate::change::ChangeSet, out: &mut Vec<ManifestProblem>) {
    use crate::change::LinkKind;
    if c.consistency_point.t_us < c.start.t_us {
        problem(
            out,
            MANIFEST,
            format!(
                "the change window ends ({}) before it starts ({})",
                c.consistency_point.time, c.start.time
            ),
        );
    }
    match c.kind {
        LinkKind::Full if c.parent.is_some() || c.base != m.snapshot_id => problem(
            out,
            MANIFEST,
            "a full snapshot names a parent, or a base other than itself".into(),
        ),
        LinkKind::Incremental if c.parent.is_none() || c.base == m.snapshot_id => problem(
            out,
            MANIFEST,
            "an incremental snapshot names no parent, or itself as its base".into(),
        ),
        _ => {}
    }
    let mut seen = BTreeSet::new();
    for f in &c.files {
        if !seen.insert(f.path.as_str()) || m.files.iter().any(|d| d.path == f.path) {
            problem(out, &f.path, "listed twice in the manifest".into());
        }
        if crate::layout::change_object_attempt(&f.path) != Some(c.attempt.as_str())
            || !f.path.ends_with(".parquet")
        {
            problem(
                out,
                &f.path,
                format!(
                    "is not a change file of the chosen capture attempt {}",
                    c.attempt
                ),
            );
        }
    }
    let rows: u64 = c.files.iter().map(|f| f.rows).sum();
    if rows != c.counts.records() {
        problem(
            out,
            MANIFEST,
            format!(
                "the change counts add up to {} changes, the change files hold {rows}",
                c.counts.records()
            ),
        );
    }
}

/// Split ids 0..n in order, ranges that cover the whole key space without gap or overlap.
fn check_splits(m: &Manifest, out: &mut Vec<ManifestProblem>) {
    if m.splits.is_empty() {
        problem(out, MANIFEST, "the manifest lists no split".into());
        return;
    }
    for (i, s) in m.splits.iter().enumerate() {
        if s.id as usize != i {
            problem(
                out,
                MANIFEST,
                format!(
                    "split ids are not contiguous: position {i} holds split {}",
                    s.id
                ),
            );
            break;
        }
    }
    let pk_len = m.source.table.primary_key.len();
    for s in &m.splits {
        if m.format_version >= 2 && s.attempt.is_empty() {
            problem(
                out,
                MANIFEST,
                format!(
                    "split {} names no attempt (required from format version 2)",
                    s.id
                ),
            );
        }
        for (what, key) in [("start", &s.start), ("end", &s.end)] {
            let names: Vec<&str> = key.iter().map(|p| p.name.as_str()).collect();
            let expected: Vec<&str> = m
                .source
                .table
                .primary_key
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            if key.len() != pk_len || names != expected {
                problem(
                    out,
                    MANIFEST,
                    format!(
                        "split {} {what} key ({}) is not a full primary key ({})",
                        s.id,
                        DisplayKey(key),
                        expected.join(",")
                    ),
                );
            }
        }
        if cmp_keys(&s.start, &s.end) != Ordering::Less {
            problem(
                out,
                MANIFEST,
                format!(
                    "split {} is empty or reversed: start {} is not before end {}",
                    s.id,
                    DisplayKey(&s.start),
                    DisplayKey(&s.end)
                ),
            );
        }
    }
    let first = &m.splits[0];
    if !all_bound(&first.start, true) {
        problem(
            out,
            MANIFEST,
            format!(
                "the key space before {} is not covered: the first split (id {}) does not start at INF_MIN",
                DisplayKey(&first.start),
                first.id
            ),
        );
    }
    let last = &m.splits[m.splits.len() - 1];
    if !all_bound(&last.end, false) {
        problem(
            out,
            MANIFEST,
            format!(
                "the key space from {} on is not covered: the last split (id {}) does not end at INF_MAX",
                DisplayKey(&last.end),
                last.id
            ),
        );
    }
    for w in m.splits.windows(2) {
        match cmp_keys(&w[0].end, &w[1].start) {
            Ordering::Equal => {}
            Ordering::Less => problem(
                out,
                MANIFEST,
                format!(
                    "gap between split {} and split {}: keys from {} to {} are in no split",
                    w[0].id,
                    w[1].id,
                    DisplayKey(&w[0].end),
                    DisplayKey(&w[1].start)
                ),
            ),
            Ordering::Greater => problem(
                out,
                MANIFEST,
                format!(
                    "split {} and split {} overlap: split {} starts at {}, before split {} ends at {}",
                    w[0].id,
                    w[1].id,
                    w[1].id,
                    DisplayKey(&w[1].start),
                    w[0].id,
                    DisplayKey(&w[0].end)
                ),
            ),
        }
    }
}

/// Unique paths, each file in a listed split, inside that split's key range, named for the
/// split's chosen attempt; per-split counts equal the sums over its files.
fn check_files(m: &Manifest, out: &mut Vec<ManifestProblem>) {
    let splits: BTreeMap<u32, &SplitStatus> = m.splits.iter().map(|s| (s.id, s)).collect();
    let mut seen = BTreeSet::new();
    let mut per_split: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for f in &m.files {
        if !seen.insert(f.path.as_str()) {
            problem(out, &f.path, "listed twice in the manifest".into());
            continue;
        }
        let e = per_split.entry(f.split).or_default();
        e.0 += 1;
        e.1 += f.rows;
        let Some(s) = splits.get(&f.split) else {
            problem(
                out,
                &f.path,
                format!(
                    "belongs to split {}, which the manifest does not list",
                    f.split
                ),
            );
            continue;
        };
        check_file_in_split(f, s, out);
    }
    for s in &m.splits {
        let (files, rows) = per_split.get(&s.id).copied().unwrap_or_default();
        if files != s.files || rows != s.rows {
            problem(
                out,
                MANIFEST,
                format!(
                    "split {} says {} files and {} rows, its files add up to {files} files and {rows} rows",
                    s.id, s.files, s.rows
                ),
            );
        }
    }
}

fn check_file_in_split(f: &FileEntry, s: &SplitStatus, out: &mut Vec<ManifestProblem>) {
    // From format 2 on every split names its attempt (checked in `check_splits`).
    if !s.attempt.is_empty() {
        match data_file_attempt(&f.path) {
            Some((split, attempt)) if split == s.id && attempt == s.attempt => {}
            _ => problem(
                out,
                &f.path,
                format!(
                    "is not a file of split {}'s chosen attempt {}",
                    s.id, s.attempt
                ),
            ),
        }
    }
    if f.rows == 0 {
        return;
    }
    if cmp_keys(&f.pk_min, &f.pk_max) == Ordering::Greater {
        problem(
            out,
            &f.path,
            format!(
                "its smallest key {} is after its largest key {}",
                DisplayKey(&f.pk_min),
                DisplayKey(&f.pk_max)
            ),
        );
    }
    let range = s.range();
    if !range.contains(&f.pk_min) || !range.contains(&f.pk_max) {
        problem(
            out,
            &f.path,
            format!(
                "its keys {} .. {} leave split {}'s range [{}, {})",
                DisplayKey(&f.pk_min),
                DisplayKey(&f.pk_max),
                s.id,
                DisplayKey(&s.start),
                DisplayKey(&s.end)
            ),
        );
    }
}

/// Totals equal the sums over files; statistics agree with the totals and with themselves.
fn check_totals(m: &Manifest, out: &mut Vec<ManifestProblem>) {
    let rows: u64 = m.files.iter().map(|f| f.rows).sum();
    let cells: u64 = m.files.iter().map(|f| f.cells).sum();
    let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
    let t = &m.totals;
    if rows != t.rows || cells != t.cells || bytes != t.bytes || m.files.len() as u64 != t.files {
        problem(
            out,
            MANIFEST,
            format!(
                "totals (rows {}, cells {}, bytes {}, files {}) do not match the file list (rows {rows}, cells {cells}, bytes {bytes}, files {})",
                t.rows,
                t.cells,
                t.bytes,
                t.files,
                m.files.len()
            ),
        );
    }
    let after: u64 = m.splits.iter().map(|s| s.cells_after_t.cells).sum();
    if after != t.cells_after_t {
        problem(
            out,
            MANIFEST,
            format!(
                "totals say {} cells after T, the splits add up to {after}",
                t.cells_after_t
            ),
        );
    }
    let st = &m.stats;
    if st.rows != t.rows || st.cells != t.cells || st.overflow_cells != t.overflow_cells {
        problem(
            out,
            MANIFEST,
            format!(
                "column statistics (rows {}, cells {}, overflow {}) disagree with the totals (rows {}, cells {}, overflow {})",
                st.rows, st.cells, st.overflow_cells, t.rows, t.cells, t.overflow_cells
            ),
        );
    }
    let by_type: u64 = st
        .columns
        .values()
        .flat_map(|c| c.cells_by_type.values())
        .sum();
    let overflow: u64 = st.columns.values().map(|c| c.overflow_cells).sum();
    if by_type != st.cells || overflow != st.overflow_cells {
        problem(
            out,
            MANIFEST,
            format!(
                "per-column statistics add up to {by_type} cells ({overflow} in $cells), the totals say {} ({})",
                st.cells, st.overflow_cells
            ),
        );
    }
    for c in &m.schema.columns {
        let Some(cs) = st.columns.get(&c.name) else {
            if st.rows > 0 {
                problem(
                    out,
                    MANIFEST,
                    format!("typed column '{}' has no statistics", c.name),
                );
            }
            continue;
        };
        if cs.typed_values + cs.typed_nulls != st.rows {
            problem(
                out,
                MANIFEST,
                format!(
                    "column '{}': {} typed values and {} nulls do not add up to {} rows",
                    c.name, cs.typed_values, cs.typed_nulls, st.rows
                ),
            );
        }
    }
}

fn check_against_plan(m: &Manifest, plan: &Plan, out: &mut Vec<ManifestProblem>) {
    let mut differs = |what: &str| {
        problem(
            out,
            MANIFEST,
            format!("its {what} differs from the plan's (plan.json)"),
        )
    };
    if plan.snapshot_id != m.snapshot_id {
        differs("snapshot id");
    }
    if plan.source != m.source {
        differs("source table");
    }
    if plan.time_range != m.time_range {
        differs("time range");
    }
    if plan.schema != m.schema {
        differs("schema");
    }
    if plan.partitioning != m.partitioning {
        differs("partitioning");
    }
    if let (Some(p), Some(c)) = (&plan.changes, &m.changes)
        && (p.kind != c.kind
            || p.stream_id != c.stream_id
            || p.parent != c.parent
            || p.base != c.base
            || p.start != c.start)
    {
        differs("change capture (kind, stream, parent, base or start)");
    }
    if plan.splits.len() != m.splits.len() {
        problem(
            out,
            MANIFEST,
            format!(
                "the plan has {} splits, the manifest {}",
                plan.splits.len(),
                m.splits.len()
            ),
        );
    }
    for s in &m.splits {
        match plan.splits.iter().find(|p| p.id == s.id) {
            None => problem(out, MANIFEST, format!("split {} is not in the plan", s.id)),
            Some(p) if *p != s.range() => problem(
                out,
                MANIFEST,
                format!(
                    "split {} is [{}, {}) in the manifest but [{}, {}) in the plan",
                    s.id,
                    DisplayKey(&s.start),
                    DisplayKey(&s.end),
                    DisplayKey(&p.start),
                    DisplayKey(&p.end)
                ),
            ),
            Some(_) => {}
        }
    }
    for p in &plan.splits {
        if !m.splits.iter().any(|s| s.id == p.id) {
            problem(
                out,
                MANIFEST,
                format!(
                    "split {} of the plan, [{}, {}), is missing from the manifest",
                    p.id,
                    DisplayKey(&p.start),
                    DisplayKey(&p.end)
                ),
            );
        }
    }
}

/// The manifest's view of a split against the record of its chosen attempt: same range, same
/// attempt, exactly the same files.
pub fn check_record(
    m: &Manifest,
    s: &SplitStatus,
    r: &SplitRecord,
    path: &str,
) -> Vec<ManifestProblem> {
    let mut out = Vec::new();
    if r.snapshot_id != m.snapshot_id {
        problem(
            &mut out,
            path,
            format!("the record names snapshot '{}'", r.snapshot_id),
        );
    }
    if r.split != s.range() {
        problem(
            &mut out,
            path,
            format!(
                "the record's range differs from split {}'s in the manifest",
                s.id
            ),
        );
    }
    if !s.attempt.is_empty() && r.attempt != s.attempt {
        problem(
            &mut out,
            path,
            format!(
                "the record is attempt {}, the manifest chose {}",
                r.attempt, s.attempt
            ),
        );
    }
    let listed: Vec<&FileEntry> = m.files.iter().filter(|f| f.split == s.id).collect();
    let recorded: Vec<&FileEntry> = r.files.iter().collect();
    if listed != recorded {
        let a: BTreeSet<&str> = listed.iter().map(|f| f.path.as_str()).collect();
        let b: BTreeSet<&str> = recorded.iter().map(|f| f.path.as_str()).collect();
        let missing: Vec<&str> = b.difference(&a).copied().collect();
        let extra: Vec<&str> = a.difference(&b).copied().collect();
        problem(
            &mut out,
            path,
            format!(
                "the manifest's files of split {} differ from the record's (missing from the manifest: {missing:?}; not in the record: {extra:?}; or entries differ)",
                s.id
            ),
        );
    }
    if r.stats.rows != s.rows {
        problem(
            &mut out,
            path,
            format!(
                "the record counts {} rows, the manifest's split {} says {}",
                r.stats.rows, s.id, s.rows
            ),
        );
    }
    if r.cells_after_t != s.cells_after_t {
        problem(
            &mut out,
            path,
            format!("split {}'s cells after T differ from the record's", s.id),
        );
    }
    out
}
