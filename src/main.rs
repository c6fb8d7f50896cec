use anyhow::Context;
use clap::Parser;
use helpdesk::cli::{self, Cli, Command};
use helpdesk::{inference, startup::Application, telemetry};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = cli.settings()?;
    telemetry::init(&settings.log);
    // Before any thread exists: the encoder's kernels and candle's matmul share
    // rayon's global pool.
    inference::device::configure_threads(settings.model.threads);
    match &cli.command {
        Command::Serve { .. } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("start the async runtime")?;
            rt.block_on(async {
                let app = Application::build(settings).await?;
                app.run_until_stopped().await
            })
        }
        Command::Embed {
            texts,
            no_normalize,
            truncate,
            ..
        } => cli::embed(texts, !no_normalize, *truncate, &settings),
        Command::Models { action } => cli::models(action, &settings),
    }
}
