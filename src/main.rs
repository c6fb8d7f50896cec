use anyhow::Context;
use clap::Parser;
use helpdesk::cli::{self, Cli, Command};
use helpdesk::{inference, ml_cli, startup::Application, telemetry, ticketing_cli};

// candle allocates and frees large buffers on every step; glibc's malloc
// hands them back to the kernel each time (page faults, 3x slower training).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::Train(args) => ml_cli::train(args, &settings),
        Command::Eval(args) => ml_cli::eval(args, &settings),
        Command::Heads { action } => ml_cli::heads(action, &settings),
        Command::Kb {
            action: cli::KbAction::Import(args),
        } => helpdesk::kb_cli::import(args, &settings),
        Command::Kb {
            action: cli::KbAction::Snapshot { dest },
        } => helpdesk::kb_cli::snapshot(dest, &settings),
        Command::Migrate => ticketing_cli::migrate(&settings),
        Command::Tenant { action } => ticketing_cli::tenant(action, &settings),
        Command::User { action } => ticketing_cli::user(action, &settings),
        Command::Key { action } => ticketing_cli::key(action, &settings),
    }
}
