//! Replay of captured changes onto a table (stream fact sheet §5: a scan plus every change logged
//! from before it began, replayed in order, is the table exactly as of the last change).
//!
//! Each change becomes one write with condition IGNORE: PUT_ROW a PutRow of its cells (the whole
//! row is replaced), UPDATE_ROW an UpdateRow of its cell operations in order, DELETE_ROW a
//! DeleteRow. Every put carries its timestamp, and every operation assigns the cells it names, so
//! replaying a change twice, or a change the table already reflects, is harmless: replay is
//! idempotent.
//!
//! Throughput: changes are sent with BatchWriteRow, at most 200 rows and 4 MB per request. The
//! service does not order two operations on one row of a BatchWriteRow, so a request never holds a
//! key twice, and per-key order is kept by lanes: a key is hashed into one of `concurrency` lanes,
//! and one task applies each lane's changes in order, one request after the other. Within a lane
//! a request is closed when it is full, when the next change's key is already in it (told by a
//! hash of the key: a collision only closes a request early), or when the lane has nothing more
//! queued. A change one write cannot carry (over 4 MB or 1,024 cells) is
//! written as several writes in order ([`crate::split`]): a PUT_ROW as a PutRow and UpdateRows, an
//! UPDATE_ROW as several UpdateRows.
//!
//! Row errors that are retryable are retried ([`OtsClient::batch_write_row_retrying`]); a change
//! that fails for good stops its lane and is [`RestoreError::ChangeFailed`], naming its key and
//! ordinal. Nothing is dropped silently.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ots_format::change::{Change, ChangeOp};
use ots_wire::plainbuffer::{encode_delete_row, encode_update_row};
use ots_wire::types::{Cell, ColumnUpdate, PkColumn, PkValue, Row};
use ots_wire::{Idempotency, OtsClient, pb};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::RestoreError;
use crate::rate::AdaptiveRate;
use crate::split::{
    ROW_OVERHEAD, RowPart, needs_split_counts, split_row, split_updates, update_needs_split,
};
use crate::{MAX_BATCH_BYTES, MAX_BATCH_ROWS};

/// How changes are replayed.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// The table changes are applied to.
    pub table: String,
    /// Lanes, each applied in order by one task (at least 1).
    pub concurrency: usize,
    /// Skip changes written after this time (µs since the epoch): `sequence.timestamp_us >
    /// as_of_us`. `None` applies every change.
    pub as_of_us: Option<i64>,
    /// Rows written per second over all lanes; `None` for no cap (throttling still slows down).
    pub rows_per_sec: Option<f64>,
    /// Calls of [`ChangeApplier::apply`] queued per lane before `apply` waits (at least 1).
    pub queue_per_lane: usize,
}

impl ReplayOptions {
    pub fn new(table: impl Into<String>) -> Self {
        ReplayOptions {
            table: table.into(),
            concurrency: 8,
            as_of_us: None,
            rows_per_sec: None,
            queue_per_lane: 2,
        }
    }
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplayStats {
    /// Changes applied, by operation.
    pub put_row: u64,
    pub update_row: u64,
    pub delete_row: u64,
    /// Changes left out because they were written after `as_of_us`.
    pub skipped_as_of: u64,
    /// BatchWriteRow requests sent (each part of a split change is one).
    pub requests: u64,
    /// Changes written in several parts (over 4 MB or 1,024 cells).
    pub split_changes: u64,
    /// Row re-sends after retryable row errors.
    pub row_retries: u64,
    pub throttle_events: u64,
}

impl ReplayStats {
    pub fn applied(&self) -> u64 {
        self.put_row + self.update_row + self.delete_row
    }
}

#[derive(Debug, Default)]
struct Counters {
    put_row: AtomicU64,
    update_row: AtomicU64,
    delete_row: AtomicU64,
    requests: AtomicU64,
    split_changes: AtomicU64,
    row_retries: AtomicU64,
    throttle_events: AtomicU64,
}

impl Counters {
    fn applied(&self, op: ChangeOp) {
        match op {
            ChangeOp::PutRow => &self.put_row,
            ChangeOp::UpdateRow => &self.update_row,
            ChangeOp::DeleteRow => &self.delete_row,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

fn key_text(pk: &[PkColumn]) -> String {
    ots_format::display_columns(pk)
}

/// Checks that `change` can be replayed exactly: a full key of concrete values, cells that fit
/// its op, and a timestamp on every put (a put without one would take the time of the replay).
pub fn check_replayable(change: &Change) -> Result<(), RestoreError> {
    let invalid = |detail: String| RestoreError::ChangeInvalid {
        ordinal: change.ordinal,
        op: change.op.as_str(),
        key: key_text(&change.primary_key),
        detail,
    };
    if change.primary_key.is_empty() {
        return Err(invalid("the change has no primary key".into()));
    }
    if let Some(c) = change.primary_key.iter().find(|c| {
        matches!(
            c.value,
            PkValue::InfMin | PkValue::InfMax | PkValue::AutoIncrement
        )
    }) {
        return Err(invalid(format!(
            "key column '{}' holds a range marker or AUTO_INCREMENT, not a value",
            c.name
        )));
    }
    if change.op == ChangeOp::DeleteRow && !change.cells.is_empty() {
        return Err(invalid(format!(
            "a DELETE_ROW with {} cell operations",
            change.cells.len()
        )));
    }
    for (i, c) in change.cells.iter().enumerate() {
        let problem = match c {
            ColumnUpdate::Put {
                timestamp: None, ..
            } => Some("a put without a timestamp"),
            ColumnUpdate::Increment { .. } => Some("an increment"),
            ColumnUpdate::DeleteOneVersion { .. } | ColumnUpdate::DeleteAllVersions { .. }
                if change.op == ChangeOp::PutRow =>
            {
                Some("a delete in a PUT_ROW (puts only)")
            }
            _ => None,
        };
        if let Some(p) = problem {
            return Err(invalid(format!("cell operation {i}: {p}")));
        }
    }
    Ok(())
}

fn key_hash(pk: &[PkColumn]) -> u64 {
    let mut h = DefaultHasher::new();
    pk.hash(&mut h);
    h.finish()
}

/// The lane of a key that hashes to `hash`.
fn lane_of(hash: u64, lanes: usize) -> usize {
    (hash % lanes.max(1) as u64) as usize
}

/// A change on its way to its lane, with its key's hash (computed once, for the lane and for
/// the lane's request).
type Keyed = (u64, Change);

struct Lane {
    tx: Option<mpsc::Sender<Vec<Keyed>>>,
    task: Option<JoinHandle<Result<(), RestoreError>>>,
}

/// Applies changes to a table, call after call, in order ([`ChangeApplier::apply`]), and waits for
/// every write at [`ChangeApplier::finish`]. Dropping it without `finish` stops its tasks.
pub struct ChangeApplier {
    lanes: Vec<Lane>,
    counters: Arc<Counters>,
    as_of_us: Option<i64>,
    skipped_as_of: u64,
}

/// What every lane shares.
struct LaneContext {
    client: OtsClient,
    table: String,
    rate: AdaptiveRate,
    counters: Arc<Counters>,
}

/// One change encoded as one write.
struct Pending {
    ordinal: u64,
    op: ChangeOp,
    key: Vec<PkColumn>,
    request: pb::RowInBatchWriteRowRequest,
}

/// The request a lane is cutting.
#[derive(Default)]
struct PendingBatch {
    rows: Vec<Pending>,
    /// Hashes of the keys in `rows`, for "a request never holds a key twice" (module docs): a
    /// hash collision only closes a request early.
    keys: HashSet<u64>,
    bytes: usize,
}

fn row_request(op: pb::OperationType, encoded: Bytes) -> pb::RowInBatchWriteRowRequest {
    pb::RowInBatchWriteRowRequest {
        r#type: op as i32,
        row_change: encoded,
        condition: pb::Condition {
            row_existence: pb::RowExistenceExpectation::Ignore as i32,
            column_condition: None,
        },
        return_content: None,
    }
}

/// How one change is written.
enum Encoded {
    /// No write: an UPDATE_ROW without cell operations changes nothing.
    Nothing,
    One(pb::OperationType, Bytes),
    Parts(Vec<RowPart>),
}

/// A PutRow change as the row it writes.
fn put_row(change: &Change) -> Row {
    Row {
        primary_key: change.primary_key.clone(),
        cells: change
            .cells
            .iter()
            .filter_map(|c| match c {
                ColumnUpdate::Put {
                    name,
                    value,
                    timestamp,
                } => Some(Cell::new(name, value.clone(), *timestamp)),
                // Refused by check_replayable.
                _ => None,
            })
            .collect(),
    }
}

fn encode(change: &Change) -> Result<Encoded, RestoreError> {
    let split_err = |e: crate::split::SplitError| RestoreError::ChangeInvalid {
        ordinal: change.ordinal,
        op: change.op.as_str(),
        key: key_text(&change.primary_key),
        detail: e.to_string(),
    };
    Ok(match change.op {
        ChangeOp::DeleteRow => Encoded::One(
            pb::OperationType::Delete,
            Bytes::from(encode_delete_row(&change.primary_key)),
        ),
        ChangeOp::PutRow => {
            // A PutRow's cells are all puts (check_replayable), and puts encode as the row's own
            // cells: no copy of the row is needed unless it must be split.
            let encoded = encode_update_row(&change.primary_key, &change.cells);
            if needs_split_counts(change.cells.len(), encoded.len()) {
                Encoded::Parts(
                    split_row(&put_row(change), pb::OperationType::Put).map_err(split_err)?,
                )
            } else {
                Encoded::One(pb::OperationType::Put, Bytes::from(encoded))
            }
        }
        ChangeOp::UpdateRow if change.cells.is_empty() => Encoded::Nothing,
        ChangeOp::UpdateRow => {
            let encoded = encode_update_row(&change.primary_key, &change.cells);
            if update_needs_split(&change.cells, encoded.len()) {
                Encoded::Parts(
                    split_updates(&change.primary_key, &change.cells).map_err(split_err)?,
                )
            } else {
                Encoded::One(pb::OperationType::Update, Bytes::from(encoded))
            }
        }
    })
}

impl LaneContext {
    async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Vec<Keyed>>) -> Result<(), RestoreError> {
        let mut batch = PendingBatch::default();
        while let Some(chunk) = rx.recv().await {
            let mut next = Some(chunk);
            while let Some(changes) = next.take() {
                for (key, change) in changes {
                    self.add(&mut batch, key, change).await?;
                }
                // Keep filling the request while more is queued; send it once the lane is idle.
                next = rx.try_recv().ok();
            }
            self.flush(&mut batch).await?;
        }
        self.flush(&mut batch).await
    }

    /// Adds `change`, whose key hashes to `key`, to the request being cut.
    async fn add(
        &self,
        batch: &mut PendingBatch,
        key: u64,
        change: Change,
    ) -> Result<(), RestoreError> {
        match encode(&change)? {
            Encoded::Nothing => {
                self.counters.applied(change.op);
                Ok(())
            }
            Encoded::One(op, encoded) => {
                let size = encoded.len() + ROW_OVERHEAD;
                if !batch.rows.is_empty()
                    && (batch.rows.len() >= MAX_BATCH_ROWS
                        || batch.bytes + size > MAX_BATCH_BYTES
                        || batch.keys.contains(&key))
                {
                    self.flush(batch).await?;
                }
                batch.bytes += size;
                batch.keys.insert(key);
                batch.rows.push(Pending {
                    ordinal: change.ordinal,
                    op: change.op,
                    key: change.primary_key,
                    request: row_request(op, encoded),
                });
                Ok(())
            }
            Encoded::Parts(parts) => {
                // Earlier changes of this lane (maybe of this key) go first.
                self.flush(batch).await?;
                for part in parts {
                    let p = Pending {
                        ordinal: change.ordinal,
                        op: change.op,
                        key: change.primary_key.clone(),
                        request: row_request(part.op, part.encoded),
                    };
                    self.send(vec![p], false).await?;
                }
                self.counters.split_changes.fetch_add(1, Ordering::Relaxed);
                self.counters.applied(change.op);
                Ok(())
            }
        }
    }

    async fn flush(&self, batch: &mut PendingBatch) -> Result<(), RestoreError> {
        if batch.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut batch.rows);
        batch.keys.clear();
        batch.bytes = 0;
        self.send(rows, true).await
    }

    /// One BatchWriteRow (with its row retries) under the rate. A row that fails for good is
    /// the error of the change with the smallest ordinal among the failures; `count` counts the
    /// changes written (false for the parts of a split change, counted when all are written).
    async fn send(&self, rows: Vec<Pending>, count: bool) -> Result<(), RestoreError> {
        self.rate.acquire(rows.len() as f64).await;
        let mut meta = Vec::with_capacity(rows.len());
        let mut requests = Vec::with_capacity(rows.len());
        for p in rows {
            meta.push((p.ordinal, p.op, p.key));
            requests.push(p.request);
        }
        let req = pb::BatchWriteRowRequest {
            tables: vec![pb::TableInBatchWriteRowRequest {
                table_name: self.table.clone(),
                rows: requests,
            }],
            ..Default::default()
        };
        let throttled_before = self.client.stats().throttled;
        // Every put has its timestamp and every operation is an assignment: repeating one is
        // harmless.
        let outcome = self
            .client
            .batch_write_row_retrying(&req, Idempotency::Idempotent)
            .await?;
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.counters
            .row_retries
            .fetch_add(outcome.row_retries, Ordering::Relaxed);
        if self.client.stats().throttled > throttled_before {
            self.counters
                .throttle_events
                .fetch_add(1, Ordering::Relaxed);
            self.rate.throttled().await;
        }
        let results = outcome.rows.into_iter().next().unwrap_or_default();
        let mut failed: Option<RestoreError> = None;
        for (i, (ordinal, op, key)) in meta.into_iter().enumerate() {
            let r = results.get(i);
            if r.is_some_and(|r| r.is_ok) {
                if count {
                    self.counters.applied(op);
                }
                continue;
            }
            let (code, message) = match r.and_then(|r| r.error.as_ref()) {
                Some(e) => (e.code.clone(), e.message.clone().unwrap_or_default()),
                None => (
                    "OTSClientNoResult".to_string(),
                    "the response holds no result for this row".to_string(),
                ),
            };
            // Rows are in ordinal order within a lane: the first failure is the earliest.
            if failed.is_none() {
                failed = Some(RestoreError::ChangeFailed {
                    ordinal,
                    op: op.as_str(),
                    key: key_text(&key),
                    code,
                    message,
                });
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

impl ChangeApplier {
    /// Starts the lanes (on the current Tokio runtime).
    pub fn new(client: &OtsClient, options: ReplayOptions) -> Result<Self, RestoreError> {
        if options.concurrency == 0 {
            return Err(RestoreError::Usage(
                "replay concurrency must be at least 1".into(),
            ));
        }
        if options.table.is_empty() {
            return Err(RestoreError::Usage("replay needs a table name".into()));
        }
        let counters = Arc::new(Counters::default());
        let ctx = Arc::new(LaneContext {
            client: client.clone(),
            table: options.table.clone(),
            rate: AdaptiveRate::new(options.rows_per_sec),
            counters: counters.clone(),
        });
        let lanes = (0..options.concurrency)
            .map(|_| {
                let (tx, rx) = mpsc::channel(options.queue_per_lane.max(1));
                Lane {
                    tx: Some(tx),
                    task: Some(tokio::spawn(ctx.clone().run(rx))),
                }
            })
            .collect();
        Ok(ChangeApplier {
            lanes,
            counters,
            as_of_us: options.as_of_us,
            skipped_as_of: 0,
        })
    }

    /// Applies `changes`, which follow those of earlier calls in replay order. Every change is
    /// checked first ([`check_replayable`]): an invalid one is an error and nothing of this call
    /// is sent. Returns once the changes are queued; a lane that failed since the last call makes
    /// this call fail with that lane's error.
    pub async fn apply(&mut self, changes: Vec<Change>) -> Result<(), RestoreError> {
        self.check_lanes().await?;
        for c in &changes {
            check_replayable(c)?;
        }
        let n = self.lanes.len();
        let mut per_lane: Vec<Vec<Keyed>> = (0..n).map(|_| Vec::new()).collect();
        for c in changes {
            if self.as_of_us.is_some_and(|t| c.sequence.timestamp_us > t) {
                self.skipped_as_of += 1;
                continue;
            }
            let key = key_hash(&c.primary_key);
            per_lane[lane_of(key, n)].push((key, c));
        }
        for (i, chunk) in per_lane.into_iter().enumerate() {
            if chunk.is_empty() {
                continue;
            }
            let sent = match self.lanes[i].tx.as_ref() {
                Some(tx) => tx.send(chunk).await.is_ok(),
                None => false,
            };
            if !sent {
                // The lane stopped: its error says why.
                return Err(self.lane_error(i).await);
            }
        }
        Ok(())
    }

    /// A lane that ended before `finish` ended with an error.
    async fn check_lanes(&mut self) -> Result<(), RestoreError> {
        for i in 0..self.lanes.len() {
            if self.lanes[i].task.as_ref().is_some_and(|t| t.is_finished()) {
                return Err(self.lane_error(i).await);
            }
        }
        Ok(())
    }

    async fn lane_error(&mut self, i: usize) -> RestoreError {
        self.lanes[i].tx = None;
        match self.lanes[i].task.take() {
            Some(task) => match task.await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => RestoreError::WritersStopped,
                Err(e) => RestoreError::Task(e),
            },
            None => RestoreError::WritersStopped,
        }
    }

    /// What was applied so far (writes still in flight are not counted).
    pub fn stats(&self) -> ReplayStats {
        let c = &self.counters;
        ReplayStats {
            put_row: c.put_row.load(Ordering::Relaxed),
            update_row: c.update_row.load(Ordering::Relaxed),
            delete_row: c.delete_row.load(Ordering::Relaxed),
            skipped_as_of: self.skipped_as_of,
            requests: c.requests.load(Ordering::Relaxed),
            split_changes: c.split_changes.load(Ordering::Relaxed),
            row_retries: c.row_retries.load(Ordering::Relaxed),
            throttle_events: c.throttle_events.load(Ordering::Relaxed),
        }
    }

    /// Waits until every change queued is written; the first lane error, if any.
    pub async fn finish(mut self) -> Result<ReplayStats, RestoreError> {
        for lane in &mut self.lanes {
            lane.tx = None;
        }
        let mut first: Option<RestoreError> = None;
        for lane in &mut self.lanes {
            let Some(task) = lane.task.take() else {
                continue;
            };
            let result = match task.await {
                Ok(r) => r,
                Err(e) => Err(RestoreError::Task(e)),
            };
            if let Err(e) = result {
                first.get_or_insert(e);
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(self.stats()),
        }
    }
}

impl Drop for ChangeApplier {
    fn drop(&mut self) {
        for lane in &mut self.lanes {
            if let Some(task) = lane.task.take() {
                task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ots_format::change::ChangeOp;
    use ots_wire::types::{RecordSequence, Value};

    fn change(op: ChangeOp, cells: Vec<ColumnUpdate>) -> Change {
        Change {
            ordinal: 7,
            shard: "s".into(),
            sequence: RecordSequence::default(),
            op,
            primary_key: vec![PkColumn::new("k", PkValue::Integer(1))],
            cells,
        }
    }

    #[test]
    fn changes_that_cannot_be_replayed_exactly_are_refused_with_their_ordinal_and_key() {
        let untimed = change(
            ChangeOp::UpdateRow,
            vec![ColumnUpdate::Put {
                name: "a".into(),
                value: Value::Integer(1),
                timestamp: None,
            }],
        );
        let delete_in_put = change(
            ChangeOp::PutRow,
            vec![ColumnUpdate::DeleteAllVersions { name: "a".into() }],
        );
        let cells_in_delete = change(
            ChangeOp::DeleteRow,
            vec![ColumnUpdate::DeleteAllVersions { name: "a".into() }],
        );
        let mut marker = change(ChangeOp::DeleteRow, vec![]);
        marker.primary_key[0].value = PkValue::InfMax;
        let increment = change(
            ChangeOp::UpdateRow,
            vec![ColumnUpdate::Increment {
                name: "a".into(),
                delta: 1,
            }],
        );
        for c in [untimed, delete_in_put, cells_in_delete, marker, increment] {
            match check_replayable(&c) {
                Err(RestoreError::ChangeInvalid { ordinal, key, .. }) => {
                    assert_eq!(ordinal, 7);
                    assert!(key.contains('k'), "{key}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(check_replayable(&change(ChangeOp::DeleteRow, vec![])).is_ok());
    }

    #[test]
    fn a_key_always_goes_to_the_same_lane() {
        let k = vec![PkColumn::new("k", PkValue::String("abc".into()))];
        let lane = lane_of(key_hash(&k), 8);
        for _ in 0..10 {
            assert_eq!(lane_of(key_hash(&k.clone()), 8), lane);
        }
        assert_eq!(lane_of(key_hash(&k), 1), 0);
    }
}
