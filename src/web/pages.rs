//! The two HTML pages. Every id is escaped for HTML and percent-encoded in links, so an id
//! with quotes, `<script>` or non-ASCII renders as text and its link still works.

use std::fmt::Write;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{api::VideoJson, assets};
use crate::meta::{Page, Video, VideoStatus};

/// Everything but unreserved characters is encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn html_page(title: &str, body: &str) -> String {
    let v = assets::version();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">\
<link rel=\"stylesheet\" href=\"/static/app.css?v={v}\"></head>\
<body><header><h1><a href=\"/\">Tritontube</a></h1></header><main>{body}</main>\
<script src=\"/static/app.js?v={v}\" defer></script></body></html>\n",
        escape_html(title)
    )
}

/// `1:05`, `1:02:03`.
pub fn format_duration(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

fn state_label(status: VideoStatus) -> &'static str {
    match status {
        VideoStatus::Processing => "Processing…",
        VideoStatus::Playable => "Playable now · higher qualities coming…",
        VideoStatus::Ready => "Ready",
        VideoStatus::Deleting => "Being deleted…",
    }
}

const UPLOAD_FORM: &str = "<section aria-labelledby=\"upload-title\" class=\"upload\">\
<h2 id=\"upload-title\">Upload a video</h2>\
<form id=\"upload-form\" action=\"/upload\" method=\"post\" enctype=\"multipart/form-data\">\
<label for=\"file\">MP4 file (its name without the extension becomes the video's name)</label>\
<input id=\"file\" type=\"file\" name=\"file\" accept=\"video/mp4,video/*\" required>\
<label for=\"captions\">Captions, optional (a WebVTT .vtt file, added once the video plays)</label>\
<input id=\"captions\" type=\"file\" name=\"captions\" accept=\".vtt,text/vtt\">\
<label for=\"captions-lang\">Language of the captions</label>\
<input id=\"captions-lang\" name=\"captions_lang\" value=\"en\" size=\"8\" \
pattern=\"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*\" autocomplete=\"off\">\
<button type=\"submit\">Upload</button></form>\
<div id=\"upload-status\" class=\"upload-status\" hidden>\
<progress id=\"upload-progress\" max=\"100\" value=\"0\" aria-labelledby=\"upload-text\"></progress>\
<p id=\"upload-text\" role=\"status\" aria-live=\"polite\"></p></div>\
<p id=\"captions-status\" role=\"status\" aria-live=\"polite\"></p>\
<p id=\"resume-note\" class=\"notice\" role=\"status\" hidden></p>\
<script src=\"/static/tus.min.js\" defer></script></section>";

/// One card of the index.
fn card(video: &Video, out: &mut String) {
    let json = VideoJson::new(video, None);
    let name = escape_html(&video.id);
    let time = video
        .uploaded_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let state = video.status.as_str();
    let _ = write!(
        out,
        "<li class=\"card\" data-id=\"{name}\" data-state=\"{state}\">"
    );
    match &json.poster_url {
        Some(url) => {
            let _ = write!(
                out,
                "<img class=\"poster\" src=\"{url}\" alt=\"Frame from {name}\" loading=\"lazy\" \
width=\"320\" height=\"180\">"
            );
        }
        None => out.push_str("<div class=\"poster none\" aria-hidden=\"true\"></div>"),
    }
    out.push_str("<div class=\"info\"><h3>");
    if video.status.watchable() {
        let _ = write!(
            out,
            "<a href=\"/videos/{}\">{name}</a>",
            encode_segment(&video.id)
        );
    } else {
        out.push_str(&name);
    }
    out.push_str("</h3><dl>");
    if let Some(d) = json.duration_seconds {
        let _ = write!(out, "<dt>Duration</dt><dd>{}</dd>", format_duration(d));
    }
    if let (Some(w), Some(h)) = (json.width, json.height) {
        let qualities = match json.renditions.len() {
            0 | 1 => String::new(),
            n => format!(" · {n} qualities"),
        };
        let _ = write!(out, "<dt>Resolution</dt><dd>{w}×{h}{qualities}</dd>");
    }
    let _ = write!(
        out,
        "<dt>Uploaded</dt><dd><time datetime=\"{time}\">{}</time></dd></dl>\
<p class=\"state state-{state}\">{}</p></div></li>",
        video.uploaded_at.format("%Y-%m-%d %H:%M UTC"),
        state_label(video.status),
    );
}

/// The index: the upload form and one page of videos, newest first, as cards.
/// `token_required`: adding captions asks for the admin token.
pub fn index(page: &Page, later_page: bool, stale: bool, token_required: bool) -> String {
    let mut body = UPLOAD_FORM.replace(
        "<form id=\"upload-form\"",
        &format!(
            "<form id=\"upload-form\" data-token=\"{}\"",
            if token_required { "required" } else { "none" }
        ),
    );
    if stale {
        body.push_str(
            "<p class=\"notice\" role=\"status\">The metadata store has no quorum: this list may be out of date.</p>",
        );
    }
    body.push_str("<section aria-labelledby=\"videos-title\"><h2 id=\"videos-title\">Videos</h2>");
    if page.videos.is_empty() {
        body.push_str(if later_page {
            "<p>No older videos.</p>"
        } else {
            "<p>No videos yet: upload an MP4 above.</p>"
        });
    }
    body.push_str("<ul class=\"grid\" id=\"videos\">");
    for video in &page.videos {
        card(video, &mut body);
    }
    body.push_str("</ul>");
    if later_page || page.next.is_some() {
        body.push_str("<nav class=\"pages\" aria-label=\"More videos\">");
        if later_page {
            body.push_str("<a href=\"/\">Newest videos</a>");
        }
        if let Some(next) = &page.next {
            let _ = write!(
                body,
                "<a rel=\"next\" href=\"/?after={}\">Older videos</a>",
                encode_segment(&next.encode())
            );
        }
        body.push_str("</nav>");
    }
    body.push_str("</section>");
    html_page("Tritontube", &body)
}

/// The player: dash.js served by this web node, the manifest and poster from the ring at
/// versioned URLs, and a delete button (asking for the admin token when one is set).
pub fn player(video: &Video, token_required: bool) -> String {
    let json = VideoJson::new(video, None);
    let name = escape_html(&video.id);
    let mut body = format!("<h2>{name}</h2>");
    if video.status.watchable() {
        let poster = json
            .poster_url
            .as_deref()
            .map(|url| format!(" poster=\"{url}\""))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<video id=\"player\" controls playsinline{poster} data-src=\"{}\" data-id=\"{name}\" \
data-storyboard=\"{}\" aria-label=\"Video: {name}\">",
            json.manifest_url,
            json.storyboard_url.as_deref().unwrap_or("")
        );
        for caption in &json.captions {
            // The language tag is checked to letters, digits and hyphens when stored.
            let _ = write!(
                body,
                "<track kind=\"subtitles\" srclang=\"{lang}\" label=\"{lang}\" src=\"{}\">",
                caption.url,
                lang = escape_html(&caption.lang)
            );
        }
        body.push_str("</video>");
        if video.status == VideoStatus::Playable {
            let lowest = json
                .renditions
                .iter()
                .map(|r| format!("{}p", r.height))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = write!(
                body,
                "<p class=\"notice\" id=\"playable-note\" role=\"status\">Playable now at {lowest}: \
the higher qualities are still being encoded and join when they are done.</p>"
            );
        }
    } else {
        let _ = write!(
            body,
            "<p class=\"notice\" role=\"status\">{}</p>",
            state_label(video.status)
        );
    }
    body.push_str("<p class=\"details\">");
    let mut parts = Vec::new();
    if let Some(d) = json.duration_seconds {
        parts.push(format_duration(d));
    }
    if let (Some(w), Some(h)) = (json.width, json.height) {
        parts.push(format!("{w}×{h}"));
    }
    if !json.renditions.is_empty() {
        let heights: Vec<String> = json
            .renditions
            .iter()
            .map(|r| format!("{}p", r.height))
            .collect();
        parts.push(format!("qualities {}", heights.join(", ")));
    }
    parts.push(format!(
        "uploaded {}",
        video.uploaded_at.format("%Y-%m-%d %H:%M UTC")
    ));
    body.push_str(&escape_html(&parts.join(" · ")));
    let _ = write!(
        body,
        "</p><p class=\"quality\" id=\"quality\" aria-live=\"polite\"></p>\
<p><button type=\"button\" id=\"delete\" class=\"danger\" data-id=\"{name}\" data-token=\"{}\">\
Delete this video</button></p><p id=\"delete-status\" role=\"status\" aria-live=\"polite\"></p>\
<p><a href=\"/\">Back to all videos</a></p><script src=\"/static/dash.all.min.js\"></script>",
        if token_required { "required" } else { "none" }
    );
    html_page(&video.id, &body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::format_duration(0.4), "0:00");
        assert_eq!(super::format_duration(65.0), "1:05");
        assert_eq!(super::format_duration(3723.0), "1:02:03");
    }

    use super::*;
    use chrono::Utc;

    #[test]
    fn hostile_ids_render_as_text_with_working_links() {
        let id = "<script>alert('x')</script> \"q\" é/..";
        let video = Video {
            id: id.to_string(),
            uploaded_at: Utc::now(),
            status: VideoStatus::Ready,
            details: None,
        };
        let page = Page {
            videos: vec![video.clone()],
            next: None,
        };
        let html = index(&page, false, false, false);
        assert!(!html.contains("<script>alert"));
        assert!(
            html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &quot;q&quot; é/..")
        );
        assert!(html.contains(
            "href=\"/videos/%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E%20%22q%22%20%C3%A9%2F..\""
        ));
        let player = player(&video, false);
        assert!(!player.contains("<script>alert"));
        assert!(player.contains("data-src=\"/content/%3Cscript%3E"));
    }
}
