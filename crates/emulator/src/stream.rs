//! The Stream API (stream fact sheet §2–§4): each table with a stream keeps a change log of shards
//! and records, appended under the table's write lock together with the write it describes, and
//! read with ListStream, DescribeStream, GetShardIterator and GetStreamRecord.
//!
//! A shard covers a range of a 64-bit hash of the primary key while it is open; a split closes every
//! open shard and opens two children that halve its range, so a key's later records go to exactly one
//! child. Shards are kept in creation order, which lists parents before children. Records are
//! trimmed by age (the stream's expiration hours, lazily on each stream call) or on demand.
//!
//! An iterator is the hex form of `magic \n stream id \n shard id \n absolute record offset`: it
//! stays valid as long as the record it points at is kept.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLockWriteGuard};

use ots_wire::pb;
use ots_wire::types::{PkValue, RecordSequence};

use crate::engine::{Engine, Reply, Table, TableState, capacity, cu, now_us};
use crate::error::{ApiError, ApiResult};

/// GetStreamRecord's `limit` when the request has none, and its cap.
pub(crate) const DEFAULT_RECORD_LIMIT: usize = 100;
pub(crate) const MAX_RECORD_LIMIT: usize = 1000;
/// Record bytes per GetStreamRecord response at most (a single larger record is still returned).
pub(crate) const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Shards per DescribeStream page when the request sets no `shard_limit`.
pub(crate) const DEFAULT_SHARD_LIMIT: usize = 100;
/// Retention allowed by the service (7 days).
pub(crate) const MAX_EXPIRATION_HOURS: i32 = 168;

const EPOCH: u32 = 1;
const US_PER_HOUR: i64 = 3_600_000_000;
const ITERATOR_MAGIC: &str = "otsemu-shard-iterator-1";
const SHARD_PREFIX: &str = "shard-";
/// The hash space shards split: [0, 2^64).
const HASH_END: u128 = 1 << 64;

pub(crate) const TRIMMED_MESSAGE: &str =
    "Requested stream data is already trimmed or does not exist.";

/// Makes stream ids unique within the process even when two are enabled in the same microsecond.
static STREAM_SERIAL: AtomicU64 = AtomicU64::new(1);

pub(crate) fn trimmed() -> ApiError {
    ApiError::new(400, "OTSTrimmedDataAccess", TRIMMED_MESSAGE)
}

fn invalid_iterator() -> ApiError {
    ApiError::param("The shard iterator is invalid.")
}

fn stream_not_exist() -> ApiError {
    ApiError::new(404, "OTSObjectNotExist", "Requested stream does not exist.")
}

/// Checks a `stream_spec`: enabling needs an expiration of 1..=168 hours. Returns the expiration
/// when the spec enables the stream, `None` when it disables it.
pub(crate) fn validate_spec(spec: &pb::StreamSpecification) -> ApiResult<Option<i32>> {
    if !spec.enable_stream {
        return Ok(None);
    }
    match spec.expiration_time {
        Some(h) if h > 0 && h <= MAX_EXPIRATION_HOURS => Ok(Some(h)),
        Some(h) => Err(ApiError::param(format!(
            "The expiration time of the stream must be within [1, {MAX_EXPIRATION_HOURS}] hours: {h}."
        ))),
        None => Err(ApiError::param(
            "The expiration time of the stream must be set when the stream is enabled.",
        )),
    }
}

/// One logged change.
pub(crate) struct Record {
    pub action: pb::ActionType,
    /// PlainBuffer: one row with the extension block.
    pub bytes: Vec<u8>,
    pub timestamp_us: i64,
}

struct Shard {
    id: String,
    number: u64,
    parent_id: Option<String>,
    open: bool,
    /// When the shard was closed (µs); a closed shard is dropped once empty and older than the
    /// trim horizon.
    closed_us: i64,
    /// Hash range [lo, hi) of the keys routed here while the shard is open.
    lo: u128,
    hi: u128,
    /// Absolute offset of `records[0]` (records trimmed so far).
    base: u64,
    records: VecDeque<Record>,
    /// The newest timestamp trimmed from this shard.
    last_trimmed_us: Option<i64>,
}

impl Shard {
    fn new(number: u64, parent_id: Option<String>, lo: u128, hi: u128) -> Self {
        Shard {
            id: format!("{SHARD_PREFIX}{number:08}"),
            number,
            parent_id,
            open: true,
            closed_us: 0,
            lo,
            hi,
            base: 0,
            records: VecDeque::new(),
            last_trimmed_us: None,
        }
    }

    fn end(&self) -> u64 {
        self.base + self.records.len() as u64
    }

    fn to_pb(&self) -> pb::StreamShard {
        pb::StreamShard {
            shard_id: self.id.clone(),
            parent_id: self.parent_id.clone(),
            parent_sibling_id: None,
        }
    }
}

/// A position in a shard, as an iterator string carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub stream_id: String,
    pub shard_id: String,
    pub offset: u64,
}

impl Position {
    pub fn encode(&self) -> String {
        let plain = format!(
            "{ITERATOR_MAGIC}\n{}\n{}\n{}",
            self.stream_id, self.shard_id, self.offset
        );
        plain.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses an iterator string; anything malformed is `OTSParameterInvalid`.
    pub fn decode(s: &str) -> ApiResult<Position> {
        let hex = s.as_bytes();
        if hex.is_empty() || !hex.len().is_multiple_of(2) || hex.len() > 4096 {
            return Err(invalid_iterator());
        }
        let mut bytes = Vec::with_capacity(hex.len() / 2);
        for pair in hex.chunks(2) {
            let digits = std::str::from_utf8(pair).map_err(|_| invalid_iterator())?;
            bytes.push(u8::from_str_radix(digits, 16).map_err(|_| invalid_iterator())?);
        }
        let plain = String::from_utf8(bytes).map_err(|_| invalid_iterator())?;
        let mut parts = plain.split('\n');
        let (Some(magic), Some(stream_id), Some(shard_id), Some(offset), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(invalid_iterator());
        };
        if magic != ITERATOR_MAGIC || stream_id.is_empty() || shard_id.is_empty() {
            return Err(invalid_iterator());
        }
        Ok(Position {
            stream_id: stream_id.to_string(),
            shard_id: shard_id.to_string(),
            offset: offset.parse().map_err(|_| invalid_iterator())?,
        })
    }
}

/// A deterministic 64-bit hash of a primary key (FNV-1a over a typed encoding, then a finalizer so
/// the high bits, which split ranges use, are well mixed).
fn key_hash(key: &[PkValue]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for v in key {
        match v {
            PkValue::Integer(i) => {
                feed(&[1]);
                feed(&i.to_le_bytes());
            }
            PkValue::String(s) => {
                feed(&[2]);
                feed(&(s.len() as u64).to_le_bytes());
                feed(s.as_bytes());
            }
            PkValue::Binary(b) => {
                feed(&[3]);
                feed(&(b.len() as u64).to_le_bytes());
                feed(b);
            }
            // Stored keys never hold markers.
            PkValue::InfMin | PkValue::InfMax | PkValue::AutoIncrement => feed(&[0]),
        }
    }
    // splitmix64's finalizer.
    let mut z = h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The change log of one enabled stream.
pub(crate) struct StreamLog {
    pub id: String,
    /// When the stream was enabled (µs): `creation_time` and `last_enable_time`.
    pub creation_us: i64,
    pub expiration_hours: i32,
    pub columns_to_get: Vec<String>,
    /// In creation order: a parent always comes before its children.
    shards: Vec<Shard>,
    next_shard: u64,
    /// The newest sequence timestamp handed out (strictly increasing).
    last_ts_us: i64,
    /// The sequence timestamp of the write in progress and its next row index.
    write: Option<(i64, u32)>,
    /// Split every open shard after this many logged records (`--stream-split-every`).
    split_every: Option<u64>,
    since_split: u64,
}

impl StreamLog {
    pub fn new(
        table: &str,
        now_us: i64,
        expiration_hours: i32,
        columns_to_get: Vec<String>,
        split_every: Option<u64>,
    ) -> Self {
        let serial = STREAM_SERIAL.fetch_add(1, Ordering::Relaxed);
        StreamLog {
            id: format!("{table}_{now_us}_{serial}"),
            creation_us: now_us,
            expiration_hours,
            columns_to_get,
            shards: vec![Shard::new(0, None, 0, HASH_END)],
            next_shard: 1,
            last_ts_us: 0,
            write: None,
            split_every: split_every.filter(|&n| n > 0),
            since_split: 0,
        }
    }

    pub fn details(&self) -> pb::StreamDetails {
        pb::StreamDetails {
            enable_stream: true,
            stream_id: Some(self.id.clone()),
            expiration_time: Some(self.expiration_hours),
            last_enable_time: Some(self.creation_us),
            column_to_get: self.columns_to_get.clone(),
        }
    }

    /// Starts a new write: its records share one timestamp and count their row index from 0.
    pub fn begin_write(&mut self) {
        self.write = None;
    }

    /// The sequence of the next record of the current write.
    pub fn next_sequence(&mut self, now_ms: i64) -> RecordSequence {
        let (ts, index) = match self.write {
            Some(w) => w,
            None => {
                let ts = now_ms
                    .saturating_mul(1000)
                    .max(self.last_ts_us.saturating_add(1));
                self.last_ts_us = ts;
                (ts, 0)
            }
        };
        self.write = Some((ts, index.saturating_add(1)));
        RecordSequence {
            epoch: EPOCH,
            timestamp_us: ts,
            row_index: index,
        }
    }

    /// Appends a record to the open shard that owns `key`.
    pub fn append(&mut self, key: &[PkValue], record: Record) {
        let h = u128::from(key_hash(key));
        let ts = record.timestamp_us;
        let shard = match self
            .shards
            .iter()
            .position(|s| s.open && s.lo <= h && h < s.hi)
        {
            Some(i) => Some(i),
            // Open shards always partition the hash space; this is only a safety net.
            None => self.shards.iter().rposition(|s| s.open),
        };
        if let Some(i) = shard {
            self.shards[i].records.push_back(record);
        }
        if let Some(n) = self.split_every {
            self.since_split += 1;
            if self.since_split >= n {
                self.split(ts);
            }
        }
    }

    /// Closes every open shard and opens two children for each, halving its key range. Returns the
    /// ids of the new shards. A shard whose range cannot be halved stays open.
    pub fn split(&mut self, now_us: i64) -> Vec<String> {
        self.since_split = 0;
        let mut children = Vec::new();
        for s in self.shards.iter_mut().filter(|s| s.open) {
            if s.hi - s.lo < 2 {
                continue;
            }
            let mid = s.lo + (s.hi - s.lo) / 2;
            s.open = false;
            s.closed_us = now_us;
            for (lo, hi) in [(s.lo, mid), (mid, s.hi)] {
                children.push(Shard::new(self.next_shard, Some(s.id.clone()), lo, hi));
                self.next_shard += 1;
            }
        }
        let ids = children.iter().map(|c| c.id.clone()).collect();
        self.shards.extend(children);
        ids
    }

    /// Drops every record written before `before_us`, and closed shards left empty that closed
    /// before it. Returns how many records were dropped.
    pub fn trim(&mut self, before_us: i64) -> usize {
        let mut dropped = 0;
        for s in &mut self.shards {
            while let Some(r) = s.records.front() {
                if r.timestamp_us >= before_us {
                    break;
                }
                s.last_trimmed_us = Some(r.timestamp_us);
                s.records.pop_front();
                s.base += 1;
                dropped += 1;
            }
        }
        self.shards
            .retain(|s| s.open || !s.records.is_empty() || s.closed_us >= before_us);
        dropped
    }

    /// Retention: trims what is older than the stream's expiration.
    pub fn expire(&mut self, now_us: i64) {
        let keep = i64::from(self.expiration_hours).saturating_mul(US_PER_HOUR);
        self.trim(now_us.saturating_sub(keep));
    }

    pub fn record_count(&self) -> usize {
        self.shards.iter().map(|s| s.records.len()).sum()
    }

    fn shard(&self, id: &str) -> ApiResult<&Shard> {
        if let Some(s) = self.shards.iter().find(|s| s.id == id) {
            return Ok(s);
        }
        // A shard this stream once had was dropped with its trimmed records.
        match parse_shard_number(id) {
            Some(n) if n < self.next_shard => Err(trimmed()),
            _ => Err(ApiError::new(
                404,
                "OTSObjectNotExist",
                "Requested shard does not exist.",
            )),
        }
    }

    /// One DescribeStream page: shards from `start` (inclusive, by id order), and the next id.
    fn shard_page(
        &self,
        start: Option<&str>,
        limit: usize,
    ) -> ApiResult<(Vec<pb::StreamShard>, Option<String>)> {
        let first = match start {
            None => 0,
            Some(id) => {
                let n = parse_shard_number(id).ok_or_else(|| {
                    ApiError::param(format!("Invalid inclusive_start_shard_id: '{id}'."))
                })?;
                self.shards.partition_point(|s| s.number < n)
            }
        };
        let rest = &self.shards[first.min(self.shards.len())..];
        let page = rest.iter().take(limit).map(Shard::to_pb).collect();
        let next = rest.get(limit).map(|s| s.id.clone());
        Ok((page, next))
    }

    /// An iterator at the shard's oldest kept record, or at its first record written at or after
    /// `timestamp_us`.
    fn iterator(&self, shard_id: &str, timestamp_us: Option<i64>) -> ApiResult<String> {
        let shard = self.shard(shard_id)?;
        let offset = match timestamp_us {
            None => shard.base,
            Some(t) => {
                if shard.last_trimmed_us.is_some_and(|last| t <= last) {
                    return Err(trimmed());
                }
                shard.base + shard.records.partition_point(|r| r.timestamp_us < t) as u64
            }
        };
        Ok(Position {
            stream_id: self.id.clone(),
            shard_id: shard.id.clone(),
            offset,
        }
        .encode())
    }

    /// Reads up to `limit` records from a position of this stream.
    fn read(
        &self,
        pos: &Position,
        iterator: &str,
        limit: usize,
    ) -> ApiResult<(pb::GetStreamRecordResponse, usize)> {
        let shard = self.shard(&pos.shard_id)?;
        if pos.offset < shard.base {
            return Err(trimmed());
        }
        if pos.offset > shard.end() {
            return Err(invalid_iterator());
        }
        let start = usize::try_from(pos.offset - shard.base).map_err(|_| invalid_iterator())?;
        let mut records = Vec::new();
        let mut bytes = 0usize;
        for r in shard.records.iter().skip(start).take(limit) {
            if !records.is_empty() && bytes + r.bytes.len() > MAX_RESPONSE_BYTES {
                break;
            }
            bytes += r.bytes.len();
            records.push(pb::get_stream_record_response::StreamRecord {
                action_type: r.action as i32,
                record: r.bytes.clone().into(),
                origin_record: None,
            });
        }
        let next_offset = pos.offset + records.len() as u64;
        let more = next_offset < shard.end();
        let next = if records.is_empty() && shard.open {
            // Caught up on an open shard: the same iterator again.
            Some(iterator.to_string())
        } else if !more && !shard.open {
            // A closed shard read to its end.
            None
        } else {
            Some(
                Position {
                    offset: next_offset,
                    ..pos.clone()
                }
                .encode(),
            )
        };
        let resp = pb::GetStreamRecordResponse {
            stream_records: records,
            next_shard_iterator: next,
            consumed: None,
            may_more_record: Some(more),
        };
        Ok((resp, bytes))
    }
}

fn parse_shard_number(id: &str) -> Option<u64> {
    id.strip_prefix(SHARD_PREFIX)?.parse().ok()
}

/// Non-negative `limit`-style request fields.
fn positive_limit(v: Option<i32>, default: usize, what: &str) -> ApiResult<usize> {
    match v {
        None => Ok(default),
        Some(n) if n > 0 => Ok(usize::try_from(n).unwrap_or(default)),
        Some(n) => Err(ApiError::param(format!(
            "The {what} must be positive: {n}."
        ))),
    }
}

impl Engine {
    /// The table whose current stream is `stream_id`, write-locked, with retention applied.
    fn locked_stream<'t>(
        &self,
        tables: &'t [Arc<Table>],
        stream_id: &str,
    ) -> Option<(&'t Table, RwLockWriteGuard<'t, TableState>)> {
        for t in tables {
            let mut st = t.write();
            if let Some(log) = st.stream.as_mut()
                && log.id == stream_id
            {
                log.expire(now_us());
                return Some((t, st));
            }
        }
        None
    }

    pub(crate) fn list_stream(&self, req: &pb::ListStreamRequest) -> ApiResult<Reply> {
        let tables = match &req.table_name {
            Some(name) => vec![self.table(name)?],
            None => self.all_tables(),
        };
        let streams = tables
            .iter()
            .filter_map(|t| {
                let st = t.read();
                st.stream.as_ref().map(|log| pb::Stream {
                    stream_id: log.id.clone(),
                    table_name: t.def.name.clone(),
                    creation_time: log.creation_us,
                })
            })
            .collect();
        Ok(Reply::new(&pb::ListStreamResponse { streams }, 0, 0))
    }

    pub(crate) fn describe_stream(&self, req: &pb::DescribeStreamRequest) -> ApiResult<Reply> {
        let limit = positive_limit(req.shard_limit, DEFAULT_SHARD_LIMIT, "shard_limit")?;
        let tables = self.all_tables();
        let (table, st) = self
            .locked_stream(&tables, &req.stream_id)
            .ok_or_else(stream_not_exist)?;
        let log = st.stream.as_ref().ok_or_else(stream_not_exist)?;
        let (shards, next_shard_id) =
            log.shard_page(req.inclusive_start_shard_id.as_deref(), limit)?;
        let resp = pb::DescribeStreamResponse {
            stream_id: log.id.clone(),
            expiration_time: log.expiration_hours,
            table_name: table.def.name.clone(),
            creation_time: log.creation_us,
            stream_status: pb::StreamStatus::StreamActive as i32,
            shards,
            next_shard_id,
        };
        Ok(Reply::new(&resp, 0, 0))
    }

    pub(crate) fn get_shard_iterator(&self, req: &pb::GetShardIteratorRequest) -> ApiResult<Reply> {
        let tables = self.all_tables();
        let (_, st) = self
            .locked_stream(&tables, &req.stream_id)
            .ok_or_else(stream_not_exist)?;
        let log = st.stream.as_ref().ok_or_else(stream_not_exist)?;
        let shard_iterator = log.iterator(&req.shard_id, req.timestamp)?;
        let resp = pb::GetShardIteratorResponse {
            shard_iterator,
            next_token: None,
        };
        Ok(Reply::new(&resp, 0, 0))
    }

    pub(crate) fn get_stream_record(&self, req: &pb::GetStreamRecordRequest) -> ApiResult<Reply> {
        let limit = positive_limit(req.limit, DEFAULT_RECORD_LIMIT, "limit")?.min(MAX_RECORD_LIMIT);
        let pos = Position::decode(&req.shard_iterator)?;
        let tables = self.all_tables();
        // An iterator of a stream that no longer exists (disabled, or its table deleted) belongs to
        // another stream than any the instance has.
        let (table, st) = self
            .locked_stream(&tables, &pos.stream_id)
            .ok_or_else(invalid_iterator)?;
        if req
            .table_name
            .as_ref()
            .is_some_and(|n| *n != table.def.name)
        {
            return Err(ApiError::param(
                "The shard iterator does not belong to a stream of this table.",
            ));
        }
        let log = st.stream.as_ref().ok_or_else(invalid_iterator)?;
        let (mut resp, bytes) = log.read(&pos, &req.shard_iterator, limit)?;
        // Read CU: bytes returned / 4 KB, rounded up (at least 1).
        let read = cu(bytes).max(1);
        resp.consumed = Some(capacity(read, 0));
        Ok(Reply::new(&resp, read, 0))
    }

    /// Test hook: drops every record of `table`'s stream written before `before_us`.
    pub(crate) fn trim_stream(&self, table: &str, before_us: i64) -> Result<usize, String> {
        let t = self
            .table(table)
            .map_err(|_| format!("no table '{table}'"))?;
        let mut st = t.write();
        let log = st
            .stream
            .as_mut()
            .ok_or_else(|| format!("table '{table}' has no stream"))?;
        Ok(log.trim(before_us))
    }

    /// Test hook: splits every open shard of `table`'s stream; returns the new shard ids.
    pub(crate) fn split_stream_shards(&self, table: &str) -> Result<Vec<String>, String> {
        let t = self
            .table(table)
            .map_err(|_| format!("no table '{table}'"))?;
        let mut st = t.write();
        let log = st
            .stream
            .as_mut()
            .ok_or_else(|| format!("table '{table}' has no stream"))?;
        Ok(log.split(now_us()))
    }

    /// Records kept in `table`'s stream (every shard); `None` without a stream.
    pub(crate) fn stream_records(&self, table: &str) -> Option<usize> {
        let t = self.table(table).ok()?;
        let st = t.read();
        st.stream.as_ref().map(StreamLog::record_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ts: i64) -> Record {
        Record {
            action: pb::ActionType::PutRow,
            bytes: vec![0; 4],
            timestamp_us: ts,
        }
    }

    #[test]
    fn iterator_round_trips_and_rejects_garbage() {
        let p = Position {
            stream_id: "t_1_2".into(),
            shard_id: "shard-00000003".into(),
            offset: 42,
        };
        assert_eq!(Position::decode(&p.encode()), Ok(p));
        for bad in ["", "abc", "zz", "00", &"6f".repeat(10)] {
            assert_eq!(
                Position::decode(bad).map_err(|e| e.code),
                Err("OTSParameterInvalid")
            );
        }
    }

    #[test]
    fn sequences_increase_and_rows_of_one_write_share_a_timestamp() {
        let mut log = StreamLog::new("t", 0, 24, vec![], None);
        log.begin_write();
        let a = log.next_sequence(5);
        let b = log.next_sequence(5);
        log.begin_write();
        let c = log.next_sequence(5);
        assert_eq!((a.timestamp_us, a.row_index), (5000, 0));
        assert_eq!((b.timestamp_us, b.row_index), (5000, 1));
        assert_eq!((c.timestamp_us, c.row_index), (5001, 0));
    }

    #[test]
    fn split_halves_ranges_and_routes_a_key_to_one_child() {
        let mut log = StreamLog::new("t", 0, 24, vec![], None);
        let ids = log.split(1);
        assert_eq!(ids.len(), 2);
        let key = [PkValue::String("k".into())];
        for ts in 0..10 {
            log.append(&key, record(ts));
        }
        let holding: Vec<_> = log
            .shards
            .iter()
            .filter(|s| !s.records.is_empty())
            .collect();
        assert_eq!(holding.len(), 1);
        assert!(holding[0].open);
        assert_eq!(log.split(2).len(), 4);
        assert_eq!(log.shards.iter().filter(|s| s.open).count(), 4);
    }

    #[test]
    fn trim_drops_old_records_and_empty_closed_shards() {
        let mut log = StreamLog::new("t", 0, 24, vec![], None);
        for ts in 0..10 {
            log.append(&[PkValue::Integer(ts)], record(ts));
        }
        assert_eq!(log.trim(4), 4);
        assert_eq!(log.record_count(), 6);
        assert_eq!(log.shards[0].base, 4);
        log.split(20);
        assert_eq!(log.trim(30), 6);
        assert_eq!(log.shards.len(), 2, "the emptied parent is gone");
    }
}
