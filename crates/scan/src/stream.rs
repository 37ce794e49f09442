//! Reading a table's change log (the Stream API) between two points in time.
//!
//! A [`Capture`] reads every shard of a stream from a [`StreamPosition`] up to a consistency point
//! T_c, parent shards before their children (stream fact sheet §4), and hands out the records as
//! owned [`Change`]s, one GetStreamRecord response at a time, so memory is bounded by one response.
//! When it is done, [`Capture::end_position`] gives T_c with a checkpoint per shard: where the next
//! capture (an incremental snapshot) continues.
//!
//! The window is `(start.t_us, t_c_us]` on the records' write times. A shard stops at its first
//! record after T_c (its checkpoint is the iterator that returned that record, so the next window
//! re-reads the response and skips what it already has), at its end (finished), or when it is
//! caught up on a read sent after T_c + `settle` (the service stamps records with its own clock; the
//! settle time covers records of writes still in flight at T_c).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use ots_format::time::{rfc3339_micros, unix_micros};
use ots_format::{Change, ChangeOp, ShardCheckpoint, StreamPosition};
use ots_wire::OtsClient;
use ots_wire::OtsError;
use ots_wire::pb;
use std::sync::Arc;

use ots_wire::plainbuffer::decode_single_row_into;
use ots_wire::types::{
    CellOp, ColumnUpdate, PkColumn, PkValue, RecordSequence, RowRef, Value, assign_str,
};

/// What can go wrong reading a stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Ots(#[from] OtsError),
    /// The position to read from is past the stream's retention window: the records between it
    /// and the oldest one kept are gone, and only a new full snapshot recovers.
    #[error(
        "the stream position of shard {shard} has been trimmed (past the stream's retention): the changes since it are gone; take a new full snapshot"
    )]
    Trimmed { shard: String, source: OtsError },
    /// A response that breaks the Stream API's contract.
    #[error("GetStreamRecord on shard {shard} broke the protocol: {detail}")]
    Protocol { shard: String, detail: String },
}

impl StreamError {
    pub fn is_trimmed(&self) -> bool {
        matches!(self, StreamError::Trimmed { .. })
    }
}

/// The stream of a table, if it has one enabled.
pub async fn table_stream(client: &OtsClient, table: &str) -> Result<Option<String>, OtsError> {
    let desc = client.describe_table(table).await?;
    Ok(desc
        .stream_details
        .filter(|d| d.enable_stream)
        .and_then(|d| d.stream_id))
}

/// Every shard of a stream, through DescribeStream's pages.
pub async fn list_shards(
    client: &OtsClient,
    stream_id: &str,
) -> Result<Vec<pb::StreamShard>, OtsError> {
    let mut shards = Vec::new();
    let mut start: Option<String> = None;
    let mut seen = HashSet::new();
    loop {
        let resp = client
            .describe_stream(&pb::DescribeStreamRequest {
                stream_id: stream_id.to_string(),
                inclusive_start_shard_id: start.clone(),
                shard_limit: Some(100),
            })
            .await?;
        for s in resp.shards {
            if seen.insert(s.shard_id.clone()) {
                shards.push(s);
            }
        }
        match resp.next_shard_id {
            // A page that names its own start as the next one would loop forever.
            Some(next) if Some(&next) != start.as_ref() => start = Some(next),
            _ => return Ok(shards),
        }
    }
}

/// The position "now" for a capture that starts at `t_us`: an iterator per shard positioned by
/// time. Taken before a full snapshot's scan begins.
pub async fn position_at(
    client: &OtsClient,
    stream_id: &str,
    t_us: i64,
) -> Result<StreamPosition, StreamError> {
    let mut checkpoints = Vec::new();
    for shard in list_shards(client, stream_id).await? {
        let iterator = client
            .get_shard_iterator(stream_id, &shard.shard_id, Some(t_us))
            .await
            .map_err(|e| trimmed_or(e, &shard.shard_id))?;
        checkpoints.push(ShardCheckpoint {
            shard_id: shard.shard_id,
            iterator: Some(iterator),
        });
    }
    Ok(StreamPosition {
        t_us,
        time: rfc3339_micros(t_us),
        checkpoints,
    })
}

/// Checks that every unfinished checkpoint of `position` can still be read (one record), so that an
/// incremental fails before it writes anything when its parent's position has been trimmed.
pub async fn check_readable(
    client: &OtsClient,
    position: &StreamPosition,
) -> Result<(), StreamError> {
    for cp in &position.checkpoints {
        if let Some(it) = &cp.iterator {
            client
                .get_stream_record(it, Some(1))
                .await
                .map_err(|e| trimmed_or(e, &cp.shard_id))?;
        }
    }
    Ok(())
}

fn trimmed_or(e: OtsError, shard: &str) -> StreamError {
    if e.is_trimmed() {
        StreamError::Trimmed {
            shard: shard.to_string(),
            source: e,
        }
    } else {
        StreamError::Ots(e)
    }
}

/// How a capture reads.
#[derive(Clone, Copy, Debug)]
pub struct CaptureOptions {
    /// Records per GetStreamRecord.
    pub limit: i32,
    /// How long after T_c a caught-up shard is trusted to hold every record up to T_c.
    pub settle: Duration,
    /// Pause between reads of a caught-up shard while waiting for T_c + settle.
    pub poll: Duration,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            limit: 1000,
            settle: Duration::from_secs(1),
            poll: Duration::from_millis(100),
        }
    }
}

/// Counters a capture keeps for progress displays.
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureStats {
    pub requests: u64,
    pub records: u64,
    pub skipped_before_start: u64,
    pub record_bytes: u64,
}

struct ShardState {
    shard_id: String,
    parents: Vec<String>,
    /// Where reading continues; `None` once the shard is finished.
    iterator: Option<String>,
    done: bool,
    /// The shard was read to its end (in this capture or before it).
    finished: bool,
    /// DescribeStream still lists it (a finished shard that is not listed is dropped from the end
    /// position: it has nothing more to give).
    listed: bool,
    last: Option<RecordSequence>,
}

/// One capture of a stream's records in `(start.t_us, t_c_us]`.
pub struct Capture<'c> {
    client: &'c OtsClient,
    stream_id: String,
    start_t_us: i64,
    t_c_us: i64,
    /// When a caught-up read proves the shard complete up to T_c (wall clock).
    settled_at: Instant,
    options: CaptureOptions,
    shards: Vec<ShardState>,
    /// Shard ids in the order they were read.
    read_order: Vec<String>,
    current: Option<usize>,
    next_ordinal: u64,
    stats: CaptureStats,
    /// Changes given back by [`recycle`](Capture::recycle): the next records are decoded into
    /// their allocations instead of a dozen fresh strings each.
    spare: SpareChanges,
}

/// At most this many bytes are kept in spare changes (about a response's worth).
const SPARE_BYTES: usize = 4 << 20;

/// Used changes kept to decode later records into, at most [`SPARE_BYTES`] of them (counted by
/// [`retained_bytes`]).
#[derive(Default)]
struct SpareChanges {
    changes: Vec<(Change, usize)>,
    bytes: usize,
}

impl SpareChanges {
    /// Keeps `change` if it fits.
    fn put(&mut self, change: Change) {
        let bytes = retained_bytes(&change);
        if self.bytes + bytes <= SPARE_BYTES {
            self.bytes += bytes;
            self.changes.push((change, bytes));
        }
    }

    /// A spare change, or a new one of `shard`.
    fn take(&mut self, shard: &Arc<str>) -> Change {
        match self.changes.pop() {
            Some((change, bytes)) => {
                self.bytes -= bytes;
                change
            }
            None => blank_change(shard),
        }
    }
}

impl<'c> Capture<'c> {
    /// Lists the stream's shards and prepares to read from `start` up to `t_c_us`. Shards in
    /// `start` that are no longer listed are still read from their checkpoints (their records may
    /// have been trimmed: that is an error, not a silent gap).
    pub async fn open(
        client: &'c OtsClient,
        stream_id: &str,
        start: &StreamPosition,
        t_c_us: i64,
        options: CaptureOptions,
    ) -> Result<Capture<'c>, StreamError> {
        let listed = list_shards(client, stream_id).await?;
        let from: HashMap<&str, &ShardCheckpoint> = start
            .checkpoints
            .iter()
            .map(|c| (c.shard_id.as_str(), c))
            .collect();
        let mut shards = Vec::new();
        let listed_ids: HashSet<&str> = listed.iter().map(|s| s.shard_id.as_str()).collect();
        for cp in &start.checkpoints {
            if !listed_ids.contains(cp.shard_id.as_str()) {
                shards.push(ShardState {
                    shard_id: cp.shard_id.clone(),
                    parents: Vec::new(),
                    iterator: cp.iterator.clone(),
                    done: cp.finished(),
                    finished: cp.finished(),
                    listed: false,
                    last: None,
                });
            }
        }
        for s in &listed {
            let parents = [&s.parent_id, &s.parent_sibling_id]
                .into_iter()
                .flatten()
                .filter(|p| listed_ids.contains(p.as_str()) || from.contains_key(p.as_str()))
                .cloned()
                .collect();
            let (iterator, finished) = match from.get(s.shard_id.as_str()) {
                Some(cp) => (cp.iterator.clone(), cp.finished()),
                None => (None, false),
            };
            shards.push(ShardState {
                shard_id: s.shard_id.clone(),
                parents,
                iterator,
                done: finished,
                finished,
                listed: true,
                last: None,
            });
        }
        let wait = u64::try_from(t_c_us.saturating_sub(unix_micros(std::time::SystemTime::now())))
            .unwrap_or(0);
        Ok(Capture {
            client,
            stream_id: stream_id.to_string(),
            start_t_us: start.t_us,
            t_c_us,
            settled_at: Instant::now() + Duration::from_micros(wait) + options.settle,
            options,
            shards,
            read_order: Vec::new(),
            current: None,
            next_ordinal: 0,
            stats: CaptureStats::default(),
            spare: SpareChanges::default(),
        })
    }

    pub fn stats(&self) -> CaptureStats {
        self.stats
    }

    /// Gives changes from [`next_batch`](Capture::next_batch) back once they are used, so that
    /// later records are decoded into their allocations. Keeps at most [`SPARE_BYTES`] of them.
    pub fn recycle(&mut self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            self.spare.put(change);
        }
    }

    /// The shards read so far, in order.
    pub fn shards_read(&self) -> &[String] {
        &self.read_order
    }

    /// The next response's worth of changes (possibly empty), or `None` when every shard that can
    /// be read in this window has been.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<Change>>, StreamError> {
        loop {
            let Some(i) = self.pick_shard() else {
                return Ok(None);
            };
            if self.shards[i].iterator.is_none() {
                // Not in the start position: read it from its beginning.
                let it = self
                    .client
                    .get_shard_iterator(&self.stream_id, &self.shards[i].shard_id, None)
                    .await
                    .map_err(|e| trimmed_or(e, &self.shards[i].shard_id))?;
                self.shards[i].iterator = Some(it);
            }
            let batch = self.read_once(i).await?;
            if !batch.is_empty() {
                return Ok(Some(batch));
            }
        }
    }

    /// T_c and a checkpoint per shard: finished shards with no iterator, stopped ones with the
    /// iterator to continue from. Shards this window could not reach (children of a shard that
    /// stopped at T_c) are left out, so the next window reads them from their start.
    pub fn end_position(&self) -> StreamPosition {
        let checkpoints = self
            .shards
            .iter()
            .filter(|s| s.done && (s.listed || !s.finished))
            .map(|s| ShardCheckpoint {
                shard_id: s.shard_id.clone(),
                iterator: if s.finished { None } else { s.iterator.clone() },
            })
            .collect();
        StreamPosition {
            t_us: self.t_c_us,
            time: rfc3339_micros(self.t_c_us),
            checkpoints,
        }
    }

    /// The shard being read, or the next one whose parents have all finished.
    fn pick_shard(&mut self) -> Option<usize> {
        if let Some(i) = self.current
            && !self.shards[i].done
        {
            return Some(i);
        }
        let finished: HashSet<&str> = self
            .shards
            .iter()
            .filter(|s| s.finished)
            .map(|s| s.shard_id.as_str())
            .collect();
        let next = self
            .shards
            .iter()
            .position(|s| !s.done && s.parents.iter().all(|p| finished.contains(p.as_str())));
        if let Some(i) = next {
            self.read_order.push(self.shards[i].shard_id.clone());
        }
        self.current = next;
        next
    }

    async fn read_once(&mut self, i: usize) -> Result<Vec<Change>, StreamError> {
        let shard_id = self.shards[i].shard_id.clone();
        let Some(iterator) = self.shards[i].iterator.clone() else {
            return Err(StreamError::Protocol {
                shard: shard_id,
                detail: "no iterator to read from".into(),
            });
        };
        let sent_at = Instant::now();
        let resp = self
            .client
            .get_stream_record(&iterator, Some(self.options.limit))
            .await
            .map_err(|e| trimmed_or(e, &shard_id))?;
        self.stats.requests += 1;
        let mut changes = Vec::with_capacity(resp.stream_records.len());
        let caught_up = resp.stream_records.is_empty();
        let shard: Arc<str> = shard_id.as_str().into();
        let mut scratch = RowRef::default();
        for rec in &resp.stream_records {
            self.stats.record_bytes += rec.record.len() as u64;
            let mut change = self.spare.take(&shard);
            decode_record_into(&shard, rec, self.next_ordinal, &mut scratch, &mut change)?;
            let seq = change.sequence;
            if let Some(last) = self.shards[i].last
                && seq <= last
            {
                return Err(StreamError::Protocol {
                    shard: shard_id,
                    detail: format!(
                        "record sequence {seq:?} does not come after the previous one {last:?}"
                    ),
                });
            }
            self.shards[i].last = Some(seq);
            if seq.timestamp_us > self.t_c_us {
                // Past T_c: stop here; the next window re-reads this response from `iterator`.
                self.shards[i].done = true;
                return Ok(changes);
            }
            if seq.timestamp_us <= self.start_t_us {
                self.stats.skipped_before_start += 1;
                self.recycle([change]);
                continue;
            }
            self.stats.records += 1;
            self.next_ordinal += 1;
            changes.push(change);
        }
        match resp.next_shard_iterator {
            None => {
                self.shards[i].iterator = None;
                self.shards[i].finished = true;
                self.shards[i].done = true;
            }
            Some(next) => {
                if caught_up {
                    if sent_at >= self.settled_at {
                        self.shards[i].iterator = Some(next);
                        self.shards[i].done = true;
                    } else {
                        self.shards[i].iterator = Some(next);
                        tokio::time::sleep(self.options.poll).await;
                    }
                } else {
                    self.shards[i].iterator = Some(next);
                }
            }
        }
        Ok(changes)
    }
}

/// One stream record as a [`Change`], written over `change`: the row decoded with every checksum
/// checked, the extension's sequence required, the cells checked against the action.
///
/// The records of one response share the shard's name (`shard`), and `row`'s and `change`'s
/// allocations are reused from one record to the next. After an error `change` is left part
/// filled: a caller drops it.
pub fn decode_record_into<'a>(
    shard: &Arc<str>,
    rec: &'a pb::get_stream_record_response::StreamRecord,
    ordinal: u64,
    row: &mut RowRef<'a>,
    change: &mut Change,
) -> Result<(), StreamError> {
    let bad = |detail: String| StreamError::Protocol {
        shard: shard.to_string(),
        detail,
    };
    let op = ChangeOp::from_action_type(rec.action_type)
        .ok_or_else(|| bad(format!("unknown action type {}", rec.action_type)))?;
    if !decode_single_row_into(&rec.record, row)
        .map_err(|e| bad(format!("record does not decode: {e}")))?
    {
        return Err(bad("empty record".into()));
    }
    let sequence = row
        .sequence
        .ok_or_else(|| bad("record has no sequence (extension block)".into()))?;
    if row.primary_key.is_empty() {
        return Err(bad("record has no primary key".into()));
    }
    let primary_key = &mut change.primary_key;
    primary_key.truncate(row.primary_key.len());
    for (i, c) in row.primary_key.iter().enumerate() {
        match primary_key.get_mut(i) {
            Some(slot) => {
                assign_str(&mut slot.name, c.name);
                slot.value.assign(c.value);
            }
            None => primary_key.push(PkColumn::new(c.name, c.value.to_owned())),
        }
    }
    let cells = &mut change.cells;
    cells.truncate(row.cells.len());
    for (i, c) in row.cells.iter().enumerate() {
        // `i` is at most `cells.len()`: the slot to overwrite, or the next to push.
        let place = |cells: &mut Vec<ColumnUpdate>, update| match cells.get_mut(i) {
            Some(slot) => *slot = update,
            None => cells.push(update),
        };
        match (c.op, c.value, c.timestamp) {
            (None, Some(v), Some(ts)) => match cells.get_mut(i) {
                Some(ColumnUpdate::Put {
                    name,
                    value,
                    timestamp,
                }) => {
                    assign_str(name, c.name);
                    value.assign(v);
                    *timestamp = Some(ts);
                }
                _ => place(
                    cells,
                    ColumnUpdate::Put {
                        name: c.name.to_string(),
                        value: v.to_owned(),
                        timestamp: Some(ts),
                    },
                ),
            },
            (Some(CellOp::DeleteOneVersion), None, Some(ts)) if op == ChangeOp::UpdateRow => place(
                cells,
                ColumnUpdate::DeleteOneVersion {
                    name: c.name.to_string(),
                    timestamp: ts,
                },
            ),
            (Some(CellOp::DeleteAllVersions), None, None) if op == ChangeOp::UpdateRow => place(
                cells,
                ColumnUpdate::DeleteAllVersions {
                    name: c.name.to_string(),
                },
            ),
            _ => {
                return Err(bad(format!(
                    "{} record cell '{}' has an unexpected shape (op {:?}, value {}, timestamp {})",
                    op.as_str(),
                    c.name,
                    c.op,
                    if c.value.is_some() { "set" } else { "absent" },
                    if c.timestamp.is_some() {
                        "set"
                    } else {
                        "absent"
                    },
                )));
            }
        }
    }
    if op == ChangeOp::DeleteRow && !cells.is_empty() {
        return Err(bad("DELETE_ROW record carries cells".into()));
    }
    change.ordinal = ordinal;
    if !Arc::ptr_eq(&change.shard, shard) {
        change.shard = shard.clone();
    }
    change.sequence = sequence;
    change.op = op;
    Ok(())
}

/// A change for [`decode_record_into`] to fill.
fn blank_change(shard: &Arc<str>) -> Change {
    Change {
        ordinal: 0,
        shard: shard.clone(),
        sequence: RecordSequence {
            epoch: 0,
            timestamp_us: 0,
            row_index: 0,
        },
        op: ChangeOp::PutRow,
        primary_key: Vec::new(),
        cells: Vec::new(),
    }
}

/// Bytes a change keeps allocated: itself, its vectors' capacity, its names and values.
fn retained_bytes(change: &Change) -> usize {
    let value = |v: &Value| match v {
        Value::String(s) => s.capacity(),
        Value::Binary(b) => b.capacity(),
        _ => 0,
    };
    let pk: usize = change
        .primary_key
        .iter()
        .map(|c| {
            c.name.capacity()
                + match &c.value {
                    PkValue::String(s) => s.capacity(),
                    PkValue::Binary(b) => b.capacity(),
                    _ => 0,
                }
        })
        .sum();
    let cells: usize = change
        .cells
        .iter()
        .map(|u| match u {
            ColumnUpdate::Put { name, value: v, .. } => name.capacity() + value(v),
            ColumnUpdate::DeleteOneVersion { name, .. }
            | ColumnUpdate::DeleteAllVersions { name }
            | ColumnUpdate::Increment { name, .. } => name.capacity(),
        })
        .sum();
    std::mem::size_of::<Change>()
        + change.primary_key.capacity() * std::mem::size_of::<PkColumn>()
        + change.cells.capacity() * std::mem::size_of::<ColumnUpdate>()
        + pk
        + cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_record(
        shard: &str,
        rec: &pb::get_stream_record_response::StreamRecord,
        ordinal: u64,
    ) -> Result<Change, StreamError> {
        let shard: Arc<str> = shard.into();
        let mut change = blank_change(&shard);
        decode_record_into(&shard, rec, ordinal, &mut RowRef::default(), &mut change)?;
        Ok(change)
    }
    use bytes::Bytes;
    use ots_wire::plainbuffer::PlainBufferWriter;
    use ots_wire::types::{PkValueRef, ValueRef};

    const SEQ: RecordSequence = RecordSequence {
        epoch: 1,
        timestamp_us: 1_700_000_000_000_123,
        row_index: 0,
    };

    fn record(
        action: i32,
        build: impl FnOnce(&mut PlainBufferWriter),
    ) -> pb::get_stream_record_response::StreamRecord {
        let mut w = PlainBufferWriter::new();
        w.pk("id", PkValueRef::Integer(7));
        build(&mut w);
        pb::get_stream_record_response::StreamRecord {
            action_type: action,
            record: Bytes::from(w.into_bytes()),
            origin_record: None,
        }
    }

    fn detail(e: StreamError) -> String {
        match e {
            StreamError::Protocol { shard, detail } => {
                assert_eq!(shard, "s0");
                detail
            }
            other => panic!("expected a protocol error, got {other}"),
        }
    }

    #[test]
    fn records_of_every_action_decode() {
        let put = record(1, |w| {
            w.cell("a", Some(ValueRef::Integer(1)), None, Some(5))
                .end_record(SEQ);
        });
        let c = decode_record("s0", &put, 3).unwrap();
        assert_eq!((c.op, c.ordinal, c.sequence), (ChangeOp::PutRow, 3, SEQ));
        assert_eq!(
            c.cells,
            vec![ColumnUpdate::Put {
                name: "a".into(),
                value: ots_wire::types::Value::Integer(1),
                timestamp: Some(5)
            }]
        );
        let update = record(2, |w| {
            w.cell("a", None, Some(CellOp::DeleteOneVersion), Some(5))
                .cell("b", None, Some(CellOp::DeleteAllVersions), None)
                .end_record(SEQ);
        });
        let c = decode_record("s0", &update, 0).unwrap();
        assert_eq!(c.cells.len(), 2);
        // With or without the delete marker, DELETE_ROW is decided by the action.
        for marker in [true, false] {
            let delete = record(3, |w| {
                if marker {
                    w.delete_marker();
                }
                w.end_record(SEQ);
            });
            let c = decode_record("s0", &delete, 0).unwrap();
            assert_eq!(c.op, ChangeOp::DeleteRow);
            assert!(c.cells.is_empty());
        }
    }

    /// A record decoded into a change left from another record (other key columns and values,
    /// more or fewer cells, deletes where puts were, another shard) is the record decoded afresh.
    #[test]
    fn records_decoded_into_recycled_changes_are_the_records() {
        let keyed = |action: i32, key: &str, build: &dyn Fn(&mut PlainBufferWriter)| {
            let mut w = PlainBufferWriter::new();
            w.pk("user", PkValueRef::String(key))
                .pk("blob", PkValueRef::Binary(key.as_bytes()));
            build(&mut w);
            pb::get_stream_record_response::StreamRecord {
                action_type: action,
                record: Bytes::from(w.into_bytes()),
                origin_record: None,
            }
        };
        let records = [
            keyed(1, "a-rather-long-user-key", &|w| {
                w.cell("bio", Some(ValueRef::String("some text")), None, Some(5))
                    .cell("n", Some(ValueRef::Integer(1)), None, Some(5))
                    .cell("raw", Some(ValueRef::Binary(b"\x00\x01")), None, Some(6))
                    .end_record(RecordSequence {
                        row_index: 1,
                        ..SEQ
                    });
            }),
            keyed(2, "k", &|w| {
                w.cell("bio", None, Some(CellOp::DeleteOneVersion), Some(5))
                    .cell("n", Some(ValueRef::String("now a string")), None, Some(7))
                    .cell("raw", None, Some(CellOp::DeleteAllVersions), None)
                    .cell("more", Some(ValueRef::Double(0.5)), None, Some(8))
                    .end_record(RecordSequence { epoch: 2, ..SEQ });
            }),
            keyed(3, "", &|w| {
                w.end_record(RecordSequence {
                    timestamp_us: SEQ.timestamp_us + 1,
                    ..SEQ
                });
            }),
            record(1, |w| {
                w.cell("bio", Some(ValueRef::Boolean(true)), None, Some(9))
                    .end_record(SEQ);
            }),
        ];
        for (i, before) in records.iter().enumerate() {
            for (j, rec) in records.iter().enumerate() {
                let mut change = decode_record("s1", before, 1).unwrap();
                let shard: Arc<str> = "s0".into();
                decode_record_into(&shard, rec, 2, &mut RowRef::default(), &mut change).unwrap();
                assert_eq!(change, decode_record("s0", rec, 2).unwrap(), "{i} then {j}");
            }
        }
    }

    /// Spare changes stay within SPARE_BYTES, counted with their vectors, and taking them back
    /// gives their bytes back.
    #[test]
    fn spare_changes_stay_within_their_bytes() {
        let shard: Arc<str> = "s0".into();
        let with_value = |len: usize| {
            let mut c = blank_change(&shard);
            c.cells.push(ColumnUpdate::Put {
                name: "v".into(),
                value: Value::String("x".repeat(len)),
                timestamp: Some(1),
            });
            c
        };
        let small = retained_bytes(&with_value(1000));
        assert!(small > 1000 + std::mem::size_of::<ColumnUpdate>());
        let mut spare = SpareChanges::default();
        let fit = SPARE_BYTES / small;
        for _ in 0..fit + 10 {
            spare.put(with_value(1000));
        }
        assert_eq!(spare.changes.len(), fit);
        assert!(spare.bytes <= SPARE_BYTES);
        // One too large for what is left is dropped, not kept.
        spare.put(with_value(SPARE_BYTES));
        assert_eq!(spare.changes.len(), fit);
        for _ in 0..fit {
            assert_eq!(spare.take(&shard).cells.len(), 1);
        }
        assert_eq!(spare.bytes, 0);
        // Empty: a new change of the shard.
        let fresh = spare.take(&shard);
        assert!(fresh.cells.is_empty() && Arc::ptr_eq(&fresh.shard, &shard));
    }

    #[test]
    fn malformed_records_are_protocol_errors_naming_the_shard() {
        let no_sequence = record(1, |w| {
            w.cell("a", Some(ValueRef::Integer(1)), None, Some(5))
                .end_row();
        });
        assert!(detail(decode_record("s0", &no_sequence, 0).unwrap_err()).contains("sequence"));

        let unknown_action = record(9, |w| {
            w.end_record(SEQ);
        });
        assert!(detail(decode_record("s0", &unknown_action, 0).unwrap_err()).contains("action"));

        let put_without_timestamp = record(1, |w| {
            w.cell("a", Some(ValueRef::Integer(1)), None, None)
                .end_record(SEQ);
        });
        assert!(
            detail(decode_record("s0", &put_without_timestamp, 0).unwrap_err())
                .contains("unexpected shape")
        );

        let delete_in_a_put = record(1, |w| {
            w.cell("a", None, Some(CellOp::DeleteAllVersions), None)
                .end_record(SEQ);
        });
        assert!(decode_record("s0", &delete_in_a_put, 0).is_err());

        let increment = record(2, |w| {
            w.cell(
                "n",
                Some(ValueRef::Integer(1)),
                Some(CellOp::Increment),
                None,
            )
            .end_record(SEQ);
        });
        assert!(decode_record("s0", &increment, 0).is_err());

        let mut damaged = record(1, |w| {
            w.cell("a", Some(ValueRef::Integer(1)), None, Some(5))
                .end_record(SEQ);
        });
        let mut bytes = damaged.record.to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        damaged.record = Bytes::from(bytes);
        assert!(detail(decode_record("s0", &damaged, 0).unwrap_err()).contains("decode"));

        let empty = pb::get_stream_record_response::StreamRecord {
            action_type: 1,
            record: Bytes::new(),
            origin_record: None,
        };
        assert!(decode_record("s0", &empty, 0).is_err());
    }
}
