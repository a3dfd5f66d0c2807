//! The S3 object store (aws-sdk-s3): SHA-256 in object metadata, server-side encryption,
//! multipart upload for large objects, lifecycle tiers applied at start-up, presigned GETs.

mod lifecycle;

use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::{HeadObjectError, HeadObjectOutput};
use aws_sdk_s3::operation::restore_object::RestoreObjectError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, GlacierJobParameters,
    RestoreRequest, StorageClass, Tier,
};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls;
use base64::Engine;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tracing::{debug, info, warn};

use super::{ObjectBytes, ObjectHead, ObjectKey, ObjectStore, ObjectStoreError, RestoreState};

const MIB: u64 = 1024 * 1024;
/// S3's smallest part (all but the last) and its largest.
const MIN_PART_SIZE: u64 = 5 * MIB;
const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// S3 takes at most this many parts; larger objects get larger parts.
const MAX_PARTS: u64 = 10_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The user metadata key (`x-amz-meta-sha256`) holding the object's lower-case hex SHA-256.
const SHA256_METADATA: &str = "sha256";

/// How to reach the bucket and what to apply to it.
#[derive(Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// For S3-compatible servers (MinIO, moto, s3s-fs); None for AWS.
    pub endpoint: Option<String>,
    /// None is `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    pub force_path_style: bool,
    pub encryption: ServerSideEncryption,
    pub lifecycle: LifecycleTiers,
    /// Objects at least this large are uploaded in parts.
    pub multipart_threshold: u64,
    /// At least 5 MiB (S3's minimum); raised for an object that would need more than 10,000 parts.
    pub multipart_part_size: u64,
    /// Static keys (access key id, secret access key) instead of the AWS credential chain
    /// (environment, profile, web identity, container, IMDS); for S3-compatible servers and tests.
    pub credentials: Option<(String, String)>,
    /// The limit on one request attempt (a HEAD, a PUT below the multipart threshold, one part)
    /// and on a pause while an object's body is read, so a dead endpoint fails a C-STORE instead of
    /// hanging it. A failed attempt is retried (three attempts in all).
    pub request_timeout: Duration,
}

impl S3Settings {
    /// Settings for `bucket` on AWS with the defaults: SSE-S3, the default lifecycle tiers,
    /// multipart from 16 MiB in 8 MiB parts, the AWS credential chain, 60 s per request.
    pub fn new(bucket: impl Into<String>) -> S3Settings {
        S3Settings {
            bucket: bucket.into(),
            endpoint: None,
            region: None,
            force_path_style: false,
            encryption: ServerSideEncryption::Aes256,
            lifecycle: LifecycleTiers::default(),
            multipart_threshold: 16 * MIB,
            multipart_part_size: 8 * MIB,
            credentials: None,
            request_timeout: Duration::from_secs(60),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.bucket.is_empty() {
            return Err("the bucket name is empty".to_string());
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.multipart_part_size) {
            return Err(format!(
                "multipart_part_size is {} bytes; S3 takes parts of {MIN_PART_SIZE} to {MAX_PART_SIZE} bytes",
                self.multipart_part_size
            ));
        }
        if self.request_timeout.is_zero() {
            return Err("request_timeout is zero".to_string());
        }
        if self.lifecycle.apply {
            self.lifecycle.validate().map_err(|e| format!("lifecycle: {e}"))?;
        }
        Ok(())
    }

    fn region(&self) -> String {
        self.region.clone().unwrap_or_else(|| "us-east-1".to_string())
    }

    /// Where the bucket is, for messages: the endpoint, or AWS and the region.
    fn endpoint_description(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => format!("AWS S3 ({})", self.region()),
        }
    }
}

/// Never prints the secret key.
impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("force_path_style", &self.force_path_style)
            .field("encryption", &self.encryption)
            .field("lifecycle", &self.lifecycle)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("multipart_part_size", &self.multipart_part_size)
            .field("credentials", &self.credentials.as_ref().map(|(id, _)| format!("{id}:<redacted>")))
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// Server-side encryption every object is written with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// SSE-S3 (`AES256`).
    Aes256,
    /// SSE-KMS (`aws:kms`), with the bucket's default key when `key_id` is None.
    Kms { key_id: Option<String> },
}

impl ServerSideEncryption {
    /// The `x-amz-server-side-encryption` value and the KMS key id.
    fn headers(&self) -> (aws_sdk_s3::types::ServerSideEncryption, Option<String>) {
        match self {
            ServerSideEncryption::Aes256 => (aws_sdk_s3::types::ServerSideEncryption::Aes256, None),
            ServerSideEncryption::Kms { key_id } => (aws_sdk_s3::types::ServerSideEncryption::AwsKms, key_id.clone()),
        }
    }
}

/// The bucket's lifecycle: objects under `dicom/` move to cheaper tiers as they age; `temp/`
/// objects expire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LifecycleTiers {
    /// Apply the rules at start-up (off when the bucket's lifecycle is managed elsewhere).
    pub apply: bool,
    pub standard_ia_after_days: u32,
    pub glacier_after_days: u32,
    pub deep_archive_after_days: u32,
    pub temp_expire_after_days: u32,
}

impl Default for LifecycleTiers {
    fn default() -> Self {
        LifecycleTiers {
            apply: true,
            standard_ia_after_days: 30,
            glacier_after_days: 90,
            deep_archive_after_days: 365,
            temp_expire_after_days: 7,
        }
    }
}

/// Objects in one S3 bucket.
pub struct S3ObjectStore {
    client: Client,
    settings: S3Settings,
}

impl S3ObjectStore {
    /// Connects to the bucket, checks it is reachable and applies the lifecycle tiers. Invalid
    /// settings, a missing bucket, refused credentials and an unreachable endpoint are all
    /// `Unavailable`, with a message naming the bucket and the endpoint.
    pub async fn connect(settings: S3Settings) -> Result<S3ObjectStore, ObjectStoreError> {
        settings.validate().map_err(|e| {
            ObjectStoreError::Unavailable(format!("invalid S3 settings for bucket {}: {e}", settings.bucket))
        })?;
        // rustls with ring, given to both the credential chain and S3, so aws-lc is never built.
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(settings.request_timeout)
            .operation_attempt_timeout(settings.request_timeout)
            .operation_timeout(settings.request_timeout * 3)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client.clone())
            .region(Region::new(settings.region()))
            .timeout_config(timeouts);
        if let Some((access_key_id, secret_access_key)) = &settings.credentials {
            loader = loader.credentials_provider(Credentials::new(
                access_key_id,
                secret_access_key,
                None,
                None,
                "tessera-settings",
            ));
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .http_client(http_client)
            .force_path_style(settings.force_path_style);
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        let store = S3ObjectStore { client: Client::from_conf(config.build()), settings };
        store.check_bucket().await?;
        if store.settings.lifecycle.apply {
            store.apply_lifecycle().await?;
        }
        info!(bucket = %store.settings.bucket, endpoint = %store.settings.endpoint_description(), "connected to the s3 bucket");
        Ok(store)
    }

    async fn check_bucket(&self) -> Result<(), ObjectStoreError> {
        let bucket = &self.settings.bucket;
        let Err(err) = self.client.head_bucket().bucket(bucket).send().await else {
            return Ok(());
        };
        let why = match status_of(&err) {
            Some(404) => "the bucket does not exist".to_string(),
            Some(403) => {
                format!("access denied; check the credentials and the bucket policy ({})", DisplayErrorContext(&err))
            }
            Some(301) => "the bucket is in another region than the one configured".to_string(),
            _ => DisplayErrorContext(&err).to_string(),
        };
        Err(ObjectStoreError::Unavailable(format!(
            "bucket {bucket} at {}: {why}",
            self.settings.endpoint_description()
        )))
    }

    /// Puts Tessera's lifecycle rules on the bucket unless it already has them, keeping every
    /// other rule.
    async fn apply_lifecycle(&self) -> Result<(), ObjectStoreError> {
        let bucket = &self.settings.bucket;
        let existing = match self.client.get_bucket_lifecycle_configuration().bucket(bucket).send().await {
            Ok(out) => out.rules().to_vec(),
            Err(err) if err.code() == Some("NoSuchLifecycleConfiguration") => Vec::new(),
            Err(err) => return Err(self.failure(format!("reading the lifecycle of bucket {bucket}"), err)),
        };
        let Some(rules) = lifecycle::merged(&existing, &self.settings.lifecycle) else {
            debug!(bucket = %bucket, "the bucket lifecycle is up to date");
            return Ok(());
        };
        let configuration =
            BucketLifecycleConfiguration::builder().set_rules(Some(rules)).build().expect("rules are set");
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(configuration)
            .send()
            .await
            .map_err(|err| self.failure(format!("writing the lifecycle of bucket {bucket}"), err))?;
        info!(bucket = %bucket, tiers = ?self.settings.lifecycle, "applied the lifecycle tiers");
        Ok(())
    }

    /// An S3 failure that is neither a missing object nor an archived one: out of space or quota
    /// is `OutOfResources`, anything else (5xx, time-outs, refused connections) `Unavailable`.
    fn failure<E>(&self, doing: impl Display, err: SdkError<E, HttpResponse>) -> ObjectStoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let out_of_resources = matches!(
            err.code(),
            Some(
                "EntityTooLarge"
                    | "QuotaExceeded"
                    | "ServiceQuotaExceeded"
                    | "StorageQuotaExceeded"
                    | "InsufficientStorage"
                    | "XMinioStorageFull"
            )
        ) || status_of(&err) == Some(507);
        let message = format!(
            "{doing} in bucket {} at {}: {}",
            self.settings.bucket,
            self.settings.endpoint_description(),
            DisplayErrorContext(&err)
        );
        if out_of_resources {
            ObjectStoreError::OutOfResources(message)
        } else {
            ObjectStoreError::Unavailable(message)
        }
    }

    async fn head_object(&self, key: &ObjectKey) -> Result<Option<HeadObjectOutput>, ObjectStoreError> {
        match self.client.head_object().bucket(&self.settings.bucket).key(key.as_str()).send().await {
            Ok(out) => Ok(Some(out)),
            Err(err)
                if matches!(err.as_service_error(), Some(HeadObjectError::NotFound(_)))
                    || status_of(&err) == Some(404) =>
            {
                Ok(None)
            }
            Err(err) => Err(self.failure(format!("reading the head of {key}"), err)),
        }
    }

    /// A PUT of the whole file, with its SHA-256 as the S3 checksum so the server refuses bytes
    /// that do not match it.
    async fn put_single(&self, key: &ObjectKey, source: &Path, sha256: &str) -> Result<(), ObjectStoreError> {
        let bytes = Bytes::from(tokio::fs::read(source).await.map_err(|e| source_error(source, e))?);
        let Some(digest) = parse_sha256(sha256) else {
            return Err(mismatch(key, sha256, &bytes));
        };
        let (encryption, kms_key_id) = self.settings.encryption.headers();
        let length = bytes.len() as i64;
        let result = self
            .client
            .put_object()
            .bucket(&self.settings.bucket)
            .key(key.as_str())
            .content_length(length)
            .metadata(SHA256_METADATA, sha256)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(base64_of(&digest))
            .server_side_encryption(encryption)
            .set_ssekms_key_id(kms_key_id)
            .body(ByteStream::from(bytes.clone()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // The server refused the checksum: say so when the bytes do not hash to `sha256`.
            Err(err) if status_of(&err) == Some(400) && hex::encode(Sha256::digest(&bytes)) != sha256 => {
                Err(mismatch(key, sha256, &bytes))
            }
            Err(err) => Err(self.failure(format!("writing {key}"), err)),
        }
    }

    /// A multipart upload read from the file one part at a time, each part with its own SHA-256
    /// checksum; the whole file's hash is checked against `sha256` before the upload is completed.
    /// Any failure aborts the upload.
    async fn put_multipart(
        &self,
        key: &ObjectKey,
        source: &Path,
        length: u64,
        sha256: &str,
    ) -> Result<(), ObjectStoreError> {
        let (encryption, kms_key_id) = self.settings.encryption.headers();
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.settings.bucket)
            .key(key.as_str())
            .metadata(SHA256_METADATA, sha256)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .server_side_encryption(encryption)
            .set_ssekms_key_id(kms_key_id)
            .send()
            .await
            .map_err(|err| self.failure(format!("starting the upload of {key}"), err))?;
        let Some(upload_id) = upload.upload_id().map(str::to_string) else {
            return Err(ObjectStoreError::Unavailable(format!(
                "starting the upload of {key}: the server returned no upload id"
            )));
        };
        let result = match self.upload_parts(key, source, length, sha256, &upload_id).await {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&self.settings.bucket)
                .key(key.as_str())
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map(|_| ())
                .map_err(|err| self.failure(format!("completing the upload of {key}"), err)),
            Err(error) => Err(error),
        };
        if result.is_err() {
            // The lifecycle rules remove parts an abort that fails here leaves behind.
            if let Err(err) = self
                .client
                .abort_multipart_upload()
                .bucket(&self.settings.bucket)
                .key(key.as_str())
                .upload_id(&upload_id)
                .send()
                .await
            {
                warn!(key = %key, upload_id = %upload_id, error = %DisplayErrorContext(&err), "could not abort a failed s3 upload");
            }
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &ObjectKey,
        source: &Path,
        length: u64,
        sha256: &str,
        upload_id: &str,
    ) -> Result<Vec<CompletedPart>, ObjectStoreError> {
        let part_size = self.settings.multipart_part_size.max(length.div_ceil(MAX_PARTS));
        let mut file = tokio::fs::File::open(source).await.map_err(|e| source_error(source, e))?;
        let mut whole = Sha256::new();
        let mut parts = Vec::new();
        let mut remaining = length;
        let mut number: i32 = 1;
        while remaining > 0 {
            let size = remaining.min(part_size);
            let mut part = vec![0; size as usize];
            file.read_exact(&mut part).await.map_err(|e| source_error(source, e))?;
            whole.update(&part);
            let checksum = base64_of(&Sha256::digest(&part));
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.settings.bucket)
                .key(key.as_str())
                .upload_id(upload_id)
                .part_number(number)
                .content_length(size as i64)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(&checksum)
                .body(ByteStream::from(part))
                .send()
                .await
                .map_err(|err| self.failure(format!("uploading part {number} of {key}"), err))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(uploaded.e_tag().map(str::to_string))
                    .checksum_sha256(checksum)
                    .build(),
            );
            remaining -= size;
            number += 1;
        }
        let actual = hex::encode(whole.finalize());
        if actual != sha256 {
            return Err(ObjectStoreError::Integrity { key: key.clone(), expected: sha256.to_string(), actual });
        }
        Ok(parts)
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn put_file(&self, key: &ObjectKey, source: &Path, size: u64, sha256: &str) -> Result<(), ObjectStoreError> {
        let length = tokio::fs::metadata(source).await.map_err(|e| source_error(source, e))?.len();
        if length != size {
            warn!(key = %key, expected = size, actual = length, "the file to store is not the size its caller said; storing the file");
        }
        if length > 0 && length >= self.settings.multipart_threshold {
            self.put_multipart(key, source, length, sha256).await
        } else {
            self.put_single(key, source, sha256).await
        }
    }

    async fn get(&self, key: &ObjectKey) -> Result<ObjectBytes, ObjectStoreError> {
        let out = match self.client.get_object().bucket(&self.settings.bucket).key(key.as_str()).send().await {
            Ok(out) => out,
            Err(err) => {
                return Err(match err.as_service_error() {
                    Some(GetObjectError::NoSuchKey(_)) => ObjectStoreError::NotFound(key.clone()),
                    Some(GetObjectError::InvalidObjectState(state)) => ObjectStoreError::Archived {
                        key: key.clone(),
                        storage_class: state.storage_class().map_or("GLACIER", |c| c.as_str()).to_string(),
                    },
                    _ if status_of(&err) == Some(404) => ObjectStoreError::NotFound(key.clone()),
                    _ => self.failure(format!("reading {key}"), err),
                });
            }
        };
        if let Some(class) = out.storage_class().filter(|class| is_archive_class(class)) {
            if !is_restored(out.restore()) {
                return Err(ObjectStoreError::Archived { key: key.clone(), storage_class: class.as_str().to_string() });
            }
        }
        let expected = out.metadata().and_then(|m| m.get(SHA256_METADATA)).map(|s| s.trim().to_ascii_lowercase());
        // The announced length only sizes the buffer, within reason: the network is not trusted.
        let capacity = out.content_length().unwrap_or(0).clamp(0, 64 * MIB as i64) as usize;
        let mut data = Vec::with_capacity(capacity);
        let mut hasher = Sha256::new();
        let mut body = out.body;
        loop {
            match tokio::time::timeout(self.settings.request_timeout, body.next()).await {
                Ok(None) => break,
                Ok(Some(Ok(chunk))) => {
                    hasher.update(&chunk);
                    data.extend_from_slice(&chunk);
                }
                Ok(Some(Err(err))) => {
                    return Err(ObjectStoreError::Unavailable(format!("reading {key}: {}", DisplayErrorContext(&err))))
                }
                Err(_) => {
                    return Err(ObjectStoreError::Unavailable(format!(
                        "reading {key}: no data for {:?}",
                        self.settings.request_timeout
                    )))
                }
            }
        }
        let actual = hex::encode(hasher.finalize());
        match expected {
            Some(expected) if expected == actual => Ok(ObjectBytes { bytes: Bytes::from(data), sha256: actual }),
            expected => Err(ObjectStoreError::Integrity {
                key: key.clone(),
                expected: expected.unwrap_or_else(|| "none recorded".to_string()),
                actual,
            }),
        }
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectHead>, ObjectStoreError> {
        Ok(self.head_object(key).await?.map(|out| ObjectHead {
            size: out.content_length().unwrap_or(0).max(0) as u64,
            sha256: out
                .metadata()
                .and_then(|m| m.get(SHA256_METADATA))
                .map(|s| s.trim().to_ascii_lowercase())
                .unwrap_or_default(),
            storage_class: out.storage_class().map_or("STANDARD", |c| c.as_str()).to_string(),
        }))
    }

    async fn presigned_get(&self, key: &ObjectKey, expires_in: Duration) -> Result<Option<String>, ObjectStoreError> {
        let config = PresigningConfig::expires_in(expires_in)
            .map_err(|e| ObjectStoreError::Unavailable(format!("presigning {key} for {expires_in:?}: {e}")))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.settings.bucket)
            .key(key.as_str())
            .presigned(config)
            .await
            .map_err(|err| self.failure(format!("presigning {key}"), err))?;
        Ok(Some(request.uri().to_string()))
    }

    async fn request_restore(&self, key: &ObjectKey, days: u32) -> Result<RestoreState, ObjectStoreError> {
        let Some(head) = self.head_object(key).await? else {
            return Err(ObjectStoreError::NotFound(key.clone()));
        };
        if !head.storage_class().is_some_and(is_archive_class) || is_restored(head.restore()) {
            return Ok(RestoreState::Available);
        }
        if head.restore().is_some() {
            return Ok(RestoreState::InProgress);
        }
        let days = i32::try_from(days.max(1)).unwrap_or(i32::MAX);
        let job = GlacierJobParameters::builder().tier(Tier::Standard).build().expect("tier is set");
        let request = RestoreRequest::builder().days(days).glacier_job_parameters(job).build();
        let sent = self
            .client
            .restore_object()
            .bucket(&self.settings.bucket)
            .key(key.as_str())
            .restore_request(request)
            .send()
            .await;
        match sent {
            Ok(_) => {}
            Err(err) if err.code() == Some("RestoreAlreadyInProgress") => return Ok(RestoreState::InProgress),
            Err(err)
                if matches!(err.as_service_error(), Some(RestoreObjectError::ObjectAlreadyInActiveTierError(_))) =>
            {
                return Ok(RestoreState::Available)
            }
            Err(err) if err.code() == Some("NoSuchKey") || status_of(&err) == Some(404) => {
                return Err(ObjectStoreError::NotFound(key.clone()))
            }
            Err(err) => return Err(self.failure(format!("requesting the restore of {key}"), err)),
        }
        info!(key = %key, days, "requested the restore of an archived object");
        // A restore may be done at once (S3 answers 200 for one already restored): look.
        match self.head_object(key).await? {
            Some(head) if is_restored(head.restore()) => Ok(RestoreState::Available),
            _ => Ok(RestoreState::InProgress),
        }
    }

    fn describe(&self) -> String {
        format!("s3://{}", self.settings.bucket)
    }
}

fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|response| response.status().as_u16())
}

/// GLACIER and DEEP_ARCHIVE objects must be restored before they can be read; GLACIER_IR and
/// the other classes are readable at once.
fn is_archive_class(class: &StorageClass) -> bool {
    matches!(class, StorageClass::Glacier | StorageClass::DeepArchive)
}

/// Whether an `x-amz-restore` value says a restored copy is readable, e.g.
/// `ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`.
fn is_restored(restore: Option<&str>) -> bool {
    restore.is_some_and(|value| value.replace(' ', "").contains("ongoing-request=\"false\""))
}

/// A lower-case hex SHA-256 as its 32 bytes.
fn parse_sha256(sha256: &str) -> Option<[u8; 32]> {
    if sha256.len() != 64 || sha256.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut digest = [0; 32];
    hex::decode_to_slice(sha256, &mut digest).ok()?;
    Some(digest)
}

fn base64_of(digest: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// The bytes to store do not hash to the SHA-256 their caller gave.
fn mismatch(key: &ObjectKey, sha256: &str, bytes: &[u8]) -> ObjectStoreError {
    ObjectStoreError::Integrity {
        key: key.clone(),
        expected: sha256.to_string(),
        actual: hex::encode(Sha256::digest(bytes)),
    }
}

/// The file to store could not be read.
fn source_error(source: &Path, error: std::io::Error) -> ObjectStoreError {
    ObjectStoreError::Unavailable(format!("reading {}: {error}", source.display()))
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::put_object::PutObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    use super::*;

    #[test]
    fn a_restore_header_says_whether_the_copy_is_readable() {
        assert!(is_restored(Some(r#"ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT""#)));
        assert!(!is_restored(Some(r#"ongoing-request="true""#)));
        assert!(!is_restored(None));
    }

    #[test]
    fn only_lower_case_hex_digests_are_taken() {
        let sha = hex::encode(Sha256::digest(b"abc"));
        assert_eq!(parse_sha256(&sha).map(hex::encode), Some(sha.clone()));
        assert_eq!(parse_sha256(&sha.to_uppercase()), None);
        assert_eq!(parse_sha256(&sha[..10]), None);
        assert_eq!(parse_sha256(&"zz".repeat(32)), None);
    }

    #[test]
    fn settings_are_checked_before_connecting() {
        assert!(S3Settings::new("b").validate().is_ok());
        let small_parts = S3Settings { multipart_part_size: MIB, ..S3Settings::new("b") };
        assert!(small_parts.validate().unwrap_err().contains("multipart_part_size"));
        let mut bad_tiers = S3Settings::new("b");
        bad_tiers.lifecycle.standard_ia_after_days = 7;
        assert!(bad_tiers.validate().unwrap_err().starts_with("lifecycle: standard_ia_after_days is 7"));
        bad_tiers.lifecycle.apply = false;
        assert!(bad_tiers.validate().is_ok());
    }

    /// A store whose client never sends anything: enough to classify failures.
    fn offline_store() -> S3ObjectStore {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .build();
        let settings = S3Settings { endpoint: Some("http://s3.test:9000".into()), ..S3Settings::new("archive") };
        S3ObjectStore { client: Client::from_conf(config), settings }
    }

    fn put_error(status: u16, code: &str) -> SdkError<PutObjectError, HttpResponse> {
        let error = PutObjectError::generic(ErrorMetadata::builder().code(code).message("refused").build());
        SdkError::service_error(error, HttpResponse::new(status.try_into().unwrap(), SdkBody::empty()))
    }

    #[test]
    fn failures_are_classified_and_name_the_bucket_and_endpoint() {
        let store = offline_store();
        for (status, code) in [(400, "EntityTooLarge"), (403, "QuotaExceeded"), (507, "InsufficientStorage")] {
            match store.failure("writing k", put_error(status, code)) {
                ObjectStoreError::OutOfResources(message) => {
                    assert!(message.contains("archive") && message.contains("http://s3.test:9000"), "{message}")
                }
                other => panic!("{code}: expected OutOfResources, got {other:?}"),
            }
        }
        for (status, code) in [(503, "SlowDown"), (500, "InternalError"), (403, "AccessDenied")] {
            match store.failure("writing k", put_error(status, code)) {
                ObjectStoreError::Unavailable(message) => assert!(message.contains(code), "{message}"),
                other => panic!("{code}: expected Unavailable, got {other:?}"),
            }
        }
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let settings = S3Settings { credentials: Some(("AKID".into(), "very-secret".into())), ..S3Settings::new("b") };
        let printed = format!("{settings:?}");
        assert!(printed.contains("AKID") && !printed.contains("very-secret"));
    }
}
