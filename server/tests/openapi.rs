//! Keeps `openapi/openapi.json` honest: it documents exactly the routes the server registers,
//! the server serves it verbatim, and every documented operation reaches a handler.

use std::collections::BTreeSet;

use serde_json::Value;
use tempfile::TempDir;
use tessera_server::{registered_routes, Application, Settings};

const DOCUMENT_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");

/// The HTTP methods an OpenAPI path item can hold, as its keys spell them.
const OPENAPI_METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn document() -> Value {
    let text = std::fs::read_to_string(DOCUMENT_PATH).expect("openapi/openapi.json is readable");
    serde_json::from_str(&text).expect("openapi/openapi.json is JSON")
}

/// Every `(METHOD, path)` the document describes.
fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("the document has paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("a path item is an object");
            item.keys()
                .filter(|key| OPENAPI_METHODS.contains(&key.as_str()))
                .map(move |method| (method.to_ascii_uppercase(), path.clone()))
        })
        .collect()
}

fn show(routes: &BTreeSet<(String, String)>) -> String {
    routes.iter().map(|(method, path)| format!("  {method} {path}\n")).collect()
}

#[test]
fn document_lists_exactly_the_registered_routes() {
    let documented = documented_routes(&document());
    let registered: BTreeSet<(String, String)> = registered_routes().into_iter().collect();
    let undocumented: BTreeSet<_> = registered.difference(&documented).cloned().collect();
    let unregistered: BTreeSet<_> = documented.difference(&registered).cloned().collect();
    assert!(
        undocumented.is_empty() && unregistered.is_empty(),
        "openapi/openapi.json and the route table disagree\nregistered but not documented:\n{}documented but not registered:\n{}",
        show(&undocumented),
        show(&unregistered),
    );
}

/// Resolves a local JSON pointer such as `#/components/responses/NotFound`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn collect_refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                found.push(reference.clone());
            }
            map.values().for_each(|v| collect_refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, found)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves_and_every_path_parameter_is_declared() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    let dangling: Vec<_> = refs.iter().filter(|r| resolve(&doc, r).is_none()).collect();
    assert!(dangling.is_empty(), "references that resolve to nothing: {dangling:?}");

    let mut problems = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let in_template: BTreeSet<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
        for (method, operation) in item.as_object().expect("path item") {
            if !OPENAPI_METHODS.contains(&method.as_str()) {
                continue;
            }
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| match p.get("$ref").and_then(Value::as_str) {
                    Some(r) => resolve(&doc, r),
                    None => Some(p),
                })
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            if declared != in_template {
                problems
                    .push(format!("{method} {path}: template has {in_template:?}, parameters declare {declared:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "path parameters do not match their templates:\n{}", problems.join("\n"));
}

/// A running server and the data directory it owns; the directory lives as long as this does.
struct TestServer {
    /// `http://127.0.0.1:PORT`, without the FHIR base path.
    origin: String,
    client: reqwest::Client,
    _data_dir: TempDir,
}

async fn spawn_server() -> TestServer {
    let data_dir = tempfile::tempdir().expect("create a temporary data directory");
    let app = Application::build(Settings::for_tests(data_dir.path())).await.expect("tessera starts");
    let origin = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestServer { origin, client: reqwest::Client::new(), _data_dir: data_dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_serves_the_document_verbatim() {
    let server = spawn_server().await;
    let response = server.client.get(format!("{}/openapi.json", server.origin)).send().await.expect("request sent");
    assert_eq!(response.status().as_u16(), 200);
    let served = response.text().await.expect("body read");
    let on_disk = std::fs::read_to_string(DOCUMENT_PATH).expect("openapi/openapi.json is readable");
    assert!(served == on_disk, "GET /openapi.json differs from openapi/openapi.json; rebuild the server");
}

/// A concrete URL path for an OpenAPI template.
fn concrete(template: &str) -> String {
    template.replace("{type}", "Patient").replace("{id}", "x").replace("{vid}", "1")
}

/// What went wrong routing one request, if anything. The server answers 404 for unknown
/// resources too, so only its "no route" diagnostics mean the path itself is missing.
async fn routing_problem(server: &TestServer, method: &str, path: &str) -> Option<String> {
    let method_value = reqwest::Method::from_bytes(method.as_bytes()).expect("a valid method");
    let mut request = server.client.request(method_value, format!("{}{path}", server.origin));
    if method == "POST" || method == "PUT" {
        request = request.header("content-type", "application/fhir+json").body("{}");
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Some(format!("{method} {path}: request failed: {error}")),
    };
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    let unrouted = status == 404
        && serde_json::from_str::<Value>(&body).ok().is_some_and(|outcome| {
            outcome["issue"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|issue| issue["diagnostics"].as_str().is_some_and(|d| d.starts_with("http: no route for")))
        });
    if unrouted || status == 405 {
        Some(format!("{method} {path}: {status} {body}"))
    } else {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_reaches_a_handler() {
    let server = spawn_server().await;
    let mut problems = Vec::new();
    for (method, template) in documented_routes(&document()) {
        if let Some(problem) = routing_problem(&server, &method, &concrete(&template)).await {
            problems.push(problem);
        }
    }
    assert!(problems.is_empty(), "documented operations the server does not route:\n{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undocumented_methods_on_documented_paths_are_405() {
    // The document promises 405 for every method a path does not list.
    let server = spawn_server().await;
    let documented = documented_routes(&document());
    let paths: BTreeSet<String> = documented
        .iter()
        .filter(|(_, path)| !documented.contains(&("PATCH".to_string(), path.clone())))
        .map(|(_, path)| path.clone())
        .collect();
    let mut wrong = Vec::new();
    for template in paths {
        let path = concrete(&template);
        let response = server.client.patch(format!("{}{path}", server.origin)).send().await.expect("request sent");
        if response.status().as_u16() != 405 {
            wrong.push(format!("PATCH {path}: {}", response.status()));
        }
    }
    assert!(wrong.is_empty(), "expected 405:\n{}", wrong.join("\n"));
}
