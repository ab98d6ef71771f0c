//! Publish first, perfect later. The ladder is encoded in two ffmpeg runs: first the
//! lowest rendition with the audio (a small share of the work), whose files and manifest
//! are stored at once so the video is playable; then the higher renditions, whose files
//! join under their own names (`init-h0.m4s`, `chunk-h0-00001.m4s`, …) and whose
//! representations are then merged into the stored manifest. The manifest is always
//! stored after the files it lists, so it never points at a missing one.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::progress::Phase;
use super::routes::{SharedState, WebError};
use super::storyboard::{self, STORYBOARD, Storyboard};
use super::transcode::{self, DashPass, Probe};
use super::upload::store_file;
use crate::meta::Rendition;
use crate::web::metrics::upload::UploadStage;

/// DASH files stored at once per upload.
const STORE_PARALLELISM: usize = 8;

/// The file-name prefix of the higher renditions' run.
pub const HIGH_PREFIX: &str = "h";

pub const MANIFEST: &str = "manifest.mpd";

/// What one run stored: its media files (count, bytes) and its manifest, not yet stored.
pub struct PassOutput {
    pub files: u64,
    pub bytes: u64,
    pub manifest: PathBuf,
}

/// The ladder split for publishing: the lowest rendition first, the rest after.
pub fn split_ladder(renditions: &[Rendition]) -> (&[Rendition], &[Rendition]) {
    let lowest = renditions.len().saturating_sub(1);
    (&renditions[lowest..], &renditions[..lowest])
}

/// The first run's share of the whole encode, by pixels per frame (what x264's work
/// grows with), so one percentage runs from 0 to 100 over both runs.
pub fn first_share(renditions: &[Rendition]) -> f64 {
    let pixels = |r: &[Rendition]| {
        r.iter()
            .map(|r| f64::from(r.width) * f64::from(r.height))
            .sum::<f64>()
    };
    let (low, _) = split_ladder(renditions);
    let all = pixels(renditions);
    if all > 0.0 { pixels(low) / all } else { 1.0 }
}

/// Runs ffmpeg for `pass` into `out_dir` and stores each media file under `{id}/{name}`
/// as soon as it is finished, at most [`STORE_PARALLELISM`] at once. ffmpeg's progress
/// is reported as `start + share × done` percent. The manifest is left for the caller.
#[allow(clippy::too_many_arguments)]
pub async fn encode_and_store(
    state: &SharedState,
    id: &str,
    source: &Path,
    out_dir: &Path,
    probe: &Probe,
    pass: DashPass<'_>,
    (start, share): (f64, f64),
    stored: &Mutex<Vec<String>>,
) -> Result<PassOutput, WebError> {
    let content = &state.content;
    tokio::fs::create_dir_all(out_dir)
        .await
        .map_err(|e| WebError::Internal(format!("temp dir: {e}")))?;
    let (ready, finished) = mpsc::channel::<PathBuf>(64);
    let (progress, mut percent) = watch::channel(0.0f64);
    let encode = async {
        let encoding = transcode::to_dash(source, out_dir, probe, pass, ready, progress);
        let result = state
            .metrics
            .uploads
            .time(UploadStage::Transcode, encoding)
            .await;
        result.map_err(WebError::from)
    };
    let report = async {
        while percent.changed().await.is_ok() {
            let done = start + share * *percent.borrow_and_update() * 100.0;
            state.uploads.update(id, |s| s.transcode_percent = done);
        }
    };
    let encode = async {
        // The reporter ends when the encoder drops its sender.
        let (result, ()) = futures::future::join(encode, report).await;
        result
    };
    let store = async {
        let mut manifest = None;
        let media = ReceiverStream::new(finished).filter_map(|path| {
            let path = if path.file_name().is_some_and(|n| n == MANIFEST) {
                manifest = Some(path);
                None
            } else {
                Some(path)
            };
            futures::future::ready(path)
        });
        let (files, bytes) = media
            .map(|path| async move {
                let size = store_file(content, id, &path, stored).await?;
                state.uploads.update(id, |s| s.stored_files += 1);
                Ok::<_, WebError>(size)
            })
            .buffer_unordered(STORE_PARALLELISM)
            .try_fold((0u64, 0u64), |(n, sum), size| async move {
                Ok((n + 1, sum + size))
            })
            .await?;
        let manifest =
            manifest.ok_or_else(|| WebError::Internal("ffmpeg wrote no manifest".into()))?;
        Ok::<_, WebError>(PassOutput {
            files,
            bytes,
            manifest,
        })
    };
    let store = state.metrics.uploads.time(UploadStage::Store, store);
    // A failed store drops the encoder (ffmpeg is killed); a failed encode ends the stream.
    let ((), output) = futures::future::try_join(encode, store).await?;
    Ok(output)
}

/// Encodes and stores the lowest rendition with the audio and the storyboard, then stores
/// its manifest: from then on the video plays. Returns the files and bytes stored,
/// manifest included, and whether a storyboard was stored.
pub async fn publish_lowest(
    state: &SharedState,
    id: &str,
    source: &Path,
    work: &Path,
    probe: &Probe,
    renditions: &[Rendition],
    stored: &Mutex<Vec<String>>,
) -> Result<(u64, u64, bool), WebError> {
    let (low, _) = split_ladder(renditions);
    let storyboard = Storyboard::for_video(probe);
    let pass = DashPass {
        renditions: low,
        audio: true,
        prefix: "",
        storyboard: Some(&storyboard),
    };
    let share = first_share(renditions);
    let out_dir = work.join("dash-low");
    let output = encode_and_store(
        state,
        id,
        source,
        &out_dir,
        probe,
        pass,
        (0.0, share),
        stored,
    )
    .await?;
    state.uploads.set_phase(id, Phase::Storing);
    let (board_files, board_bytes) =
        store_storyboard(state, id, &out_dir, probe, &storyboard, stored).await?;
    let manifest_bytes = store_file(&state.content, id, &output.manifest, stored).await?;
    Ok((
        output.files + board_files + 1,
        output.bytes + board_bytes + manifest_bytes,
        board_files > 0,
    ))
}

/// Stores the sprite sheets ffmpeg wrote beside the first rendition and their cue file;
/// returns the files and bytes stored (none when ffmpeg wrote no sheet).
async fn store_storyboard(
    state: &SharedState,
    id: &str,
    out_dir: &Path,
    probe: &Probe,
    storyboard: &Storyboard,
    stored: &Mutex<Vec<String>>,
) -> Result<(u64, u64), WebError> {
    let io = |e: std::io::Error| WebError::Internal(format!("the storyboard: {e}"));
    let sheets = storyboard::sheets(out_dir).await.map_err(io)?;
    if sheets.is_empty() {
        tracing::warn!(%id, "ffmpeg made no storyboard sheet");
        return Ok((0, 0));
    }
    let (mut files, mut bytes) = (0, 0);
    for sheet in &sheets {
        bytes += store_file(&state.content, id, sheet, stored).await?;
        files += 1;
    }
    let cues = out_dir.join(STORYBOARD);
    tokio::fs::write(&cues, storyboard.vtt(probe.duration_seconds, sheets.len()))
        .await
        .map_err(io)?;
    bytes += store_file(&state.content, id, &cues, stored).await?;
    Ok((files + 1, bytes))
}

/// Encodes and stores the higher renditions, then stores the manifest listing every
/// rendition in place of the first one. Returns the media files and bytes added and the
/// size change of the manifest.
pub async fn add_higher(
    state: &SharedState,
    id: &str,
    source: &Path,
    work: &Path,
    probe: &Probe,
    renditions: &[Rendition],
    stored: &Mutex<Vec<String>>,
) -> Result<(u64, u64, i64), WebError> {
    let (_, high) = split_ladder(renditions);
    if high.is_empty() {
        return Ok((0, 0, 0));
    }
    let pass = DashPass {
        renditions: high,
        audio: false,
        prefix: HIGH_PREFIX,
        storyboard: None,
    };
    let share = first_share(renditions);
    let out_dir = work.join("dash-high");
    let output = encode_and_store(
        state,
        id,
        source,
        &out_dir,
        probe,
        pass,
        (share * 100.0, 1.0 - share),
        stored,
    )
    .await?;
    let io = |e: std::io::Error| WebError::Internal(format!("reading a manifest: {e}"));
    let first_path = work.join("dash-low").join(MANIFEST);
    let first = tokio::fs::read_to_string(&first_path).await.map_err(io)?;
    let higher = tokio::fs::read_to_string(&output.manifest)
        .await
        .map_err(io)?;
    let merged = merge_manifests(&first, &higher, HIGH_PREFIX)
        .map_err(|why| WebError::Internal(format!("merging the manifests: {why}")))?;
    let merged_path = work.join(MANIFEST);
    tokio::fs::write(&merged_path, &merged)
        .await
        .map_err(|e| WebError::Internal(format!("writing the manifest: {e}")))?;
    let size = store_file(&state.content, id, &merged_path, stored).await?;
    Ok((output.files, output.bytes, size as i64 - first.len() as i64))
}

/// The byte range of the video adaptation set in an MPD ffmpeg wrote:
/// (start of `<AdaptationSet`, end of its opening tag, start of `</AdaptationSet>`).
fn video_set(mpd: &str) -> Result<(usize, usize, usize), String> {
    let mut from = 0;
    while let Some(offset) = mpd[from..].find("<AdaptationSet") {
        let start = from + offset;
        let open_end = start
            + mpd[start..]
                .find('>')
                .ok_or("an unterminated AdaptationSet tag")?
            + 1;
        let close = open_end
            + mpd[open_end..]
                .find("</AdaptationSet>")
                .ok_or("an unclosed AdaptationSet")?;
        if mpd[start..open_end].contains("contentType=\"video\"") {
            return Ok((start, open_end, close));
        }
        from = close;
    }
    Err("no video adaptation set".into())
}

/// The value of `name="…"` in one tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = start + tag[start..].find('"')?;
    Some(&tag[start..end])
}

/// `tag` with `name="…"` set to `value`, when the tag has it.
fn set_attribute(tag: &str, name: &str, value: &str) -> String {
    let key = format!(" {name}=\"");
    match tag.find(&key) {
        Some(at) => {
            let start = at + key.len();
            let end = start + tag[start..].find('"').unwrap_or(0);
            format!("{}{value}{}", &tag[..start], &tag[end..])
        }
        None => tag.to_string(),
    }
}

/// The first run's MPD with the second run's video representations added to its video
/// adaptation set, highest first as in a one-run ladder. The second run's files are
/// named with `prefix` before the representation id, so its representations get that
/// prefix in their ids and the usual templates name exactly their files.
pub fn merge_manifests(first: &str, higher: &str, prefix: &str) -> Result<String, String> {
    let (_, h_open_end, h_close) = video_set(higher)?;
    let mut added = String::new();
    let body = &higher[h_open_end..h_close];
    let mut rest = body;
    let (mut max_width, mut max_height) = (0u32, 0u32);
    while let Some(start) = rest.find("<Representation ") {
        let end_tag = "</Representation>";
        let end = rest[start..]
            .find(end_tag)
            .ok_or("an unclosed Representation")?
            + start
            + end_tag.len();
        let block = &rest[start..end];
        let open = &block[..block
            .find('>')
            .ok_or("an unterminated Representation tag")?];
        let id = attribute(open, "id").ok_or("a Representation without an id")?;
        for (name, max) in [("width", &mut max_width), ("height", &mut max_height)] {
            let value: u32 = attribute(open, name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            *max = (*max).max(value);
        }
        let renamed = set_attribute(open, "id", &format!("{prefix}{id}"));
        let block = format!("{renamed}{}", &block[open.len()..])
            .replace(
                &format!("init-{prefix}$RepresentationID$"),
                "init-$RepresentationID$",
            )
            .replace(
                &format!("chunk-{prefix}$RepresentationID$"),
                "chunk-$RepresentationID$",
            );
        added.push_str(&block);
        added.push_str("\n\t\t\t");
        rest = &rest[end..];
    }
    if added.is_empty() {
        return Err("the higher renditions' manifest lists no representation".into());
    }
    let (start, open_end, _) = video_set(first)?;
    let mut open = first[start..open_end].to_string();
    for (name, value) in [("maxWidth", max_width), ("maxHeight", max_height)] {
        let current: u32 = attribute(&open, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        open = set_attribute(&open, name, &current.max(value).to_string());
    }
    // The first representation starts after the tag's line break and indent.
    let body = &first[open_end..];
    let indent_end = body.len() - body.trim_start().len();
    Ok(format!(
        "{}{open}{}{added}{}",
        &first[..start],
        &body[..indent_end],
        &body[indent_end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOW: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<MPD type="static" mediaPresentationDuration="PT8.0S">
	<Period id="0" start="PT0.0S">
		<AdaptationSet id="0" contentType="video" startWithSAP="1" segmentAlignment="true" frameRate="30/1" maxWidth="640" maxHeight="360" par="16:9">
			<Representation id="0" mimeType="video/mp4" codecs="avc1.64001e" bandwidth="800000" width="640" height="360" sar="1:1">
				<SegmentTemplate timescale="15360" initialization="init-$RepresentationID$.m4s" media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline><S t="0" d="61440" r="1" /></SegmentTimeline>
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
		<AdaptationSet id="1" contentType="audio" startWithSAP="1" segmentAlignment="true" lang="und">
			<Representation id="1" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="128000" audioSamplingRate="44100">
				<SegmentTemplate timescale="44100" initialization="init-$RepresentationID$.m4s" media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline><S t="0" d="175104" /></SegmentTimeline>
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
	</Period>
</MPD>
"#;

    const HIGH: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<MPD type="static" mediaPresentationDuration="PT8.0S">
	<Period id="0" start="PT0.0S">
		<AdaptationSet id="0" contentType="video" startWithSAP="1" segmentAlignment="true" frameRate="30/1" maxWidth="1280" maxHeight="720" par="16:9">
			<Representation id="0" mimeType="video/mp4" codecs="avc1.64001f" bandwidth="3000000" width="1280" height="720" sar="1:1">
				<SegmentTemplate timescale="15360" initialization="init-h$RepresentationID$.m4s" media="chunk-h$RepresentationID$-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline><S t="0" d="61440" r="1" /></SegmentTimeline>
				</SegmentTemplate>
			</Representation>
			<Representation id="1" mimeType="video/mp4" codecs="avc1.64001e" bandwidth="1400000" width="854" height="480" sar="1:1">
				<SegmentTemplate timescale="15360" initialization="init-h$RepresentationID$.m4s" media="chunk-h$RepresentationID$-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline><S t="0" d="61440" r="1" /></SegmentTimeline>
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
	</Period>
</MPD>
"#;

    #[test]
    fn the_higher_renditions_join_the_video_set_highest_first() {
        let merged = merge_manifests(LOW, HIGH, "h").unwrap();
        assert_eq!(merged.matches("<AdaptationSet").count(), 2, "{merged}");
        assert_eq!(merged.matches("<Representation ").count(), 4, "{merged}");
        let h0 = merged.find("id=\"h0\"").unwrap();
        let h1 = merged.find("id=\"h1\"").unwrap();
        let low = merged.find("width=\"640\"").unwrap();
        let audio = merged.find("contentType=\"audio\"").unwrap();
        assert!(h0 < h1 && h1 < low && low < audio, "{merged}");
        // The templates name the second run's files through the prefixed ids.
        assert!(!merged.contains("init-h$"), "{merged}");
        assert!(
            merged.contains("maxWidth=\"1280\" maxHeight=\"720\""),
            "{merged}"
        );
        // Everything else of the first manifest is unchanged.
        assert!(merged.starts_with("<?xml"));
        assert!(merged.ends_with("</MPD>\n"));
        assert!(merged.contains("mediaPresentationDuration=\"PT8.0S\""));
    }

    #[test]
    fn a_manifest_without_video_is_an_error() {
        let no_video = LOW.replace("contentType=\"video\"", "contentType=\"text\"");
        assert!(merge_manifests(&no_video, HIGH, "h").is_err());
        assert!(merge_manifests(LOW, &no_video, "h").is_err());
        let empty = "<AdaptationSet contentType=\"video\"></AdaptationSet>";
        assert!(merge_manifests(LOW, empty, "h").is_err());
    }

    #[test]
    fn the_ladder_splits_lowest_first() {
        let r = |height: u32| Rendition {
            width: height * 16 / 9,
            height,
            bitrate_kbps: 100,
        };
        let ladder = [r(720), r(480), r(360)];
        let (low, high) = split_ladder(&ladder);
        assert_eq!(low, [r(360)]);
        assert_eq!(high, [r(720), r(480)]);
        let share = first_share(&ladder);
        assert!(share > 0.1 && share < 0.2, "{share}");
        let one = [r(240)];
        assert_eq!(split_ladder(&one), (&one[..], &[][..]));
        assert_eq!(first_share(&one), 1.0);
    }
}
