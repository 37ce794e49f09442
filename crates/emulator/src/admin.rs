//! Signed admin actions for driving the emulator from another process: `POST /AdminTrimStream`
//! (`{"table_name": "t", "before_us": N}` → `{"trimmed": n}`) and `POST /AdminSplitStreamShards`
//! (`{"table_name": "t"}` → `{"shard_ids": [...]}`). Bodies are JSON; errors are
//! `{"error": "..."}` with HTTP 400 (bad body) or 404 (no such table or stream).

use serde::Deserialize;
use serde_json::json;

use crate::engine::Engine;

pub(crate) const TRIM_STREAM: &str = "AdminTrimStream";
pub(crate) const SPLIT_STREAM_SHARDS: &str = "AdminSplitStreamShards";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrimRequest {
    table_name: String,
    before_us: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitRequest {
    table_name: String,
}

/// Whether `action` is an admin action (answered by [`dispatch`], never faulted).
pub(crate) fn is_admin(action: &str) -> bool {
    action == TRIM_STREAM || action == SPLIT_STREAM_SHARDS
}

/// Runs an admin action: (HTTP status, JSON body).
pub(crate) fn dispatch(engine: &Engine, action: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let result = match action {
        TRIM_STREAM => match serde_json::from_slice::<TrimRequest>(body) {
            Ok(r) => engine
                .trim_stream(&r.table_name, r.before_us)
                .map(|n| json!({ "trimmed": n })),
            Err(e) => return error(400, &format!("invalid {action} body: {e}")),
        },
        SPLIT_STREAM_SHARDS => match serde_json::from_slice::<SplitRequest>(body) {
            Ok(r) => engine
                .split_stream_shards(&r.table_name)
                .map(|ids| json!({ "shard_ids": ids })),
            Err(e) => return error(400, &format!("invalid {action} body: {e}")),
        },
        other => return error(400, &format!("unknown admin action '{other}'")),
    };
    match result {
        Ok(v) => (200, v.to_string().into_bytes()),
        Err(msg) => error(404, &msg),
    }
}

fn error(status: u16, message: &str) -> (u16, Vec<u8>) {
    (status, json!({ "error": message }).to_string().into_bytes())
}
