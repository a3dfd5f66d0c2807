//! Layered settings: defaults, then an optional TOML file, then `TESSERA_*` environment
//! variables. Unknown keys are an error that names the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything `tessera` can be configured with.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the FHIR REST API listens on (`TESSERA_HTTP_ADDR`).
    pub http_addr: String,
    /// Directory of the embedded store (`TESSERA_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Log filter in `tracing` env-filter syntax (`TESSERA_LOG`).
    pub log: String,
    /// Largest request body accepted, in bytes (`TESSERA_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// OTLP/HTTP endpoint for traces; telemetry is exported only when set
    /// (`TESSERA_OTLP_ENDPOINT`).
    pub otlp_endpoint: Option<String>,
    /// Address of the HL7 v2 MLLP listener; the listener runs only when set
    /// (`TESSERA_MLLP_ADDR`; an empty value means `127.0.0.1:2575`).
    pub mllp_addr: Option<String>,
    /// Largest MLLP frame accepted, in bytes; a larger one is rejected and the connection
    /// closed (`TESSERA_MLLP_MAX_FRAME_BYTES`).
    pub mllp_max_frame_bytes: usize,
    /// Seconds without incoming bytes after which an MLLP connection is closed
    /// (`TESSERA_MLLP_IDLE_TIMEOUT_SECS`).
    pub mllp_idle_timeout_secs: u64,
    /// PEM certificate chain and private key: MLLP over TLS when both are set
    /// (`TESSERA_MLLP_TLS_CERT`, `TESSERA_MLLP_TLS_KEY`).
    pub mllp_tls_cert: Option<PathBuf>,
    pub mllp_tls_key: Option<PathBuf>,
    /// What HL7 v2 message types the bridge does not map get: `accept` (stored raw, AA) or
    /// `reject` (stored raw, AR) (`TESSERA_HL7_UNMAPPED`).
    pub hl7_unmapped: hl7_bridge::UnmappedMessages,
    /// UTC offset (`+0100`) of HL7 senders whose MSH-7 carries none; empty: keep such
    /// times at date precision (`TESSERA_HL7_LOCAL_OFFSET`).
    pub hl7_local_offset: String,
    /// PostgreSQL URL of the relational projection; on only when set (`TESSERA_POSTGRES_URL`).
    pub postgres_url: Option<String>,
    /// Monthly `measurements` partitions created ahead of the current month
    /// (`TESSERA_POSTGRES_PARTITION_MONTHS_AHEAD`).
    pub postgres_partition_months_ahead: u32,
    /// Alert threshold rules, e.g. `spo2<90:critical,heart_rate>130:high`; empty for the
    /// documented defaults, `none` for no alerts (`TESSERA_ALERT_RULES`).
    pub alert_rules: String,
    /// Base URL of the line-protocol time-series database; the time-series projection runs
    /// only when set (`TESSERA_TSDB_URL`).
    pub tsdb_url: Option<String>,
    /// InfluxDB 1.x database, created if missing (`TESSERA_TSDB_DATABASE`).
    pub tsdb_database: String,
    /// InfluxDB 2.x/3.x organisation, bucket and token: with org and bucket set the v2 write
    /// API is used (`TESSERA_TSDB_ORG`, `TESSERA_TSDB_BUCKET`, `TESSERA_TSDB_TOKEN`).
    pub tsdb_org: Option<String>,
    pub tsdb_bucket: Option<String>,
    pub tsdb_token: Option<String>,
    /// Most changes a projection applies in one batch (`TESSERA_PROJECTION_BATCH_SIZE`).
    pub projection_batch_size: usize,
    /// MongoDB connection string of the production store; when set, the store is MongoDB
    /// instead of the embedded SQLite store in `data_dir` (`TESSERA_MONGODB_URI`; an empty
    /// value means unset). It may carry a password: log [`Settings::store_description`] instead.
    pub mongodb_uri: Option<String>,
    /// MongoDB database of the store; unset: the database in the URI's path, else `tessera`
    /// (`TESSERA_MONGODB_DATABASE`).
    pub mongodb_database: Option<String>,
    /// Address of the DICOM DIMSE listener (C-ECHO, C-STORE, C-FIND); it runs only when set
    /// (`TESSERA_DICOM_ADDR`; an empty value means `127.0.0.1:11112`). DICOMweb under
    /// `/dicomweb` is always on.
    pub dicom_addr: Option<String>,
    /// Our AE title; associations calling another one are rejected (`TESSERA_DICOM_AE_TITLE`).
    pub dicom_ae_title: String,
    /// Comma-separated calling AE titles allowed to associate; empty allows any
    /// (`TESSERA_DICOM_ACCEPTED_AE_TITLES`).
    pub dicom_accepted_ae_titles: String,
    /// What a SOP Instance UID stored again with different bytes gets: `keep-first` (the stored
    /// copy stays, the sender gets a warning), `replace` or `reject` (`TESSERA_DICOM_ON_CONFLICT`).
    pub dicom_on_conflict: DicomConflict,
    /// The public DICOMweb base URL written into ImagingStudy.endpoint, e.g.
    /// `https://pacs.example.org/dicomweb`; unset: `http://{http_addr}/dicomweb`
    /// (`TESSERA_DICOM_PUBLIC_URL`).
    pub dicom_public_url: Option<String>,
    /// Default lifetime of a presigned download URL, in seconds
    /// (`TESSERA_DICOM_PRESIGN_EXPIRY_SECS`).
    pub dicom_presign_expiry_secs: u64,
    /// S3 bucket of the DICOM objects; unset: the directory `{data_dir}/dicom-objects`
    /// (`TESSERA_S3_BUCKET`).
    pub s3_bucket: Option<String>,
    /// Endpoint of an S3-compatible server (MinIO, …); unset: AWS (`TESSERA_S3_ENDPOINT`).
    pub s3_endpoint: Option<String>,
    /// Region; unset: the AWS configuration's, else `us-east-1` (`TESSERA_S3_REGION`).
    pub s3_region: Option<String>,
    /// Path-style addressing, which most S3-compatible servers need (`TESSERA_S3_PATH_STYLE`).
    pub s3_path_style: bool,
    /// Server-side encryption: `AES256` (SSE-S3) or `aws:kms` (`TESSERA_S3_SSE`).
    pub s3_sse: S3Encryption,
    /// KMS key of `aws:kms`; unset: the bucket's default key (`TESSERA_S3_KMS_KEY_ID`).
    pub s3_kms_key_id: Option<String>,
    /// Apply the lifecycle tiers below to the bucket at start-up; off when the bucket's
    /// lifecycle is managed elsewhere (`TESSERA_S3_LIFECYCLE`).
    pub s3_lifecycle: bool,
    /// Days after which stored objects move to STANDARD_IA, GLACIER and DEEP_ARCHIVE, and
    /// temporary objects expire (`TESSERA_S3_IA_DAYS`, `TESSERA_S3_GLACIER_DAYS`,
    /// `TESSERA_S3_DEEP_ARCHIVE_DAYS`, `TESSERA_S3_TEMP_EXPIRY_DAYS`).
    pub s3_ia_days: u32,
    pub s3_glacier_days: u32,
    pub s3_deep_archive_days: u32,
    pub s3_temp_expiry_days: u32,
}

/// `dicom_on_conflict`: the archive's policy for a SOP Instance UID stored again with other bytes.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DicomConflict {
    #[default]
    KeepFirst,
    Replace,
    Reject,
}

impl DicomConflict {
    pub fn policy(self) -> dicom_store::ConflictPolicy {
        match self {
            DicomConflict::KeepFirst => dicom_store::ConflictPolicy::KeepFirst,
            DicomConflict::Replace => dicom_store::ConflictPolicy::Replace,
            DicomConflict::Reject => dicom_store::ConflictPolicy::Reject,
        }
    }
}

/// `s3_sse`: SSE-S3 or SSE-KMS.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum S3Encryption {
    #[default]
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    Kms,
}

/// The conventional HL7 port on the loopback interface.
pub const DEFAULT_MLLP_ADDR: &str = "127.0.0.1:2575";

/// The registered DICOM port on the loopback interface.
pub const DEFAULT_DICOM_ADDR: &str = "127.0.0.1:11112";

impl Default for Settings {
    fn default() -> Self {
        // The S3 lifecycle defaults are the object store's own.
        let tiers = dicom_store::object_store::LifecycleTiers::default();
        Settings {
            http_addr: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            log: "info".into(),
            max_body_bytes: 16 * 1024 * 1024,
            otlp_endpoint: None,
            mllp_addr: None,
            mllp_max_frame_bytes: 1024 * 1024,
            mllp_idle_timeout_secs: 600,
            mllp_tls_cert: None,
            mllp_tls_key: None,
            hl7_unmapped: hl7_bridge::UnmappedMessages::Accept,
            hl7_local_offset: "+0000".into(),
            postgres_url: None,
            postgres_partition_months_ahead: 3,
            alert_rules: String::new(),
            tsdb_url: None,
            tsdb_database: "tessera".into(),
            tsdb_org: None,
            tsdb_bucket: None,
            tsdb_token: None,
            projection_batch_size: 1000,
            mongodb_uri: None,
            mongodb_database: None,
            dicom_addr: None,
            dicom_ae_title: "TESSERA".into(),
            dicom_accepted_ae_titles: String::new(),
            dicom_on_conflict: DicomConflict::KeepFirst,
            dicom_public_url: None,
            dicom_presign_expiry_secs: 24 * 60 * 60,
            s3_bucket: None,
            s3_endpoint: None,
            s3_region: None,
            s3_path_style: false,
            s3_sse: S3Encryption::Aes256,
            s3_kms_key_id: None,
            s3_lifecycle: tiers.apply,
            s3_ia_days: tiers.standard_ia_after_days,
            s3_glacier_days: tiers.glacier_after_days,
            s3_deep_archive_days: tiers.deep_archive_after_days,
            s3_temp_expiry_days: tiers.temp_expire_after_days,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("unknown environment variable {0} (known: {known})", known = ENV_KEYS.join(", "))]
    UnknownEnv(String),
    #[error("invalid value for {key}: {message}")]
    Value { key: String, message: String },
}

/// Environment variable suffixes after `TESSERA_` that map to settings keys.
const ENV_KEYS: &[&str] = &[
    "HTTP_ADDR",
    "DATA_DIR",
    "LOG",
    "MAX_BODY_BYTES",
    "OTLP_ENDPOINT",
    "MLLP_ADDR",
    "MLLP_MAX_FRAME_BYTES",
    "MLLP_IDLE_TIMEOUT_SECS",
    "MLLP_TLS_CERT",
    "MLLP_TLS_KEY",
    "HL7_UNMAPPED",
    "HL7_LOCAL_OFFSET",
    "POSTGRES_URL",
    "POSTGRES_PARTITION_MONTHS_AHEAD",
    "ALERT_RULES",
    "TSDB_URL",
    "TSDB_DATABASE",
    "TSDB_ORG",
    "TSDB_BUCKET",
    "TSDB_TOKEN",
    "PROJECTION_BATCH_SIZE",
    "MONGODB_URI",
    "MONGODB_DATABASE",
    "DICOM_ADDR",
    "DICOM_AE_TITLE",
    "DICOM_ACCEPTED_AE_TITLES",
    "DICOM_ON_CONFLICT",
    "DICOM_PUBLIC_URL",
    "DICOM_PRESIGN_EXPIRY_SECS",
    "S3_BUCKET",
    "S3_ENDPOINT",
    "S3_REGION",
    "S3_PATH_STYLE",
    "S3_SSE",
    "S3_KMS_KEY_ID",
    "S3_LIFECYCLE",
    "S3_IA_DAYS",
    "S3_GLACIER_DAYS",
    "S3_DEEP_ARCHIVE_DAYS",
    "S3_TEMP_EXPIRY_DAYS",
];

/// `TESSERA_*` names that belong to tests and CI, not to the server.
const ENV_RESERVED_PREFIXES: &[&str] = &["TESSERA_TEST_", "TESSERA_REQUIRE_PEERS", "TESSERA_BENCH_"];

impl Settings {
    /// Defaults, then `config_file` (TOML) if given, then the process environment.
    pub fn load(config_file: Option<&Path>) -> Result<Settings, SettingsError> {
        let env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("TESSERA_")).collect();
        Settings::load_from(config_file, &env)
    }

    /// As `load`, with the environment given explicitly (for tests).
    pub fn load_from(config_file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Settings, SettingsError> {
        let mut table = toml::Table::new();
        if let Some(path) = config_file {
            let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read { path: path.into(), source })?;
            table = text
                .parse::<toml::Table>()
                .map_err(|e| SettingsError::File { path: path.into(), message: e.to_string() })?;
            // Deserialise once here so an unknown key in the file is reported against the file.
            Settings::deserialize(toml::Value::Table(table.clone()))
                .map_err(|e| SettingsError::File { path: path.into(), message: e.to_string() })?;
        }
        for (name, value) in env {
            if ENV_RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let Some(suffix) = name.strip_prefix("TESSERA_").filter(|s| ENV_KEYS.contains(s)) else {
                return Err(SettingsError::UnknownEnv(name.clone()));
            };
            let key = suffix.to_ascii_lowercase();
            let parsed = match key.as_str() {
                "max_body_bytes" | "mllp_max_frame_bytes" | "mllp_idle_timeout_secs" | "postgres_partition_months_ahead" | "projection_batch_size"
                | "dicom_presign_expiry_secs" | "s3_ia_days" | "s3_glacier_days" | "s3_deep_archive_days" | "s3_temp_expiry_days" => toml::Value::Integer(value.parse::<i64>().map_err(|e| SettingsError::Value {
                    key: name.clone(),
                    message: e.to_string(),
                })?),
                "s3_path_style" | "s3_lifecycle" => toml::Value::Boolean(parse_switch(value).ok_or_else(|| SettingsError::Value {
                    key: name.clone(),
                    message: format!("{value:?} is not on/off (true/false, 1/0, yes/no)"),
                })?),
                _ => toml::Value::String(value.clone()),
            };
            table.insert(key, parsed);
        }
        let mut settings = Settings::deserialize(toml::Value::Table(table))
            .map_err(|e| SettingsError::Value { key: "settings".into(), message: e.to_string() })?;
        // An empty value switches MongoDB (S3, …) off again (e.g. an environment overriding the file).
        for value in [
            &mut settings.mongodb_uri,
            &mut settings.mongodb_database,
            &mut settings.dicom_public_url,
            &mut settings.s3_bucket,
            &mut settings.s3_endpoint,
            &mut settings.s3_region,
            &mut settings.s3_kms_key_id,
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                *value = None;
            }
        }
        settings.check()?;
        Ok(settings)
    }

    /// The MLLP listener address, when the listener is enabled.
    pub fn mllp_listen_addr(&self) -> Option<String> {
        self.mllp_addr.as_ref().map(|a| if a.trim().is_empty() { DEFAULT_MLLP_ADDR.to_string() } else { a.trim().to_string() })
    }

    /// The DIMSE listener address, when the listener is enabled.
    pub fn dicom_listen_addr(&self) -> Option<String> {
        self.dicom_addr.as_ref().map(|a| if a.trim().is_empty() { DEFAULT_DICOM_ADDR.to_string() } else { a.trim().to_string() })
    }

    /// The calling AE titles allowed to associate; empty allows any.
    pub fn dicom_accepted_ae_titles(&self) -> Vec<String> {
        self.dicom_accepted_ae_titles.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect()
    }

    /// The DICOMweb base URL for ImagingStudy.endpoint: `dicom_public_url`, else one made from
    /// `http_addr` (an unspecified address `0.0.0.0`/`[::]` becomes `127.0.0.1`), always without a
    /// trailing `/`. `http_port` is the port actually bound (for `http_addr` port 0).
    pub fn dicomweb_base_url(&self, http_port: u16) -> String {
        if let Some(url) = &self.dicom_public_url {
            return url.trim().trim_end_matches('/').to_string();
        }
        let host = match self.http_addr.rsplit_once(':') {
            Some((host, _)) if !matches!(host, "0.0.0.0" | "[::]" | "::" | "") => host.to_string(),
            _ => "127.0.0.1".to_string(),
        };
        format!("http://{host}:{http_port}/dicomweb")
    }

    /// The object store of the DICOM archive: S3 when `s3_bucket` is set.
    pub fn s3_settings(&self) -> Option<dicom_store::object_store::S3Settings> {
        use dicom_store::object_store::{LifecycleTiers, S3Settings, ServerSideEncryption};
        let bucket = self.s3_bucket.as_ref()?;
        let mut s3 = S3Settings::new(bucket.trim());
        s3.endpoint = self.s3_endpoint.clone();
        s3.region = self.s3_region.clone();
        s3.force_path_style = self.s3_path_style;
        s3.encryption = match self.s3_sse {
            S3Encryption::Aes256 => ServerSideEncryption::Aes256,
            S3Encryption::Kms => ServerSideEncryption::Kms { key_id: self.s3_kms_key_id.clone() },
        };
        s3.lifecycle = LifecycleTiers {
            apply: self.s3_lifecycle,
            standard_ia_after_days: self.s3_ia_days,
            glacier_after_days: self.s3_glacier_days,
            deep_archive_after_days: self.s3_deep_archive_days,
            temp_expire_after_days: self.s3_temp_expiry_days,
        };
        Some(s3)
    }

    /// `hl7_local_offset` (`+0100`) in minutes east of UTC; None when empty or malformed.
    pub fn hl7_local_offset_minutes(&self) -> Option<i16> {
        let text = self.hl7_local_offset.as_bytes();
        if text.len() != 5 || !matches!(text[0], b'+' | b'-') || !text[1..].iter().all(u8::is_ascii_digit) {
            return None;
        }
        let digits = |i: usize| i16::from(text[i] - b'0') * 10 + i16::from(text[i + 1] - b'0');
        let minutes = digits(1) * 60 + digits(3);
        Some(if text[0] == b'-' { -minutes } else { minutes })
    }

    /// The alert rules: the documented defaults when `alert_rules` is empty, none for `none`.
    pub fn alert_rules(&self) -> Result<projections::AlertRules, SettingsError> {
        match self.alert_rules.trim() {
            "" => Ok(projections::AlertRules::default()),
            "none" => Ok(projections::AlertRules::parse("").expect("no rules parse")),
            text => projections::AlertRules::parse(text)
                .map_err(|e| SettingsError::Value { key: "alert_rules".into(), message: e.to_string() }),
        }
    }

    /// Which store these settings name, in words fit for logs and errors: "MongoDB database
    /// `tessera` at mongodb://***@db1:27017/?replicaSet=rs0" (credentials redacted) or "the
    /// data dir ./data".
    pub fn store_description(&self) -> String {
        match &self.mongodb_uri {
            Some(uri) => {
                let database = self
                    .mongodb_database
                    .clone()
                    .or_else(|| connection_string_database(uri))
                    .unwrap_or_else(|| fhir_store::DEFAULT_MONGODB_DATABASE.to_string());
                format!("MongoDB database `{database}` at {}", redact_connection_string(uri))
            }
            None => format!("the data dir {}", self.data_dir.display()),
        }
    }

    /// Settings for a test instance: port 0 (the OS picks), the given data dir, quiet logs.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Settings {
        Settings { http_addr: "127.0.0.1:0".into(), data_dir: data_dir.into(), log: "warn".into(), ..Settings::default() }
    }

    fn check(&self) -> Result<(), SettingsError> {
        if self.http_addr.parse::<std::net::SocketAddr>().is_err() && !self.http_addr.contains(':') {
            return Err(SettingsError::Value { key: "http_addr".into(), message: format!("{} is not host:port", self.http_addr) });
        }
        if self.mllp_tls_cert.is_some() != self.mllp_tls_key.is_some() {
            return Err(SettingsError::Value {
                key: "mllp_tls_cert".into(),
                message: "MLLP over TLS needs both mllp_tls_cert and mllp_tls_key".into(),
            });
        }
        if self.mllp_max_frame_bytes == 0 || self.mllp_idle_timeout_secs == 0 {
            return Err(SettingsError::Value {
                key: "mllp_max_frame_bytes".into(),
                message: "mllp_max_frame_bytes and mllp_idle_timeout_secs must be positive".into(),
            });
        }
        if !self.hl7_local_offset.is_empty() && self.hl7_local_offset_minutes().is_none() {
            return Err(SettingsError::Value {
                key: "hl7_local_offset".into(),
                message: format!("{:?} is not an offset like +0100 (or empty)", self.hl7_local_offset),
            });
        }
        self.alert_rules()?;
        if self.tsdb_org.is_some() != self.tsdb_bucket.is_some() {
            return Err(SettingsError::Value {
                key: "tsdb_org".into(),
                message: "the InfluxDB v2 API needs both tsdb_org and tsdb_bucket".into(),
            });
        }
        if self.projection_batch_size == 0 {
            return Err(SettingsError::Value { key: "projection_batch_size".into(), message: "must be positive".into() });
        }
        if self.max_body_bytes == 0 {
            return Err(SettingsError::Value { key: "max_body_bytes".into(), message: "must be positive".into() });
        }
        if let Some(addr) = self.dicom_listen_addr() {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(SettingsError::Value { key: "dicom_addr".into(), message: format!("{addr} is not ip:port") });
            }
        }
        check_ae_title(&self.dicom_ae_title).map_err(|message| SettingsError::Value { key: "dicom_ae_title".into(), message })?;
        for title in self.dicom_accepted_ae_titles() {
            check_ae_title(&title).map_err(|message| SettingsError::Value { key: "dicom_accepted_ae_titles".into(), message })?;
        }
        if let Some(url) = &self.dicom_public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(SettingsError::Value { key: "dicom_public_url".into(), message: format!("{url:?} is not an http(s) URL") });
            }
        }
        // S3 presigned URLs live at most 7 days.
        if self.dicom_presign_expiry_secs == 0 || self.dicom_presign_expiry_secs > 7 * 24 * 60 * 60 {
            return Err(SettingsError::Value {
                key: "dicom_presign_expiry_secs".into(),
                message: "must be between 1 and 604800 (7 days, the longest S3 allows)".into(),
            });
        }
        if self.s3_kms_key_id.is_some() && self.s3_sse != S3Encryption::Kms {
            return Err(SettingsError::Value { key: "s3_kms_key_id".into(), message: "a KMS key needs s3_sse = \"aws:kms\"".into() });
        }
        if self.s3_lifecycle
            && !(self.s3_ia_days >= 30 && self.s3_glacier_days > self.s3_ia_days && self.s3_deep_archive_days > self.s3_glacier_days)
        {
            // S3 refuses a STANDARD_IA transition before 30 days; the tiers must come in order.
            return Err(SettingsError::Value {
                key: "s3_ia_days".into(),
                message: format!(
                    "lifecycle tiers {}/{}/{} days (IA/GLACIER/DEEP_ARCHIVE): IA must be at least 30 and each tier later than the one before",
                    self.s3_ia_days, self.s3_glacier_days, self.s3_deep_archive_days
                ),
            });
        }
        if self.s3_lifecycle && self.s3_temp_expiry_days == 0 {
            return Err(SettingsError::Value { key: "s3_temp_expiry_days".into(), message: "must be positive".into() });
        }
        if let Some(database) = &self.mongodb_database {
            check_mongodb_database_name(database)
                .map_err(|message| SettingsError::Value { key: "mongodb_database".into(), message })?;
        }
        Ok(())
    }
}

/// `on`/`off` and the usual spellings of a boolean in an environment variable.
fn parse_switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Some(true),
        "off" | "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// An AE title: 1–16 characters of the default repertoire, no backslash or control characters,
/// not only spaces (PS3.5 6.2).
fn check_ae_title(title: &str) -> Result<(), String> {
    let trimmed = title.trim();
    if trimmed.is_empty() || title.len() > 16 {
        return Err(format!("{title:?} is not an AE title (1 to 16 characters, not all spaces)"));
    }
    if let Some(c) = title.chars().find(|c| !c.is_ascii() || c.is_ascii_control() || *c == '\\') {
        return Err(format!("{title:?} contains {c:?}, which an AE title cannot hold"));
    }
    Ok(())
}

/// MongoDB's rules for a database name (on any platform): not empty, shorter than 64 bytes,
/// none of `/\. "$*<>:|?` nor NUL.
fn check_mongodb_database_name(name: &str) -> Result<(), String> {
    if name.len() >= 64 {
        return Err(format!("{name:?} is {} bytes long; MongoDB database names are shorter than 64 bytes", name.len()));
    }
    match name.chars().find(|c| "/\\. \"$*<>:|?\0".contains(*c)) {
        Some(c) => Err(format!("{name:?} contains {c:?}, which MongoDB does not allow in a database name")),
        None => Ok(()),
    }
}

/// A connection string fit for logs and error messages: the credentials before the host
/// (`user:password@`) become `***@`, and so do the values of the options that can hold secrets.
/// Anything that does not look like `scheme://…` is hidden entirely.
pub(crate) fn redact_connection_string(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else { return "***".to_string() };
    let (scheme, rest) = uri.split_at(scheme_end + 3);
    // A password with an unencoded `@`, `/` or `?` would fool a parser; the last `@` of the whole
    // string is after any password, so everything up to it goes (at worst hosts go with it).
    let rest = match rest.rfind('@') {
        Some(at) => format!("***{}", &rest[at..]),
        None => rest.to_string(),
    };
    let Some((head, query)) = rest.split_once('?') else { return format!("{scheme}{rest}") };
    let options: Vec<String> = query
        .split('&')
        .map(|option| match option.split_once('=') {
            Some((key, _)) if SECRET_OPTIONS.iter().any(|secret| key.eq_ignore_ascii_case(secret)) => format!("{key}=***"),
            _ => option.to_string(),
        })
        .collect();
    format!("{scheme}{head}?{}", options.join("&"))
}

/// Connection string options whose values can be secrets.
const SECRET_OPTIONS: &[&str] = &["authMechanismProperties", "tlsCertificateKeyFilePassword", "password"];

/// The database named in a MongoDB connection string's path (`mongodb://host/db?…` → `db`),
/// percent-decoded, as the driver reads it.
pub(crate) fn connection_string_database(uri: &str) -> Option<String> {
    let rest = &uri[uri.find("://")? + 3..];
    let rest = rest.split('?').next().unwrap_or(rest);
    // The path starts at the first `/` after the credentials (`@` ends them when present).
    let hosts_start = rest.rfind('@').map_or(0, |at| at + 1);
    let path = &rest[hosts_start..];
    let database = &path[path.find('/')? + 1..];
    let decoded = percent_encoding::percent_decode_str(database).decode_utf8().ok()?;
    (!decoded.is_empty()).then(|| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tessera.toml");
        std::fs::write(&file, "http_addr = \"0.0.0.0:9000\"\nlog = \"debug\"\n").unwrap();
        let s = Settings::load_from(Some(&file), &env(&[("TESSERA_LOG", "trace")])).unwrap();
        assert_eq!(s.http_addr, "0.0.0.0:9000");
        assert_eq!(s.log, "trace");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn unknown_file_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tessera.toml");
        std::fs::write(&file, "http_adr = \"x\"\n").unwrap();
        let err = Settings::load_from(Some(&file), &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("http_adr"), "{err}");
    }

    #[test]
    fn unknown_env_key_is_named_but_test_variables_are_not_settings() {
        let err = Settings::load_from(None, &env(&[("TESSERA_HTTP_ADR", "x")])).unwrap_err().to_string();
        assert!(err.contains("TESSERA_HTTP_ADR"), "{err}");
        assert!(Settings::load_from(None, &env(&[("TESSERA_REQUIRE_PEERS", "1")])).is_ok());
    }

    #[test]
    fn hl7_local_offset_is_read_in_minutes_and_checked() {
        let offset = |v: &str| Settings::load_from(None, &env(&[("TESSERA_HL7_LOCAL_OFFSET", v)])).map(|s| s.hl7_local_offset_minutes());
        assert_eq!(offset("+0130").unwrap(), Some(90));
        assert_eq!(offset("-0500").unwrap(), Some(-300));
        assert_eq!(offset("").unwrap(), None);
        let err = offset("0100").unwrap_err().to_string();
        assert!(err.contains("hl7_local_offset"), "{err}");
    }

    #[test]
    fn mongodb_settings_load_from_file_and_environment() {
        let defaults = Settings::load_from(None, &BTreeMap::new()).unwrap();
        assert_eq!((defaults.mongodb_uri, defaults.mongodb_database), (None, None));

        let s = Settings::load_from(
            None,
            &env(&[
                ("TESSERA_MONGODB_URI", "mongodb://db1:27017,db2:27017/?replicaSet=rs0"),
                ("TESSERA_MONGODB_DATABASE", "fhir_prod"),
            ]),
        )
        .unwrap();
        assert_eq!(s.mongodb_uri.as_deref(), Some("mongodb://db1:27017,db2:27017/?replicaSet=rs0"));
        assert_eq!(s.mongodb_database.as_deref(), Some("fhir_prod"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tessera.toml");
        std::fs::write(&file, "mongodb_uri = \"mongodb://file-host/?replicaSet=rs0\"\nmongodb_database = \"from_file\"\n").unwrap();
        let s = Settings::load_from(Some(&file), &env(&[("TESSERA_MONGODB_DATABASE", "from_env")])).unwrap();
        assert_eq!(s.mongodb_uri.as_deref(), Some("mongodb://file-host/?replicaSet=rs0"));
        assert_eq!(s.mongodb_database.as_deref(), Some("from_env"));
        // An empty value in the environment switches the file's MongoDB off again.
        let s = Settings::load_from(Some(&file), &env(&[("TESSERA_MONGODB_URI", ""), ("TESSERA_MONGODB_DATABASE", " ")])).unwrap();
        assert_eq!((s.mongodb_uri, s.mongodb_database), (None, None));
    }

    #[test]
    fn mongodb_database_name_is_checked() {
        let load = |name: &str| Settings::load_from(None, &env(&[("TESSERA_MONGODB_DATABASE", name)]));
        assert!(load("tessera_2024").is_ok());
        for bad in ["a.b", "a/b", "a b", "a$b", "x\0y"] {
            let err = load(bad).unwrap_err().to_string();
            assert!(err.contains("mongodb_database"), "{bad:?}: {err}");
        }
        let err = load(&"d".repeat(64)).unwrap_err().to_string();
        assert!(err.contains("64 bytes"), "{err}");
    }

    #[test]
    fn connection_strings_are_redacted_for_logs() {
        assert_eq!(
            redact_connection_string("mongodb://tessera:s3cret@db1:27017,db2:27017/fhir?replicaSet=rs0"),
            "mongodb://***@db1:27017,db2:27017/fhir?replicaSet=rs0"
        );
        // A password with unencoded `@`, `/` and `?` still does not leak.
        let tricky = redact_connection_string("mongodb+srv://u:p@ss/w?rd@cluster.example.net/?retryWrites=true");
        assert!(!tricky.contains("ss/w") && !tricky.contains("rd@") && tricky.contains("cluster.example.net"), "{tricky}");
        assert_eq!(
            redact_connection_string("mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:tok&replicaSet=rs0"),
            "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=***&replicaSet=rs0"
        );
        assert_eq!(redact_connection_string("mongodb://127.0.0.1:27017/"), "mongodb://127.0.0.1:27017/");
        assert_eq!(redact_connection_string("user:pass@host"), "***");
    }

    #[test]
    fn store_description_names_the_store_without_secrets() {
        let sqlite = Settings::load_from(None, &env(&[("TESSERA_DATA_DIR", "/var/lib/tessera")])).unwrap();
        assert_eq!(sqlite.store_description(), "the data dir /var/lib/tessera");
        let mongo = |pairs: &[(&str, &str)]| Settings::load_from(None, &env(pairs)).unwrap().store_description();
        assert_eq!(
            mongo(&[("TESSERA_MONGODB_URI", "mongodb://u:pw@h:27017/?replicaSet=rs0")]),
            "MongoDB database `tessera` at mongodb://***@h:27017/?replicaSet=rs0"
        );
        assert_eq!(mongo(&[("TESSERA_MONGODB_URI", "mongodb://h/fhir")]), "MongoDB database `fhir` at mongodb://h/fhir");
        assert_eq!(
            mongo(&[("TESSERA_MONGODB_URI", "mongodb://h/fhir"), ("TESSERA_MONGODB_DATABASE", "other")]),
            "MongoDB database `other` at mongodb://h/fhir"
        );
    }

    #[test]
    fn connection_string_database_is_the_path() {
        assert_eq!(connection_string_database("mongodb://h:27017/fhir?replicaSet=rs0").as_deref(), Some("fhir"));
        assert_eq!(connection_string_database("mongodb://u:p/x@h/fhir%5Fprod").as_deref(), Some("fhir_prod"));
        assert_eq!(connection_string_database("mongodb://h:27017/?replicaSet=rs0"), None);
        assert_eq!(connection_string_database("mongodb://h:27017"), None);
        assert_eq!(connection_string_database("nonsense"), None);
    }

    #[test]
    fn dicom_settings_have_defaults_and_load_from_the_environment() {
        let defaults = Settings::load_from(None, &BTreeMap::new()).unwrap();
        assert_eq!(defaults.dicom_listen_addr(), None, "the DIMSE listener is off unless configured");
        assert_eq!(defaults.dicom_ae_title, "TESSERA");
        assert!(defaults.dicom_accepted_ae_titles().is_empty());
        assert_eq!(defaults.dicom_on_conflict.policy(), dicom_store::ConflictPolicy::KeepFirst);
        assert_eq!(defaults.dicom_presign_expiry_secs, 86_400);
        assert_eq!(defaults.dicomweb_base_url(8080), "http://127.0.0.1:8080/dicomweb");
        assert!(defaults.s3_settings().is_none(), "S3 is off unless a bucket is set");

        let s = Settings::load_from(
            None,
            &env(&[
                ("TESSERA_DICOM_ADDR", ""),
                ("TESSERA_DICOM_AE_TITLE", "PACS_A"),
                ("TESSERA_DICOM_ACCEPTED_AE_TITLES", " MODALITY1, STORESCU ,"),
                ("TESSERA_DICOM_ON_CONFLICT", "reject"),
                ("TESSERA_DICOM_PUBLIC_URL", "https://pacs.example.org/dicomweb/"),
                ("TESSERA_DICOM_PRESIGN_EXPIRY_SECS", "3600"),
            ]),
        )
        .unwrap();
        assert_eq!(s.dicom_listen_addr().as_deref(), Some(DEFAULT_DICOM_ADDR), "an empty address means the default port");
        assert_eq!(s.dicom_ae_title, "PACS_A");
        assert_eq!(s.dicom_accepted_ae_titles(), vec!["MODALITY1", "STORESCU"]);
        assert_eq!(s.dicom_on_conflict.policy(), dicom_store::ConflictPolicy::Reject);
        assert_eq!(s.dicomweb_base_url(8080), "https://pacs.example.org/dicomweb");
        assert_eq!(s.dicom_presign_expiry_secs, 3600);
        let replace = Settings::load_from(None, &env(&[("TESSERA_DICOM_ON_CONFLICT", "replace"), ("TESSERA_HTTP_ADDR", "0.0.0.0:9000")])).unwrap();
        assert_eq!(replace.dicom_on_conflict.policy(), dicom_store::ConflictPolicy::Replace);
        assert_eq!(replace.dicomweb_base_url(9000), "http://127.0.0.1:9000/dicomweb");
        let explicit = Settings::load_from(None, &env(&[("TESSERA_DICOM_ADDR", "0.0.0.0:104")])).unwrap();
        assert_eq!(explicit.dicom_listen_addr().as_deref(), Some("0.0.0.0:104"));
    }

    #[test]
    fn dicom_settings_are_checked() {
        let err = |pairs: &[(&str, &str)]| Settings::load_from(None, &env(pairs)).unwrap_err().to_string();
        assert!(err(&[("TESSERA_DICOM_ON_CONFLICT", "overwrite")]).contains("overwrite"));
        assert!(err(&[("TESSERA_DICOM_ADDR", "localhost")]).contains("dicom_addr"));
        assert!(err(&[("TESSERA_DICOM_AE_TITLE", "A_TITLE_LONGER_THAN_16")]).contains("dicom_ae_title"));
        assert!(err(&[("TESSERA_DICOM_AE_TITLE", "   ")]).contains("dicom_ae_title"));
        assert!(err(&[("TESSERA_DICOM_ACCEPTED_AE_TITLES", "OK,BAD\\ONE")]).contains("dicom_accepted_ae_titles"));
        assert!(err(&[("TESSERA_DICOM_PUBLIC_URL", "pacs.example.org")]).contains("dicom_public_url"));
        assert!(err(&[("TESSERA_DICOM_PRESIGN_EXPIRY_SECS", "0")]).contains("dicom_presign_expiry_secs"));
        assert!(err(&[("TESSERA_DICOM_PRESIGN_EXPIRY_SECS", "604801")]).contains("7 days"));
        assert!(err(&[("TESSERA_DICOM_PRESIGN_EXPIRY_SECS", "soon")]).contains("TESSERA_DICOM_PRESIGN_EXPIRY_SECS"));
    }

    #[test]
    fn s3_settings_load_from_file_and_environment() {
        use dicom_store::object_store::ServerSideEncryption;
        let defaults = Settings::load_from(None, &env(&[("TESSERA_S3_BUCKET", "imaging")])).unwrap();
        let s3 = defaults.s3_settings().unwrap();
        assert_eq!(s3.bucket, "imaging");
        assert_eq!((s3.endpoint, s3.region, s3.force_path_style), (None, None, false));
        assert_eq!(s3.encryption, ServerSideEncryption::Aes256);
        assert_eq!(s3.lifecycle, dicom_store::object_store::LifecycleTiers::default());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tessera.toml");
        std::fs::write(
            &file,
            "s3_bucket = \"from-file\"\ns3_endpoint = \"http://127.0.0.1:9000\"\ns3_path_style = true\ns3_sse = \"aws:kms\"\ns3_glacier_days = 120\n",
        )
        .unwrap();
        let s = Settings::load_from(
            Some(&file),
            &env(&[
                ("TESSERA_S3_REGION", "eu-west-3"),
                ("TESSERA_S3_KMS_KEY_ID", "alias/tessera"),
                ("TESSERA_S3_LIFECYCLE", "off"),
                ("TESSERA_S3_IA_DAYS", "45"),
                ("TESSERA_S3_DEEP_ARCHIVE_DAYS", "400"),
                ("TESSERA_S3_TEMP_EXPIRY_DAYS", "2"),
            ]),
        )
        .unwrap();
        let s3 = s.s3_settings().unwrap();
        assert_eq!(s3.bucket, "from-file");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region.as_deref(), Some("eu-west-3"));
        assert!(s3.force_path_style);
        assert_eq!(s3.encryption, ServerSideEncryption::Kms { key_id: Some("alias/tessera".into()) });
        assert!(!s3.lifecycle.apply);
        assert_eq!(
            (s3.lifecycle.standard_ia_after_days, s3.lifecycle.glacier_after_days, s3.lifecycle.deep_archive_after_days),
            (45, 120, 400)
        );
        assert_eq!(s3.lifecycle.temp_expire_after_days, 2);
        // An empty bucket in the environment switches the file's S3 off again.
        let off = Settings::load_from(Some(&file), &env(&[("TESSERA_S3_BUCKET", "")])).unwrap();
        assert!(off.s3_settings().is_none());
    }

    #[test]
    fn s3_settings_are_checked() {
        let err = |pairs: &[(&str, &str)]| Settings::load_from(None, &env(pairs)).unwrap_err().to_string();
        assert!(err(&[("TESSERA_S3_SSE", "aws:kms:dsse")]).contains("aws:kms:dsse"));
        assert!(err(&[("TESSERA_S3_KMS_KEY_ID", "k")]).contains("s3_kms_key_id"), "a KMS key without SSE-KMS is a mistake");
        assert!(err(&[("TESSERA_S3_PATH_STYLE", "maybe")]).contains("TESSERA_S3_PATH_STYLE"));
        assert!(err(&[("TESSERA_S3_IA_DAYS", "10")]).contains("s3_ia_days"));
        assert!(err(&[("TESSERA_S3_GLACIER_DAYS", "400")]).contains("s3_ia_days"), "tiers out of order");
        // Out-of-order tiers do not matter when the lifecycle is managed elsewhere.
        assert!(Settings::load_from(None, &env(&[("TESSERA_S3_GLACIER_DAYS", "400"), ("TESSERA_S3_LIFECYCLE", "0")])).is_ok());
        assert!(err(&[("TESSERA_S3_IA_DAYS", "-1")]).contains("settings"));
    }

    #[test]
    fn numeric_env_value_is_checked() {
        let err = Settings::load_from(None, &env(&[("TESSERA_MAX_BODY_BYTES", "lots")])).unwrap_err().to_string();
        assert!(err.contains("TESSERA_MAX_BODY_BYTES"), "{err}");
    }
}
