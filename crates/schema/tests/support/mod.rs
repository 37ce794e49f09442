//! Shared by the schema crate's tests: the Python referees (DuckDB, pyarrow) that `tests/run.sh`
//! prepares.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value as Json;

/// The Python with DuckDB and pyarrow that `tests/run.sh` prepares.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("OTSARCHIVE_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.venv/bin/python"
    ));
    assert!(
        venv.exists(),
        "no Python referee: run the tests with `bash tests/run.sh`, which creates .venv with \
         duckdb and pyarrow (or set OTSARCHIVE_TEST_PYTHON)"
    );
    venv
}

pub fn run_python(script: &str, arg: &str) -> Json {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(arg)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}
