//! Caption tracks: `PUT|DELETE /api/videos/{id}/captions/{lang}` (the admin credential, as
//! for deleting a video). A track is a WebVTT file, checked and bounded in size, stored
//! on the ring as `{id}/captions-{lang}-{hash}.vtt` (named after its content, so a replaced
//! track gets a URL no cache has seen) and recorded with the video; the player offers
//! each as a text track. A video's delete takes its tracks with it (every file under its
//! id goes).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::api::{ApiError, check_token};
use super::pages::encode_segment;
use super::routes::{SharedState, WebError};
use crate::library::videos::content_version;
use crate::meta::{Caption, MetaError};
use crate::node::keys;

/// The largest caption file accepted, bytes (hours of dialogue fit in far less).
pub const MAX_CAPTION_BYTES: usize = 512 * 1024;

/// Checks a language tag: a BCP 47 shape (`en`, `pt-BR`, `zh-Hant`), letters, digits
/// and hyphens only, so it is safe in a file name and an HTML attribute.
pub fn validate_lang(lang: &str) -> Result<(), String> {
    let mut parts = lang.split('-');
    let primary = parts.next().unwrap_or("");
    let primary_ok =
        (2..=3).contains(&primary.len()) && primary.chars().all(|c| c.is_ascii_alphabetic());
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if primary_ok && rest_ok && lang.len() <= 35 {
        Ok(())
    } else {
        Err(format!(
            "{lang:?} is not a language tag (like en, pt-BR or zh-Hant)"
        ))
    }
}

/// `HH:MM:SS.mmm` or `MM:SS.mmm` → milliseconds.
fn timestamp(text: &str) -> Option<u64> {
    let (clock, millis) = text.split_once('.')?;
    if millis.len() != 3 || !millis.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let fields: Vec<&str> = clock.split(':').collect();
    let number = |s: &str, max: u64| {
        (s.len() >= 2 && s.chars().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
            .filter(|v| *v <= max)
    };
    let (hours, minutes, seconds) = match fields.as_slice() {
        [h, m, s] => (
            number(h, u64::MAX / 3_600_000)?,
            number(m, 59)?,
            number(s, 59)?,
        ),
        [m, s] => (0, number(m, 59)?, number(s, 59)?),
        _ => return None,
    };
    Some(((hours * 60 + minutes) * 60 + seconds) * 1000 + millis.parse::<u64>().ok()?)
}

/// Checks a WebVTT file: UTF-8 without NUL, the `WEBVTT` signature, at least one cue, and
/// every cue timing line well-formed with its end after its start. Returns the cue count.
pub fn validate_vtt(bytes: &[u8]) -> Result<usize, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_string())?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.contains('\0') {
        return Err("the file holds a NUL character".into());
    }
    let first = text.lines().next().unwrap_or("");
    let signed = first == "WEBVTT" || first.starts_with("WEBVTT ") || first.starts_with("WEBVTT\t");
    if !signed {
        return Err("a WebVTT file starts with the line WEBVTT".into());
    }
    let mut cues = 0;
    for (number, line) in text.lines().enumerate().filter(|(_, l)| l.contains("-->")) {
        let bad = || {
            format!(
                "line {}: {line:?} is not a cue timing (00:01.000 --> 00:04.000)",
                number + 1
            )
        };
        let (start, rest) = line.split_once("-->").ok_or_else(bad)?;
        let end = rest.split_whitespace().next().ok_or_else(bad)?;
        let (start, end) = (
            timestamp(start.trim()).ok_or_else(bad)?,
            timestamp(end).ok_or_else(bad)?,
        );
        if end <= start {
            return Err(format!(
                "line {}: the cue ends before it starts",
                number + 1
            ));
        }
        cues += 1;
    }
    if cues == 0 {
        return Err("the file has no cue".into());
    }
    Ok(cues)
}

/// A caption track as the API shows it.
#[derive(Debug, Serialize)]
pub struct CaptionJson {
    pub lang: String,
    pub url: String,
}

/// The tracks of a video, with their versioned URLs.
pub fn captions_json(video: &crate::meta::Video) -> Vec<CaptionJson> {
    let base = format!(
        "/content/{}/{}",
        encode_segment(&video.id),
        content_version(video)
    );
    video
        .details
        .as_ref()
        .map(|d| {
            d.captions
                .iter()
                .map(|c| CaptionJson {
                    lang: c.lang.clone(),
                    url: format!("{base}/{}", c.file),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn not_found(id: &str) -> WebError {
    WebError::NotFound(format!("no playable video named {id:?}"))
}

fn checked(id: &str, lang: &str) -> Result<(), WebError> {
    keys::validate_video_id(id).map_err(|_| not_found(id))?;
    validate_lang(lang).map_err(WebError::BadRequest)?;
    Ok(())
}

/// `PUT /api/videos/{id}/captions/{lang}`: stores the body as the track of `lang`,
/// replacing any earlier one; answers the video's tracks.
pub async fn put_caption(
    State(state): State<SharedState>,
    Path((id, lang)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Vec<CaptionJson>>, ApiError> {
    check_token(&state, &headers)?;
    checked(&id, &lang)?;
    if body.len() > MAX_CAPTION_BYTES {
        return Err(WebError::TooLarge(format!(
            "a caption file may be at most {MAX_CAPTION_BYTES} bytes"
        ))
        .into());
    }
    validate_vtt(&body).map_err(|why| WebError::BadRequest(format!("not WebVTT: {why}")))?;
    let video = state
        .meta
        .get_video(&id)
        .await?
        .value
        .ok_or_else(|| not_found(&id))?;
    if !video.status.watchable() {
        return Err(not_found(&id).into());
    }
    let hash = hex::encode(&Sha256::digest(&body)[..6]);
    let caption = Caption {
        lang: lang.clone(),
        file: format!("captions-{lang}-{hash}.vtt"),
    };
    let key = keys::make_key(&id, &caption.file);
    // Through a temp file: the ring stores files, checked against their SHA-256.
    let temp = tempfile::NamedTempFile::new_in(&state.config.work_dir)
        .map_err(|e| WebError::Internal(format!("temp file: {e}")))?;
    tokio::fs::write(temp.path(), &body)
        .await
        .map_err(|e| WebError::Internal(format!("temp file: {e}")))?;
    state.content.put_file(&key, temp.path()).await?;
    let old = match state.meta.set_caption(&id, &lang, Some(&caption)).await {
        Ok(old) => old,
        Err(e) => {
            // Not recorded: the file must not stay behind.
            if let Err(e) = state.content.delete(&key).await {
                tracing::warn!(%key, error = %e, "cannot remove an unrecorded caption file");
            }
            return Err(match e {
                MetaError::NotFound(_) => not_found(&id),
                other => other.into(),
            }
            .into());
        }
    };
    remove_old_file(&state, &id, old.filter(|o| o.file != caption.file)).await;
    tracing::info!(%id, %lang, bytes = body.len(), "caption track stored");
    listed(&state, &id).await
}

/// `DELETE /api/videos/{id}/captions/{lang}`: removes the track; answers the video's
/// tracks.
pub async fn delete_caption(
    State(state): State<SharedState>,
    Path((id, lang)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Vec<CaptionJson>>, ApiError> {
    check_token(&state, &headers)?;
    checked(&id, &lang)?;
    let old = state
        .meta
        .set_caption(&id, &lang, None)
        .await
        .map_err(|e| match e {
            MetaError::NotFound(_) => not_found(&id),
            other => other.into(),
        })?;
    let Some(old) = old else {
        return Err(WebError::NotFound(format!("video {id:?} has no {lang} captions")).into());
    };
    remove_old_file(&state, &id, Some(old)).await;
    tracing::info!(%id, %lang, "caption track removed");
    listed(&state, &id).await
}

async fn remove_old_file(state: &SharedState, id: &str, old: Option<Caption>) {
    if let Some(old) = old {
        let key = keys::make_key(id, &old.file);
        // Left behind, it is an orphan file of a recorded video: harmless, and small.
        if let Err(e) = state.content.delete(&key).await {
            tracing::warn!(%key, error = %e, "cannot remove a replaced caption file");
        }
    }
}

async fn listed(state: &SharedState, id: &str) -> Result<Json<Vec<CaptionJson>>, ApiError> {
    state.versions.invalidate(id).await;
    let video = state
        .meta
        .get_video(id)
        .await?
        .value
        .ok_or_else(|| not_found(id))?;
    Ok(Json(captions_json(&video)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags() {
        for good in ["en", "fra", "pt-BR", "zh-Hant", "es-419"] {
            assert!(validate_lang(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "e",
            "english",
            "en_US",
            "en-",
            "../x",
            "en-toolongpart",
            "é",
        ] {
            assert!(validate_lang(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn webvtt_is_checked() {
        let good = "WEBVTT\n\n1\n00:00.000 --> 00:02.500\nHello\n\n00:00:03.000 --> 00:00:05.000 align:start\nWorld\n";
        assert_eq!(validate_vtt(good.as_bytes()), Ok(2));
        assert_eq!(validate_vtt(format!("\u{feff}{good}").as_bytes()), Ok(2));
        assert!(validate_vtt(b"WEBVTT - with a title\n\n00:01.000 --> 00:02.000\nx\n").is_ok());
        for bad in [
            "",
            "1\n00:00.000 --> 00:02.000\nno signature\n",
            "WEBVTT\n\nno cues at all\n",
            "WEBVTT\n\n00:02.000 --> 00:01.000\nbackwards\n",
            "WEBVTT\n\n0:00.000 --> 00:01.000\nshort minutes\n",
            "WEBVTT\n\n00:61.000 --> 00:62.000\nbad seconds\n",
            "WEBVTT\n\n00:01.000 -->\nno end\n",
            "WEBVTT\n\n00:01.000 --> 00:02.000\nnul\0\n",
        ] {
            assert!(validate_vtt(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(validate_vtt(&[0xff, 0xfe, 0x00]).is_err());
    }
}
