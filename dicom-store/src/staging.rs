//! Staging files: where an incoming object is written as its bytes arrive, before it is hashed,
//! parsed, put in the object store and indexed. Nothing here is ever acknowledged.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A directory of in-flight objects. Leftovers from a crash are removed at open.
#[derive(Clone, Debug)]
pub struct StagingArea {
    dir: PathBuf,
}

impl StagingArea {
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<StagingArea> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(StagingArea { dir })
    }

    /// A new, empty staging file.
    pub fn create(&self) -> std::io::Result<StagedWriter> {
        let file = tempfile::Builder::new().prefix("incoming-").suffix(".dcm").tempfile_in(&self.dir)?;
        Ok(StagedWriter { file: std::io::BufWriter::with_capacity(256 * 1024, file), size: 0 })
    }
}

/// Writes an incoming object to its staging file. It does not hash: the receive loop stays a
/// plain copy, and the archive hashes the complete file while it parses it.
pub struct StagedWriter {
    file: std::io::BufWriter<tempfile::NamedTempFile>,
    size: u64,
}

impl StagedWriter {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Finishes the file (flushed, not fsynced: the object store makes the durable copy).
    pub fn finish(self) -> std::io::Result<StagedFile> {
        let file = self.file.into_inner().map_err(|e| e.into_error())?;
        Ok(StagedFile { file, size: self.size })
    }
}

impl Write for StagedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(buf)?;
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A complete staged object; removed when dropped.
pub struct StagedFile {
    file: tempfile::NamedTempFile,
    pub size: u64,
}

impl StagedFile {
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The lower-case hex SHA-256 of the staged bytes, computed on a blocking thread.
    pub(crate) fn start_hash(&self) -> tokio::task::JoinHandle<std::io::Result<String>> {
        let path = self.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
            Ok(hex::encode(hasher.finalize()))
        })
    }

    /// Writes the staged bytes to disk (fdatasync) on a blocking thread. Started while the file
    /// is parsed, it overlaps the disk write with the parse: the local object store links this
    /// very inode into place, so its own fsync then has little left to do.
    pub(crate) fn start_writeback(&self) -> tokio::task::JoinHandle<()> {
        let file = self.file.as_file().try_clone();
        tokio::task::spawn_blocking(move || {
            if let Ok(file) = file {
                let _ = file.sync_data();
            }
        })
    }
}
