//! Disk space: what the file system holding the store has free, and which I/O errors
//! mean "full", so a full disk is answered RESOURCE_EXHAUSTED rather than a failure.

use std::io;
use std::path::Path;

use rustix::io::Errno;

/// Space on the file system holding a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes an unprivileged writer may still use (`f_bavail`): the blocks reserved for
    /// root are left out, so the figure errs on the safe side.
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// `statvfs` of the file system holding `path`.
pub fn disk_space(path: &Path) -> io::Result<DiskSpace> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(DiskSpace {
        free_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
        total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
    })
}

/// Whether an I/O error means the disk (or the quota) is full.
pub fn is_disk_full(error: &io::Error) -> bool {
    let full = [Errno::NOSPC, Errno::DQUOT].map(|e| Some(e.raw_os_error()));
    full.contains(&error.raw_os_error())
}

/// Whether a rename failed because source and target are on different file systems.
pub fn is_cross_device(error: &io::Error) -> bool {
    error.raw_os_error() == Some(Errno::XDEV.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_space_of_a_real_folder() {
        let dir = tempfile::tempdir().unwrap();
        let space = disk_space(dir.path()).unwrap();
        assert!(space.total_bytes > 0 && space.free_bytes <= space.total_bytes);
        assert!(disk_space(&dir.path().join("absent")).is_err());
    }

    #[test]
    fn classifies_full_disks() {
        assert!(is_disk_full(&io::Error::from_raw_os_error(
            Errno::NOSPC.raw_os_error()
        )));
        assert!(is_disk_full(&io::Error::from_raw_os_error(
            Errno::DQUOT.raw_os_error()
        )));
        assert!(!is_disk_full(&io::Error::from_raw_os_error(
            Errno::IO.raw_os_error()
        )));
    }
}
