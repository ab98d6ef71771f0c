//! Validation of storage keys (`{videoId}/{filename}`) and of their two parts, before any
//! of them touches a file system.
//!
//! Rules, the same for a video id and a file name:
//! - not empty, at most 255 bytes (a file name limit on common file systems);
//! - no `/`, `\`, NUL or other control character;
//! - not starting with `.`: this refuses `.` and `..`, and reserves hidden names for the
//!   node's own temp and checksum files, so they can never be read or listed as keys.
//!
//! A key is exactly one `/` between two valid parts: sub-folders are not supported.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("empty {0}")]
    Empty(Part),
    #[error("{0} longer than 255 bytes")]
    TooLong(Part),
    #[error("{0} starts with '.'")]
    Hidden(Part),
    #[error("{0} contains a forbidden character ({1:?})")]
    ForbiddenChar(Part, char),
    #[error("key must be \"videoId/filename\" with exactly one '/'")]
    Shape,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    VideoId,
    FileName,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::VideoId => "video id",
            Part::FileName => "file name",
        })
    }
}

pub const MAX_PART_BYTES: usize = 255;

fn validate_part(part: Part, value: &str) -> Result<(), KeyError> {
    if value.is_empty() {
        return Err(KeyError::Empty(part));
    }
    if value.len() > MAX_PART_BYTES {
        return Err(KeyError::TooLong(part));
    }
    if value.starts_with('.') {
        return Err(KeyError::Hidden(part));
    }
    if let Some(c) = value
        .chars()
        .find(|c| *c == '/' || *c == '\\' || c.is_control())
    {
        return Err(KeyError::ForbiddenChar(part, c));
    }
    Ok(())
}

pub fn validate_video_id(id: &str) -> Result<(), KeyError> {
    validate_part(Part::VideoId, id)
}

pub fn validate_file_name(name: &str) -> Result<(), KeyError> {
    validate_part(Part::FileName, name)
}

/// Splits a key into (videoId, filename) once both parts are valid.
pub fn split_key(key: &str) -> Result<(&str, &str), KeyError> {
    let (video_id, file_name) = key.split_once('/').ok_or(KeyError::Shape)?;
    if file_name.contains('/') {
        return Err(KeyError::Shape);
    }
    validate_video_id(video_id)?;
    validate_file_name(file_name)?;
    Ok((video_id, file_name))
}

pub fn make_key(video_id: &str, file_name: &str) -> String {
    format!("{video_id}/{file_name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for key in [
            "v1/manifest.mpd",
            "big buck bunny/chunk-0-00001.m4s",
            "vidéo «1»/init-0.m4s",
            "a/b",
            "x..y/z..w",
        ] {
            assert!(split_key(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn refuses_everything_that_could_escape_or_hide() {
        for key in [
            "",
            "/",
            "v1",
            "v1/",
            "/manifest.mpd",
            "../etc/passwd",
            "v1/..",
            "v1/.",
            "./x",
            "v1/../../etc/passwd",
            "/etc/passwd",
            "v1/sub/file",
            "v1\\..\\x/y",
            "v1/a\\b",
            "v1/a\0b",
            "v1/a\nb",
            "v1/.tmp-123",
            ".hidden/x",
        ] {
            assert!(split_key(key).is_err(), "{key:?} accepted");
        }
        let long = "a".repeat(256);
        assert_eq!(
            split_key(&format!("{long}/x")),
            Err(KeyError::TooLong(Part::VideoId))
        );
        assert!(split_key(&format!("{}/x", "a".repeat(255))).is_ok());
    }
}
