//! The default object store: files under a directory, each carrying its SHA-256 as the
//! `user.tessera.sha256` extended attribute (or, on a filesystem without user xattrs, in a
//! `.sha256` sidecar), put in place by link-or-copy to a temp name + fsync + rename + directory
//! fsync, so a crash leaves either the old object or the new one, never one without its checksum.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rustix::fs::XattrFlags;
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use super::{ObjectBytes, ObjectHead, ObjectKey, ObjectStore, ObjectStoreError, RestoreState};

/// The extended attribute holding an object's lower-case hex SHA-256.
const CHECKSUM_XATTR: &str = "user.tessera.sha256";

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

/// True for the errors of a filesystem (or mount) without user extended attributes.
fn xattrs_unsupported(error: Errno) -> bool {
    error == Errno::NOTSUP || error == Errno::OPNOTSUPP || error == Errno::PERM
}

/// Puts `source`'s bytes at `target` with their checksum, durably. The bytes are hard-linked to
/// a temp name beside the target when both are on one filesystem (the staging area usually is),
/// copied otherwise; the checksum goes on the same inode as an xattr, or first into a durable
/// sidecar; then the inode is fsynced, renamed over the target and the directory fsynced.
fn put_durably(source: &Path, target: &Path, sha256: &str) -> Result<(), ObjectStoreError> {
    let dir = target.parent().expect("object paths have a parent");
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let builder = {
        let mut builder = tempfile::Builder::new();
        builder.prefix(".incoming-");
        builder
    };
    let temp = match builder.make_in(dir, |path| std::fs::hard_link(source, path)) {
        Ok(linked) => linked,
        Err(_) => builder
            .make_in(dir, |path| std::fs::copy(source, path).map(drop).inspect_err(|_| drop(std::fs::remove_file(path))))
            .map_err(|e| io_error(target, e))?,
    };
    let file = File::open(temp.path()).map_err(|e| io_error(target, e))?;
    match rustix::fs::fsetxattr(&file, CHECKSUM_XATTR, sha256.as_bytes(), XattrFlags::empty()) {
        Ok(()) => {}
        Err(e) if xattrs_unsupported(e) => write_sidecar(sha256, &sidecar_of(target))?,
        Err(e) => return Err(io_error(target, e.into())),
    }
    commit(temp, &file, target)
}

/// Writes a sidecar checksum durably.
fn write_sidecar(sha256: &str, target: &Path) -> Result<(), ObjectStoreError> {
    let dir = target.parent().expect("object paths have a parent");
    let mut temp = tempfile::Builder::new().prefix(".incoming-").tempfile_in(dir).map_err(|e| io_error(dir, e))?;
    std::io::Write::write_all(temp.as_file_mut(), sha256.as_bytes()).map_err(|e| io_error(target, e))?;
    let file = temp.as_file().try_clone().map_err(|e| io_error(target, e))?;
    commit(temp, &file, target)
}

/// Makes a complete temp file (`file` is its inode) the durable `target`, in the same directory:
/// fsync, rename over the target, directory fsync.
fn commit<F>(temp: tempfile::NamedTempFile<F>, file: &File, target: &Path) -> Result<(), ObjectStoreError> {
    let dir = target.parent().expect("object paths have a parent");
    file.sync_all().map_err(|e| io_error(target, e))?;
    temp.persist(target).map_err(|e| io_error(target, e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, e))
}

/// The checksum the object open as `file` (at `path`) was stored with: its xattr, else its
/// sidecar. None when it has neither (it was copied without its xattrs).
fn stored_checksum(path: &Path, file: &File) -> Result<Option<String>, ObjectStoreError> {
    let mut buf = [0u8; 128];
    match rustix::fs::fgetxattr(file, CHECKSUM_XATTR, &mut buf[..]) {
        Ok(len) => return Ok(Some(String::from_utf8_lossy(&buf[..len]).trim().to_string())),
        Err(e) if e == Errno::NODATA || xattrs_unsupported(e) => {}
        Err(e) => return Err(io_error(path, e.into())),
    }
    match std::fs::read_to_string(sidecar_of(path)) {
        Ok(sha) => Ok(Some(sha.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

/// The object file at `path`, or None when there is none.
fn open_object(path: &Path) -> Result<Option<File>, ObjectStoreError> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

#[async_trait]
impl ObjectStore for LocalObjectStore {
    async fn put_file(&self, key: &ObjectKey, source: &Path, _size: u64, sha256: &str) -> Result<(), ObjectStoreError> {
        let target = self.path_of(key);
        let source = source.to_path_buf();
        let sha256 = sha256.to_string();
        tokio::task::spawn_blocking(move || put_durably(&source, &target, &sha256))
            .await
            .map_err(|e| ObjectStoreError::Unavailable(e.to_string()))?
    }

    async fn get(&self, key: &ObjectKey) -> Result<ObjectBytes, ObjectStoreError> {
        let path = self.path_of(key);
        let key = key.clone();
        tokio::task::spawn_blocking(move || {
            let Some(mut file) = open_object(&path)? else { return Err(ObjectStoreError::NotFound(key)) };
            let expected = stored_checksum(&path, &file)?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|e| io_error(&path, e))?;
            let actual = hex::encode(Sha256::digest(&bytes));
            match expected {
                Some(expected) if expected != actual => return Err(ObjectStoreError::Integrity { key, expected, actual }),
                Some(_) => {}
                // Copied by a tool that drops xattrs (a backup without `rsync -X`): the archive
                // still checks the bytes against the index's SHA-256 before serving them.
                None => tracing::warn!(%key, "object has no stored checksum (xattrs lost in a copy?)"),
            }
            Ok(ObjectBytes { bytes: Bytes::from(bytes), sha256: actual })
        })
        .await
        .map_err(|e| ObjectStoreError::Unavailable(e.to_string()))?
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectHead>, ObjectStoreError> {
        let path = self.path_of(key);
        tokio::task::spawn_blocking(move || {
            let Some(file) = open_object(&path)? else { return Ok(None) };
            let size = file.metadata().map_err(|e| io_error(&path, e))?.len();
            let sha256 = stored_checksum(&path, &file)?.unwrap_or_default();
            Ok(Some(ObjectHead { size, sha256, storage_class: "STANDARD".into() }))
        })
        .await
        .map_err(|e| ObjectStoreError::Unavailable(e.to_string()))?
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

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(dir: &Path, bytes: &[u8]) -> (PathBuf, String) {
        let path = dir.join("staged.dcm");
        std::fs::write(&path, bytes).unwrap();
        (path, hex::encode(Sha256::digest(bytes)))
    }

    #[tokio::test]
    async fn an_object_comes_back_verified_and_a_changed_byte_is_an_integrity_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjectStore::open(dir.path().join("objects")).unwrap();
        let key = ObjectKey::new("dicom/P/1.2/1.2.3/1.2.3.4.dcm");
        let (source, sha256) = staged(dir.path(), b"first version of the object");
        store.put_file(&key, &source, 0, &sha256).await.unwrap();
        std::fs::remove_file(&source).unwrap();
        assert_eq!(store.get(&key).await.unwrap().bytes.as_ref(), b"first version of the object");
        let head = store.head(&key).await.unwrap().unwrap();
        assert_eq!((head.size, head.sha256.as_str()), (27, sha256.as_str()));

        // A replacement is renamed over the first; the checksum follows the bytes.
        let (source, sha256) = staged(dir.path(), b"second version");
        store.put_file(&key, &source, 0, &sha256).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap().bytes.as_ref(), b"second version");
        assert_eq!(store.head(&key).await.unwrap().unwrap().sha256, sha256);

        // A copy that lost its xattrs is still served (the archive checks it against its index).
        let path = dir.path().join("objects").join(key.as_str());
        rustix::fs::removexattr(&path, CHECKSUM_XATTR).unwrap();
        assert_eq!(store.get(&key).await.unwrap().bytes.as_ref(), b"second version");
        assert_eq!(store.head(&key).await.unwrap().unwrap().sha256, "");
        rustix::fs::setxattr(&path, CHECKSUM_XATTR, sha256.as_bytes(), XattrFlags::empty()).unwrap();

        // Rewriting the file in place (same inode, same checksum attribute) is caught.
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::io::Write::write_all(&mut file, b"S").unwrap();
        drop(file);
        assert!(matches!(store.get(&key).await, Err(ObjectStoreError::Integrity { .. })));
        // No temp file is left beside the object.
        let names: Vec<String> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(names.iter().all(|n| !n.starts_with(".incoming-")), "{names:?}");
        assert_eq!(store.get(&ObjectKey::new("dicom/none.dcm")).await.unwrap_err().to_string(), ObjectStoreError::NotFound(ObjectKey::new("dicom/none.dcm")).to_string());
    }

    #[tokio::test]
    async fn a_source_on_another_filesystem_is_copied() {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            eprintln!("skipped: no /dev/shm for a second filesystem");
            return;
        }
        let elsewhere = tempfile::tempdir_in(shm).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = LocalObjectStore::open(dir.path().join("objects")).unwrap();
        let key = ObjectKey::new("dicom/P/a.dcm");
        let (source, sha256) = staged(elsewhere.path(), b"bytes from another filesystem");
        store.put_file(&key, &source, 0, &sha256).await.unwrap();
        assert!(source.exists(), "the source stays the caller's");
        assert_eq!(store.get(&key).await.unwrap().bytes.as_ref(), b"bytes from another filesystem");
    }
}
