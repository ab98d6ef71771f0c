//! The two HTML pages. Every id is escaped for HTML and percent-encoded in links, so an id
//! with quotes, `<script>` or non-ASCII renders as text and its link still works.

use std::fmt::Write;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::meta::{Video, VideoStatus};

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

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
h1 a{color:inherit;text-decoration:none}li{margin:.4rem 0}time,.status{color:#666;font-size:.9em;margin-left:.6rem}\
.notice{padding:.6rem 1rem;border-radius:.4rem;background:#fff3cd}video{width:100%;max-height:80vh;background:#000}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        escape_html(title)
    )
}

/// The index: upload form and every video, newest first.
pub fn index(videos: &[Video], stale: bool) -> String {
    let mut body = String::from(
        "<h1><a href=\"/\">Tritontube</a></h1>\
<form action=\"/upload\" method=\"post\" enctype=\"multipart/form-data\">\
<input type=\"file\" name=\"file\" accept=\"video/mp4\" required> <button type=\"submit\">Upload</button></form>",
    );
    if stale {
        body.push_str(
            "<p class=\"notice\">The metadata store has no quorum: this list may be out of date.</p>",
        );
    }
    body.push_str("<h2>Videos</h2>");
    if videos.is_empty() {
        body.push_str("<p>No videos yet: upload an MP4 above.</p>");
    }
    body.push_str("<ul>");
    for video in videos {
        let time = video
            .uploaded_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let name = escape_html(&video.id);
        match video.status {
            VideoStatus::Ready => {
                let _ = write!(
                    body,
                    "<li><a href=\"/videos/{}\">{name}</a><time datetime=\"{time}\">{}</time></li>",
                    encode_segment(&video.id),
                    video.uploaded_at.format("%Y-%m-%d %H:%M:%S UTC"),
                );
            }
            VideoStatus::Processing => {
                let _ = write!(
                    body,
                    "<li>{name}<span class=\"status\">processing…</span></li>"
                );
            }
        }
    }
    body.push_str("</ul>");
    page("Tritontube", &body)
}

/// The player: dash.js served by this web node, the manifest from the ring.
pub fn player(id: &str) -> String {
    let manifest = format!("/content/{}/manifest.mpd", encode_segment(id));
    let body = format!(
        "<h1><a href=\"/\">Tritontube</a></h1><h2>{}</h2>\
<video id=\"player\" controls data-src=\"{manifest}\"></video>\
<p><a href=\"/\">Back to all videos</a></p>\
<script src=\"/static/dash.all.min.js\"></script>\
<script>const v=document.getElementById('player');\
window.player=dashjs.MediaPlayer().create();window.player.initialize(v,v.dataset.src,false);</script>",
        escape_html(id)
    );
    page(id, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn hostile_ids_render_as_text_with_working_links() {
        let id = "<script>alert('x')</script> \"q\" é/..";
        let videos = vec![Video {
            id: id.to_string(),
            uploaded_at: Utc::now(),
            status: VideoStatus::Ready,
            details: None,
        }];
        let html = index(&videos, false);
        assert!(!html.contains("<script>alert"));
        assert!(
            html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &quot;q&quot; é/..")
        );
        assert!(html.contains(
            "href=\"/videos/%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E%20%22q%22%20%C3%A9%2F..\""
        ));
        let player = player(id);
        assert!(!player.contains("<script>alert"));
        assert!(player.contains("data-src=\"/content/%3Cscript%3E"));
    }
}
