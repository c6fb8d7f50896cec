//! The split form: `helpdesk serve --role core`, `--role ai` and `--role
//! worker` as three processes sharing PostgreSQL. A ticket goes in at the
//! core; the worker claims its job and calls the AI service over HTTP with
//! the operator's service key (made by `helpdesk key create`); the AI
//! service posts the result back to the core; the ticket comes out routed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::core_api::PgDatabase;
use crate::helpers::{models_dir, repo_path, require_model};
use helpdesk::ticketing::db::Db;
use helpdesk::ticketing::directory::create_tenant;

const JWT_SECRET: &str = "split-roles-test-secret-0123456789abcdef";

/// A child process killed when the test ends, pass or fail.
struct Proc {
    child: Child,
    log: std::path::PathBuf,
}

impl Proc {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn helpdesk(data: &Path, db_url: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_helpdesk"));
    c.current_dir(repo_path(""))
        .env_remove("RUST_LOG")
        .env("DATABASE_URL", db_url)
        .env("HELPDESK__AUTH__JWT_SECRET", JWT_SECRET)
        .env("HELPDESK__MODEL__ALLOW_DOWNLOAD", "false")
        .arg("--models-dir")
        .arg(models_dir())
        .arg("--data-dir")
        .arg(data);
    c
}

fn serve(
    name: &str,
    dir: &Path,
    db_url: &str,
    port: u16,
    role: &str,
    env: &[(&str, String)],
) -> Proc {
    let data = dir.join(name);
    let log = dir.join(format!("{name}.log"));
    let mut c = helpdesk(&data, db_url);
    c.args([
        "serve",
        "--role",
        role,
        "--bind",
        &format!("127.0.0.1:{port}"),
    ])
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    Proc {
        child: c.spawn().expect("start helpdesk"),
        log,
    }
}

async fn wait_ready(client: &reqwest::Client, url: &str, p: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(r) = client.get(format!("{url}/ready")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready:\n{}",
            p.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn call(
    client: &reqwest::Client,
    method: &str,
    url: String,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = client
        .request(method.parse().unwrap(), url)
        .bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("request");
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn core_ai_and_worker_as_three_processes_route_a_ticket() {
    require_model();
    let pg = PgDatabase::create().await;
    let dir = crate::helpers::data_dir();
    let db = Db::connect(&pg.url).await.unwrap();
    let acme = create_tenant(&db, "acme", "admin@acme.test", "acme-admin-pw")
        .await
        .unwrap();
    // The operator's service key, made by the CLI.
    let out = helpdesk(&dir.path().join("cli"), &pg.url)
        .args([
            "key", "create", "--tenant", "acme", "--name", "cluster", "--scopes", "service",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(key["scopes"], json!(["service"]));
    let service = key["api_key"].as_str().unwrap().to_string();

    let (core_port, ai_port, worker_port) = (free_port(), free_port(), free_port());
    let core_url = format!("http://127.0.0.1:{core_port}");
    let ai_url = format!("http://127.0.0.1:{ai_port}");
    let core = serve("core", dir.path(), &pg.url, core_port, "core", &[]);
    let ai = serve(
        "ai",
        dir.path(),
        &pg.url,
        ai_port,
        "ai",
        &[
            ("HELPDESK__CLUSTER__CORE_URL", core_url.clone()),
            ("HELPDESK__CLUSTER__SERVICE_KEY", service.clone()),
        ],
    );
    let worker = serve(
        "worker",
        dir.path(),
        &pg.url,
        worker_port,
        "worker",
        &[
            ("HELPDESK__CLUSTER__AI_URL", ai_url.clone()),
            ("HELPDESK__CLUSTER__SERVICE_KEY", service.clone()),
            ("HELPDESK__WORKER__IDLE_MS", "50".into()),
        ],
    );
    let client = reqwest::Client::new();
    wait_ready(&client, &core_url, &core).await;
    wait_ready(&client, &ai_url, &ai).await;
    wait_ready(&client, &format!("http://127.0.0.1:{worker_port}"), &worker).await;
    // Each process serves its own part only.
    let (s, _) = call(
        &client,
        "GET",
        format!("{core_url}/v1/models"),
        &acme.api_key,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(
        &client,
        "GET",
        format!("{ai_url}/api/v1/tickets"),
        &acme.api_key,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // acme trains its team head on the AI service (its own key names it).
    let rows = |split: &str| -> Vec<Value> {
        let mut r = csv::Reader::from_path(repo_path("tests/fixtures/jargon_tickets.csv")).unwrap();
        r.records()
            .map(|x| x.unwrap())
            .filter(|x| &x[2] == split)
            .map(|x| json!({ "text": &x[0], "label": &x[1] }))
            .collect()
    };
    let (s, started) = call(
        &client,
        "POST",
        format!("{ai_url}/v1/models/team/train"),
        &acme.api_key,
        Some(json!({ "examples": rows("train"), "heldout": rows("test"), "seed": 7 })),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{started}");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, job) = call(
            &client,
            "GET",
            format!("{ai_url}{}", started["status_url"].as_str().unwrap()),
            &acme.api_key,
            None,
        )
        .await;
        if job["status"] == "succeeded" {
            break;
        }
        assert_ne!(job["status"], "failed", "{job}");
        assert!(Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The core: a team, a permissive threshold, and a ticket.
    let (s, team) = call(
        &client,
        "POST",
        format!("{core_url}/api/v1/teams"),
        &acme.api_key,
        Some(json!({ "name": "database" })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{team}");
    let (s, _) = call(
        &client,
        "PUT",
        format!("{core_url}/api/v1/tenant/settings"),
        &acme.api_key,
        Some(json!({ "route_threshold": 0.05 })),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, t) = call(
        &client,
        "POST",
        format!("{core_url}/api/v1/tickets"),
        &acme.api_key,
        Some(json!({ "subject": "ORA-00942 when the ETL reads the customer view" })),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let id = t["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let routed = loop {
        let (_, t) = call(
            &client,
            "GET",
            format!("{core_url}/api/v1/tickets/{id}"),
            &acme.api_key,
            None,
        )
        .await;
        if t["triage"]["status"] != "pending" {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "not triaged: {t}\n--- worker:\n{}\n--- ai:\n{}\n--- core:\n{}",
            worker.log_tail(),
            ai.log_tail(),
            core.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(routed["triage"]["status"], "applied", "{routed}");
    assert_eq!(routed["team_id"], team["id"], "{routed}");
    assert_eq!(routed["triage"]["labels"]["team"]["top"], "database");
    let row = sqlx::query("SELECT actor FROM predictions WHERE ticket_id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let actor: String = sqlx::Row::try_get(&row, "actor").unwrap();
    assert!(
        actor.starts_with("ai:") && actor != "ai:in-process",
        "posted over HTTP with the service key: {actor}"
    );
}

/// Crash test: `kill -9` the all-in-one server during a create load (its
/// worker triaging at the same time). After a restart on the same data
/// directory every acknowledged ticket exists, and every ticket is triaged
/// exactly once in effect (one prediction each, every triage job done).
#[tokio::test]
async fn a_killed_server_loses_no_acknowledged_ticket_and_triages_each_once_sqlite() {
    let dir = crate::helpers::data_dir();
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("crash.db").display()
    );
    killed_server(dir, db_url).await;
}

#[tokio::test]
async fn a_killed_server_loses_no_acknowledged_ticket_and_triages_each_once_postgres() {
    let pg = PgDatabase::create().await;
    killed_server(crate::helpers::data_dir(), pg.url.clone()).await;
}

async fn killed_server(dir: tempfile::TempDir, db_url: String) {
    require_model();
    let db = Db::connect(&db_url).await.unwrap();
    let acme = create_tenant(&db, "acme", "admin@acme.test", "acme-admin-pw")
        .await
        .unwrap();
    let no_limits = [
        ("HELPDESK__SECURITY__RATE_PER_KEY", "0".to_string()),
        ("HELPDESK__SECURITY__RATE_PER_IP", "0".to_string()),
        ("HELPDESK__WORKER__IDLE_MS", "50".to_string()),
        // Jobs the killed process held are claimed again after this.
        ("HELPDESK__WORKER__LEASE_S", "5".to_string()),
    ];
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = serve("all", dir.path(), &db_url, port, "all", &no_limits);
    let client = reqwest::Client::new();
    wait_ready(&client, &url, &server).await;

    // Eight writers; the server is killed while they write.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, url, key, acked) = (
            client.clone(),
            url.clone(),
            acme.api_key.clone(),
            acked.clone(),
        );
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let r = client
                    .post(format!("{url}/api/v1/tickets"))
                    .bearer_auth(&key)
                    .json(&json!({ "subject": format!("VPN drops again ({w}/{n})") }))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        let v: Value = r.json().await.unwrap();
                        acked.lock().unwrap().push(v["id"].as_i64().unwrap());
                    }
                    _ => return, // the server is gone
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20, "the load ran: {} tickets", acked.len());

    // Restart on the same data directory and database.
    server = serve("all", dir.path(), &db_url, port, "all", &no_limits);
    wait_ready(&client, &url, &server).await;
    for id in &acked {
        let (s, t) = call(
            &client,
            "GET",
            format!("{url}/api/v1/tickets/{id}"),
            &acme.api_key,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "acknowledged ticket {id} lost: {t}");
    }
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let row = sqlx::query(sql).fetch_one(&db.pool).await.unwrap();
            sqlx::Row::try_get::<i64, _>(&row, 0).unwrap()
        }
    };
    let tickets = count("SELECT COUNT(*) FROM tickets").await;
    assert!(tickets >= acked.len() as i64);
    let deadline = Instant::now() + Duration::from_secs(240);
    while count("SELECT COUNT(*) FROM tickets WHERE triage_status = 'pending'").await > 0 {
        assert!(
            Instant::now() < deadline,
            "tickets left untriaged:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        count("SELECT COUNT(*) FROM predictions").await,
        tickets,
        "one prediction per ticket"
    );
    assert_eq!(
        count("SELECT COUNT(DISTINCT ticket_id) FROM predictions").await,
        tickets
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM outbox WHERE kind = 'triage' AND status = 'done'").await,
        tickets,
        "every triage job done, none dead"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM tickets WHERE triage_status = 'failed'").await,
        0
    );
}
