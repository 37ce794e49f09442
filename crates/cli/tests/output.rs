//! What people read: `show` and `ls` against golden files (ids, times and sizes normalized),
//! tables aligned whatever the name lengths, `verify --against-table` naming a differing key as
//! `--start-key` takes it and the cell that differs, snapshots named by `latest` and id prefixes,
//! a destination or a snapshot folder given in the wrong place, and partition specs refused for
//! a column of the wrong type.
//!
//! `OTSARCHIVE_UPDATE_GOLDEN=1 cargo test -p otsarchive --test output` rewrites the golden files.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use ots_datagen::{DatasetSpec, create_and_load};
use ots_emulator::PageLimits;
use ots_wire::Idempotency;
use ots_wire::pb;
use ots_wire::types::{Cell, Value};
use support::*;

const LONG_TABLE: &str = "orders_archive_with_a_much_longer_table_name";
/// A snapshot folder with a plan and no manifest: an interrupted backup, newest by id.
const INCOMPLETE: &str = "20991231T235959Z-0000abcd";

fn cmd(env: &Env, args: &[&str]) -> std::process::Command {
    let mut c = otsarchive();
    c.args(["--endpoint", &env.emu.endpoint(), "--instance", INSTANCE])
        .args(args);
    c
}

async fn backup(env: &Env, table: &str, dest: &Path, extra: &[&str]) -> String {
    let mut c = cmd(
        env,
        &[
            "-q",
            "backup",
            "--table",
            table,
            "--to",
            dest.to_str().unwrap(),
        ],
    );
    c.args(extra);
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let url = stdout(&out).lines().last().unwrap().to_string();
    Path::new(&url)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

/// A destination with two committed snapshots (the second of a table with a long name,
/// partitioned by city) and an incomplete one.
struct Fixture {
    env: Env,
    _dir: tempfile::TempDir,
    dest: PathBuf,
    first: String,
    second: String,
}

async fn fixture() -> Fixture {
    let env = env_with_table("orders", 800, PageLimits::default()).await;
    create_and_load(
        &env.client,
        LONG_TABLE,
        &DatasetSpec::new(100, 77),
        4,
        Arc::new(AtomicU64::new(0)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("backups");
    let first = backup(&env, "orders", &dest, &[]).await;
    // Ids have second resolution: the second snapshot is newer.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = backup(&env, LONG_TABLE, &dest, &["--partition-by", "column:city"]).await;
    assert!(first < second);
    std::fs::create_dir_all(dest.join(INCOMPLETE)).unwrap();
    std::fs::copy(
        dest.join(&first).join("plan.json"),
        dest.join(INCOMPLETE).join("plan.json"),
    )
    .unwrap();
    Fixture {
        env,
        _dir: dir,
        dest,
        first,
        second,
    }
}

fn is_shape(chars: &[char], at: usize, shape: &str) -> bool {
    let shape: Vec<char> = shape.chars().collect();
    at + shape.len() <= chars.len()
        && shape.iter().zip(&chars[at..]).all(|(s, c)| match s {
            '0' => c.is_ascii_digit(),
            s => s == c,
        })
}

/// Times, 13-digit millisecond values, sizes and durations replaced by placeholders; runs of
/// spaces collapsed (alignment is checked on the raw text by [`assert_aligned`]).
fn normalize(text: &str, subs: &[(&str, &str)]) -> String {
    let mut s = text.to_string();
    for (from, to) in subs {
        s = s.replace(from, to);
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !(chars[i - 1].is_ascii_digit() || ",.".contains(chars[i - 1]));
        if is_shape(&chars, i, "0000-00-00T00:00:00.000Z") {
            out.push_str("<TIME>");
            i += 24;
            continue;
        }
        if boundary && chars[i].is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            let rest: String = chars[j..chars.len().min(j + 5)].iter().collect();
            let after = |n: usize| chars.get(j + n).is_none_or(|c| !c.is_alphanumeric());
            let digits = j - i;
            if [" B", " KiB", " MiB", " GiB"]
                .iter()
                .any(|u| rest.starts_with(u) && after(u.len()))
            {
                out.push_str("<SIZE>");
                i = j + if rest.starts_with(" B") { 2 } else { 4 };
                continue;
            }
            if rest.starts_with(" s)") {
                out.push_str("<SECS>");
                i = j;
                continue;
            }
            if digits == 13 && chars[i..j].iter().all(char::is_ascii_digit) {
                out.push_str("<MS>");
                i = j;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    let mut collapsed = String::new();
    for line in out.lines() {
        let mut l = String::new();
        let mut spaces = 0;
        for c in line.trim_end().chars() {
            if c == ' ' {
                spaces += 1;
                continue;
            }
            if spaces > 0 {
                l.push_str(if spaces > 1 { "  " } else { " " });
                spaces = 0;
            }
            l.push(c);
        }
        collapsed.push_str(&l);
        collapsed.push('\n');
    }
    collapsed
}

fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("OTSARCHIVE_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (OTSARCHIVE_UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    assert_eq!(
        got, want,
        "{name} differs from the golden file (OTSARCHIVE_UPDATE_GOLDEN=1 rewrites it after a deliberate change)"
    );
}

/// The table starting with the line that begins with `header`: every cell of a left-aligned
/// column starts where its header starts, every cell of a right-aligned one ends where its
/// header ends.
fn assert_aligned(text: &str, header: &str, right: &[&str]) {
    let lines: Vec<Vec<char>> = text
        .lines()
        .skip_while(|l| !l.starts_with(header))
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.chars().collect())
        .collect();
    assert!(lines.len() > 1, "no table under '{header}' in:\n{text}");
    let head = &lines[0];
    // Columns start after two spaces.
    let mut cols = Vec::new();
    let mut i = 0;
    while i < head.len() {
        if head[i] != ' ' && (i == 0 || (i >= 2 && head[i - 1] == ' ' && head[i - 2] == ' ')) {
            let mut j = i;
            while j < head.len() && !(head[j] == ' ' && head.get(j + 1) == Some(&' ')) {
                j += 1;
            }
            cols.push((head[i..j].iter().collect::<String>(), i, j));
            i = j;
        }
        i += 1;
    }
    let raw = text.to_string();
    for row in &lines[1..] {
        let at = |k: usize| row.get(k).copied().unwrap_or(' ');
        for (name, start, end) in &cols {
            if right.contains(&name.as_str()) {
                assert!(
                    at(end - 1) != ' ' && at(*end) == ' ',
                    "{name} is not right-aligned in '{}':\n{raw}",
                    row.iter().collect::<String>()
                );
            } else {
                assert!(
                    at(*start) != ' ' && (*start == 0 || at(start - 1) == ' '),
                    "{name} does not start at column {start} in '{}':\n{raw}",
                    row.iter().collect::<String>()
                );
            }
        }
    }
}

#[tokio::test]
async fn show_and_ls_read_as_the_golden_files_say_with_aligned_columns() {
    let f = fixture().await;
    let endpoint = f.env.emu.endpoint();
    let subs = [
        (f.first.as_str(), "<ID1>"),
        (f.second.as_str(), "<ID2>"),
        (endpoint.as_str(), "<ENDPOINT>"),
    ];
    let dest = f.dest.to_str().unwrap();

    let out = run(cmd(&f.env, &["ls", dest])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_aligned(&text, "SNAPSHOT", &["ROWS", "CHANGES", "FILES", "SIZE"]);
    golden("ls.txt", &normalize(&text, &subs));

    for (id, name) in [(&f.first, "show.txt"), (&f.second, "show_partitioned.txt")] {
        let out = run(cmd(&f.env, &["show", &format!("{dest}/{id}")])).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(!text.contains("Some("), "{text}");
        assert!(!text.contains('{'), "no raw JSON: {text}");
        assert_aligned(&text, "COLUMN", &["TYPED", "NULL", "$CELLS", "CONFLICTS"]);
        // The key column of the summary is as wide as its longest key.
        for line in text.lines().take_while(|l| !l.is_empty()) {
            let chars: Vec<char> = line.chars().collect();
            assert!(chars[11] == ' ' && chars[12] != ' ', "'{line}'");
        }
        golden(name, &normalize(&text, &subs));
    }
    let out = run(cmd(&f.env, &["show", &format!("{dest}/{}", f.second)])).await;
    let text = stdout(&out);
    assert_aligned(&text, "PARTITION", &["FILES", "ROWS", "SIZE"]);
}

#[tokio::test]
async fn snapshots_are_named_by_latest_and_id_prefixes() {
    let f = fixture().await;
    let dest = f.dest.to_str().unwrap();
    let show_id = |out: &std::process::Output| -> String {
        let v: serde_json::Value = serde_json::from_str(stdout(out).trim())
            .unwrap_or_else(|e| panic!("{e}: {}", stderr(out)));
        v["snapshot_id"].as_str().unwrap().to_string()
    };
    // `latest` is the newest committed snapshot, not the newer incomplete one.
    let out = run(cmd(&f.env, &["--json", "show", &format!("{dest}/latest")])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(show_id(&out), f.second);
    // The shortest prefix that tells the two apart names each.
    let n = (1..=f.first.len())
        .find(|&n| f.first[..n] != f.second[..n])
        .unwrap();
    for id in [&f.first, &f.second] {
        let out = run(cmd(
            &f.env,
            &["--json", "show", &format!("{dest}/{}", &id[..n])],
        ))
        .await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(&show_id(&out), id);
        let out = run(cmd(&f.env, &["verify", &format!("{dest}/{}", &id[..n])])).await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).starts_with(&format!("snapshot {id}: OK, ")),
            "{}",
            stdout(&out)
        );
    }
    // Ambiguous: every match is listed.
    let out = run(cmd(&f.env, &["show", &format!("{dest}/20")])).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("ambiguous") && err.contains("3 snapshots"),
        "{err}"
    );
    for id in [&f.first, &f.second, &INCOMPLETE.to_string()] {
        assert!(err.contains(id.as_str()), "{err}");
    }
    // No match.
    let out = run(cmd(&f.env, &["show", &format!("{dest}/1999")])).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no snapshot under"),
        "{}",
        stderr(&out)
    );
    // `latest` with nothing committed, and with nothing at all.
    let only_incomplete = f.dest.parent().unwrap().join("only-incomplete");
    std::fs::create_dir_all(only_incomplete.join(INCOMPLETE)).unwrap();
    let empty = f.dest.parent().unwrap().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for (d, message) in [
        (&only_incomplete, "no snapshot under"),
        (&empty, "there is no snapshot under"),
    ] {
        let out = run(cmd(&f.env, &["verify", &format!("{}/latest", d.display())])).await;
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
    }
    // A destination where a snapshot is expected says what it is.
    for name in [dest.to_string(), format!("{dest}/")] {
        let out = run(cmd(&f.env, &["verify", &name])).await;
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(
            err.contains("is a destination with 3 snapshots")
                && err.contains("pass DEST/ID")
                && err.contains(&format!("otsarchive ls {dest}")),
            "{err}"
        );
    }
    // A relative destination without a parent folder in the name, from its parent.
    let mut c = cmd(&f.env, &["verify", "backups"]);
    c.current_dir(f.dest.parent().unwrap());
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("'backups' is a destination with 3 snapshots"),
        "{}",
        stderr(&out)
    );
    // A folder inside a snapshot names the snapshot.
    let out = run(cmd(&f.env, &["show", &format!("{dest}/{}/data", f.first)])).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("inside snapshot {}", f.first)),
        "{}",
        stderr(&out)
    );
    // `ls` on a snapshot says so.
    let out = run(cmd(&f.env, &["ls", &format!("{dest}/{}", f.first)])).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is a snapshot, not a destination")
            && stderr(&out).contains(&format!("otsarchive show {dest}/{}", f.first)),
        "{}",
        stderr(&out)
    );
    // restore --from takes the same names.
    let work = tempfile::tempdir().unwrap();
    let mut c = cmd(
        &f.env,
        &[
            "--json",
            "restore",
            "--from",
            &format!("{dest}/latest"),
            "--table",
            "copy",
            "--create-table",
        ],
    );
    c.current_dir(work.path());
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["snapshot_id"], f.second.as_str());
    assert_eq!(v["rows_written"], 100);
}

#[tokio::test]
async fn verify_against_a_table_names_the_key_and_the_differing_cell() {
    let env = env_with_table("t", 300, PageLimits::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let id = backup(&env, "t", dir.path(), &[]).await;
    let snap = format!("{}/{id}", dir.path().display());
    let rows = env.expected_rows();
    // Row 5: the newest `age` version, same timestamp, another type.
    let age = rows[5].cells.iter().find(|c| c.name == "age").unwrap();
    let Value::Integer(old) = age.value else {
        panic!("{age:?}")
    };
    let ts = age.timestamp.unwrap();
    put_cells(
        &env.client,
        "t",
        &rows[5].primary_key,
        &[Cell::new("age", Value::String("thirty".into()), Some(ts))],
    )
    .await;
    // Row 7: deleted.
    let req = pb::DeleteRowRequest {
        table_name: "t".into(),
        primary_key: Bytes::from(ots_wire::plainbuffer::encode_delete_row(
            &rows[7].primary_key,
        )),
        condition: pb::Condition {
            row_existence: pb::RowExistenceExpectation::Ignore as i32,
            column_condition: None,
        },
        ..Default::default()
    };
    env.client
        .delete_row(&req, Idempotency::Idempotent)
        .await
        .unwrap();

    let out = run(cmd(&env, &["verify", &snap, "--against-table", "t"])).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let key5 = ots_format::display_columns(&rows[5].primary_key);
    let key7 = ots_format::display_columns(&rows[7].primary_key);
    let err = stderr(&out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("DIFFERENT") || l.starts_with("MISSING"))
        .collect();
    let time = {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ts as u64);
        ots_format::time::rfc3339(t)
    };
    assert_eq!(
        lines,
        [
            format!(
                "DIFFERENT {key5}: column age, version {time} ({ts} ms): snapshot has {old} (INTEGER), table has \"thirty\" (STRING)"
            ),
            format!("MISSING   {key7}: in the snapshot, not in the table"),
        ],
        "{err}"
    );
    let verdict = stdout(&out);
    let verdict: Vec<&str> = verdict.lines().collect();
    assert_eq!(verdict.len(), 2, "{verdict:?}");
    assert!(
        verdict[0].starts_with(&format!("snapshot {id}: OK, 1 file, "))
            && verdict[0].ends_with(" and 300 rows checked"),
        "{verdict:?}"
    );
    assert_eq!(
        verdict[1],
        "table 't' (every cell): DIFFERENT, 298 of 300 snapshot rows match; 1 different, \
         1 missing in the table, 0 only in the table (299 rows in the table)"
    );
    // The key as printed is what --start-key and --end-key take.
    let key6 = ots_format::display_columns(&rows[6].primary_key);
    let work = tempfile::tempdir().unwrap();
    let mut c = cmd(
        &env,
        &[
            "--json",
            "restore",
            "--from",
            &snap,
            "--table",
            "one_row",
            "--create-table",
            "--start-key",
            &key5,
            "--end-key",
            &key6,
        ],
    );
    c.current_dir(work.path());
    let out = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["rows_written"], 1, "{v}");
}

#[tokio::test]
async fn time_partitions_on_a_column_of_the_wrong_type_are_refused() {
    let env = env_with_table("t", 50, PageLimits::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ranges = |env: &Env| {
        env.emu
            .stats()
            .actions
            .get("GetRange")
            .copied()
            .unwrap_or(0)
    };
    for (spec, message, before_any_read) in [
        ("day:city:seconds", "'city' of table 't' is STRING", false),
        ("hour:name:millis", "'name' of table 't' is STRING", false),
        ("day:bio:seconds", "day:bio:iso", false),
        (
            "day:user_id:millis",
            "'user_id' of table 't' is STRING",
            true,
        ),
        ("day:seq:iso", "'seq' of table 't' is INTEGER", true),
        ("day:age:iso", "'age' of table 't' is INTEGER", false),
    ] {
        let before = ranges(&env);
        let out = run(cmd(
            &env,
            &[
                "backup",
                "--table",
                "t",
                "--to",
                dir.path().to_str().unwrap(),
                "--partition-by",
                spec,
            ],
        ))
        .await;
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{spec}: {}", stderr(&out));
        if before_any_read {
            assert_eq!(ranges(&env), before, "{spec}: data was read before failing");
        }
    }
    // Nothing was started: no snapshot folder.
    let snapshots: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| ots_format::is_snapshot_id(&e.file_name().to_string_lossy()))
        .collect();
    assert!(snapshots.is_empty(), "{snapshots:?}");
    // The right types work.
    backup(&env, "t", dir.path(), &["--partition-by", "day:seq:millis"]).await;
    backup(&env, "t", dir.path(), &["--partition-by", "day:name:iso"]).await;
}
