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

/// Marks the store's root as the top of unrelated hierarchies (`chattr +T`), so ext4
/// spreads the video folders across block groups as it does home folders, instead of
/// packing each into its parent's group. Files are created in their folder's group, and
/// on ext4 without a journal every new inode is found by scanning past the inodes freed
/// there in the last minutes: packed folders made a ring change pay for the deletes of
/// the one before. Best effort: other file systems ignore or refuse the flag.
pub fn spread_folders(root: &Path) {
    let marked = std::fs::File::open(root).and_then(|dir| {
        let flags = rustix::fs::ioctl_getflags(&dir)?;
        if !flags.contains(rustix::fs::IFlags::TOPDIR) {
            rustix::fs::ioctl_setflags(&dir, flags | rustix::fs::IFlags::TOPDIR)?;
        }
        Ok(())
    });
    if let Err(e) = marked {
        tracing::debug!(root = %root.display(), error = %e, "folders not spread (the file system has no top-directory flag)");
    }
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

    #[test]
    fn the_root_is_marked_where_the_file_system_has_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        std::fs::create_dir(&root).unwrap();
        spread_folders(&root);
        spread_folders(&root); // again: already marked, nothing changes
        let probe = dir.path().join("probe");
        std::fs::create_dir(&probe).unwrap();
        let probe = std::fs::File::open(&probe).unwrap();
        let supported = rustix::fs::ioctl_getflags(&probe).is_ok_and(|flags| {
            rustix::fs::ioctl_setflags(&probe, flags | rustix::fs::IFlags::TOPDIR).is_ok()
        });
        let flags = std::fs::File::open(&root)
            .ok()
            .and_then(|f| rustix::fs::ioctl_getflags(&f).ok());
        assert_eq!(
            flags.is_some_and(|f| f.contains(rustix::fs::IFlags::TOPDIR)),
            supported
        );
    }
}
