//! ffprobe and ffmpeg, run as child processes (tokio::process), never on async threads.
//! The DASH parameters are the original Tritontube's.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

use crate::meta::Rendition;

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
    /// Size of the first video stream, pixels.
    pub width: u32,
    pub height: u32,
}

/// One rung of the ladder: a height and its video bitrate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rung {
    pub height: u32,
    pub bitrate_kbps: u32,
}

/// The renditions an upload may be encoded to, highest first (`--ladder`). A source gets
/// the rungs no taller than itself, so nothing is ever scaled up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ladder(Vec<Rung>);

/// 720p keeps the original's 3000k; the others follow the usual ratios of bitrate to
/// pixels for H.264.
pub const DEFAULT_LADDER: &str = "1080p:5000k,720p:3000k,480p:1400k,360p:800k";

/// Lowest bitrate given to a source smaller than every rung, kbit/s.
const MIN_BITRATE_KBPS: u32 = 150;

impl std::str::FromStr for Ladder {
    type Err = String;

    /// `HEIGHT[p]:BITRATE[k],…`, for example `720p:3000k,360p:800k`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut rungs = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (height, bitrate) = item
                .split_once(':')
                .ok_or_else(|| format!("{item:?} is not HEIGHT:BITRATE (like 720p:3000k)"))?;
            let height: u32 = height
                .trim()
                .trim_end_matches('p')
                .parse()
                .map_err(|_| format!("{item:?}: the height is not a number"))?;
            let bitrate_kbps: u32 = bitrate
                .trim()
                .trim_end_matches('k')
                .parse()
                .map_err(|_| format!("{item:?}: the bitrate is not a number of kbit/s"))?;
            if !(16..=8640).contains(&height) || height % 2 != 0 {
                return Err(format!("{item:?}: the height must be even, 16 to 8640"));
            }
            if !(50..=200_000).contains(&bitrate_kbps) {
                return Err(format!("{item:?}: the bitrate must be 50k to 200000k"));
            }
            rungs.push(Rung {
                height,
                bitrate_kbps,
            });
        }
        if rungs.is_empty() {
            return Err("the ladder needs at least one HEIGHT:BITRATE".into());
        }
        rungs.sort_by_key(|r| std::cmp::Reverse(r.height));
        rungs.dedup_by_key(|r| r.height);
        Ok(Ladder(rungs))
    }
}

impl Default for Ladder {
    fn default() -> Self {
        DEFAULT_LADDER.parse().expect("the default ladder parses")
    }
}

impl std::fmt::Display for Ladder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let items: Vec<String> = self
            .0
            .iter()
            .map(|r| format!("{}p:{}k", r.height, r.bitrate_kbps))
            .collect();
        f.write_str(&items.join(","))
    }
}

impl Ladder {
    /// The renditions for a `width`×`height` source, highest first: every rung no taller
    /// than the source, or, for a source below every rung, one rendition at its own size.
    pub fn for_source(&self, width: u32, height: u32) -> Vec<Rendition> {
        let even = |v: u32| (v / 2 * 2).max(2);
        // The nearest even width keeping the aspect, as ffmpeg's `scale=-2:h` picks.
        let scaled_width = |h: u32| {
            let half = f64::from(width) * f64::from(h) / f64::from(height.max(1)) / 2.0;
            ((half.round() as u32) * 2).max(2)
        };
        let mut renditions: Vec<Rendition> = self
            .0
            .iter()
            .filter(|r| r.height <= height)
            .map(|r| Rendition {
                width: scaled_width(r.height),
                height: r.height,
                bitrate_kbps: r.bitrate_kbps,
            })
            .collect();
        if renditions.is_empty() {
            let lowest = self.0.last().copied().unwrap_or(Rung {
                height: 360,
                bitrate_kbps: 800,
            });
            // Bitrate in proportion to the pixels, from the lowest rung.
            let share = f64::from(height) / f64::from(lowest.height);
            let bitrate = (f64::from(lowest.bitrate_kbps) * share * share) as u32;
            renditions.push(Rendition {
                width: even(width),
                height: even(height),
                bitrate_kbps: bitrate.max(MIN_BITRATE_KBPS),
            });
        }
        renditions
    }
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
            "stream=codec_type,width,height:format=duration",
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
    let video = streams.iter().find(|s| s["codec_type"] == "video");
    let size = |key: &str| {
        video
            .and_then(|s| s[key].as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v > 0)
    };
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
    let (Some(width), Some(height)) = (size("width"), size("height")) else {
        return Err(TranscodeError::NotAVideo(
            "the video stream has no picture size".to_string(),
        ));
    };
    Ok(Probe {
        duration_seconds,
        has_audio: has("audio"),
        width,
        height,
    })
}

/// One ffmpeg run over part of the ladder (see [`super::publish`]).
#[derive(Clone, Copy, Debug)]
pub struct DashPass<'a> {
    /// Highest first.
    pub renditions: &'a [Rendition],
    /// Whether this run carries the source's audio (if it has any).
    pub audio: bool,
    /// Put before the representation number in file names, so two runs' files differ:
    /// `init-{prefix}{n}.m4s`, `chunk-{prefix}{n}-{number}.m4s`.
    pub prefix: &'a str,
    /// Seek-bar tiles made from the same decode, as a second output.
    pub storyboard: Option<&'a super::storyboard::Storyboard>,
}

/// The original's ffmpeg command (H.264 + AAC 128k, 4 s segments, templated names),
/// extended to a ladder: one decode, split into one scaled copy per rendition, all in one
/// MPD with one adaptation set for video (so players switch between them) and one for
/// audio. Video renditions are representations 0…n-1, audio is n; with one rendition at
/// the source's size and no prefix this is the original's command. Progress goes to
/// stdout.
pub fn dash_command(input: &Path, out_dir: &Path, probe: &Probe, pass: DashPass<'_>) -> Command {
    let renditions = pass.renditions;
    let with_audio = probe.has_audio && pass.audio;
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-nostats",
        "-progress",
        "pipe:1",
        "-y",
        "-i",
    ])
    .arg(input);
    let unscaled = |r: &Rendition| r.width == probe.width && r.height == probe.height;
    if renditions.len() == 1 && unscaled(&renditions[0]) && pass.storyboard.is_none() {
        cmd.args(["-map", "0:v:0"]);
    } else {
        let n = renditions.len();
        let branches = n + usize::from(pass.storyboard.is_some());
        let mut graph = format!("[0:v:0]split={branches}");
        for i in 0..branches {
            graph.push_str(&format!("[s{i}]"));
        }
        for (i, r) in renditions.iter().enumerate() {
            graph.push_str(&format!(";[s{i}]scale={}:{}[v{i}]", r.width, r.height));
        }
        if let Some(storyboard) = pass.storyboard {
            graph.push(';');
            graph.push_str(&storyboard.filter(&format!("s{n}"), "sb"));
        }
        cmd.args(["-filter_complex", &graph]);
        for i in 0..n {
            cmd.args(["-map", &format!("[v{i}]")]);
        }
    }
    if with_audio {
        cmd.args(["-map", "0:a:0", "-c:a", "aac", "-b:a", "128k"]);
    }
    cmd.args(["-c:v", "libx264"]);
    for (i, r) in renditions.iter().enumerate() {
        cmd.arg(format!("-b:v:{i}"))
            .arg(format!("{}k", r.bitrate_kbps));
    }
    let sets = if with_audio {
        "id=0,streams=v id=1,streams=a"
    } else {
        "id=0,streams=v"
    };
    cmd.args([
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
        "-adaptation_sets",
        sets,
        "-use_timeline",
        "1",
        "-use_template",
        "1",
        "-seg_duration",
        "4",
    ])
    .arg("-init_seg_name")
    .arg(format!("init-{}$RepresentationID$.m4s", pass.prefix))
    .arg("-media_seg_name")
    .arg(format!(
        "chunk-{}$RepresentationID$-$Number%05d$.m4s",
        pass.prefix
    ))
    .arg(out_dir.join("manifest.mpd"));
    if let Some(storyboard) = pass.storyboard {
        cmd.args(storyboard.output_args("sb", out_dir));
    }
    cmd.current_dir(out_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The share of the video done, 0..=1, from one line of ffmpeg's `-progress` output.
fn progress_fraction(line: &str, duration_seconds: f64) -> Option<f64> {
    let (key, value) = line.trim().split_once('=')?;
    match key {
        // Both are microseconds (`out_time_ms` is misnamed in ffmpeg).
        "out_time_us" | "out_time_ms" => {
            let micros: f64 = value.parse().ok()?;
            Some((micros / 1e6 / duration_seconds.max(0.001)).clamp(0.0, 1.0))
        }
        "progress" if value == "end" => Some(1.0),
        _ => None,
    }
}

/// Where in the video the poster is taken: a little way in, past a fade from black.
pub fn poster_time(duration_seconds: f64) -> f64 {
    (duration_seconds / 4.0).min(5.0)
}

/// Writes a JPEG of one frame (at most 480 pixels high: a card or a player poster) to
/// `output`.
pub async fn poster(input: &Path, output: &Path, probe: &Probe) -> Result<(), TranscodeError> {
    let height = probe.height.min(480) / 2 * 2;
    let result = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-ss",
        ])
        .arg(format!("{:.3}", poster_time(probe.duration_seconds)))
        .arg("-i")
        .arg(input)
        .args(["-frames:v", "1", "-vf"])
        .arg(format!("scale=-2:{height}"))
        .args(["-q:v", "4"])
        .arg(output)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(spawn_error("ffmpeg"))?;
    let written = tokio::fs::metadata(output).await.is_ok_and(|m| m.len() > 0);
    if !result.status.success() || !written {
        let stderr = String::from_utf8_lossy(&result.stderr);
        return Err(TranscodeError::Failed(format!(
            "no poster: {}",
            stderr.lines().last().unwrap_or("no frame at that time")
        )));
    }
    Ok(())
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
    pass: DashPass<'_>,
    ready: mpsc::Sender<PathBuf>,
    progress: watch::Sender<f64>,
) -> Result<(), TranscodeError> {
    let mut child = dash_command(input, out_dir, probe, pass)
        .spawn()
        .map_err(spawn_error("ffmpeg"))?;
    let stderr = child.stderr.take();
    let stdout = child.stdout.take();
    let duration = probe.duration_seconds;
    // Ends when ffmpeg closes its stdout (it exits or is killed).
    tokio::spawn(async move {
        let Some(stdout) = stdout else { return };
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(done) = progress_fraction(&line, duration) {
                progress.send_replace(done);
            }
        }
    });
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

    #[test]
    fn ladders_parse_and_never_scale_up() {
        let ladder = Ladder::default();
        assert_eq!(ladder.to_string(), DEFAULT_LADDER);
        let heights = |w, h| -> Vec<(u32, u32)> {
            ladder
                .for_source(w, h)
                .iter()
                .map(|r| (r.width, r.height))
                .collect()
        };
        assert_eq!(heights(1280, 720), [(1280, 720), (854, 480), (640, 360)]);
        assert_eq!(heights(1920, 1080).len(), 4);
        assert_eq!(heights(640, 360), [(640, 360)]);
        assert_eq!(heights(320, 240), [(320, 240)]);
        assert_eq!(heights(161, 121), [(160, 120)]);
        assert!(ladder.for_source(160, 120)[0].bitrate_kbps >= MIN_BITRATE_KBPS);
        let custom: Ladder = " 360p:700k , 720:2500k ".parse().unwrap();
        assert_eq!(custom.to_string(), "720p:2500k,360p:700k");
        for bad in [
            "",
            "720p",
            "abc:100k",
            "720p:x",
            "721p:100k",
            "720p:1k",
            "0p:100k",
        ] {
            assert!(bad.parse::<Ladder>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn progress_lines() {
        assert_eq!(progress_fraction("out_time_us=5000000", 10.0), Some(0.5));
        assert_eq!(progress_fraction("out_time_ms=20000000", 10.0), Some(1.0));
        assert_eq!(progress_fraction("progress=end", 10.0), Some(1.0));
        assert_eq!(progress_fraction("progress=continue", 10.0), None);
        assert_eq!(progress_fraction("frame=12", 10.0), None);
        assert_eq!(progress_fraction("out_time_us=N/A", 10.0), None);
    }
}
