//! `helpdesk migrate`, `helpdesk tenant create`, `helpdesk user create`:
//! the ticketing core's set-up from the command line (JSON on stdout).

use clap::{Args, Subcommand};

use crate::config::Settings;
use crate::ticketing::auth::Role;
use crate::ticketing::db::{database_url, Db};
use crate::ticketing::directory::{self, NewUser};

#[derive(Debug, Subcommand)]
pub enum TenantAction {
    /// A tenant, its first admin and an admin API key (shown once).
    Create {
        /// Letters, digits, '-' and '_' (up to 64).
        name: String,
        #[arg(long)]
        admin_email: String,
        #[arg(long, env = "HELPDESK_ADMIN_PASSWORD")]
        admin_password: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// An API key for a tenant's first admin (shown once). The `service`
    /// scope — the worker's and the AI service's key, acting for every
    /// tenant — is given here only, never over the API.
    Create {
        /// The tenant's name or id.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// Comma-separated: *, ai-callback, read, service.
        #[arg(long, value_delimiter = ',', default_value = "*")]
        scopes: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add a user to a tenant.
    Create(UserArgs),
}

#[derive(Debug, Args)]
pub struct UserArgs {
    /// The tenant's name or id.
    #[arg(long)]
    pub tenant: String,
    #[arg(long)]
    pub email: String,
    #[arg(long)]
    pub name: String,
    #[arg(long, value_parser = ["admin", "agent", "customer"], default_value = "agent")]
    pub role: String,
    #[arg(long, env = "HELPDESK_USER_PASSWORD")]
    pub password: String,
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

async fn open(settings: &Settings) -> anyhow::Result<Db> {
    Db::connect(&database_url(
        settings.database.url.as_deref(),
        &settings.data_dir,
    ))
    .await
}

/// Brings the schema up to date (the service also does at start).
pub fn migrate(settings: &Settings) -> anyhow::Result<()> {
    block_on(async {
        let db = open(settings).await?;
        println!(
            "{}",
            serde_json::json!({ "migrated": true, "dialect": format!("{:?}", db.dialect).to_lowercase() })
        );
        Ok(())
    })
}

pub fn tenant(action: &TenantAction, settings: &Settings) -> anyhow::Result<()> {
    let TenantAction::Create {
        name,
        admin_email,
        admin_password,
    } = action;
    block_on(async {
        let db = open(settings).await?;
        let created = directory::create_tenant(&db, name, admin_email, admin_password).await?;
        println!("{}", serde_json::to_string(&created)?);
        Ok(())
    })
}

pub fn user(action: &UserAction, settings: &Settings) -> anyhow::Result<()> {
    let UserAction::Create(a) = action;
    block_on(async {
        let db = open(settings).await?;
        let tenant_id = directory::tenant_id(&db, &a.tenant).await?;
        let new = NewUser {
            email: a.email.clone(),
            name: a.name.clone(),
            role: Role::parse(&a.role).unwrap_or(Role::Agent),
            password: a.password.clone(),
        };
        let user = directory::add_user(&db, &tenant_id, "cli", &new)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("{}", serde_json::to_string(&user)?);
        Ok(())
    })
}

pub fn key(action: &KeyAction, settings: &Settings) -> anyhow::Result<()> {
    let KeyAction::Create {
        tenant,
        name,
        scopes,
    } = action;
    block_on(async {
        let db = open(settings).await?;
        let tenant_id = directory::tenant_id(&db, tenant).await?;
        let admin = directory::first_admin(&db, &tenant_id).await?;
        let key = directory::issue_key(
            &db,
            &tenant_id,
            &admin,
            name,
            scopes,
            &directory::ALL_SCOPES,
            "cli",
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("{}", serde_json::to_string(&key)?);
        Ok(())
    })
}
