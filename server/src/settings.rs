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
}

/// The conventional HL7 port on the loopback interface.
pub const DEFAULT_MLLP_ADDR: &str = "127.0.0.1:2575";

impl Default for Settings {
    fn default() -> Self {
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
                "max_body_bytes" | "mllp_max_frame_bytes" | "mllp_idle_timeout_secs" | "postgres_partition_months_ahead" | "projection_batch_size" => toml::Value::Integer(value.parse::<i64>().map_err(|e| SettingsError::Value {
                    key: name.clone(),
                    message: e.to_string(),
                })?),
                _ => toml::Value::String(value.clone()),
            };
            table.insert(key, parsed);
        }
        let mut settings = Settings::deserialize(toml::Value::Table(table))
            .map_err(|e| SettingsError::Value { key: "settings".into(), message: e.to_string() })?;
        // An empty value switches MongoDB off again (e.g. an environment overriding the file).
        for value in [&mut settings.mongodb_uri, &mut settings.mongodb_database] {
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
        if let Some(database) = &self.mongodb_database {
            check_mongodb_database_name(database)
                .map_err(|message| SettingsError::Value { key: "mongodb_database".into(), message })?;
        }
        Ok(())
    }
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
    fn numeric_env_value_is_checked() {
        let err = Settings::load_from(None, &env(&[("TESSERA_MAX_BODY_BYTES", "lots")])).unwrap_err().to_string();
        assert!(err.contains("TESSERA_MAX_BODY_BYTES"), "{err}");
    }
}
