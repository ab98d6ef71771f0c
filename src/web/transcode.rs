//! ffprobe and ffmpeg, run as child processes (tokio::process), never on async threads.
//! The DASH parameters are the original Tritontube's.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("{0} was not found on PATH: install ffmpeg (scripts/setup.sh does)")]
    Missing(&'static str),
    #[error("not a video: {0}")]
    NotAVideo(String),
    #[error("ffmpeg failed: {0}")]
    Failed(String),
    #[error("running {tool}: {source}")]
    Io {
        tool: &'static str,
        source: std::io::Error,
    },
}

/// What ffprobe says of an upload.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub duration_seconds: f64,
    pub has_audio: bool,
}

/// Checks at startup that both tools run, so a missing ffmpeg is a clear error up front.
pub async fn check_tools() -> Result<(), TranscodeError> {
    for tool in ["ffmpeg", "ffprobe"] {
        let status = Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        match status {
            Ok(s) if s.success() => {}
            Ok(_) | Err(_) => {
                return Err(TranscodeError::Missing(if tool == "ffmpeg" {
                    "ffmpeg"
                } else {
                    "ffprobe"
                }));
            }
        }
    }
    Ok(())
}

fn spawn_error(tool: &'static str) -> impl FnOnce(std::io::Error) -> TranscodeError {
    move |source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            TranscodeError::Missing(tool)
        } else {
            TranscodeError::Io { tool, source }
        }
    }
}

/// Refuses anything without a decodable video stream.
pub async fn probe(input: &Path) -> Result<Probe, TranscodeError> {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type:format=duration",
        ])
        .args(["-of", "json"])
        .arg(input)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(spawn_error("ffprobe"))?;
    if !output.status.success() {
        let reason = String::from_utf8_lossy(&output.stderr);
        let reason = reason.lines().last().unwrap_or("unreadable file").trim();
        return Err(TranscodeError::NotAVideo(format!(
            "the file could not be read as a video ({})",
            reason.rsplit(": ").next().unwrap_or(reason)
        )));
    }
    let parsed: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| TranscodeError::NotAVideo(format!("unreadable probe output: {e}")))?;
    let streams = parsed["streams"].as_array().cloned().unwrap_or_default();
    let has = |kind: &str| streams.iter().any(|s| s["codec_type"] == kind);
    if !has("video") {
        return Err(TranscodeError::NotAVideo(
            "the file has no video stream".to_string(),
        ));
    }
    let duration_seconds = parsed["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
        .ok_or_else(|| TranscodeError::NotAVideo("the video has no duration".to_string()))?;
    Ok(Probe {
        duration_seconds,
        has_audio: has("audio"),
    })
}

/// The original's ffmpeg command: H.264 3000k + AAC 128k, 4 s segments, templated names.
pub fn dash_command(input: &Path, out_dir: &Path, has_audio: bool) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(input)
        .args(["-map", "0:v:0"]);
    if has_audio {
        cmd.args(["-map", "0:a:0", "-c:a", "aac", "-b:a", "128k"]);
    }
    cmd.args([
        "-c:v",
        "libx264",
        "-b:v",
        "3000k",
        "-bf",
        "1",
        "-keyint_min",
        "120",
        "-g",
        "120",
        "-sc_threshold",
        "0",
        "-f",
        "dash",
        "-use_timeline",
        "1",
        "-use_template",
        "1",
        "-init_seg_name",
        "init-$RepresentationID$.m4s",
        "-media_seg_name",
        "chunk-$RepresentationID$-$Number%05d$.m4s",
        "-seg_duration",
        "4",
    ])
    .arg(out_dir.join("manifest.mpd"))
    .current_dir(out_dir)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    cmd
}

/// How often the output folder is looked at for finished segments while ffmpeg runs.
const SCAN_INTERVAL: Duration = Duration::from_millis(200);

/// Transcodes `input` into DASH files in `out_dir`, sending each file's path on `ready` as
/// soon as ffmpeg has finished it, so storing overlaps encoding. A segment is finished
/// once the next segment of its representation exists (ffmpeg writes them in order); the
/// rest, the init segments and the manifest (always last) follow when ffmpeg exits.
pub async fn to_dash(
    input: &Path,
    out_dir: &Path,
    probe: &Probe,
    ready: mpsc::Sender<PathBuf>,
) -> Result<(), TranscodeError> {
    let mut child = dash_command(input, out_dir, probe.has_audio)
        .spawn()
        .map_err(spawn_error("ffmpeg"))?;
    let stderr = child.stderr.take();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.read_to_string(&mut text).await;
        }
        text
    });
    let mut sent = HashSet::new();
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(|source| TranscodeError::Io { tool: "ffmpeg", source })?,
            _ = tokio::time::sleep(SCAN_INTERVAL) => {
                for path in finished_segments(out_dir).await? {
                    if sent.insert(path.clone()) && ready.send(path).await.is_err() {
                        // The receiver gave up (a store failed): stop encoding.
                        return Ok(());
                    }
                }
            }
        }
    };
    if !status.success() {
        let stderr = errors.await.unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(TranscodeError::Failed(
            tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
        ));
    }
    for path in dash_files(out_dir).await? {
        if !sent.contains(&path) && ready.send(path).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// `chunk-{representation}-{number}.m4s` → (representation, number).
fn parse_segment(name: &str) -> Option<(&str, u64)> {
    let rest = name.strip_prefix("chunk-")?.strip_suffix(".m4s")?;
    let (representation, number) = rest.rsplit_once('-')?;
    Some((representation, number.parse().ok()?))
}

/// Media segments followed by a later one of the same representation.
async fn finished_segments(dir: &Path) -> Result<Vec<PathBuf>, TranscodeError> {
    let mut latest: HashMap<String, u64> = HashMap::new();
    let mut segments = Vec::new();
    let io = |source| TranscodeError::Io {
        tool: "ffmpeg",
        source,
    };
    let mut entries = tokio::fs::read_dir(dir).await.map_err(io)?;
    while let Some(entry) = entries.next_entry().await.map_err(io)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((representation, number)) = parse_segment(&name) {
            let newest = latest.entry(representation.to_string()).or_insert(0);
            *newest = (*newest).max(number);
            segments.push((representation.to_string(), number, entry.path()));
        }
    }
    Ok(segments
        .into_iter()
        .filter(|(representation, number, _)| latest[representation] > *number)
        .map(|(_, _, path)| path)
        .collect())
}

/// The finished DASH files in `dir`, manifest last so a reader never finds a manifest
/// whose segments are missing.
pub async fn dash_files(dir: &Path) -> Result<Vec<PathBuf>, TranscodeError> {
    let io = |source| TranscodeError::Io {
        tool: "ffmpeg",
        source,
    };
    let mut entries = tokio::fs::read_dir(dir).await.map_err(io)?;
    let mut files = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(io)? {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // ffmpeg writes the manifest through a temp name; only finished files count.
        if name.ends_with(".m4s") || name == "manifest.mpd" {
            files.push(entry.path());
        }
    }
    files.sort_by_key(|p| {
        (
            p.file_name().is_some_and(|n| n == "manifest.mpd"),
            p.clone(),
        )
    });
    if !files.iter().any(|p| p.ends_with("manifest.mpd")) {
        return Err(TranscodeError::Failed(
            "ffmpeg wrote no manifest".to_string(),
        ));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert_eq!(parse_segment("chunk-0-00001.m4s"), Some(("0", 1)));
        assert_eq!(parse_segment("chunk-1-00123.m4s"), Some(("1", 123)));
        assert_eq!(parse_segment("init-0.m4s"), None);
        assert_eq!(parse_segment("manifest.mpd"), None);
        assert_eq!(parse_segment("chunk-0-x.m4s"), None);
    }
}
