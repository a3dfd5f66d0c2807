//! The S3 object store against real S3-compatible servers the tests start: moto for the bucket
//! lifecycle, encryption, multipart, presigned URLs, verification and archive tiers; s3s-fs for
//! the server-side SHA-256 checksum check.

#[path = "support/peers.rs"]
mod peers;
#[path = "support/s3_peers.rs"]
mod s3_peers;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    MetadataDirective, StorageClass,
};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls;
use base64::Engine;
use dicom_store::object_store::{
    LifecycleTiers, ObjectKey, ObjectStore, ObjectStoreError, RestoreState, S3ObjectStore, S3Settings,
    ServerSideEncryption,
};
use s3_peers::{start_moto, start_s3s_fs, Peer};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const ACCESS_KEY: &str = "tessera-test";
const SECRET_KEY: &str = "tessera-test-secret";

/// The store's settings for `bucket` on `peer`, with static test keys.
fn settings(peer: &Peer, bucket: &str) -> S3Settings {
    S3Settings {
        endpoint: Some(peer.endpoint.clone()),
        force_path_style: true,
        credentials: Some((ACCESS_KEY.into(), SECRET_KEY.into())),
        request_timeout: Duration::from_secs(30),
        ..S3Settings::new(bucket)
    }
}

/// A plain SDK client, to set up and inspect the bucket behind the store's back.
fn raw_client(peer: &Peer) -> Client {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .endpoint_url(&peer.endpoint)
        .force_path_style(true)
        .http_client(http_client)
        .build();
    Client::from_conf(config)
}

async fn create_bucket(client: &Client, bucket: &str) {
    client.create_bucket().bucket(bucket).send().await.unwrap_or_else(|e| panic!("create bucket {bucket}: {e:?}"));
}

/// Bytes no compressor shrinks, different for each seed.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `bytes` to a file in `dir` and returns its path.
fn file_with(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Stores `bytes` under `key` through the store, from a file.
async fn put(store: &S3ObjectStore, key: &ObjectKey, bytes: &[u8]) -> Result<(), ObjectStoreError> {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(&dir, "object.dcm", bytes);
    store.put_file(key, &path, bytes.len() as u64, &sha256_hex(bytes)).await
}

async fn lifecycle_rules(client: &Client, bucket: &str) -> Vec<LifecycleRule> {
    client.get_bucket_lifecycle_configuration().bucket(bucket).send().await.unwrap().rules().to_vec()
}

fn rule<'a>(rules: &'a [LifecycleRule], id: &str) -> &'a LifecycleRule {
    let matching: Vec<_> = rules.iter().filter(|rule| rule.id() == Some(id)).collect();
    assert_eq!(matching.len(), 1, "exactly one rule {id} in {rules:#?}");
    matching[0]
}

fn prefix_of(rule: &LifecycleRule) -> Option<&str> {
    #[allow(deprecated)]
    rule.filter().and_then(|f| f.prefix()).or(rule.prefix())
}

/// (days, storage class) of a rule's transitions, by days.
fn transitions_of(rule: &LifecycleRule) -> Vec<(i32, String)> {
    let mut transitions: Vec<_> = rule
        .transitions()
        .iter()
        .map(|t| (t.days().unwrap_or(-1), t.storage_class().map(|c| c.as_str().to_string()).unwrap_or_default()))
        .collect();
    transitions.sort();
    transitions
}

fn assert_tiers(rules: &[LifecycleRule], tiers: &LifecycleTiers) {
    let dicom = rule(rules, "tessera-dicom-tiers");
    assert_eq!(prefix_of(dicom), Some("dicom/"));
    assert_eq!(dicom.status(), &ExpirationStatus::Enabled);
    assert_eq!(
        transitions_of(dicom),
        vec![
            (tiers.standard_ia_after_days as i32, "STANDARD_IA".to_string()),
            (tiers.glacier_after_days as i32, "GLACIER".to_string()),
            (tiers.deep_archive_after_days as i32, "DEEP_ARCHIVE".to_string()),
        ]
    );
    let temp = rule(rules, "tessera-temp-expiry");
    assert_eq!(prefix_of(temp), Some("temp/"));
    assert_eq!(temp.status(), &ExpirationStatus::Enabled);
    assert_eq!(temp.expiration().and_then(|e| e.days()), Some(tiers.temp_expire_after_days as i32));
    assert!(temp.transitions().is_empty());
}

/// A plain HTTP/1.0 GET (no client library, no credentials): status and body.
fn http_get(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = TcpStream::connect(host).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete HTTP response");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    (status, response[split + 4..].to_vec())
}

#[tokio::test]
async fn lifecycle_tiers_are_applied_once_and_other_rules_kept() {
    let Some(moto) = start_moto().await else { return };
    let client = raw_client(&moto);
    create_bucket(&client, "tiers").await;
    let foreign = LifecycleRule::builder()
        .id("logs-expiry")
        .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
        .status(ExpirationStatus::Enabled)
        .expiration(LifecycleExpiration::builder().days(3).build())
        .build()
        .unwrap();
    client
        .put_bucket_lifecycle_configuration()
        .bucket("tiers")
        .lifecycle_configuration(BucketLifecycleConfiguration::builder().rules(foreign).build().unwrap())
        .send()
        .await
        .unwrap();

    let tiers = LifecycleTiers::default();
    S3ObjectStore::connect(settings(&moto, "tiers")).await.unwrap();
    let applied = lifecycle_rules(&client, "tiers").await;
    assert_eq!(applied.len(), 3, "{applied:#?}");
    assert_tiers(&applied, &tiers);
    let kept = rule(&applied, "logs-expiry");
    assert_eq!((prefix_of(kept), kept.expiration().and_then(|e| e.days())), (Some("logs/"), Some(3)));

    // A second start finds the rules in place and does not write them again: to see that, the
    // same rules go back in another order, which a rewrite would not keep.
    let reordered: Vec<LifecycleRule> = applied.iter().rev().cloned().collect();
    client
        .put_bucket_lifecycle_configuration()
        .bucket("tiers")
        .lifecycle_configuration(BucketLifecycleConfiguration::builder().set_rules(Some(reordered)).build().unwrap())
        .send()
        .await
        .unwrap();
    let before = lifecycle_rules(&client, "tiers").await;
    assert_ne!(before, applied, "the server keeps the order it is given");
    S3ObjectStore::connect(settings(&moto, "tiers")).await.unwrap();
    assert_eq!(lifecycle_rules(&client, "tiers").await, before);

    // New tiers replace ours, still beside the foreign rule.
    let later = LifecycleTiers {
        standard_ia_after_days: 60,
        glacier_after_days: 180,
        deep_archive_after_days: 730,
        temp_expire_after_days: 2,
        apply: true,
    };
    S3ObjectStore::connect(S3Settings { lifecycle: later.clone(), ..settings(&moto, "tiers") }).await.unwrap();
    let changed = lifecycle_rules(&client, "tiers").await;
    assert_eq!(changed.len(), 3, "{changed:#?}");
    assert_tiers(&changed, &later);
    rule(&changed, "logs-expiry");
}

#[tokio::test]
async fn lifecycle_is_not_touched_when_not_applied() {
    let Some(moto) = start_moto().await else { return };
    let client = raw_client(&moto);
    create_bucket(&client, "unmanaged").await;
    let tiers = LifecycleTiers { apply: false, ..LifecycleTiers::default() };
    S3ObjectStore::connect(S3Settings { lifecycle: tiers, ..settings(&moto, "unmanaged") }).await.unwrap();
    let err = client.get_bucket_lifecycle_configuration().bucket("unmanaged").send().await.unwrap_err();
    assert_eq!(aws_sdk_s3::error::ProvideErrorMetadata::code(&err), Some("NoSuchLifecycleConfiguration"));
}

#[tokio::test]
async fn invalid_tiers_are_refused_with_the_reason() {
    // Settings are checked before anything is sent, so no server is needed.
    let settings = S3Settings {
        endpoint: Some(format!("http://127.0.0.1:{}", s3_peers::free_port())),
        lifecycle: LifecycleTiers { standard_ia_after_days: 10, ..LifecycleTiers::default() },
        ..S3Settings::new("archive")
    };
    match S3ObjectStore::connect(settings).await {
        Err(ObjectStoreError::Unavailable(message)) => {
            assert!(message.contains("archive") && message.contains("standard_ia_after_days is 10"), "{message}")
        }
        other => panic!("expected Unavailable, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn a_missing_bucket_or_a_dead_endpoint_is_unavailable_and_named() {
    let Some(moto) = start_moto().await else { return };
    match S3ObjectStore::connect(settings(&moto, "no-such-bucket")).await {
        Err(ObjectStoreError::Unavailable(message)) => {
            assert!(message.contains("no-such-bucket") && message.contains(&moto.endpoint), "{message}");
            assert!(message.contains("does not exist"), "{message}");
        }
        other => panic!("expected Unavailable, got {:?}", other.err()),
    }

    let dead = format!("http://127.0.0.1:{}", s3_peers::free_port());
    let started = Instant::now();
    let settings = S3Settings {
        endpoint: Some(dead.clone()),
        request_timeout: Duration::from_secs(2),
        ..settings(&moto, "archive")
    };
    match S3ObjectStore::connect(settings).await {
        Err(ObjectStoreError::Unavailable(message)) => {
            assert!(message.contains("archive") && message.contains(&dead), "{message}")
        }
        other => panic!("expected Unavailable, got {:?}", other.err()),
    }
    assert!(started.elapsed() < Duration::from_secs(20), "a dead endpoint took {:?}", started.elapsed());
}

#[tokio::test]
async fn objects_round_trip_with_their_sha256_and_sse_s3() {
    let Some(moto) = start_moto().await else { return };
    let client = raw_client(&moto);
    create_bucket(&client, "archive").await;
    let store = S3ObjectStore::connect(settings(&moto, "archive")).await.unwrap();
    assert_eq!(store.describe(), "s3://archive");

    let key = ObjectKey::for_instance("PAT1", "1.2.3", "1.2.3.4", "1.2.3.4.5");
    let bytes = noise(70_000, 1);
    put(&store, &key, &bytes).await.unwrap();
    let object = store.get(&key).await.unwrap();
    assert_eq!((object.bytes, object.sha256), (bytes.clone().into(), sha256_hex(&bytes)));
    let head = store.head(&key).await.unwrap().expect("stored");
    assert_eq!(
        (head.size, head.sha256.as_str(), head.storage_class.as_str()),
        (70_000, sha256_hex(&bytes).as_str(), "STANDARD")
    );

    let raw = client.head_object().bucket("archive").key(key.as_str()).send().await.unwrap();
    assert_eq!(raw.server_side_encryption().map(|s| s.as_str()), Some("AES256"));
    assert_eq!(raw.metadata().and_then(|m| m.get("sha256")), Some(&sha256_hex(&bytes)));

    // Overwriting replaces the object and its checksum.
    let newer = noise(1_000, 2);
    put(&store, &key, &newer).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap().bytes, newer);
    assert_eq!(store.head(&key).await.unwrap().unwrap().sha256, sha256_hex(&newer));

    // An empty object is an object too.
    let empty = ObjectKey::new("dicom/empty.dcm");
    put(&store, &empty, b"").await.unwrap();
    assert_eq!(store.get(&empty).await.unwrap().bytes.len(), 0);

    let missing = ObjectKey::new("dicom/missing.dcm");
    assert!(matches!(store.get(&missing).await, Err(ObjectStoreError::NotFound(k)) if k == missing));
    assert_eq!(store.head(&missing).await.unwrap(), None);
}

#[tokio::test]
async fn objects_are_written_with_sse_kms_and_the_key_id() {
    let Some(moto) = start_moto().await else { return };
    let client = raw_client(&moto);
    create_bucket(&client, "kms").await;
    let key_id = "arn:aws:kms:us-east-1:123456789012:key/0f6a3d51-7c1e-4a6e-9b0d-6a1c2b3d4e5f";
    let encryption = ServerSideEncryption::Kms { key_id: Some(key_id.to_string()) };
    let store = S3ObjectStore::connect(S3Settings { encryption, ..settings(&moto, "kms") }).await.unwrap();
    let key = ObjectKey::new("dicom/kms.dcm");
    let bytes = noise(5_000, 3);
    put(&store, &key, &bytes).await.unwrap();
    let raw = client.head_object().bucket("kms").key(key.as_str()).send().await.unwrap();
    assert_eq!(raw.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"));
    assert_eq!(raw.ssekms_key_id(), Some(key_id));
    assert_eq!(store.get(&key).await.unwrap().bytes, bytes);
}

#[tokio::test]
async fn a_presigned_url_serves_the_object_to_a_plain_http_get() {
    let Some(moto) = start_moto().await else { return };
    create_bucket(&raw_client(&moto), "presign").await;
    let store = S3ObjectStore::connect(settings(&moto, "presign")).await.unwrap();
    let key = ObjectKey::new("dicom/PAT%201/study/series/instance.dcm");
    let bytes = noise(40_000, 4);
    put(&store, &key, &bytes).await.unwrap();
    let url = store.presigned_get(&key, Duration::from_secs(300)).await.unwrap().expect("S3 presigns");
    assert!(url.contains("X-Amz-Expires=300") && url.contains("X-Amz-Signature="), "{url}");
    let (status, body) = http_get(&url);
    assert_eq!(status, 200);
    assert_eq!(body, bytes);
}

#[tokio::test]
async fn large_files_are_uploaded_in_parts_and_verified() {
    let Some(moto) = start_moto().await else { return };
    let client = raw_client(&moto);
    create_bucket(&client, "multipart").await;
    let store = S3ObjectStore::connect(settings(&moto, "multipart")).await.unwrap();
    let key = ObjectKey::new("dicom/large.dcm");
    let bytes = noise(20_000_000, 5);
    put(&store, &key, &bytes).await.unwrap();

    let raw = client.head_object().bucket("multipart").key(key.as_str()).send().await.unwrap();
    // 20 MB in 8 MiB parts: three parts, which the multipart ETag counts.
    assert!(raw.e_tag().is_some_and(|etag| etag.trim_matches('"').ends_with("-3")), "{:?}", raw.e_tag());
    assert_eq!(raw.server_side_encryption().map(|s| s.as_str()), Some("AES256"));
    let head = store.head(&key).await.unwrap().unwrap();
    assert_eq!((head.size, head.sha256), (20_000_000, sha256_hex(&bytes)));
    assert!(store.get(&key).await.unwrap().bytes == bytes);
}

#[tokio::test]
async fn a_multipart_file_that_does_not_match_its_sha256_is_not_stored() {
    let Some(moto) = start_moto().await else { return };
    let client = raw_client(&moto);
    create_bucket(&client, "mismatch").await;
    let settings =
        S3Settings { multipart_threshold: 6 << 20, multipart_part_size: 5 << 20, ..settings(&moto, "mismatch") };
    let store = S3ObjectStore::connect(settings).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bytes = noise(12_000_000, 6);
    let path = file_with(&dir, "large.dcm", &bytes);
    let key = ObjectKey::new("dicom/mismatch.dcm");
    let claimed = sha256_hex(b"other bytes");
    match store.put_file(&key, &path, bytes.len() as u64, &claimed).await {
        Err(ObjectStoreError::Integrity { expected, actual, .. }) => {
            assert_eq!((expected, actual), (claimed, sha256_hex(&bytes)))
        }
        other => panic!("expected Integrity, got {other:?}"),
    }
    assert_eq!(store.head(&key).await.unwrap(), None);
    let uploads = client.list_multipart_uploads().bucket("mismatch").send().await.unwrap();
    assert!(uploads.uploads().is_empty(), "the failed upload was aborted: {:?}", uploads.uploads());
}

#[tokio::test]
async fn bytes_replaced_behind_the_store_fail_verification() {
    let Some(moto) = start_moto().await else { return };
    let client = raw_client(&moto);
    create_bucket(&client, "tampered").await;
    let store = S3ObjectStore::connect(settings(&moto, "tampered")).await.unwrap();
    let key = ObjectKey::new("dicom/tampered.dcm");
    let original = noise(10_000, 7);
    put(&store, &key, &original).await.unwrap();

    let replacement = noise(10_000, 8);
    let old_metadata =
        client.head_object().bucket("tampered").key(key.as_str()).send().await.unwrap().metadata().cloned();
    client
        .put_object()
        .bucket("tampered")
        .key(key.as_str())
        .set_metadata(old_metadata)
        .body(ByteStream::from(replacement.clone()))
        .send()
        .await
        .unwrap();
    match store.get(&key).await {
        Err(ObjectStoreError::Integrity { key: failed, expected, actual }) => {
            assert_eq!((failed, expected, actual), (key.clone(), sha256_hex(&original), sha256_hex(&replacement)))
        }
        other => panic!("expected Integrity, got {other:?}"),
    }

    // An object without a recorded SHA-256 cannot be verified either.
    client
        .put_object()
        .bucket("tampered")
        .key("dicom/bare.dcm")
        .body(ByteStream::from_static(b"bare"))
        .send()
        .await
        .unwrap();
    assert!(matches!(store.get(&ObjectKey::new("dicom/bare.dcm")).await, Err(ObjectStoreError::Integrity { .. })));
}

#[tokio::test]
async fn archived_objects_must_be_restored_before_reading() {
    let Some(moto) = start_moto().await else { return };
    let client = raw_client(&moto);
    create_bucket(&client, "glacier").await;
    let store = S3ObjectStore::connect(settings(&moto, "glacier")).await.unwrap();
    let hot = ObjectKey::new("dicom/hot.dcm");
    let bytes = noise(3_000, 9);
    put(&store, &hot, &bytes).await.unwrap();
    assert_eq!(
        store.request_restore(&hot, 2).await.unwrap(),
        RestoreState::Available,
        "a STANDARD object needs no restore"
    );

    for (class, name) in [(StorageClass::Glacier, "GLACIER"), (StorageClass::DeepArchive, "DEEP_ARCHIVE")] {
        let cold = ObjectKey::new(format!("dicom/{name}.dcm"));
        client
            .copy_object()
            .bucket("glacier")
            .key(cold.as_str())
            .copy_source(format!("glacier/{}", hot.as_str()))
            .metadata_directive(MetadataDirective::Copy)
            .storage_class(class)
            .send()
            .await
            .unwrap();
        assert_eq!(store.head(&cold).await.unwrap().unwrap().storage_class, name);
        match store.get(&cold).await {
            Err(ObjectStoreError::Archived { key, storage_class }) => {
                assert_eq!((key, storage_class.as_str()), (cold.clone(), name))
            }
            other => panic!("expected Archived, got {other:?}"),
        }
        let state = store.request_restore(&cold, 2).await.unwrap();
        let restore = client
            .head_object()
            .bucket("glacier")
            .key(cold.as_str())
            .send()
            .await
            .unwrap()
            .restore()
            .map(str::to_string);
        assert!(restore.is_some(), "a restore was requested for {name}");
        match state {
            // moto restores at once: the object is readable and still verified.
            RestoreState::Available => assert_eq!(store.get(&cold).await.unwrap().bytes, bytes),
            RestoreState::InProgress => {
                assert!(matches!(store.get(&cold).await, Err(ObjectStoreError::Archived { .. })))
            }
        }
        // Asking again does not start another restore.
        assert_eq!(store.request_restore(&cold, 2).await.unwrap(), state);
    }
    let missing = ObjectKey::new("dicom/missing.dcm");
    assert!(matches!(store.request_restore(&missing, 1).await, Err(ObjectStoreError::NotFound(_))));
}

#[tokio::test]
async fn s3s_fs_checks_the_sha256_checksums_of_puts() {
    let Some(server) = start_s3s_fs(ACCESS_KEY, SECRET_KEY).await else { return };
    let client = raw_client(&server);
    create_bucket(&client, "checksums").await;
    // s3s-fs keeps no lifecycle configuration; the bucket's lifecycle is someone else's here.
    let lifecycle = LifecycleTiers { apply: false, ..LifecycleTiers::default() };
    let store = S3ObjectStore::connect(S3Settings { lifecycle, ..settings(&server, "checksums") }).await.unwrap();

    // A put with the right checksum is accepted and reads back verified.
    let key = ObjectKey::new("dicom/checked.dcm");
    let bytes = noise(50_000, 10);
    put(&store, &key, &bytes).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap().bytes, bytes);
    let head = store.head(&key).await.unwrap().unwrap();
    assert_eq!((head.size, head.sha256), (50_000, sha256_hex(&bytes)));

    // The server refuses bytes whose declared SHA-256 checksum is another one's.
    let wrong_checksum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"other bytes"));
    let refused = client
        .put_object()
        .bucket("checksums")
        .key("dicom/raw.dcm")
        .checksum_sha256(wrong_checksum)
        .body(ByteStream::from(bytes.clone()))
        .send()
        .await;
    let refused = refused.expect_err("s3s-fs accepted a wrong checksum");
    assert_eq!(aws_sdk_s3::error::ProvideErrorMetadata::code(&refused), Some("BadDigest"), "{refused:?}");

    // Our put of a file that is not what its caller hashed is refused by the server and said so.
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(&dir, "changed.dcm", &bytes);
    let claimed = sha256_hex(b"what the caller hashed");
    let other = ObjectKey::new("dicom/changed.dcm");
    match store.put_file(&other, &path, bytes.len() as u64, &claimed).await {
        Err(ObjectStoreError::Integrity { expected, actual, .. }) => {
            assert_eq!((expected, actual), (claimed, sha256_hex(&bytes)))
        }
        other => panic!("expected Integrity, got {other:?}"),
    }
    // s3s-fs checks the checksum after writing the file and leaves it there, without metadata:
    // whatever is left is never served as data.
    assert!(matches!(store.get(&other).await, Err(ObjectStoreError::Integrity { .. } | ObjectStoreError::NotFound(_))));

    // A multipart upload's parts carry their checksums too.
    let settings = S3Settings {
        multipart_threshold: 6 << 20,
        multipart_part_size: 5 << 20,
        lifecycle: LifecycleTiers { apply: false, ..LifecycleTiers::default() },
        ..settings(&server, "checksums")
    };
    let store = S3ObjectStore::connect(settings).await.unwrap();
    let large = ObjectKey::new("dicom/large.dcm");
    let bytes = noise(11_000_000, 11);
    put(&store, &large, &bytes).await.unwrap();
    assert!(store.get(&large).await.unwrap().bytes == bytes);

    // A file that cannot be read is not the store's fault and says which file.
    match store.put_file(&key, &dir.path().join("gone.dcm"), 1, &sha256_hex(b"x")).await {
        Err(ObjectStoreError::Unavailable(message)) => assert!(message.contains("gone.dcm"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
