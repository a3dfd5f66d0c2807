//! The default object store: files under a directory, each with a `.sha256` sidecar, written
//! by temp file + fsync + rename so a crash leaves either the old object or the new one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{ObjectHead, ObjectKey, ObjectStore, ObjectStoreError, RestoreState};

/// Objects as files under `root`, at their key's path.
#[derive(Clone, Debug)]
pub struct LocalObjectStore {
    root: PathBuf,
}

impl LocalObjectStore {
    /// A store rooted at `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> Result<LocalObjectStore, ObjectStoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| io_error(&root, e))?;
        Ok(LocalObjectStore { root })
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }
}

fn sidecar_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

fn io_error(path: &Path, error: std::io::Error) -> ObjectStoreError {
    // ENOSPC and EDQUOT are a full disk: the sender may retry later or elsewhere.
    match error.raw_os_error() {
        Some(28) | Some(122) => ObjectStoreError::OutOfResources(format!("{}: {error}", path.display())),
        _ => ObjectStoreError::Unavailable(format!("{}: {error}", path.display())),
    }
}

/// Copies `source` to `target` durably: a temp file beside the target, fsynced, renamed over it,
/// and the directory fsynced.
fn write_durably(source: Option<&Path>, contents: &[u8], target: &Path) -> Result<(), ObjectStoreError> {
    let dir = target.parent().expect("object paths have a parent");
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let mut temp = tempfile::Builder::new().prefix(".incoming-").tempfile_in(dir).map_err(|e| io_error(dir, e))?;
    match source {
        Some(source) => {
            let mut from = std::fs::File::open(source).map_err(|e| io_error(source, e))?;
            std::io::copy(&mut from, temp.as_file_mut()).map_err(|e| io_error(target, e))?;
        }
        None => std::io::Write::write_all(temp.as_file_mut(), contents).map_err(|e| io_error(target, e))?,
    }
    temp.as_file().sync_all().map_err(|e| io_error(target, e))?;
    temp.persist(target).map_err(|e| io_error(target, e.error))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, e))
}

#[async_trait]
impl ObjectStore for LocalObjectStore {
    async fn put_file(&self, key: &ObjectKey, source: &Path, _size: u64, sha256: &str) -> Result<(), ObjectStoreError> {
        let target = self.path_of(key);
        let source = source.to_path_buf();
        let sha256 = sha256.to_string();
        tokio::task::spawn_blocking(move || {
            // The sidecar first: an object file never exists without its checksum.
            write_durably(None, sha256.as_bytes(), &sidecar_of(&target))?;
            write_durably(Some(&source), &[], &target)
        })
        .await
        .map_err(|e| ObjectStoreError::Unavailable(e.to_string()))?
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, ObjectStoreError> {
        let path = self.path_of(key);
        let key = key.clone();
        tokio::task::spawn_blocking(move || {
            let expected = match std::fs::read_to_string(sidecar_of(&path)) {
                Ok(sha) => sha.trim().to_string(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ObjectStoreError::NotFound(key)),
                Err(e) => return Err(io_error(&path, e)),
            };
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ObjectStoreError::NotFound(key)),
                Err(e) => return Err(io_error(&path, e)),
            };
            let actual = hex::encode(Sha256::digest(&bytes));
            if actual != expected {
                return Err(ObjectStoreError::Integrity { key, expected, actual });
            }
            Ok(Bytes::from(bytes))
        })
        .await
        .map_err(|e| ObjectStoreError::Unavailable(e.to_string()))?
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectHead>, ObjectStoreError> {
        let path = self.path_of(key);
        let size = match tokio::fs::metadata(&path).await {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, e)),
        };
        let sha256 = tokio::fs::read_to_string(sidecar_of(&path)).await.map_err(|e| io_error(&path, e))?;
        Ok(Some(ObjectHead { size, sha256: sha256.trim().to_string(), storage_class: "STANDARD".into() }))
    }

    async fn presigned_get(&self, _key: &ObjectKey, _expires_in: Duration) -> Result<Option<String>, ObjectStoreError> {
        Ok(None)
    }

    async fn request_restore(&self, _key: &ObjectKey, _days: u32) -> Result<RestoreState, ObjectStoreError> {
        Ok(RestoreState::Available)
    }

    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }
}
