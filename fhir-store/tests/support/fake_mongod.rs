//! A fake `mongod` for tests: a TCP listener inside the test process that speaks just enough of
//! the MongoDB wire protocol (OP_MSG) for the real driver to hand-shake, select it as a server
//! and run a few commands, and that records every command it receives.
//!
//! It is a test double of the protocol, not a database: it stores nothing, answers each command
//! from a fixed script (the `hello` of a standalone server or of a replica-set primary, `ok` for
//! `createIndexes`, `ping` and `endSessions`, an upsert for every upserting `update`, for every
//! `find` the documents the test set, unfiltered), and answers anything else with
//! `CommandNotFound`. It speaks only OP_MSG, the only request opcode the 3.x driver sends (its
//! handshake is an OP_MSG `isMaster` with `helloOk`, never the legacy OP_QUERY); any other
//! opcode is recorded as `<opcode N>` and the connection is closed, so a test sees it instead
//! of the driver timing out for no visible reason.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use mongodb::bson::{doc, Bson, DateTime, Document};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// OP_MSG, the one opcode of every modern request and reply.
const OP_MSG: i32 = 2013;
/// OP_MSG flag: the message carries a CRC-32C checksum after its sections.
const CHECKSUM_PRESENT: u32 = 1;
/// OP_MSG flag: the sender expects no reply (unacknowledged writes).
const MORE_TO_COME: u32 = 1 << 1;
/// The wire header: length, request id, response-to, opcode.
const HEADER_LEN: usize = 16;
/// The largest message the fake accepts (MongoDB's own limit is 48 MB).
const MAX_MESSAGE_LEN: usize = 48_000_000;

/// What the fake answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// A standalone `mongod` of MongoDB 7.0 (no `setName`): no transactions.
    Standalone,
    /// The primary of the replica set `rs0`, with the given wire version (21 is MongoDB 7.0,
    /// 13 is 5.0).
    Primary { max_wire_version: i32 },
    /// Accepts connections and reads every command, but never answers one.
    Silent,
}

/// One command the fake received: its name (the first key) and the whole command document,
/// with any OP_MSG document sequences folded in as arrays, as the server sees them.
#[derive(Debug, Clone)]
pub struct Received {
    pub name: String,
    pub body: Document,
}

/// What the test and the connections share: the log, and what every `find` answers.
#[derive(Default)]
struct Shared {
    log: Mutex<Vec<Received>>,
    found: Mutex<Vec<Document>>,
}

/// A running fake server; stops when dropped.
pub struct FakeMongod {
    address: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl FakeMongod {
    /// Binds a free port on 127.0.0.1 and serves `script` on it.
    pub async fn start(script: Script) -> FakeMongod {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake mongod");
        let address = listener.local_addr().expect("address of the fake mongod");
        let shared = Arc::new(Shared::default());
        let server = tokio::spawn(serve(listener, script, address, shared.clone()));
        FakeMongod { address, shared, server }
    }

    /// A connection string for this server: `mongodb://127.0.0.1:<port>` followed by
    /// `path_and_query` (e.g. `/?directConnection=true`).
    pub fn uri(&self, path_and_query: &str) -> String {
        format!("mongodb://{}{path_and_query}", self.address)
    }

    /// Every command received so far, in arrival order (across all connections).
    pub fn received(&self) -> Vec<Received> {
        self.shared.log.lock().expect("fake mongod log").clone()
    }

    /// The documents of the received commands named `name`, in arrival order.
    pub fn commands(&self, name: &str) -> Vec<Document> {
        self.received().into_iter().filter(|r| r.name == name).map(|r| r.body).collect()
    }

    /// Forgets what was received so far.
    pub fn clear(&self) {
        self.shared.log.lock().expect("fake mongod log").clear();
    }

    /// The documents every later `find` answers with, in one batch (none at first: an empty
    /// database). The fake does not filter, sort or limit them.
    pub fn answer_find_with(&self, documents: Vec<Document>) {
        *self.shared.found.lock().expect("fake mongod documents") = documents;
    }

    /// Stops listening and closes every open connection, like a server that went down.
    pub async fn stop(&mut self) {
        self.server.abort();
        // Dropping the aborted accept loop drops its `JoinSet`, which aborts every connection.
        let _ = (&mut self.server).await;
    }
}

impl Drop for FakeMongod {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn record(shared: &Shared, name: String, body: Document) {
    shared.log.lock().expect("fake mongod log").push(Received { name, body });
}

async fn serve(listener: TcpListener, script: Script, address: SocketAddr, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    let next_connection_id = Arc::new(AtomicI32::new(1));
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        while connections.try_join_next().is_some() {}
        let connection_id = next_connection_id.fetch_add(1, Ordering::Relaxed);
        connections.spawn(connection(stream, script, address, connection_id, shared.clone()));
    }
}

async fn connection(
    mut stream: TcpStream,
    script: Script,
    address: SocketAddr,
    connection_id: i32,
    shared: Arc<Shared>,
) {
    let mut next_request_id = 1_i32;
    loop {
        let message = match read_message(&mut stream).await {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(problem) => return record(&shared, "<unreadable>".into(), doc! { "problem": problem }),
        };
        if message.op_code != OP_MSG {
            return record(&shared, format!("<opcode {}>", message.op_code), Document::new());
        }
        let (flags, command) = match parse_op_msg(&message.body) {
            Ok(parsed) => parsed,
            Err(problem) => return record(&shared, "<unreadable>".into(), doc! { "problem": problem }),
        };
        let name = command.keys().next().cloned().unwrap_or_default();
        let found = shared.found.lock().expect("fake mongod documents").clone();
        let reply = answer(script, address, connection_id, &found, &name, &command);
        record(&shared, name, command);
        let Some(reply) = reply else { continue };
        if flags & MORE_TO_COME != 0 {
            continue;
        }
        let bytes = match op_msg(next_request_id, message.request_id, &reply) {
            Ok(bytes) => bytes,
            Err(problem) => return record(&shared, "<unanswerable>".into(), doc! { "problem": problem }),
        };
        next_request_id = next_request_id.wrapping_add(1);
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// The reply to one command, or None for a server that does not answer.
fn answer(
    script: Script,
    address: SocketAddr,
    connection_id: i32,
    found: &[Document],
    name: &str,
    command: &Document,
) -> Option<Document> {
    let max_wire_version = match script {
        Script::Silent => return None,
        Script::Standalone => 21,
        Script::Primary { max_wire_version } => max_wire_version,
    };
    let reply = match name {
        "hello" | "isMaster" | "ismaster" => {
            // A real server names its writability by the command asked: `hello` gets
            // `isWritablePrimary`, the legacy `isMaster` gets `ismaster`.
            let writable = if name == "hello" { "isWritablePrimary" } else { "ismaster" };
            let mut hello = doc! {
                "helloOk": true,
                "maxBsonObjectSize": 16_777_216,
                "maxMessageSizeBytes": 48_000_000,
                "maxWriteBatchSize": 100_000,
                "localTime": DateTime::now(),
                "logicalSessionTimeoutMinutes": 30,
                "connectionId": connection_id,
                "minWireVersion": 0,
                "maxWireVersion": max_wire_version,
                "readOnly": false,
            };
            hello.insert(writable, true);
            if matches!(script, Script::Primary { .. }) {
                let me = address.to_string();
                hello.insert("hosts", vec![me.clone()]);
                hello.insert("setName", "rs0");
                hello.insert("setVersion", 1);
                hello.insert("secondary", false);
                hello.insert("primary", me.clone());
                hello.insert("me", me);
            }
            hello.insert("ok", 1.0);
            hello
        }
        "ping" | "endSessions" => doc! { "ok": 1.0 },
        "find" => {
            // One batch and a closed cursor: the documents the test put there, whatever the
            // filter, sort or limit (the store's start-up finds the newest version only).
            let collection = command.get_str("find").unwrap_or_default();
            let database = command.get_str("$db").unwrap_or_default();
            let batch: Vec<Bson> = found.iter().cloned().map(Bson::Document).collect();
            doc! { "cursor": { "id": 0_i64, "ns": format!("{database}.{collection}"), "firstBatch": batch }, "ok": 1.0 }
        }
        "createIndexes" => {
            let created = command.get_array("indexes").map_or(0, |indexes| indexes.len());
            let created = i32::try_from(created).unwrap_or(i32::MAX);
            doc! {
                "numIndexesBefore": 1,
                "numIndexesAfter": created.saturating_add(1),
                "createdCollectionAutomatically": false,
                "ok": 1.0,
            }
        }
        "update" => {
            // Every upserting statement inserts (its `_id` is the query's); the others match
            // nothing. Enough for `$setOnInsert` upserts; this is no query engine.
            let mut upserted = Vec::new();
            if let Ok(updates) = command.get_array("updates") {
                for (index, statement) in updates.iter().enumerate() {
                    let Some(statement) = statement.as_document() else { continue };
                    if statement.get_bool("upsert").unwrap_or(false) {
                        let id = statement.get_document("q").ok().and_then(|q| q.get("_id")).cloned();
                        let index = i32::try_from(index).unwrap_or(i32::MAX);
                        upserted.push(Bson::Document(doc! { "index": index, "_id": id.unwrap_or(Bson::Null) }));
                    }
                }
            }
            let n = i32::try_from(upserted.len()).unwrap_or(i32::MAX);
            let mut reply = doc! { "n": n, "nModified": 0 };
            if !upserted.is_empty() {
                reply.insert("upserted", upserted);
            }
            reply.insert("ok", 1.0);
            reply
        }
        other => doc! {
            "ok": 0.0,
            "errmsg": format!("no such command: '{other}'"),
            "code": 59,
            "codeName": "CommandNotFound",
        },
    };
    Some(reply)
}

/// One wire message: its header fields and what follows the header.
struct Message {
    request_id: i32,
    op_code: i32,
    body: Vec<u8>,
}

/// Reads one message; None at a clean end of stream.
async fn read_message(stream: &mut TcpStream) -> Result<Option<Message>, String> {
    let mut header = [0_u8; HEADER_LEN];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("read header: {e}")),
    }
    let field = |at: usize| i32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    let length = usize::try_from(field(0)).map_err(|_| format!("negative message length {}", field(0)))?;
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&length) {
        return Err(format!("message length {length} out of range"));
    }
    let mut body = vec![0_u8; length - HEADER_LEN];
    stream.read_exact(&mut body).await.map_err(|e| format!("read body: {e}"))?;
    Ok(Some(Message { request_id: field(4), op_code: field(12), body }))
}

/// Splits an OP_MSG body into its flags and its command: the kind-0 section's document, with
/// each kind-1 section (a document sequence such as `insert`'s `documents`) added as an array.
fn parse_op_msg(body: &[u8]) -> Result<(u32, Document), String> {
    let mut rest = body;
    let flags = u32::from_le_bytes(take::<4>(&mut rest)?);
    if flags & CHECKSUM_PRESENT != 0 {
        let end = rest.len().checked_sub(4).ok_or("checksum flag without a checksum")?;
        rest = &rest[..end];
    }
    let mut command = None;
    let mut sequences = Vec::new();
    while !rest.is_empty() {
        let [kind] = take::<1>(&mut rest)?;
        match kind {
            0 => command = Some(take_document(&mut rest)?),
            1 => {
                let size =
                    usize::try_from(i32::from_le_bytes(take::<4>(&mut rest)?)).map_err(|_| "negative sequence size")?;
                let mut section = rest
                    .get(..size.checked_sub(4).ok_or("sequence size too small")?)
                    .ok_or("sequence overruns message")?;
                rest = &rest[section.len()..];
                let nul = section.iter().position(|b| *b == 0).ok_or("unterminated sequence identifier")?;
                let identifier =
                    String::from_utf8(section[..nul].to_vec()).map_err(|_| "sequence identifier not utf-8")?;
                section = &section[nul + 1..];
                let mut documents = Vec::new();
                while !section.is_empty() {
                    documents.push(Bson::Document(take_document(&mut section)?));
                }
                sequences.push((identifier, documents));
            }
            other => return Err(format!("unknown section kind {other}")),
        }
    }
    let mut command = command.ok_or("OP_MSG without a kind-0 section")?;
    for (identifier, documents) in sequences {
        command.insert(identifier, documents);
    }
    Ok((flags, command))
}

fn take<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], String> {
    let bytes: [u8; N] = rest.get(..N).and_then(|b| b.try_into().ok()).ok_or("message ends early")?;
    *rest = &rest[N..];
    Ok(bytes)
}

fn take_document(rest: &mut &[u8]) -> Result<Document, String> {
    let length = rest.get(..4).ok_or("document length missing")?;
    let length = i32::from_le_bytes([length[0], length[1], length[2], length[3]]);
    let length = usize::try_from(length).map_err(|_| "negative document length")?;
    let bytes = rest.get(..length).ok_or("document overruns message")?;
    let document = Document::from_reader(bytes).map_err(|e| format!("invalid BSON: {e}"))?;
    *rest = &rest[length..];
    Ok(document)
}

/// A complete OP_MSG reply carrying `document` in one kind-0 section.
fn op_msg(request_id: i32, response_to: i32, document: &Document) -> Result<Vec<u8>, String> {
    let mut section = Vec::new();
    document.to_writer(&mut section).map_err(|e| format!("encode reply: {e}"))?;
    let length = HEADER_LEN + 4 + 1 + section.len();
    let length = i32::try_from(length).map_err(|_| "reply too long")?;
    let mut bytes = Vec::with_capacity(section.len() + 32);
    for field in [length, request_id, response_to, OP_MSG] {
        bytes.extend_from_slice(&field.to_le_bytes());
    }
    bytes.extend_from_slice(&0_u32.to_le_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&section);
    Ok(bytes)
}
