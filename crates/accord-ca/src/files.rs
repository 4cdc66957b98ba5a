//! Writing and reading key files with owner-only permissions.
//!
//! Files are created with `create_new` and their final mode in the same
//! `open(2)` call, so a key is never visible to others for an instant and an
//! existing file is never replaced. Private keys are read through the opened
//! handle and their mode checked on that same handle, so the file checked is
//! the file read.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;

use crate::CaError;

/// Mode of private key files.
pub(crate) const PRIVATE_MODE: u32 = 0o600;
/// Mode of certificates and public keys.
pub(crate) const PUBLIC_MODE: u32 = 0o644;
/// Mode of a keys directory this crate creates.
pub(crate) const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) with mode 0700; an existing directory is left as it is.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), CaError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(CaError::io(
                "use as the keys directory",
                dir,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "it exists and is not a directory",
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(CaError::io("inspect", dir, e)),
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| CaError::io("create directory", dir, e))
}

/// Writes a new file with `mode`; fails with [`CaError::FileExists`] if it exists.
///
/// A partly written file is removed again, so a failure leaves nothing behind.
pub(crate) fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                CaError::FileExists {
                    path: path.to_path_buf(),
                }
            } else {
                CaError::io("create", path, e)
            }
        })?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        // Best effort: the write error is the one worth reporting.
        let _ = fs::remove_file(path);
        return Err(CaError::io("write", path, e));
    }
    Ok(())
}

/// Whether something (file, directory, dangling symlink) exists at `path`.
pub(crate) fn exists(path: &Path) -> Result<bool, CaError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CaError::io("inspect", path, e)),
    }
}

/// Opens a regular file for reading; `NotFound` is passed through for the caller to word.
fn open_regular(path: &Path) -> Result<(File, u32), OpenError> {
    let file = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            OpenError::NotFound
        } else {
            OpenError::Other(CaError::io("open", path, e))
        }
    })?;
    let meta = file
        .metadata()
        .map_err(|e| OpenError::Other(CaError::io("inspect", path, e)))?;
    if !meta.is_file() {
        return Err(OpenError::Other(CaError::NotAFile {
            path: path.to_path_buf(),
        }));
    }
    Ok((file, meta.permissions().mode() & 0o7777))
}

pub(crate) enum OpenError {
    NotFound,
    Other(CaError),
}

impl OpenError {
    /// Turns `NotFound` into an I/O error naming the path.
    pub(crate) fn into_ca_error(self, path: &Path) -> CaError {
        match self {
            OpenError::NotFound => CaError::io(
                "open",
                path,
                io::Error::new(io::ErrorKind::NotFound, "no such file"),
            ),
            OpenError::Other(e) => e,
        }
    }
}

/// Reads a private key file after checking that only its owner can access it.
pub(crate) fn read_private(path: &Path) -> Result<Zeroizing<String>, OpenError> {
    let (mut file, mode) = open_regular(path)?;
    if mode & 0o077 != 0 {
        return Err(OpenError::Other(CaError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        }));
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text)
        .map_err(|e| OpenError::Other(CaError::io("read", path, e)))?;
    Ok(text)
}

/// Reads a certificate or public key file.
pub(crate) fn read_public(path: &Path) -> Result<String, OpenError> {
    let (mut file, _) = open_regular(path)?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| OpenError::Other(CaError::io("read", path, e)))?;
    Ok(text)
}
