//! Placeholder replaced by the storage node work.
#[derive(clap::Args, Debug)]
pub struct StorageArgs {}
pub async fn run_cli(_args: StorageArgs) -> anyhow::Result<()> {
    anyhow::bail!("storage node not built yet")
}
