//! The admin service's video RPCs (ListVideos, DeleteVideo), for the console and
//! `tritontube admin delete`: the same listing and delete as the JSON API, as gRPC.

use tonic::Status;

use crate::library::content::Content;
use crate::library::videos::{self, DeleteError, ListError};
use crate::meta::{MetaError, MetaStore, Video};
use crate::node::keys;
use crate::proto::admin;

/// Videos per page when the request names no limit, and the most it may ask for.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

fn meta_status(e: MetaError) -> Status {
    match e {
        MetaError::NotFound(id) => Status::not_found(format!("no video named {id:?}")),
        MetaError::AlreadyExists(id) => Status::already_exists(format!("video {id:?} exists")),
        MetaError::Unavailable(why) => Status::unavailable(why),
        MetaError::Internal(why) => Status::internal(why),
    }
}

fn info(video: &Video) -> admin::VideoInfo {
    let details = video.details.clone().unwrap_or_default();
    admin::VideoInfo {
        id: video.id.clone(),
        state: video.status.as_str().to_string(),
        duration_seconds: details.duration_seconds,
        width: details.width,
        height: details.height,
        renditions: u32::try_from(details.renditions.len()).unwrap_or(u32::MAX),
        bytes: details.stored_bytes,
        files: details.file_count,
        uploaded_at_ms: video.uploaded_at.timestamp_millis(),
    }
}

pub async fn list(
    meta: &MetaStore,
    request: admin::ListVideosRequest,
) -> Result<admin::ListVideosResponse, Status> {
    let limit = match request.limit as usize {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    let page = videos::list_page(meta, limit, Some(&request.after))
        .await
        .map_err(|e| match e {
            e @ ListError::BadCursor(_) => Status::invalid_argument(e.to_string()),
            ListError::Meta(e) => meta_status(e),
        })?;
    Ok(admin::ListVideosResponse {
        videos: page.value.videos.iter().map(info).collect(),
        next: page.value.next.map(|c| c.encode()).unwrap_or_default(),
        stale: page.stale,
    })
}

pub async fn delete(
    meta: &MetaStore,
    content: &Content,
    request: admin::DeleteVideoRequest,
) -> Result<admin::DeleteVideoResponse, Status> {
    let id = request.id;
    keys::validate_video_id(&id)
        .map_err(|e| Status::invalid_argument(format!("invalid video id {id:?}: {e}")))?;
    match videos::delete_video(meta, content, &id).await {
        Ok(files) => Ok(admin::DeleteVideoResponse {
            deleted_files: files as u64,
        }),
        Err(DeleteError::NotFound(id)) => Err(Status::not_found(format!("no video named {id:?}"))),
        Err(e @ DeleteError::Busy(_)) => Err(Status::failed_precondition(e.to_string())),
        Err(DeleteError::Meta(e)) => Err(meta_status(e)),
        Err(e @ DeleteError::Content { .. }) => Err(Status::unavailable(e.to_string())),
    }
}
