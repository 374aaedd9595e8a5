//! File handling shared by the master key and the users files: reads bounded
//! by size, the permission checks pgagroal applies to `~/.pgagroal` and
//! `master.key`, and writes that go through a temporary file in the same
//! directory so a reader sees either the old file or the new one, never half.

use super::error::VaultError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Group and other permission bits.
const GROUP_OTHER: u32 = 0o077;

/// Read at most `limit` bytes of `path`; a longer file is an error.
pub fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, VaultError> {
    let file = File::open(path).map_err(|e| VaultError::io(path, "open", e))?;
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(&mut bytes).map_err(|e| VaultError::io(path, "read", e))?;
    if bytes.len() > limit {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(bytes.len() as u64);
        return Err(VaultError::FileTooLarge { path: path.to_path_buf(), size, limit });
    }
    Ok(bytes)
}

/// The permission bits (`st_mode & 07777`).
pub fn mode_of(metadata: &std::fs::Metadata) -> u32 {
    metadata.mode() & 0o7777
}

/// `~/.pgagroal` must be a directory the owner can use and nobody else can.
pub fn check_key_dir(path: &Path) -> Result<(), VaultError> {
    let metadata = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VaultError::DirMissing { path: path.to_path_buf() });
        }
        Err(e) => return Err(VaultError::io(path, "inspect", e)),
    };
    if !metadata.is_dir() {
        return Err(VaultError::NotADirectory { path: path.to_path_buf() });
    }
    let mode = mode_of(&metadata);
    if mode & 0o700 == 0 || mode & GROUP_OTHER != 0 {
        return Err(VaultError::DirMode { path: path.to_path_buf(), mode });
    }
    Ok(())
}

/// `master.key` must be a regular file the owner can read and nobody else can.
pub fn check_key_file(path: &Path) -> Result<(), VaultError> {
    let metadata = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VaultError::KeyMissing { path: path.to_path_buf() });
        }
        Err(e) => return Err(VaultError::io(path, "inspect", e)),
    };
    if !metadata.is_file() {
        return Err(VaultError::NotARegularFile { path: path.to_path_buf() });
    }
    let mode = mode_of(&metadata);
    if mode & 0o600 == 0 || mode & GROUP_OTHER != 0 {
        return Err(VaultError::KeyMode { path: path.to_path_buf(), mode });
    }
    Ok(())
}

/// A temporary file next to `target`, created exclusively with `mode`.
struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    fn create(target: &Path, mode: u32) -> Result<TempFile, VaultError> {
        let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let path = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| VaultError::io(target, "write", e))?;
        let temp = TempFile { path, file: Some(file) };
        // The umask may have removed bits; set exactly what was asked for.
        std::fs::set_permissions(&temp.path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| VaultError::io(&temp.path, "set the mode of", e))?;
        Ok(temp)
    }

    fn write_synced(&mut self, contents: &[u8]) -> Result<(), VaultError> {
        let Some(mut file) = self.file.take() else { return Ok(()) };
        file.write_all(contents).map_err(|e| VaultError::io(&self.path, "write", e))?;
        file.sync_all().map_err(|e| VaultError::io(&self.path, "flush", e))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Still here only if the write or the rename failed.
        let _ = std::fs::remove_file(&self.path);
    }
}

fn sync_dir(target: &Path) {
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Replace `path` with `contents`. An existing file keeps its permission
/// bits; a new one gets `new_mode`. A symbolic link is followed, so the file
/// it points at is replaced and the link stays.
pub fn replace_file(path: &Path, contents: &[u8], new_mode: u32) -> Result<(), VaultError> {
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(path).map_err(|e| VaultError::io(path, "resolve", e))?
        }
        _ => path.to_path_buf(),
    };
    let mode = match std::fs::metadata(&target) {
        Ok(m) => mode_of(&m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_mode,
        Err(e) => return Err(VaultError::io(&target, "inspect", e)),
    };
    let mut temp = TempFile::create(&target, mode)?;
    temp.write_synced(contents)?;
    std::fs::rename(&temp.path, &target).map_err(|e| VaultError::io(&target, "replace", e))?;
    sync_dir(&target);
    Ok(())
}

/// Create `path` with `contents` and `mode`, failing if it exists, even if
/// it appears between the check and the write.
pub fn create_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), VaultError> {
    let mut temp = TempFile::create(path, mode)?;
    temp.write_synced(contents)?;
    // link(2) does not replace an existing name, unlike rename(2).
    std::fs::hard_link(&temp.path, path).map_err(|e| VaultError::io(path, "create", e))?;
    sync_dir(path);
    Ok(())
}
