//! `admin pace ADMIN MBPS`, `admin pause ADMIN`, `admin resume ADMIN`: the pace and pause
//! of what ring changes and repairs move, changed live and kept in the journal.

use crate::admin::wire::{PaceReply, PauseMovesRequest, ResumeMovesRequest, SetPaceRequest};

use super::{AdminClient, describe};

/// What `admin pace|pause|resume` asks for.
pub enum PaceChange {
    Set(u64),
    Pause,
    Resume,
}

pub async fn run(client: &mut AdminClient, change: PaceChange) -> anyhow::Result<()> {
    let reply = match change {
        PaceChange::Set(mbps) => client.set_pace(SetPaceRequest { mbps }).await,
        PaceChange::Pause => client.pause_moves(PauseMovesRequest {}).await,
        PaceChange::Resume => client.resume_moves(ResumeMovesRequest {}).await,
    }
    .map_err(describe)?
    .into_inner();
    outln!("{}", describe_pace(&reply))?;
    Ok(())
}

/// "Ring changes and repairs: pace 25 MB/s, moving; measured 24.9 MB/s".
pub fn describe_pace(pace: &PaceReply) -> String {
    let limit = match pace.mbps {
        0 => "unlimited".to_string(),
        mbps => format!("{mbps} MB/s"),
    };
    format!(
        "Ring changes and repairs: pace {limit}, {}; measured {:.1} MB/s",
        if pace.paused { "PAUSED" } else { "moving" },
        pace.measured_bytes_per_sec / 1e6
    )
}
