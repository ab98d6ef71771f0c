//! Seek-bar previews: a WebVTT storyboard whose cues point into JPEG sprite sheets
//! (`storyboard-001.jpg#xywh=x,y,w,h`), one tile every few seconds. The tiles come from
//! the same decode as the first rendition (one more branch of ffmpeg's filter graph), so
//! they cost a scale and a JPEG per sheet, not another decode.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::transcode::Probe;

/// The storyboard's cue file beside the DASH files.
pub const STORYBOARD: &str = "storyboard.vtt";

/// Seconds per tile: the video's length over this many tiles, kept between the bounds.
const TARGET_TILES: f64 = 100.0;
const MIN_INTERVAL: f64 = 2.0;
const MAX_INTERVAL: f64 = 5.0;
/// Tile width, pixels; the height follows the picture's shape.
const TILE_WIDTH: u32 = 160;
const COLUMNS: u32 = 5;
const ROWS: u32 = 5;

/// How a video's storyboard is cut.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Storyboard {
    /// Seconds between tiles.
    pub interval: f64,
    pub tile_width: u32,
    pub tile_height: u32,
    pub columns: u32,
    pub rows: u32,
}

impl Storyboard {
    pub fn for_video(probe: &Probe) -> Storyboard {
        let interval = (probe.duration_seconds / TARGET_TILES).clamp(MIN_INTERVAL, MAX_INTERVAL);
        let height =
            f64::from(TILE_WIDTH) * f64::from(probe.height) / f64::from(probe.width.max(1));
        Storyboard {
            interval,
            tile_width: TILE_WIDTH,
            tile_height: ((height / 2.0).round() as u32 * 2).max(2),
            columns: COLUMNS,
            rows: ROWS,
        }
    }

    /// The filter-graph branch from `input` to `[output]`: one frame per interval,
    /// scaled to a tile, tiled into sheets.
    pub fn filter(&self, input: &str, output: &str) -> String {
        format!(
            "[{input}]fps=1/{},scale={}:{},tile={}x{}[{output}]",
            self.interval, self.tile_width, self.tile_height, self.columns, self.rows
        )
    }

    /// ffmpeg's arguments for the sheets' output, fed from `[label]`.
    pub fn output_args(&self, label: &str, out_dir: &Path) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = [
            "-map",
            &format!("[{label}]"),
            "-c:v",
            "mjpeg",
            "-q:v",
            "5",
            "-f",
            "image2",
        ]
        .iter()
        .map(|a| a.into())
        .collect();
        args.push(out_dir.join("storyboard-%03d.jpg").into_os_string());
        args
    }

    /// The cue file for a video of `duration` seconds whose tiles fill `sheets` sheets.
    pub fn vtt(&self, duration: f64, sheets: usize) -> String {
        let per_sheet = (self.columns * self.rows) as usize;
        let tiles = ((duration / self.interval).ceil() as usize).min(sheets * per_sheet);
        let mut out = String::from("WEBVTT\n");
        for tile in 0..tiles {
            let start = tile as f64 * self.interval;
            let end = (start + self.interval).min(duration);
            if end <= start {
                break;
            }
            let on_sheet = (tile % per_sheet) as u32;
            let x = on_sheet % self.columns * self.tile_width;
            let y = on_sheet / self.columns * self.tile_height;
            let _ = write!(
                out,
                "\n{} --> {}\nstoryboard-{:03}.jpg#xywh={x},{y},{},{}\n",
                cue_time(start),
                cue_time(end),
                tile / per_sheet + 1,
                self.tile_width,
                self.tile_height
            );
        }
        out
    }
}

/// `HH:MM:SS.mmm`.
fn cue_time(seconds: f64) -> String {
    let millis = (seconds * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000
    )
}

/// The sheets ffmpeg wrote in `dir`, in order.
pub async fn sheets(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("storyboard-") && name.ends_with(".jpg") {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(duration_seconds: f64) -> Probe {
        Probe {
            duration_seconds,
            has_audio: true,
            width: 1280,
            height: 720,
        }
    }

    #[test]
    fn a_tile_every_two_to_five_seconds() {
        assert_eq!(Storyboard::for_video(&probe(10.0)).interval, 2.0);
        assert_eq!(Storyboard::for_video(&probe(300.0)).interval, 3.0);
        assert_eq!(Storyboard::for_video(&probe(7200.0)).interval, 5.0);
        let board = Storyboard::for_video(&probe(60.0));
        assert_eq!((board.tile_width, board.tile_height), (160, 90));
    }

    #[test]
    fn cues_point_into_the_sheets() {
        let board = Storyboard::for_video(&probe(53.0));
        let vtt = board.vtt(53.0, 2);
        assert!(vtt.starts_with("WEBVTT\n"));
        assert_eq!(super::super::captions::validate_vtt(vtt.as_bytes()), Ok(27));
        assert!(
            vtt.contains("\n00:00:00.000 --> 00:00:02.000\nstoryboard-001.jpg#xywh=0,0,160,90\n")
        );
        assert!(
            vtt.contains("\n00:00:02.000 --> 00:00:04.000\nstoryboard-001.jpg#xywh=160,0,160,90\n")
        );
        assert!(
            vtt.contains("\n00:00:10.000 --> 00:00:12.000\nstoryboard-001.jpg#xywh=0,90,160,90\n")
        );
        // Tile 26 (from 50 s) is the second sheet's first; the last cue ends with the video.
        assert!(
            vtt.contains("\n00:00:50.000 --> 00:00:52.000\nstoryboard-002.jpg#xywh=0,0,160,90\n")
        );
        assert!(
            vtt.ends_with("00:00:52.000 --> 00:00:53.000\nstoryboard-002.jpg#xywh=160,0,160,90\n")
        );
        // Never a cue past the sheets there are.
        assert_eq!(board.vtt(53.0, 1).matches("-->").count(), 25);
    }
}
