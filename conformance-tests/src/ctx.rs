//! The connection to the server under test: building requests against the base URL and
//! reading replies, with the expectations every case uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, Method};
use serde_json::Value;

use crate::{CaseFailure, CaseResult};

pub const FHIR_JSON: &str = "application/fhir+json";
pub const FHIR_XML: &str = "application/fhir+xml";

/// How long one request may take before the case fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How much of a body goes into a failure message.
const EXCERPT_CHARS: usize = 400;

/// What every case gets: the server's FHIR base URL, an HTTP client and the corpus directory.
#[derive(Debug, Clone)]
pub struct Ctx {
    base: String,
    client: Client,
    corpus_dir: PathBuf,
}

impl Ctx {
    /// `base_url` is the FHIR base, e.g. `http://127.0.0.1:8080/fhir`; a trailing slash is
    /// ignored.
    pub fn new(base_url: &str, corpus_dir: impl Into<PathBuf>) -> Result<Ctx, CaseFailure> {
        let client = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| CaseFailure::new(format!("cannot build the http client: {e}")))?;
        Ok(Ctx { base: base_url.trim_end_matches('/').to_string(), client, corpus_dir: corpus_dir.into() })
    }

    /// The corpus shipped with this crate: the official R4 examples in `corpus/r4-examples`.
    pub fn default_corpus_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join("r4-examples")
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn corpus_dir(&self) -> &Path {
        &self.corpus_dir
    }

    /// The base URL without its last path segment (`http://host/fhir` → `http://host`), where
    /// the health endpoints live.
    pub fn root(&self) -> String {
        let after_scheme = self.base.find("://").map_or(0, |i| i + 3);
        match self.base[after_scheme..].rfind('/') {
            Some(slash) => self.base[..after_scheme + slash].to_string(),
            None => self.base.clone(),
        }
    }

    /// An absolute URL: `path` relative to the base, or `path` itself when already absolute.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else if path.is_empty() {
            self.base.clone()
        } else {
            format!("{}/{}", self.base, path.trim_start_matches('/'))
        }
    }

    pub(crate) fn get(&self, path: &str) -> Req<'_> {
        self.request(Method::GET, path)
    }

    pub(crate) fn post(&self, path: &str) -> Req<'_> {
        self.request(Method::POST, path)
    }

    pub(crate) fn put(&self, path: &str) -> Req<'_> {
        self.request(Method::PUT, path)
    }

    pub(crate) fn delete(&self, path: &str) -> Req<'_> {
        self.request(Method::DELETE, path)
    }

    /// A request that accepts FHIR JSON unless told otherwise.
    pub(crate) fn request(&self, method: Method, path: &str) -> Req<'_> {
        Req { ctx: self, method, url: self.url(path), headers: vec![("Accept".into(), FHIR_JSON.into())], body: None }
    }
}

/// A request being built; sent with [`Req::send`], which reads the whole reply.
pub(crate) struct Req<'a> {
    ctx: &'a Ctx,
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Req<'_> {
    /// Sets a header, replacing an earlier value of the same name.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn accept(self, media_type: &str) -> Self {
        self.header("Accept", media_type)
    }

    pub fn if_match(self, etag: &str) -> Self {
        self.header("If-Match", etag)
    }

    pub fn prefer(self, value: &str) -> Self {
        self.header("Prefer", value)
    }

    /// A FHIR JSON body.
    pub fn json(self, body: &Value) -> Self {
        self.body(FHIR_JSON, body.to_string().into_bytes())
    }

    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self.header("Content-Type", content_type)
    }

    pub async fn send(self) -> Result<Reply, CaseFailure> {
        let mut builder = self.ctx.client.request(self.method.clone(), &self.url);
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = self.body {
            builder = builder.body(body);
        }
        let what = format!("{} {}", self.method, self.url);
        let response = builder.send().await.map_err(|e| CaseFailure::new(format!("{what}: request failed: {e:#}")))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| CaseFailure::new(format!("{what} → {status}: cannot read the body: {e:#}")))?;
        Ok(Reply { method: self.method.to_string(), url: self.url, status, headers, body: body.to_vec() })
    }
}

/// A complete reply, kept with the request line so failures can say what was asked.
#[derive(Debug, Clone)]
pub struct Reply {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The start of the body, on one line, for failure messages.
    pub fn excerpt(&self) -> String {
        let text = self.text();
        let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if flat.is_empty() {
            return "<empty body>".into();
        }
        match flat.char_indices().nth(EXCERPT_CHARS) {
            Some((cut, _)) => format!("{}…", &flat[..cut]),
            None => flat,
        }
    }

    /// `POST http://…/Patient → 400`, for messages.
    pub fn request_line(&self) -> String {
        format!("{} {} → {}", self.method, self.url, self.status)
    }

    /// A failure that names the request and quotes the body.
    pub fn failure(&self, what: impl std::fmt::Display) -> CaseFailure {
        CaseFailure::new(format!("{}: {what}; body: {}", self.request_line(), self.excerpt()))
    }

    /// Fails unless the status is `expected`.
    pub fn expect(&self, expected: u16) -> Result<&Reply, CaseFailure> {
        self.expect_any(&[expected])
    }

    /// Fails unless the status is one of `expected`.
    pub fn expect_any(&self, expected: &[u16]) -> Result<&Reply, CaseFailure> {
        if expected.contains(&self.status) {
            Ok(self)
        } else {
            let wanted: Vec<String> = expected.iter().map(u16::to_string).collect();
            Err(self.failure(format!("expected status {}, got {}", wanted.join(" or "), self.status)))
        }
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<Value, CaseFailure> {
        serde_json::from_slice(&self.body).map_err(|e| self.failure(format!("body is not JSON ({e})")))
    }

    /// The body as a JSON resource of `resource_type`.
    pub fn resource(&self, resource_type: &str) -> Result<Value, CaseFailure> {
        let value = self.json()?;
        match value["resourceType"].as_str() {
            Some(t) if t == resource_type => Ok(value),
            other => Err(self.failure(format!("expected a {resource_type} body, got resourceType {other:?}"))),
        }
    }

    /// The body as an OperationOutcome with at least one issue.
    pub fn outcome(&self) -> Result<Value, CaseFailure> {
        let outcome = self.resource("OperationOutcome")?;
        match outcome["issue"].as_array() {
            Some(issues) if !issues.is_empty() => Ok(outcome),
            _ => Err(self.failure("OperationOutcome has no issue")),
        }
    }

    /// An error reply: status `expected` and an OperationOutcome body.
    pub fn expect_error(&self, expected: u16) -> Result<Value, CaseFailure> {
        self.expect(expected)?.outcome()
    }

    /// Fails unless `Content-Type` contains `fragment` (e.g. `json`, `fhir+xml`).
    pub fn expect_content_type(&self, fragment: &str) -> CaseResult {
        match self.header("content-type") {
            Some(ct) if ct.to_ascii_lowercase().contains(fragment) => Ok(()),
            other => Err(self.failure(format!("expected a Content-Type containing {fragment}, got {other:?}"))),
        }
    }

    /// The version in a weak ETag `W/"3"`, failing when the header is absent or malformed.
    pub fn etag_version(&self) -> Result<String, CaseFailure> {
        let etag = self.header("etag").ok_or_else(|| self.failure("no ETag header"))?;
        crate::fhir::etag_version(etag).ok_or_else(|| self.failure(format!("ETag {etag:?} is not of the form W/\"n\"")))
    }
}
