//! Where snapshots go, by URL: a local path or `file://`, `oss://bucket/prefix` (Alibaba OSS through
//! its S3-compatible API), `s3://`, `gs://`, `az://`. Everything is an `object_store::ObjectStore`
//! plus a prefix, so the rest of the code never cares which backend it writes to.
//!
//! OSS specifics: virtual-hosted style only, the endpoint must already contain the bucket
//! (`https://BUCKET.s3.oss-REGION.aliyuncs.com`, `-internal` inside Alibaba Cloud), conditional puts
//! are disabled (OSS answers 501) and bulk delete is disabled (OSS misbehaves). A destination says
//! whether it has create-only puts (`supports_create_only`): local folders, S3, GCS and Azure do;
//! the snapshot protocol stays correct on OSS without them. Local folders are fsynced. Credentials
//! come from `ALIBABA_CLOUD_*` only, never from the AWS chain.

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore};

#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error(
        "destination '{url}' has an unknown scheme '{scheme}': use a local path, file://, oss://, s3://, gs:// or az://"
    )]
    UnknownScheme { url: String, scheme: String },
    #[error("destination '{url}' names no bucket: write it as {scheme}://BUCKET/PREFIX")]
    MissingBucket { url: String, scheme: String },
    #[error("destination '{url}' needs {what}: {hint}")]
    MissingSetting {
        url: String,
        what: &'static str,
        hint: &'static str,
    },
    #[error("no credentials for '{url}': set {vars}")]
    NoCredentials { url: String, vars: &'static str },
    #[error("destination '{url}': {detail}")]
    Invalid { url: String, detail: String },
    #[error("destination '{url}': {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

/// Settings that cannot be part of the URL. Values from flags win over the environment.
#[derive(Clone, Debug, Default)]
pub struct DestinationOptions {
    /// OSS region, e.g. `cn-hangzhou` (else `ALIBABA_CLOUD_OSS_REGION`).
    pub oss_region: Option<String>,
    /// Full OSS S3-compatible endpoint including the bucket (else derived from the region).
    pub oss_endpoint: Option<String>,
    /// Use the `-internal` endpoint (VPC / ECS inside the same region: no traffic charges).
    pub oss_internal: bool,
    /// Endpoint for `s3://` (MinIO, test servers); `{bucket}` in it is replaced by the bucket.
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// Allow plain http endpoints (test servers only).
    pub allow_http: bool,
    /// HTTP options (timeouts; tests set a DNS resolver for virtual-hosted names on loopback).
    pub client_options: Option<ClientOptions>,
    /// Create a local destination folder that does not exist (writers do; readers must not).
    pub create_local: bool,
    /// Server-side encryption asked of `s3://` and `oss://` stores on every object written.
    pub sse: Option<ServerSideEncryption>,
}

/// object_store's setting for `x-amz-server-side-encryption` (its enum for it is not public).
static SSE_CONFIG_KEY: std::sync::LazyLock<AmazonS3ConfigKey> = std::sync::LazyLock::new(|| {
    "aws_server_side_encryption"
        .parse()
        .expect("object_store names this setting")
});

/// Server-side encryption of an S3-compatible store (`--sse`): the store encrypts each object
/// at rest with its own keys (SSE-S3) or with a KMS key (SSE-KMS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// `x-amz-server-side-encryption: AES256`.
    Aes256,
    /// `x-amz-server-side-encryption: aws:kms`, with this key (else the store's default KMS key).
    Kms { key_id: Option<String> },
}

impl ServerSideEncryption {
    /// `--sse aes256|kms` with `--sse-kms-key-id`: `None` for no `--sse`.
    pub fn parse(mode: Option<&str>, kms_key_id: Option<&str>) -> Result<Option<Self>, String> {
        match (mode.map(str::to_ascii_lowercase).as_deref(), kms_key_id) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err("--sse-kms-key-id needs --sse kms".into()),
            (Some("aes256"), None) => Ok(Some(ServerSideEncryption::Aes256)),
            (Some("aes256"), Some(_)) => {
                Err("--sse-kms-key-id applies to --sse kms, not aes256".into())
            }
            (Some("kms"), Some(key)) if key.trim().is_empty() => {
                Err("--sse-kms-key-id is empty: give the KMS key id, or leave the flag out for the store's default KMS key".into())
            }
            (Some("kms"), key) => Ok(Some(ServerSideEncryption::Kms {
                key_id: key.map(str::to_string),
            })),
            (Some(other), _) => Err(format!(
                "--sse {other}: expected aes256 (keys managed by the store) or kms (with --sse-kms-key-id, or the store's default KMS key)"
            )),
        }
    }
}

/// Credentials for an S3-compatible store, explicitly sourced.
#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// An opened destination: a store and the prefix under which snapshots live. Its fields are
/// private: object paths are built by the snapshot handle (`ots_manifest::Snapshot`) only.
#[derive(Clone, Debug)]
pub struct Destination {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// The URL as the user gave it (it never contains secrets).
    url: String,
    /// Whether the backend honours create-only puts (`PutMode::Create`); OSS does not.
    create_only: bool,
}

impl Destination {
    /// A destination over any object store (tests wrap stores in fault injection this way).
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        url: impl Into<String>,
        create_only: bool,
    ) -> Self {
        Destination {
            store,
            prefix,
            url: url.into(),
            create_only,
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The same destination over another store (a wrapper of this one: recording, fault injection).
    pub fn with_store(&self, store: Arc<dyn ObjectStore>) -> Destination {
        Destination {
            store,
            ..self.clone()
        }
    }

    /// The URL as the user gave it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The prefix under which snapshot folders live.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Whether create-only puts are refused when the object exists (false on OSS).
    pub fn supports_create_only(&self) -> bool {
        self.create_only
    }

    /// The object path of `relative` (e.g. `SNAPSHOT/manifest.json`) under the prefix.
    pub fn path(&self, relative: &str) -> Path {
        // Parse rather than join: joining would percent-encode the `%XX` escapes of hive partition
        // values a second time, and readers would see `%2527` where the manifest says `%27`.
        let full = format!("{}/{}", self.prefix.as_ref(), relative.trim_matches('/'));
        Path::parse(full.trim_matches('/')).unwrap_or_else(|_| {
            let mut p = self.prefix.clone();
            for part in relative.split('/').filter(|s| !s.is_empty()) {
                p = p.clone().join(part);
            }
            p
        })
    }

    /// `path` relative to the prefix, or `None` when it lies outside it.
    pub fn relative(&self, path: &Path) -> Option<String> {
        let parts: Vec<String> = path
            .prefix_match(&self.prefix)?
            .map(|p| p.as_ref().to_string())
            .collect();
        Some(parts.join("/"))
    }

    /// The user-facing URL of `relative` under this destination.
    pub fn url_of(&self, relative: &str) -> String {
        format!("{}/{}", self.url.trim_end_matches('/'), relative)
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Parses and opens a destination. Fails fast, before any data is read, on anything that would
/// only fail later: unknown scheme, missing bucket, missing credentials or region.
pub fn open_destination(
    url: &str,
    options: &DestinationOptions,
) -> Result<Destination, DestinationError> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("".to_string(), url),
    };
    if options.sse.is_some() && !matches!(scheme.as_str(), "oss" | "s3") {
        return Err(DestinationError::Invalid {
            url: url.to_string(),
            detail: "--sse applies to s3:// and oss:// destinations; encrypt other stores with their own settings, or the files with --encryption-key-file".into(),
        });
    }
    match scheme.as_str() {
        "" | "file" => open_local(url, rest, options.create_local),
        "oss" => {
            let (bucket, prefix) = bucket_and_prefix(url, &scheme, rest)?;
            let creds = alibaba_credentials(url)?;
            open_oss(url, &bucket, &prefix, creds, options)
        }
        "s3" => {
            let (bucket, prefix) = bucket_and_prefix(url, &scheme, rest)?;
            let creds = aws_credentials(url)?;
            open_s3(url, &bucket, &prefix, creds, options)
        }
        "gs" | "az" | "abfs" | "abfss" => {
            bucket_and_prefix(url, &scheme, rest)?;
            open_by_url(url)
        }
        other => Err(DestinationError::UnknownScheme {
            url: url.to_string(),
            scheme: other.to_string(),
        }),
    }
}

fn open_local(url: &str, path: &str, create: bool) -> Result<Destination, DestinationError> {
    let dir = std::path::Path::new(path);
    if create {
        std::fs::create_dir_all(dir).map_err(|e| DestinationError::Invalid {
            url: url.to_string(),
            detail: format!("cannot create the folder {}: {e}", dir.display()),
        })?;
        check_writable(url, dir)?;
    } else if !dir.is_dir() {
        return Err(DestinationError::Invalid {
            url: url.to_string(),
            detail: "no such folder".to_string(),
        });
    }
    // fsync files and their folders: a record or manifest counts as written only once durable.
    let store = LocalFileSystem::new_with_prefix(dir)
        .map_err(|source| DestinationError::Store {
            url: url.to_string(),
            source,
        })?
        .with_fsync(true)
        // gc and expire delete whole snapshots: the folders they empty go too, or `ls` would
        // still list an empty snapshot folder.
        .with_automatic_cleanup(true);
    Ok(Destination {
        store: Arc::new(store),
        prefix: Path::default(),
        url: url.to_string(),
        create_only: true,
    })
}

/// A writer finds out now, not after reading the table, that it cannot create files in `dir`:
/// it creates an empty probe file with a name nothing else uses, and removes it.
fn check_writable(url: &str, dir: &std::path::Path) -> Result<(), DestinationError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let probe = dir.join(format!(
        ".otsarchive-write-check-{}-{nanos}",
        std::process::id()
    ));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    match created {
        Ok(file) => {
            drop(file);
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(DestinationError::Invalid {
            url: url.to_string(),
            detail: format!("cannot write in the folder {}: {e}", dir.display()),
        }),
    }
}

fn bucket_and_prefix(
    url: &str,
    scheme: &str,
    rest: &str,
) -> Result<(String, String), DestinationError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(DestinationError::MissingBucket {
            url: url.to_string(),
            scheme: scheme.to_string(),
        });
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

fn prefix_path(url: &str, prefix: &str) -> Result<Path, DestinationError> {
    Path::parse(prefix).map_err(|e| DestinationError::Invalid {
        url: url.to_string(),
        detail: format!("prefix '{prefix}' is not a valid object path: {e}"),
    })
}

/// `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` / `ALIBABA_CLOUD_SECURITY_TOKEN` (STS).
pub fn alibaba_credentials(url: &str) -> Result<S3Credentials, DestinationError> {
    match (
        env("ALIBABA_CLOUD_ACCESS_KEY_ID"),
        env("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
    ) {
        (Some(id), Some(secret)) => Ok(S3Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: env("ALIBABA_CLOUD_SECURITY_TOKEN"),
        }),
        _ => Err(DestinationError::NoCredentials {
            url: url.to_string(),
            vars: "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET \
                   (and ALIBABA_CLOUD_SECURITY_TOKEN for STS)",
        }),
    }
}

fn aws_credentials(url: &str) -> Result<S3Credentials, DestinationError> {
    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Ok(S3Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: env("AWS_SESSION_TOKEN"),
        }),
        _ => Err(DestinationError::NoCredentials {
            url: url.to_string(),
            vars: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)",
        }),
    }
}

/// The OSS S3-compatible endpoint of `bucket` in `region`.
pub fn oss_endpoint(bucket: &str, region: &str, internal: bool) -> String {
    let internal = if internal { "-internal" } else { "" };
    format!("https://{bucket}.s3.oss-{region}{internal}.aliyuncs.com")
}

pub fn open_oss(
    url: &str,
    bucket: &str,
    prefix: &str,
    creds: S3Credentials,
    options: &DestinationOptions,
) -> Result<Destination, DestinationError> {
    let region = options
        .oss_region
        .clone()
        .or_else(|| env("ALIBABA_CLOUD_OSS_REGION"));
    let endpoint = match (&options.oss_endpoint, &region) {
        (Some(e), _) => e.replace("{bucket}", bucket),
        (None, Some(r)) => oss_endpoint(bucket, r, options.oss_internal),
        (None, None) => {
            return Err(DestinationError::MissingSetting {
                url: url.to_string(),
                what: "an OSS region",
                hint: "pass --oss-region cn-hangzhou (or set ALIBABA_CLOUD_OSS_REGION), or --oss-endpoint",
            });
        }
    };
    // object_store signs with the region; OSS accepts its own region names in SigV4.
    let region = region.unwrap_or_else(|| "oss".to_string());
    let builder = s3_builder(bucket, &region, Some(&endpoint), creds, options)
        .with_conditional_put(S3ConditionalPut::Disabled)
        .with_disable_bulk_delete(true);
    finish_s3(url, prefix, builder, false)
}

pub fn open_s3(
    url: &str,
    bucket: &str,
    prefix: &str,
    creds: S3Credentials,
    options: &DestinationOptions,
) -> Result<Destination, DestinationError> {
    let region = options
        .s3_region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string());
    // Path style on AWS itself; a custom endpoint (MinIO, test servers) is virtual-hosted with
    // the bucket already in it, like OSS.
    let endpoint = options
        .s3_endpoint
        .as_ref()
        .map(|e| e.replace("{bucket}", bucket));
    let builder = s3_builder(bucket, &region, endpoint.as_deref(), creds, options)
        .with_conditional_put(S3ConditionalPut::ETagMatch);
    finish_s3(url, prefix, builder, true)
}

/// An S3 builder with explicit credentials (never the AWS chain). With an endpoint: virtual-hosted
/// style with the bucket already in the endpoint, as OSS requires.
fn s3_builder(
    bucket: &str,
    region: &str,
    endpoint: Option<&str>,
    creds: S3Credentials,
    options: &DestinationOptions,
) -> AmazonS3Builder {
    let mut builder = AmazonS3Builder::new();
    // `with_client_options` replaces the whole options object: set it before anything it covers.
    if let Some(c) = &options.client_options {
        builder = builder.with_client_options(c.clone());
    }
    builder = builder.with_bucket_name(bucket).with_region(region);
    if let Some(endpoint) = endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(true);
    }
    builder = builder
        .with_access_key_id(creds.access_key_id)
        .with_secret_access_key(creds.secret_access_key)
        .with_allow_http(options.allow_http);
    if let Some(t) = creds.session_token {
        builder = builder.with_token(t);
    }
    // object_store sends the headers on every put and multipart upload it makes.
    let sse_mode = match &options.sse {
        None => None,
        Some(ServerSideEncryption::Aes256) => Some("AES256"),
        Some(ServerSideEncryption::Kms { key_id: Some(k) }) => {
            return builder.with_sse_kms_encryption(k);
        }
        Some(ServerSideEncryption::Kms { key_id: None }) => Some("aws:kms"),
    };
    if let Some(mode) = sse_mode {
        builder = builder.with_config(*SSE_CONFIG_KEY, mode);
    }
    builder
}

fn finish_s3(
    url: &str,
    prefix: &str,
    builder: AmazonS3Builder,
    create_only: bool,
) -> Result<Destination, DestinationError> {
    let store = builder.build().map_err(|source| DestinationError::Store {
        url: url.to_string(),
        source,
    })?;
    Ok(Destination {
        store: Arc::new(store),
        prefix: prefix_path(url, prefix)?,
        url: url.to_string(),
        create_only,
    })
}

/// GCS and Azure: object_store's own URL parsing and environment configuration.
fn open_by_url(url: &str) -> Result<Destination, DestinationError> {
    let parsed = url::Url::parse(url).map_err(|e| DestinationError::Invalid {
        url: url.to_string(),
        detail: e.to_string(),
    })?;
    let env_opts: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("GOOGLE_") || k.starts_with("AZURE_"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let (store, prefix) = object_store::parse_url_opts(&parsed, env_opts).map_err(|source| {
        DestinationError::Store {
            url: url.to_string(),
            source,
        }
    })?;
    // GCS and Azure both implement create-only puts.
    Ok(Destination {
        store: Arc::from(store),
        prefix,
        url: url.to_string(),
        create_only: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_destinations_fail_fast_with_clear_messages() {
        let o = DestinationOptions::default();
        let e = open_destination("ftp://x/y", &o).unwrap_err().to_string();
        assert!(e.contains("unknown scheme 'ftp'"), "{e}");
        let e = open_destination("oss:///prefix", &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("names no bucket"), "{e}");
        let e = open_destination("s3://", &o).unwrap_err().to_string();
        assert!(e.contains("names no bucket"), "{e}");
    }

    #[test]
    fn unwritable_local_folders_fail_when_opened_for_writing() {
        let write = DestinationOptions {
            create_local: true,
            ..Default::default()
        };
        // A folder that cannot be created: the path and the OS reason.
        let e = open_destination("/dev/null/x", &write)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot create the folder /dev/null/x: "), "{e}");
        // A writable folder opens and keeps no probe file.
        let dir = tempfile::tempdir().unwrap();
        open_destination(dir.path().to_str().unwrap(), &write).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // A read-only folder (not read-only for root, who skips this part).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let ro = dir.path().join("ro");
            std::fs::create_dir(&ro).unwrap();
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
            if std::fs::write(ro.join("x"), b"").is_err() {
                let e = open_destination(ro.to_str().unwrap(), &write)
                    .unwrap_err()
                    .to_string();
                assert!(e.contains("cannot write in the folder"), "{e}");
                // Readers do not need to write.
                open_destination(ro.to_str().unwrap(), &DestinationOptions::default()).unwrap();
            }
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[test]
    fn oss_endpoints() {
        assert_eq!(
            oss_endpoint("b", "cn-hangzhou", false),
            "https://b.s3.oss-cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            oss_endpoint("b", "cn-shanghai", true),
            "https://b.s3.oss-cn-shanghai-internal.aliyuncs.com"
        );
    }

    #[test]
    fn credentials_debug_hides_secret() {
        let c = S3Credentials {
            access_key_id: "id".into(),
            secret_access_key: "very-secret-value".into(),
            session_token: Some("tok-secret".into()),
        };
        let d = format!("{c:?}");
        assert!(
            !d.contains("very-secret-value") && !d.contains("tok-secret"),
            "{d}"
        );
    }
}
