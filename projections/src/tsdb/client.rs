//! HTTP to InfluxDB: the 1.x API (`/write`, `/query`, the database created on first contact)
//! or the 2.x API (`/api/v2/write`, `/api/v2/delete`, and InfluxQL through the 1.x-compatible
//! `/query` with the bucket as database). Every non-2xx answer, statement error and
//! connection failure becomes `ProjectionError::Tsdb`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde_json::{json, Value};

use super::line::{PointKey, DEVICE_TAG, MAX_TIME_NS, MEASUREMENT, MIN_TIME_NS, PATIENT_TAG};
use super::query::{identifier, rfc3339, string_literal};
use super::TsdbConfig;
use crate::ProjectionError;

/// Most lines in one write request.
const LINES_PER_WRITE: usize = 5000;
/// Most `DELETE` statements in one 1.x query request.
const DELETES_PER_QUERY: usize = 200;
/// How long one request, or one chunk of a streamed answer, may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole streamed answer (a consistency check's read) may take.
const STREAM_TIMEOUT: Duration = Duration::from_secs(3600);
/// Rows per chunk of a streamed answer.
const CHUNK_SIZE: &str = "10000";

enum Api {
    V1 { database: String },
    V2 { org: String, bucket: String },
}

pub(super) struct Client {
    http: reqwest::Client,
    base: Url,
    api: Api,
    token: Option<String>,
    /// Set once `CREATE DATABASE` succeeded (1.x); cleared when a write finds no database.
    database_ready: AtomicBool,
}

impl Client {
    pub(super) fn new(config: &TsdbConfig) -> Result<Client, ProjectionError> {
        let base = Url::parse(&config.url).map_err(|e| ProjectionError::Config(format!("tsdb url {:?}: {e}", config.url)))?;
        if base.scheme() != "http" || base.cannot_be_a_base() {
            return Err(ProjectionError::Config(format!("tsdb url {:?}: only http:// URLs are supported", config.url)));
        }
        let api = match (&config.org, &config.bucket) {
            (Some(org), Some(bucket)) => Api::V2 { org: org.clone(), bucket: bucket.clone() },
            (None, None) if !config.database.is_empty() => Api::V1 { database: config.database.clone() },
            (None, None) => return Err(ProjectionError::Config("tsdb database name is empty".into())),
            _ => return Err(ProjectionError::Config("the InfluxDB v2 API needs both an org and a bucket".into())),
        };
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()
            .map_err(|e| ProjectionError::Config(format!("tsdb http client: {e}")))?;
        Ok(Client { http, base, api, token: config.token.clone(), database_ready: AtomicBool::new(false) })
    }

    /// Writes lines in requests of at most `LINES_PER_WRITE`.
    pub(super) async fn write(&self, lines: &[String]) -> Result<(), ProjectionError> {
        self.ensure_database().await?;
        let url = match &self.api {
            Api::V1 { database } => self.endpoint(&["write"], &[("db", database), ("precision", "ns")]),
            Api::V2 { org, bucket } => self.endpoint(&["api", "v2", "write"], &[("org", org), ("bucket", bucket), ("precision", "ns")]),
        };
        for chunk in lines.chunks(LINES_PER_WRITE) {
            let request = self.request(Method::POST, url.clone()).header(CONTENT_TYPE, "text/plain; charset=utf-8").body(chunk.join("\n"));
            if let Err(error) = self.send(request, "write").await {
                // The database may have gone (a wiped server): create it again next time.
                self.database_ready.store(false, Ordering::Relaxed);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Deletes whole points. On 1.x a `DELETE` per point, many per request; on 2.x one
    /// `/api/v2/delete` per point (its time range is inclusive at both ends).
    pub(super) async fn delete_points(&self, keys: &[PointKey]) -> Result<(), ProjectionError> {
        if keys.is_empty() {
            return Ok(());
        }
        match &self.api {
            Api::V1 { .. } => {
                for chunk in keys.chunks(DELETES_PER_QUERY) {
                    let statements: Vec<String> = chunk.iter().map(delete_statement).collect();
                    self.influxql(&statements.join("; ")).await?;
                }
            }
            Api::V2 { .. } => {
                for key in keys {
                    let tag = |value: &Option<String>| predicate_string(value.as_deref().unwrap_or(""));
                    let predicate = format!(
                        "_measurement={} AND {PATIENT_TAG}={} AND {DEVICE_TAG}={}",
                        predicate_string(MEASUREMENT),
                        tag(&key.patient_id),
                        tag(&key.device_id)
                    );
                    self.delete_v2(rfc3339(key.time_ns), rfc3339(key.time_ns), predicate).await?;
                }
            }
        }
        Ok(())
    }

    /// Removes every point of the measurement.
    pub(super) async fn delete_all(&self) -> Result<(), ProjectionError> {
        match &self.api {
            Api::V1 { .. } => {
                let statement = format!("DROP MEASUREMENT {}", identifier(MEASUREMENT));
                match self.influxql(&statement).await {
                    Err(ProjectionError::Tsdb(message)) if message.contains("measurement not found") => Ok(()),
                    other => other.map(drop),
                }
            }
            Api::V2 { .. } => {
                let predicate = format!("_measurement={}", predicate_string(MEASUREMENT));
                self.delete_v2(rfc3339(MIN_TIME_NS), rfc3339(MAX_TIME_NS), predicate).await
            }
        }
    }

    /// Runs InfluxQL statements (separated by `;`) against the database (created first on
    /// 1.x) and returns the answer; a statement's error fails the whole call.
    pub(super) async fn influxql(&self, statements: &str) -> Result<Value, ProjectionError> {
        self.ensure_database().await?;
        let url = self.endpoint(&["query"], &[("db", self.database()), ("epoch", "ns")]);
        let response = self.send(self.query_request(url, statements), "query").await?;
        let text = response.text().await.map_err(|e| transport("query", e))?;
        let answer: Value = serde_json::from_str(&text).map_err(|e| ProjectionError::Tsdb(format!("query: unreadable answer ({e}): {}", excerpt(&text))))?;
        statement_error(&answer)?;
        Ok(answer)
    }

    /// Runs one InfluxQL `SELECT` with a chunked answer and hands every series of every chunk
    /// to `on_series`, so that a large answer is never held whole.
    pub(super) async fn select_chunked(&self, statement: &str, mut on_series: impl FnMut(&Value)) -> Result<(), ProjectionError> {
        self.ensure_database().await?;
        let url = self.endpoint(&["query"], &[("db", self.database()), ("epoch", "ns"), ("chunked", "true"), ("chunk_size", CHUNK_SIZE)]);
        let mut response = self.send(self.query_request(url, statement).timeout(STREAM_TIMEOUT), "query").await?;
        // Every chunk of the answer is one JSON document ending in a newline.
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let chunk = tokio::time::timeout(TIMEOUT, response.chunk())
                .await
                .map_err(|_| ProjectionError::Tsdb("query: no data for 10 s while reading a chunked answer".into()))?
                .map_err(|e| transport("query", e))?;
            let Some(chunk) = chunk else {
                return each_series(&pending, &mut on_series);
            };
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let document: Vec<u8> = pending.drain(..=end).collect();
                each_series(&document, &mut on_series)?;
            }
        }
    }

    /// Creates the 1.x database once (`CREATE DATABASE` is idempotent); nothing on 2.x, whose
    /// bucket must exist.
    async fn ensure_database(&self) -> Result<(), ProjectionError> {
        let Api::V1 { database } = &self.api else { return Ok(()) };
        if self.database_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let url = self.endpoint(&["query"], &[]);
        let response = self.send(self.query_request(url, &format!("CREATE DATABASE {}", identifier(database))), "create database").await?;
        let text = response.text().await.map_err(|e| transport("create database", e))?;
        if let Ok(answer) = serde_json::from_str::<Value>(&text) {
            statement_error(&answer)?;
        }
        self.database_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn delete_v2(&self, start: String, stop: String, predicate: String) -> Result<(), ProjectionError> {
        let Api::V2 { org, bucket } = &self.api else { return Ok(()) };
        let url = self.endpoint(&["api", "v2", "delete"], &[("org", org), ("bucket", bucket)]);
        let body = json!({ "start": start, "stop": stop, "predicate": predicate });
        self.send(self.request(Method::POST, url).json(&body), "delete").await.map(drop)
    }

    /// The database InfluxQL runs against: the 1.x database or the 2.x bucket.
    fn database(&self) -> &str {
        match &self.api {
            Api::V1 { database } => database,
            Api::V2 { bucket, .. } => bucket,
        }
    }

    /// `base` with `path` appended and `params` as its query string.
    fn endpoint(&self, path: &[&str], params: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(path);
        }
        url.set_query(None);
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Token {token}")),
            None => request,
        }
    }

    /// A `POST /query` with the statements form-encoded in the body (no length limit, and
    /// they stay out of access logs).
    fn query_request(&self, url: Url, statements: &str) -> RequestBuilder {
        self.request(Method::POST, url).header(CONTENT_TYPE, "application/x-www-form-urlencoded").body(form_encode(&[("q", statements)]))
    }

    /// Sends; a connection failure or a non-2xx status is an error with the answer's text.
    async fn send(&self, request: RequestBuilder, what: &str) -> Result<Response, ProjectionError> {
        let response = request.send().await.map_err(|e| transport(what, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(ProjectionError::Tsdb(format!("{what}: {status}: {}", excerpt(body.trim()))))
    }
}

/// `DELETE` of the one point at `key`. A missing tag is matched with `= ''`, which InfluxDB
/// reads as "the series has no such tag".
fn delete_statement(key: &PointKey) -> String {
    let tag = |value: &Option<String>| string_literal(value.as_deref().unwrap_or(""));
    format!(
        "DELETE FROM {} WHERE {} = {} AND {} = {} AND time = {}",
        identifier(MEASUREMENT),
        identifier(PATIENT_TAG),
        tag(&key.patient_id),
        identifier(DEVICE_TAG),
        tag(&key.device_id),
        string_literal(&rfc3339(key.time_ns)),
    )
}

/// A double-quoted string of a 2.x delete predicate.
fn predicate_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `application/x-www-form-urlencoded`, by the URL crate's serializer.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut scratch = match Url::parse("http://localhost/") {
        Ok(url) => url,
        Err(_) => return String::new(),
    };
    scratch.query_pairs_mut().extend_pairs(pairs);
    scratch.query().unwrap_or_default().to_string()
}

/// Hands every series of one answer document to `on_series`; blank documents have none.
fn each_series(document: &[u8], on_series: &mut impl FnMut(&Value)) -> Result<(), ProjectionError> {
    if document.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let answer: Value = serde_json::from_slice(document)
        .map_err(|e| ProjectionError::Tsdb(format!("query: unreadable chunk ({e}): {}", excerpt(&String::from_utf8_lossy(document)))))?;
    statement_error(&answer)?;
    for result in answer["results"].as_array().into_iter().flatten() {
        for series in result["series"].as_array().into_iter().flatten() {
            on_series(series);
        }
    }
    Ok(())
}

/// The first error of a 1.x answer: top-level, or of any statement.
fn statement_error(answer: &Value) -> Result<(), ProjectionError> {
    if let Some(error) = answer["error"].as_str() {
        return Err(ProjectionError::Tsdb(format!("query: {error}")));
    }
    for result in answer["results"].as_array().into_iter().flatten() {
        if let Some(error) = result["error"].as_str() {
            return Err(ProjectionError::Tsdb(format!("query: {error}")));
        }
    }
    Ok(())
}

fn transport(what: &str, error: reqwest::Error) -> ProjectionError {
    ProjectionError::Tsdb(format!("{what}: {}", error.without_url()))
}

fn excerpt(text: &str) -> String {
    const LIMIT: usize = 500;
    match text.char_indices().nth(LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// One HTTP request as a tiny server saw it.
    struct Recorded {
        request_line: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    /// Answers `count` requests with 204 and returns what they were.
    fn recorder(count: usize) -> (String, std::thread::JoinHandle<Vec<Recorded>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut recorded = Vec::new();
            for _ in 0..count {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut headers = Vec::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    let (name, value) = line.split_once(':').unwrap();
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                }
                let length: usize = headers.iter().find(|(n, _)| n == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let mut stream = stream;
                stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").unwrap();
                recorded.push(Recorded { request_line: request_line.trim_end().to_string(), headers, body: String::from_utf8(body).unwrap() });
            }
            recorded
        });
        (url, handle)
    }

    #[tokio::test]
    async fn the_v2_api_is_spoken_with_org_bucket_and_token() {
        let (url, server) = recorder(2);
        let config = TsdbConfig {
            url,
            database: "unused".into(),
            org: Some("my org".into()),
            bucket: Some("vitals".into()),
            token: Some("s3cret".into()),
        };
        let client = Client::new(&config).unwrap();
        let lines = vec!["vital_signs,patient_id=p1 heart_rate=72.0 1000".to_string(), "vital_signs,patient_id=p1 heart_rate=73.0 2000".to_string()];
        client.write(&lines).await.unwrap();
        let key = PointKey { patient_id: Some("p\"1".into()), device_id: None, time_ns: 1_500_000_000 };
        client.delete_points(&[key]).await.unwrap();
        let recorded = server.join().unwrap();

        let write = &recorded[0];
        assert_eq!(write.request_line, "POST /api/v2/write?org=my+org&bucket=vitals&precision=ns HTTP/1.1");
        assert!(write.headers.contains(&("authorization".into(), "Token s3cret".into())));
        assert_eq!(write.body, lines.join("\n"));

        let delete = &recorded[1];
        assert_eq!(delete.request_line, "POST /api/v2/delete?org=my+org&bucket=vitals HTTP/1.1");
        assert!(delete.headers.contains(&("authorization".into(), "Token s3cret".into())));
        let body: Value = serde_json::from_str(&delete.body).unwrap();
        assert_eq!(body["start"], "1970-01-01T00:00:01.5Z");
        assert_eq!(body["stop"], "1970-01-01T00:00:01.5Z");
        assert_eq!(body["predicate"], r#"_measurement="vital_signs" AND patient_id="p\"1" AND device_id="""#);
    }

    #[test]
    fn delete_statements_quote_tags_and_match_missing_ones_with_empty() {
        let key = PointKey { patient_id: Some("o'brien".into()), device_id: None, time_ns: 1_000_000_001 };
        assert_eq!(
            delete_statement(&key),
            r#"DELETE FROM "vital_signs" WHERE "patient_id" = 'o\'brien' AND "device_id" = '' AND time = '1970-01-01T00:00:01.000000001Z'"#
        );
    }

    #[test]
    fn only_http_urls_and_complete_v2_settings_are_accepted() {
        let config = |url: &str, org: Option<&str>, bucket: Option<&str>| TsdbConfig {
            url: url.into(),
            database: "db".into(),
            org: org.map(Into::into),
            bucket: bucket.map(Into::into),
            token: None,
        };
        assert!(Client::new(&config("https://x", None, None)).is_err());
        assert!(Client::new(&config("not a url", None, None)).is_err());
        assert!(Client::new(&config("http://x", Some("o"), None)).is_err());
        assert!(Client::new(&config("http://x/influx/", None, None)).is_ok());
    }
}
