//! The async Tablestore client: signs every attempt afresh, verifies every response the way the
//! official Python SDK does, decodes it, and retries what is retryable within a deadline.
//!
//! One `OtsClient` is cheap to clone and shares one connection pool; use one per endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use prost::Message;

use crate::auth::{self, Credentials, SignatureVersion};
use crate::error::{OtsError, TransportKind};
use crate::pb;
use crate::retry::{Idempotency, RetryDecision, RetryPolicy, classify, is_retryable_code};

/// Every Tablestore operation this client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    CreateTable,
    DescribeTable,
    ListTable,
    DeleteTable,
    UpdateTable,
    GetRow,
    PutRow,
    UpdateRow,
    DeleteRow,
    BatchGetRow,
    BatchWriteRow,
    GetRange,
    ComputeSplitPointsBySize,
    CreateIndex,
    DropIndex,
    ListStream,
    DescribeStream,
    GetShardIterator,
    GetStreamRecord,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::CreateTable => "CreateTable",
            Action::DescribeTable => "DescribeTable",
            Action::ListTable => "ListTable",
            Action::DeleteTable => "DeleteTable",
            Action::UpdateTable => "UpdateTable",
            Action::GetRow => "GetRow",
            Action::PutRow => "PutRow",
            Action::UpdateRow => "UpdateRow",
            Action::DeleteRow => "DeleteRow",
            Action::BatchGetRow => "BatchGetRow",
            Action::BatchWriteRow => "BatchWriteRow",
            Action::GetRange => "GetRange",
            Action::ComputeSplitPointsBySize => "ComputeSplitPointsBySize",
            Action::CreateIndex => "CreateIndex",
            Action::DropIndex => "DropIndex",
            Action::ListStream => "ListStream",
            Action::DescribeStream => "DescribeStream",
            Action::GetShardIterator => "GetShardIterator",
            Action::GetStreamRecord => "GetStreamRecord",
        }
    }

    /// Reads are idempotent; writes are not unless the caller says so.
    pub fn default_idempotency(self) -> Idempotency {
        match self {
            Action::DescribeTable
            | Action::ListTable
            | Action::GetRow
            | Action::BatchGetRow
            | Action::GetRange
            | Action::ComputeSplitPointsBySize
            | Action::ListStream
            | Action::DescribeStream
            | Action::GetShardIterator
            | Action::GetStreamRecord => Idempotency::Idempotent,
            _ => Idempotency::NotIdempotent,
        }
    }
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `https://INSTANCE.REGION.ots.aliyuncs.com` or `http://127.0.0.1:PORT`; a path prefix is allowed.
    pub endpoint: String,
    pub instance: String,
    pub credentials: Credentials,
    pub signature: SignatureVersion,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    /// Whole-request timeout for one attempt.
    pub request_timeout: Duration,
    pub user_agent: String,
    /// Where the credentials came from, named in the hint of an authentication failure (never
    /// the secret itself). Default: the `ALIBABA_CLOUD_*` environment variables.
    pub credentials_origin: String,
}

/// The default [`ClientConfig::credentials_origin`].
pub const ENV_CREDENTIALS_ORIGIN: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET \
     (and ALIBABA_CLOUD_SECURITY_TOKEN for STS)";

impl ClientConfig {
    pub fn new(
        endpoint: impl Into<String>,
        instance: impl Into<String>,
        credentials: Credentials,
    ) -> Self {
        ClientConfig {
            endpoint: endpoint.into(),
            instance: instance.into(),
            credentials,
            signature: SignatureVersion::V2,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            user_agent: concat!("otsarchive/", env!("CARGO_PKG_VERSION")).to_string(),
            credentials_origin: ENV_CREDENTIALS_ORIGIN.to_string(),
        }
    }
}

/// Counters for progress reporting; shared by all clones of a client.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
}

/// A snapshot of the client's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Attempts that were repeats of a failed one (request-level and row-level).
    pub retries: u64,
    /// Errors that were throttling signals.
    pub throttled: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

#[derive(Clone)]
pub struct OtsClient {
    inner: Arc<Inner>,
}

/// Room reserved up front for a body is its Content-Length, but at most this: a header is no
/// reason to allocate gigabytes (a page is about 4 MB).
const MAX_BODY_HINT: usize = 16 << 20;

struct Inner {
    http: reqwest::Client,
    base_url: String,
    config: ClientConfig,
    counters: Counters,
    /// Set once the endpoint has sent an HTTP response. Until then a failure to connect means a
    /// wrong endpoint rather than a passing fault, and is reported at once instead of retried.
    answered: AtomicBool,
    /// Recycled buffers that response bodies are received into.
    bodies: Arc<crate::body::BodyPool>,
}

impl std::fmt::Debug for OtsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtsClient")
            .field("endpoint", &self.inner.base_url)
            .field("instance", &self.inner.config.instance)
            .field("credentials", &self.inner.config.credentials)
            .finish()
    }
}

impl OtsClient {
    pub fn new(config: ClientConfig) -> Result<Self, OtsError> {
        let base_url = validate_endpoint(&config.endpoint)?;
        if config.instance.is_empty() {
            return Err(OtsError::Config(
                "the instance name is empty: pass --instance (or set it in the profile)".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| OtsError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(OtsClient {
            inner: Arc::new(Inner {
                http,
                base_url,
                config,
                counters: Counters::default(),
                answered: AtomicBool::new(false),
                bodies: Arc::default(),
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        ClientStats {
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
        }
    }

    /// Sends `req` as `action`, retrying per the policy, and decodes the response.
    ///
    /// Until the endpoint has answered this client once, a failure to connect (refused, DNS, TLS
    /// or HTTP mismatch, connect timeout) is returned at once as [`OtsError::Unreachable`];
    /// afterwards it is retried like any other retryable failure. Every retry is logged at WARN.
    pub async fn call<Req, Resp>(
        &self,
        action: Action,
        req: &Req,
        idem: Idempotency,
    ) -> Result<Resp, OtsError>
    where
        Req: Message,
        Resp: Message + Default,
    {
        self.call_on(None, action, req, idem).await
    }

    /// [`call`](Self::call) for a request that names `table`: "does not exist" names it.
    async fn call_on<Req, Resp>(
        &self,
        table: Option<&str>,
        action: Action,
        req: &Req,
        idem: Idempotency,
    ) -> Result<Resp, OtsError>
    where
        Req: Message,
        Resp: Message + Default,
    {
        let body = HashedBody::new(Bytes::from(req.encode_to_vec()));
        self.call_with_body(table, action, &body, idem).await
    }

    /// [`call_on`](Self::call_on) for a body already encoded and hashed.
    async fn call_with_body<Resp>(
        &self,
        table: Option<&str>,
        action: Action,
        body: &HashedBody,
        idem: Idempotency,
    ) -> Result<Resp, OtsError>
    where
        Resp: Message + Default,
    {
        let policy = &self.inner.config.retry;
        let start = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let err = match self.attempt::<Resp>(action, body).await {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            let RetryDecision::Retry { throttled } = classify(&err, idem) else {
                let err = self.explain(err, table);
                return Err(wrap_attempts(err, attempt, start.elapsed()));
            };
            if throttled {
                self.inner
                    .counters
                    .throttled
                    .fetch_add(1, Ordering::Relaxed);
            }
            let delay = policy.delay(attempt - 1, throttled);
            if attempt >= policy.max_attempts || start.elapsed() + delay > policy.deadline {
                return Err(OtsError::RetriesExhausted {
                    attempts: attempt,
                    elapsed: start.elapsed(),
                    last: Box::new(err),
                });
            }
            tracing::warn!(
                "{}: attempt {attempt} of {} failed ({err}); retrying in {:.1} s",
                action.name(),
                policy.max_attempts,
                delay.as_secs_f64()
            );
            self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
        }
    }

    /// One signed HTTP exchange, verified and decoded.
    async fn attempt<Resp: Message + Default>(
        &self,
        action: Action,
        body: &HashedBody,
    ) -> Result<Resp, OtsError> {
        let cfg = &self.inner.config;
        let name = action.name();
        let headers = auth::sign_hashed_request(
            &cfg.credentials,
            &cfg.signature,
            &cfg.instance,
            name,
            body.md5.clone(),
            SystemTime::now(),
        );
        let body = body.bytes.clone();
        let mut request = self
            .inner
            .http
            .post(format!("{}/{}", self.inner.base_url, name))
            .header(reqwest::header::USER_AGENT, &cfg.user_agent);
        for (k, v) in &headers {
            request = request.header(*k, v);
        }
        self.inner.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.inner
            .counters
            .bytes_sent
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        let mut response = match request.body(body).send().await {
            Ok(r) => {
                self.inner.answered.store(true, Ordering::Relaxed);
                r
            }
            Err(e) => {
                if !self.inner.answered.load(Ordering::Relaxed)
                    && let Some(u) = unreachable(name, &cfg.endpoint, &self.inner.base_url, &e)
                {
                    return Err(u);
                }
                return Err(transport_error(name, &e));
            }
        };
        let status = response.status().as_u16();
        let resp_headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-ots-") || k.as_str() == "authorization")
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let expected = response
            .content_length()
            .map_or(0, |n| usize::try_from(n).unwrap_or(0).min(MAX_BODY_HINT));
        let mut receiver = crate::body::BodyReceiver::new(&self.inner.bodies, expected);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(name, &e))?
        {
            receiver.push(&chunk);
        }
        let (body, body_md5) = receiver.finish().await;
        self.inner
            .counters
            .bytes_received
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        let header_refs: Vec<(&str, &str)> = resp_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let request_id = header_refs
            .iter()
            .find(|(k, _)| *k == auth::HDR_REQUEST_ID)
            .map(|(_, v)| v.to_string());
        let success = (200..300).contains(&status);
        let service_error = if success {
            None
        } else {
            Some(decode_error_body(&body))
        };
        auth::verify_response_md5(
            &cfg.credentials,
            &cfg.signature,
            name,
            status,
            &header_refs,
            &body_md5,
            service_error.as_ref().map(|(code, _)| code.as_str()),
            SystemTime::now(),
        )
        .map_err(|source| OtsError::ResponseVerification {
            action: name,
            http_status: status,
            request_id: request_id.clone(),
            source,
        })?;
        if let Some((code, message)) = service_error {
            return Err(OtsError::Service {
                action: name,
                code,
                message,
                http_status: status,
                request_id,
            });
        }
        Resp::decode(body).map_err(|e| OtsError::MalformedResponse {
            action: name,
            request_id,
            detail: format!("protobuf decode failed: {e}"),
        })
    }

    /// A final error, made to name its object and its fix: a missing table with its instance
    /// and endpoint; refused credentials with where they came from. Other errors pass unchanged.
    fn explain(&self, err: OtsError, table: Option<&str>) -> OtsError {
        let OtsError::Service {
            action,
            code,
            message,
            ..
        } = &err
        else {
            return err;
        };
        let cfg = &self.inner.config;
        match (code.as_str(), table) {
            (crate::error::NOT_FOUND, Some(table)) => OtsError::TableNotFound {
                table: table.to_string(),
                instance: cfg.instance.clone(),
                endpoint: cfg.endpoint.trim().to_string(),
                source: Box::new(err),
            },
            (crate::error::AUTH_FAILED | crate::error::NO_PERMISSION, _) => {
                OtsError::AccessDenied {
                    hint: access_hint(code, message, action, cfg),
                    source: Box::new(err),
                }
            }
            _ => err,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Typed operations

    pub async fn create_table(
        &self,
        req: &pb::CreateTableRequest,
    ) -> Result<pb::CreateTableResponse, OtsError> {
        self.call(Action::CreateTable, req, Idempotency::NotIdempotent)
            .await
    }

    pub async fn describe_table(&self, table: &str) -> Result<pb::DescribeTableResponse, OtsError> {
        let req = pb::DescribeTableRequest {
            table_name: table.to_string(),
        };
        self.call_on(
            Some(table),
            Action::DescribeTable,
            &req,
            Idempotency::Idempotent,
        )
        .await
    }

    pub async fn list_table(&self) -> Result<Vec<String>, OtsError> {
        let resp: pb::ListTableResponse = self
            .call(
                Action::ListTable,
                &pb::ListTableRequest {},
                Idempotency::Idempotent,
            )
            .await?;
        Ok(resp.table_names)
    }

    pub async fn delete_table(&self, table: &str) -> Result<(), OtsError> {
        let req = pb::DeleteTableRequest {
            table_name: table.to_string(),
        };
        let _: pb::DeleteTableResponse = self
            .call_on(
                Some(table),
                Action::DeleteTable,
                &req,
                Idempotency::NotIdempotent,
            )
            .await?;
        Ok(())
    }

    pub async fn update_table(
        &self,
        req: &pb::UpdateTableRequest,
    ) -> Result<pb::UpdateTableResponse, OtsError> {
        self.call_on(
            Some(&req.table_name),
            Action::UpdateTable,
            req,
            Idempotency::NotIdempotent,
        )
        .await
    }

    pub async fn get_row(&self, req: &pb::GetRowRequest) -> Result<pb::GetRowResponse, OtsError> {
        self.call_on(
            Some(&req.table_name),
            Action::GetRow,
            req,
            Idempotency::Idempotent,
        )
        .await
    }

    pub async fn put_row(
        &self,
        req: &pb::PutRowRequest,
        idem: Idempotency,
    ) -> Result<pb::PutRowResponse, OtsError> {
        self.call_on(Some(&req.table_name), Action::PutRow, req, idem)
            .await
    }

    pub async fn update_row(
        &self,
        req: &pb::UpdateRowRequest,
        idem: Idempotency,
    ) -> Result<pb::UpdateRowResponse, OtsError> {
        self.call_on(Some(&req.table_name), Action::UpdateRow, req, idem)
            .await
    }

    pub async fn delete_row(
        &self,
        req: &pb::DeleteRowRequest,
        idem: Idempotency,
    ) -> Result<pb::DeleteRowResponse, OtsError> {
        self.call_on(Some(&req.table_name), Action::DeleteRow, req, idem)
            .await
    }

    pub async fn batch_get_row(
        &self,
        req: &pb::BatchGetRowRequest,
    ) -> Result<pb::BatchGetRowResponse, OtsError> {
        self.call(Action::BatchGetRow, req, Idempotency::Idempotent)
            .await
    }

    pub async fn create_index(&self, req: &pb::CreateIndexRequest) -> Result<(), OtsError> {
        let _: pb::CreateIndexResponse = self
            .call_on(
                Some(&req.main_table_name),
                Action::CreateIndex,
                req,
                Idempotency::NotIdempotent,
            )
            .await?;
        Ok(())
    }

    pub async fn drop_index(&self, table: &str, index: &str) -> Result<(), OtsError> {
        let req = pb::DropIndexRequest {
            main_table_name: table.to_string(),
            index_name: index.to_string(),
        };
        let _: pb::DropIndexResponse = self
            .call_on(
                Some(table),
                Action::DropIndex,
                &req,
                Idempotency::NotIdempotent,
            )
            .await?;
        Ok(())
    }

    /// The streams of `table` (at most one on today's service).
    pub async fn list_stream(&self, table: &str) -> Result<Vec<pb::Stream>, OtsError> {
        let req = pb::ListStreamRequest {
            table_name: Some(table.to_string()),
        };
        let resp: pb::ListStreamResponse = self
            .call_on(
                Some(table),
                Action::ListStream,
                &req,
                Idempotency::Idempotent,
            )
            .await?;
        Ok(resp.streams)
    }

    /// One page of a stream's shards; page on with `next_shard_id`.
    pub async fn describe_stream(
        &self,
        req: &pb::DescribeStreamRequest,
    ) -> Result<pb::DescribeStreamResponse, OtsError> {
        self.call(Action::DescribeStream, req, Idempotency::Idempotent)
            .await
    }

    /// An iterator at the start of a shard, or (with `timestamp_us`) at the first record written at
    /// or after that time.
    pub async fn get_shard_iterator(
        &self,
        stream_id: &str,
        shard_id: &str,
        timestamp_us: Option<i64>,
    ) -> Result<String, OtsError> {
        let req = pb::GetShardIteratorRequest {
            stream_id: stream_id.to_string(),
            shard_id: shard_id.to_string(),
            timestamp: timestamp_us,
            token: None,
        };
        let resp: pb::GetShardIteratorResponse = self
            .call(Action::GetShardIterator, &req, Idempotency::Idempotent)
            .await?;
        Ok(resp.shard_iterator)
    }

    /// Up to `limit` records from an iterator. Reading does not move anything on the service, so a
    /// retry with the same iterator is safe.
    pub async fn get_stream_record(
        &self,
        iterator: &str,
        limit: Option<i32>,
    ) -> Result<pb::GetStreamRecordResponse, OtsError> {
        let req = pb::GetStreamRecordRequest {
            shard_iterator: iterator.to_string(),
            limit,
            table_name: None,
        };
        self.call(Action::GetStreamRecord, &req, Idempotency::Idempotent)
            .await
    }

    pub async fn get_range(
        &self,
        req: &pb::GetRangeRequest,
    ) -> Result<pb::GetRangeResponse, OtsError> {
        self.call_on(
            Some(&req.table_name),
            Action::GetRange,
            req,
            Idempotency::Idempotent,
        )
        .await
    }

    pub async fn compute_split_points_by_size(
        &self,
        req: &pb::ComputeSplitPointsBySizeRequest,
    ) -> Result<pb::ComputeSplitPointsBySizeResponse, OtsError> {
        self.call_on(
            Some(&req.table_name),
            Action::ComputeSplitPointsBySize,
            req,
            Idempotency::Idempotent,
        )
        .await
    }

    /// One BatchWriteRow exchange (request-level retries only). Row-level failures come back in
    /// the response; see [`batch_write_row_retrying`](Self::batch_write_row_retrying).
    pub async fn batch_write_row(
        &self,
        req: &pb::BatchWriteRowRequest,
        idem: Idempotency,
    ) -> Result<pb::BatchWriteRowResponse, OtsError> {
        let body = HashedBody::new(Bytes::from(req.encode_to_vec()));
        self.batch_write_row_body(req, &body, idem).await
    }

    /// [`batch_write_row`](Self::batch_write_row) with `req` already encoded and hashed as `body`.
    async fn batch_write_row_body(
        &self,
        req: &pb::BatchWriteRowRequest,
        body: &HashedBody,
        idem: Idempotency,
    ) -> Result<pb::BatchWriteRowResponse, OtsError> {
        // With one table, a missing table is that one.
        let table = match req.tables.as_slice() {
            [t] => Some(t.table_name.as_str()),
            _ => None,
        };
        let resp: pb::BatchWriteRowResponse = self
            .call_with_body(table, Action::BatchWriteRow, body, idem)
            .await?;
        check_batch_shape(req, &resp)?;
        Ok(resp)
    }

    /// BatchWriteRow that also retries the rows that failed with a retryable row error, sending
    /// only those rows again, until they succeed, fail for good, or the policy runs out. The result
    /// has one entry per request row, in request order, holding that row's final outcome.
    pub async fn batch_write_row_retrying(
        &self,
        req: &pb::BatchWriteRowRequest,
        idem: Idempotency,
    ) -> Result<BatchWriteOutcome, OtsError> {
        self.write_rows_retrying(req, None, idem).await
    }

    /// [`batch_write_row_retrying`](Self::batch_write_row_retrying) for a request prepared (encoded
    /// and hashed) by [`prepare_batch_writes`]; rows re-sent after a row error go in new requests.
    /// The prepared body is freed once the first round is answered; the request comes back with
    /// the outcome (its rows are what a caller reports failures with).
    pub async fn batch_write_prepared_retrying(
        &self,
        prepared: PreparedBatchWrite,
        idem: Idempotency,
    ) -> Result<(BatchWriteOutcome, pb::BatchWriteRowRequest), OtsError> {
        let PreparedBatchWrite { request, body } = prepared;
        let outcome = self.write_rows_retrying(&request, body, idem).await?;
        Ok((outcome, request))
    }

    /// The row-retrying loop; `first_body` is `req` encoded and hashed, if it already is.
    async fn write_rows_retrying(
        &self,
        req: &pb::BatchWriteRowRequest,
        mut first_body: Option<HashedBody>,
        idem: Idempotency,
    ) -> Result<BatchWriteOutcome, OtsError> {
        // A table without rows has no place in the sub-requests the results are mapped through.
        if req.tables.iter().any(|t| t.rows.is_empty()) {
            first_body = None;
        }
        let policy = &self.inner.config.retry;
        let start = Instant::now();
        let mut results: Vec<Vec<Option<pb::RowInBatchWriteRowResponse>>> = req
            .tables
            .iter()
            .map(|t| vec![None; t.rows.len()])
            .collect();
        // (table index, row index) of the rows still to send.
        let mut pending: Vec<(usize, usize)> = req
            .tables
            .iter()
            .enumerate()
            .flat_map(|(ti, t)| (0..t.rows.len()).map(move |ri| (ti, ri)))
            .collect();
        let mut round: u32 = 0;
        let mut row_retries: u64 = 0;
        loop {
            let sub = sub_request(req, &pending);
            // Only the first round sends every row of `req`, as `first_body` encodes them (with no
            // empty table, `sub.request` is `req`); the body is dropped once it is answered.
            let resp = match first_body.take() {
                Some(body) => self.batch_write_row_body(req, &body, idem).await?,
                None => self.batch_write_row(&sub.request, idem).await?,
            };
            let mut next = Vec::new();
            let mut throttled = false;
            // The first retryable row error, for the log line.
            let mut reason: Option<(&str, &str)> = None;
            for (sub_table, table_resp) in sub.origins.iter().zip(&resp.tables) {
                for (&(ti, ri), row) in sub_table.iter().zip(&table_resp.rows) {
                    let retry = !row.is_ok
                        && row.error.as_ref().is_some_and(|e| {
                            let message = e.message.as_deref().unwrap_or("");
                            throttled |= crate::retry::is_throttling(&e.code, message);
                            let retry = is_retryable_code(&e.code, message, 0, idem);
                            if retry && reason.is_none() {
                                reason = Some((e.code.as_str(), message));
                            }
                            retry
                        });
                    if retry {
                        next.push((ti, ri));
                    }
                    results[ti][ri] = Some(row.clone());
                }
            }
            if next.is_empty() {
                break;
            }
            let delay = policy.delay(round, throttled);
            round += 1;
            if round >= policy.max_attempts || start.elapsed() + delay > policy.deadline {
                break;
            }
            if throttled {
                self.inner
                    .counters
                    .throttled
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.inner
                .counters
                .retries
                .fetch_add(next.len() as u64, Ordering::Relaxed);
            row_retries += next.len() as u64;
            let (code, message) = reason.unwrap_or_default();
            tracing::warn!(
                "BatchWriteRow: {} rows failed ({code}: {message}), attempt {round} of {}; \
                 re-sending them in {:.1} s",
                next.len(),
                policy.max_attempts,
                delay.as_secs_f64()
            );
            tokio::time::sleep(delay).await;
            pending = next;
        }
        let rows = results
            .into_iter()
            .map(|t| {
                t.into_iter()
                    .map(|r| r.unwrap_or_default())
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(BatchWriteOutcome { rows, row_retries })
    }
}

/// A request body and base64 of its MD5 (`x-ots-contentmd5`), hashed once for every attempt.
#[derive(Clone, Debug)]
struct HashedBody {
    bytes: Bytes,
    md5: String,
}

impl HashedBody {
    fn new(bytes: Bytes) -> Self {
        let md5 = auth::content_md5(&bytes);
        HashedBody { bytes, md5 }
    }
}

/// A BatchWriteRow request ready to send, by [`prepare_batch_writes`]: encoded and its body
/// hashed ahead when it was hashed beside others, else left to be encoded when it is sent. Send
/// it with [`OtsClient::batch_write_prepared_retrying`].
#[derive(Clone, Debug)]
pub struct PreparedBatchWrite {
    request: pb::BatchWriteRowRequest,
    body: Option<HashedBody>,
}

impl PreparedBatchWrite {
    pub fn request(&self) -> &pb::BatchWriteRowRequest {
        &self.request
    }
}

/// Encodes `requests` and hashes their bodies together, side by side in SIMD lanes, when the CPU
/// has them and there are enough bodies for the lanes to pay. One MD5 is a chain of dependent
/// steps that no CPU runs faster than aws-lc already does, but several run at once in the time of
/// about one and a half; request MD5s were a fifth of a restore's CPU. Otherwise nothing is
/// encoded ahead: an early body would only be held in memory longer.
pub fn prepare_batch_writes(requests: Vec<pb::BatchWriteRowRequest>) -> Vec<PreparedBatchWrite> {
    if requests.len() < crate::md5_lanes::lanes_that_pay() {
        return requests
            .into_iter()
            .map(|request| PreparedBatchWrite {
                request,
                body: None,
            })
            .collect();
    }
    let bodies: Vec<Bytes> = requests
        .iter()
        .map(|r| Bytes::from(r.encode_to_vec()))
        .collect();
    let slices: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
    let digests = crate::md5_lanes::md5_many(&slices);
    requests
        .into_iter()
        .zip(bodies)
        .zip(digests)
        .map(|((request, bytes), digest)| PreparedBatchWrite {
            request,
            body: Some(HashedBody {
                bytes,
                md5: B64.encode(digest),
            }),
        })
        .collect()
}

/// The final per-row outcome of [`OtsClient::batch_write_row_retrying`].
#[derive(Clone, Debug, Default)]
pub struct BatchWriteOutcome {
    /// `rows[t][r]` is the result of request table `t`, row `r`.
    pub rows: Vec<Vec<pb::RowInBatchWriteRowResponse>>,
    /// How many row re-sends happened.
    pub row_retries: u64,
}

impl BatchWriteOutcome {
    /// Rows that failed for good: (table index, row index, code, message).
    pub fn failures(&self) -> impl Iterator<Item = (usize, usize, &str, &str)> {
        self.rows.iter().enumerate().flat_map(|(ti, rows)| {
            rows.iter()
                .enumerate()
                .filter(|(_, r)| !r.is_ok)
                .map(move |(ri, r)| {
                    let (code, message) = r
                        .error
                        .as_ref()
                        .map(|e| (e.code.as_str(), e.message.as_deref().unwrap_or("")))
                        .unwrap_or(("", ""));
                    (ti, ri, code, message)
                })
        })
    }
}

struct SubRequest {
    request: pb::BatchWriteRowRequest,
    /// For each table of `request`, the original (table, row) index of each row.
    origins: Vec<Vec<(usize, usize)>>,
}

fn sub_request(req: &pb::BatchWriteRowRequest, pending: &[(usize, usize)]) -> SubRequest {
    let mut tables: Vec<pb::TableInBatchWriteRowRequest> = Vec::new();
    let mut origins: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut last_table = usize::MAX;
    for &(ti, ri) in pending {
        if ti != last_table {
            tables.push(pb::TableInBatchWriteRowRequest {
                table_name: req.tables[ti].table_name.clone(),
                rows: Vec::new(),
            });
            origins.push(Vec::new());
            last_table = ti;
        }
        if let (Some(t), Some(o)) = (tables.last_mut(), origins.last_mut()) {
            t.rows.push(req.tables[ti].rows[ri].clone());
            o.push((ti, ri));
        }
    }
    SubRequest {
        request: pb::BatchWriteRowRequest {
            tables,
            transaction_id: req.transaction_id.clone(),
            is_atomic: req.is_atomic,
        },
        origins,
    }
}

/// The response must answer every table and row of the request, in order (§5.7); anything else
/// would let a row's result be attributed to another row.
fn check_batch_shape(
    req: &pb::BatchWriteRowRequest,
    resp: &pb::BatchWriteRowResponse,
) -> Result<(), OtsError> {
    let mismatch = |detail: String| OtsError::MalformedResponse {
        action: "BatchWriteRow",
        request_id: None,
        detail,
    };
    if req.tables.len() != resp.tables.len() {
        return Err(mismatch(format!(
            "{} tables in the request but {} in the response",
            req.tables.len(),
            resp.tables.len()
        )));
    }
    for (q, r) in req.tables.iter().zip(&resp.tables) {
        if q.table_name != r.table_name || q.rows.len() != r.rows.len() {
            return Err(mismatch(format!(
                "table '{}' with {} rows answered as '{}' with {} rows",
                q.table_name,
                q.rows.len(),
                r.table_name,
                r.rows.len()
            )));
        }
    }
    Ok(())
}

fn validate_endpoint(endpoint: &str) -> Result<String, OtsError> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or_else(|| {
            OtsError::Config(format!(
                "endpoint '{endpoint}' must start with https:// or http:// \
                 (e.g. https://myinstance.cn-hangzhou.ots.aliyuncs.com)"
            ))
        })?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', '@', ' ']) {
        return Err(OtsError::Config(format!(
            "endpoint '{endpoint}' is not a plain http(s) URL with a host \
             (no query, fragment or user info)"
        )));
    }
    Ok(trimmed.to_string())
}

/// A failure to reach an endpoint that has never answered, told apart by its cause, or `None`
/// when the error is not about reaching the endpoint (then it is an ordinary transport error).
fn unreachable(
    action: &'static str,
    endpoint: &str,
    base_url: &str,
    e: &reqwest::Error,
) -> Option<OtsError> {
    let https = base_url.starts_with("https://");
    let scheme = if https { "https" } else { "http" };
    let address = crate::error::endpoint_address(base_url);
    let host = address
        .rsplit_once(':')
        .map_or(address.as_str(), |(h, _)| h)
        .to_string();
    let path = base_url
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .and_then(|r| r.split_once('/'))
        .map(|(_, p)| format!("/{p}"))
        .unwrap_or_default();
    // The chain below reqwest: hyper-util's connect error, an io::Error, rustls' error, hyper's.
    let mut chain: Vec<&(dyn std::error::Error + 'static)> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push(s);
        source = s.source();
    }
    let text: Vec<String> = chain.iter().map(|s| s.to_string()).collect();
    let innermost = text.last().cloned().unwrap_or_else(|| e.to_string());
    let io_kind = chain
        .iter()
        .find_map(|s| s.downcast_ref::<std::io::Error>())
        .map(|io| io.kind());
    let is_parse = chain.iter().any(|s| {
        s.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_parse())
    });
    // Closed or reset with nothing received: what a TLS server does with a plain-http request.
    let closed = chain.iter().any(|s| {
        s.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message())
    }) || matches!(
        io_kind,
        Some(
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::BrokenPipe
        )
    );
    let example = format!(
        "--endpoint {scheme}://HOST:PORT; Tablestore's own endpoints look like \
         https://INSTANCE.REGION.ots.aliyuncs.com"
    );
    let check = format!("is the endpoint right? ({example})");
    let (detail, hint) = if e.is_connect() && e.is_timeout() {
        (
            "no connection within the connect timeout".to_string(),
            format!(
                "{check}; a VPC endpoint is reachable only from inside its VPC, and a firewall or \
                 proxy may drop the connection"
            ),
        )
    } else if !e.is_connect() {
        // Connected and sent, but what came back is not HTTP, or nothing at all: likely TLS on
        // the other side. Anything else (a timeout) is an ordinary transport error.
        let detail = if is_parse {
            format!("the reply is not HTTP: {innermost}")
        } else if closed {
            format!("the connection was closed without an answer: {innermost}")
        } else {
            return None;
        };
        let hint = if https {
            check
        } else {
            format!(
                "the server at {address} does not answer plain HTTP: if it speaks TLS, use \
                 https://{address}{path}; otherwise {check}"
            )
        };
        (detail, hint)
    } else if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
        ("connection refused".to_string(), check)
    } else if text.iter().any(|t| t.starts_with("dns error")) {
        (
            format!("cannot resolve host '{host}': {innermost}"),
            format!("is the host name right? ({example})"),
        )
    } else if https && text.iter().any(|t| t.contains("InvalidContentType")) {
        (
            "the TLS handshake got a reply that is not TLS".to_string(),
            format!("the server at {address} does not speak TLS: use http://{address}{path}"),
        )
    } else if https && io_kind == Some(std::io::ErrorKind::InvalidData) {
        (
            format!("TLS handshake failed: {innermost}"),
            "check that the endpoint's host name is the one its certificate names, and this \
             machine's CA certificates"
                .to_string(),
        )
    } else {
        (innermost, check)
    };
    Some(OtsError::Unreachable {
        action,
        endpoint: endpoint.trim().to_string(),
        detail,
        hint,
    })
}

/// What to check after `OTSAuthFailed` / `OTSNoPermissionAccess`, by the server's message.
fn access_hint(code: &str, message: &str, action: &str, cfg: &ClientConfig) -> String {
    let origin = &cfg.credentials_origin;
    let lower = message.to_ascii_lowercase();
    if code == crate::error::NO_PERMISSION {
        format!(
            "the access key from {origin} lacks a permission: grant it ots:{action} on instance \
             '{}' (see the Permissions section of docs/OPERATIONS.md)",
            cfg.instance
        )
    } else if lower.contains("instance") {
        format!(
            "check the instance name '{}' (--instance; it must be the instance of the endpoint {}) \
             and {origin}",
            cfg.instance, cfg.endpoint
        )
    } else if lower.contains("x-ots-date") || lower.contains("system time") {
        "check this machine's clock: the request's date is too far from the server's".to_string()
    } else {
        format!("check {origin}")
    }
}

fn transport_error(action: &'static str, e: &reqwest::Error) -> OtsError {
    let kind = if e.is_connect() {
        TransportKind::Connect
    } else if e.is_timeout() {
        TransportKind::Timeout
    } else if e.is_request() || e.is_body() || e.is_decode() {
        TransportKind::Io
    } else {
        TransportKind::Other
    };
    // reqwest's Display omits the cause chain; include it so "connection refused" is visible.
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    OtsError::Transport {
        action,
        kind,
        detail,
    }
}

/// The (code, message) of an error response. A body that is not a Tablestore `Error` (say, a
/// proxy's HTML page) gets a synthetic code so that the HTTP status still drives retries.
fn decode_error_body(body: &Bytes) -> (String, String) {
    match pb::Error::decode(body.clone()) {
        Ok(e) if !e.code.is_empty() => (e.code, e.message.unwrap_or_default()),
        _ => {
            let snippet: String = String::from_utf8_lossy(&body[..body.len().min(120)])
                .chars()
                .filter(|c| !c.is_control())
                .collect();
            (
                "OTSClientUnknownErrorBody".to_string(),
                format!("the error body is not a Tablestore Error message: {snippet:?}"),
            )
        }
    }
}

fn wrap_attempts(err: OtsError, attempts: u32, elapsed: Duration) -> OtsError {
    if attempts <= 1 {
        err
    } else {
        OtsError::RetriesExhausted {
            attempts,
            elapsed,
            last: Box::new(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_validated() {
        assert_eq!(
            validate_endpoint("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(validate_endpoint("https://i.cn-hangzhou.ots.aliyuncs.com/prefix").is_ok());
        for bad in [
            "127.0.0.1:80",
            "ftp://x",
            "http://",
            "http://a?b=1",
            "https://u:p@h",
        ] {
            let err = validate_endpoint(bad).unwrap_err().to_string();
            assert!(err.contains("endpoint"), "{bad}: {err}");
        }
    }

    /// Bodies prepared together are their requests encoded, with their own MD5s; a request alone
    /// is left to be encoded when sent.
    #[test]
    fn prepared_bodies_are_the_requests_encoded_and_hashed() {
        let req = |n: usize| pb::BatchWriteRowRequest {
            tables: vec![pb::TableInBatchWriteRowRequest {
                table_name: "t".into(),
                rows: vec![pb::RowInBatchWriteRowRequest {
                    r#type: pb::OperationType::Put as i32,
                    row_change: Bytes::from(vec![n as u8; 100 + n * 1000]),
                    condition: pb::Condition::default(),
                    return_content: None,
                }],
            }],
            ..Default::default()
        };
        let many = prepare_batch_writes((0..8).map(req).collect());
        for (i, p) in many.iter().enumerate() {
            assert_eq!(p.request(), &req(i));
            if let Some(body) = &p.body {
                assert_eq!(body.bytes, req(i).encode_to_vec());
                assert_eq!(body.md5, auth::content_md5(&body.bytes), "request {i}");
            }
        }
        if crate::md5_lanes::lanes_that_pay() <= 8 {
            assert!(many.iter().all(|p| p.body.is_some()));
        }
        assert!(prepare_batch_writes(vec![req(1)])[0].body.is_none());
    }

    #[test]
    fn sub_request_keeps_origins() {
        let row = |n: u8| pb::RowInBatchWriteRowRequest {
            r#type: pb::OperationType::Put as i32,
            row_change: Bytes::from(vec![n]),
            condition: pb::Condition::default(),
            return_content: None,
        };
        let req = pb::BatchWriteRowRequest {
            tables: vec![
                pb::TableInBatchWriteRowRequest {
                    table_name: "a".into(),
                    rows: vec![row(0), row(1)],
                },
                pb::TableInBatchWriteRowRequest {
                    table_name: "b".into(),
                    rows: vec![row(2)],
                },
            ],
            ..Default::default()
        };
        let sub = sub_request(&req, &[(0, 1), (1, 0)]);
        assert_eq!(sub.request.tables.len(), 2);
        assert_eq!(sub.request.tables[0].rows[0].row_change[0], 1);
        assert_eq!(sub.request.tables[1].table_name, "b");
        assert_eq!(sub.origins, vec![vec![(0, 1)], vec![(1, 0)]]);
    }
}
