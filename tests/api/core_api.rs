//! The ticketing core over HTTP, every test on SQLite and on PostgreSQL
//! (a fresh database per test; PostgreSQL from `TEST_POSTGRES_URL`, default
//! the local server, which must be running: the test fails, never skips).

use reqwest::StatusCode;
use serde_json::{json, Value};

use helpdesk::ticketing::db::Db;
use helpdesk::ticketing::directory::{create_tenant, CreatedTenant};

use crate::helpers::{spawn_app_with, test_settings, TestApp};

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A PostgreSQL database made for one test and dropped after it (also when
/// the test fails).
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        let admin_url = std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("hd_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::any::install_default_drivers();
        let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {admin_url} is needed by this test (start it: see README): {e}"
                )
            });
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create the test database");
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        Self {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Its own thread and runtime: drop may run inside a test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await {
                    let _ = sqlx::Executor::execute(
                        &mut c,
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

pub struct CoreApp {
    pub app: TestApp,
    pub db: Db,
    pub acme: CreatedTenant,
    pub globex: CreatedTenant,
    /// The first process's settings (same database), for a second one.
    pub settings: helpdesk::config::Settings,
    _pg: Option<PgDatabase>,
}

/// The core with the triage worker off: these tests drive the outbox
/// themselves (`triage_api` runs the worker).
pub async fn spawn_core(backend: Backend) -> CoreApp {
    spawn_core_with(backend, false).await
}

pub async fn spawn_core_with(backend: Backend, worker: bool) -> CoreApp {
    spawn_core_custom(backend, |s| s.worker.enabled = worker).await
}

/// The core with settings of the test's choosing (the worker is off unless
/// `tweak` turns it on).
pub async fn spawn_core_custom(
    backend: Backend,
    tweak: impl FnOnce(&mut helpdesk::config::Settings),
) -> CoreApp {
    let data = crate::helpers::data_dir();
    let mut settings = test_settings();
    settings.worker.enabled = false;
    settings.worker.idle_ms = 50;
    tweak(&mut settings);
    settings.data_dir = data.path().to_path_buf();
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(PgDatabase::create().await),
    };
    let url = match &pg {
        Some(pg) => pg.url.clone(),
        None => format!(
            "sqlite://{}?mode=rwc",
            data.path().join("helpdesk.db").display()
        ),
    };
    settings.database.url = Some(url.clone());
    let second = settings.clone();
    let mut app = spawn_app_with(settings, false).await;
    app._data = Some(data);
    let db = Db::connect(&url).await.expect("connect");
    let acme = create_tenant(&db, "acme", "admin@acme.test", "acme-admin-pw")
        .await
        .unwrap();
    let globex = create_tenant(&db, "globex", "admin@globex.test", "globex-admin-pw")
        .await
        .unwrap();
    CoreApp {
        app,
        db,
        acme,
        globex,
        settings: second,
        _pg: pg,
    }
}

impl CoreApp {
    /// Another core process on the same database (its own data directory).
    pub async fn another_process(&self) -> TestApp {
        let mut s = self.settings.clone();
        s.data_dir = helpdesk::config::Settings::default().data_dir;
        spawn_app_with(s, false).await
    }

    /// A `service` key as the operator makes it (`helpdesk key create`).
    pub async fn service_key(&self) -> String {
        let admin = helpdesk::ticketing::directory::first_admin(&self.db, &self.acme.tenant_id)
            .await
            .unwrap();
        helpdesk::ticketing::directory::issue_key(
            &self.db,
            &self.acme.tenant_id,
            &admin,
            "worker",
            &["service".to_string()],
            &helpdesk::ticketing::directory::ALL_SCOPES,
            "cli",
        )
        .await
        .unwrap()
        .api_key
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{}", self.app.address, path);
        let mut req = self
            .app
            .client
            .request(method.parse().unwrap(), url)
            .bearer_auth(bearer);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status();
        let text = r.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, body)
    }

    pub async fn login(&self, tenant: &str, email: &str, password: &str) -> (StatusCode, Value) {
        let r = self
            .app
            .post_json(
                "/api/v1/auth/login",
                &json!({ "tenant": tenant, "email": email, "password": password }),
            )
            .await;
        (r.status(), r.json().await.unwrap())
    }

    /// A user of the tenant (created by its admin key) and their login token.
    pub async fn user(&self, t: &CreatedTenant, email: &str, role: &str) -> (String, String) {
        let (s, u) = self
            .call(
                "POST",
                "/api/v1/users",
                &t.api_key,
                Some(json!({ "email": email, "name": email, "role": role, "password": "password-123" })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{u}");
        let (s, login) = self.login(&t.name, email, "password-123").await;
        assert_eq!(s, StatusCode::OK, "{login}");
        (
            u["id"].as_str().unwrap().to_string(),
            login["token"].as_str().unwrap().to_string(),
        )
    }

    /// A ticket created with `key` (asserted 201): its id.
    pub async fn ticket(&self, key: &str, body: Value) -> i64 {
        let (s, t) = self.call("POST", "/api/v1/tickets", key, Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        t["id"].as_i64().unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let row = sqlx::query(sql).fetch_one(&self.db.pool).await.unwrap();
        sqlx::Row::try_get(&row, 0).unwrap()
    }
}

on_both!(
    a_ticket_goes_from_customer_to_agent_with_its_outbox_job_audit_and_labels,
    another_tenants_objects_are_404_everywhere,
    credentials_roles_and_bad_input_are_refused_without_changes,
    tickets_page_newest_first_with_filters,
    the_sla_report_counts_open_breaches_and_tickets_solved_late,
    the_audit_log_and_agents_labels_read_back_and_export_for_training,
    ai_routes_take_the_tenant_from_the_credential,
    outbox_jobs_are_claimed_once_retried_with_backoff_and_dead_lettered,
    attachments_are_stored_checked_and_fenced_by_tenant_and_role,
    assets_and_work_orders_belong_to_one_tenant_and_to_staff,
);

async fn a_ticket_goes_from_customer_to_agent_with_its_outbox_job_audit_and_labels(b: Backend) {
    let c = spawn_core(b).await;
    let (_, agent) = c.user(&c.acme, "agent@acme.test", "agent").await;
    let (customer_id, customer) = c.user(&c.acme, "carol@acme.test", "customer").await;
    let (_, other_customer) = c.user(&c.acme, "dave@acme.test", "customer").await;
    let (s, me) = c.call("GET", "/api/v1/me", &customer, None).await;
    assert_eq!((s, me["role"].as_str()), (StatusCode::OK, Some("customer")));

    let (s, team) = c
        .call(
            "POST",
            "/api/v1/teams",
            &c.acme.api_key,
            Some(json!({ "name": "Network" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{team}");
    let team_id = team["id"].as_i64().unwrap();

    // The customer opens a ticket: it is theirs, new, with an SLA and a pending triage job.
    let (s, t) = c
        .call(
            "POST",
            "/api/v1/tickets",
            &customer,
            Some(json!({ "subject": "VPN drops every 10 minutes", "body": "Since this morning.", "priority": "high", "channel": "web" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let id = t["id"].as_i64().unwrap();
    assert_eq!(t["requester_id"], customer_id.as_str());
    assert_eq!(t["status"], "new");
    assert_eq!(
        t["sla_due"].as_i64().unwrap() - t["created_at"].as_i64().unwrap(),
        24 * 3600
    );
    assert_eq!(
        c.count(&format!("SELECT COUNT(*) FROM outbox WHERE kind = 'triage' AND idempotency_key = 'triage:{id}' AND status = 'pending'")).await,
        1
    );
    let (s, read) = c
        .call("GET", &format!("/api/v1/tickets/{id}"), &customer, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(read.get("triage").is_none(), "staff only: {read}");
    let (_, read) = c
        .call("GET", &format!("/api/v1/tickets/{id}"), &agent, None)
        .await;
    assert_eq!(read["triage"]["status"], "pending", "{read}");

    // Another customer of the same tenant does not see it; the agent does.
    let (s, _) = c
        .call(
            "GET",
            &format!("/api/v1/tickets/{id}"),
            &other_customer,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, page) = c
        .call("GET", "/api/v1/tickets", &other_customer, None)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0, "{page}");
    let (_, page) = c.call("GET", "/api/v1/tickets", &agent, None).await;
    assert_eq!(page["items"][0]["id"], id);

    // The agent routes it; the changes become labels and an audit entry.
    let (s, routed) = c
        .call(
            "PATCH",
            &format!("/api/v1/tickets/{id}"),
            &agent,
            Some(json!({ "category": "network", "team_id": team_id, "priority": "urgent", "status": "open" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{routed}");
    assert_eq!(
        (routed["team_id"].as_i64(), routed["category"].as_str()),
        (Some(team_id), Some("network"))
    );
    assert_eq!(
        c.count(&format!("SELECT COUNT(*) FROM labels WHERE ticket_id = {id} AND task IN ('category', 'team', 'priority')")).await,
        3
    );
    assert_eq!(
        c.count(&format!("SELECT COUNT(*) FROM audit_log WHERE action = 'ticket.update' AND object = 'ticket:{id}'")).await,
        1
    );
    // null clears; a customer may not re-route their own ticket.
    let (s, cleared) = c
        .call(
            "PATCH",
            &format!("/api/v1/tickets/{id}"),
            &agent,
            Some(json!({ "category": null })),
        )
        .await;
    assert_eq!(
        (s, cleared["category"].clone()),
        (StatusCode::OK, Value::Null)
    );
    assert_eq!(cleared["team_id"], team_id, "fields left out are unchanged");
    let (s, _) = c
        .call(
            "PATCH",
            &format!("/api/v1/tickets/{id}"),
            &customer,
            Some(json!({ "priority": "low" })),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Comments: an internal note is hidden from the customer.
    for (who, body) in [
        (
            &agent,
            json!({ "body": "Checking the VPN gateway logs", "public": false }),
        ),
        (&agent, json!({ "body": "Please update your VPN client." })),
        (&customer, json!({ "body": "Updated, works now." })),
    ] {
        let (s, r) = c
            .call(
                "POST",
                &format!("/api/v1/tickets/{id}/comments"),
                who,
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{r}");
    }
    let (s, _) = c
        .call(
            "POST",
            &format!("/api/v1/tickets/{id}/comments"),
            &customer,
            Some(json!({ "body": "x", "public": false })),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, staff_view) = c
        .call(
            "GET",
            &format!("/api/v1/tickets/{id}/comments"),
            &agent,
            None,
        )
        .await;
    let (_, customer_view) = c
        .call(
            "GET",
            &format!("/api/v1/tickets/{id}/comments"),
            &customer,
            None,
        )
        .await;
    assert_eq!(staff_view["items"].as_array().unwrap().len(), 3);
    let seen: Vec<&str> = customer_view["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        seen,
        ["Please update your VPN client.", "Updated, works now."]
    );
}

async fn another_tenants_objects_are_404_everywhere(b: Backend) {
    let c = spawn_core(b).await;
    let (_, acme_agent) = c.user(&c.acme, "agent@acme.test", "agent").await;
    let (globex_agent_id, globex_agent) = c.user(&c.globex, "agent@globex.test", "agent").await;
    let (s, team) = c
        .call(
            "POST",
            "/api/v1/teams",
            &c.globex.api_key,
            Some(json!({ "name": "Globex ops" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let globex_team = team["id"].as_i64().unwrap();
    let (_, t) = c
        .call(
            "POST",
            "/api/v1/tickets",
            &globex_agent,
            Some(json!({ "subject": "Globex secret" })),
        )
        .await;
    let id = t["id"].as_i64().unwrap();
    let before = c.count("SELECT COUNT(*) FROM audit_log").await;

    // Every way in from acme, with a token and with acme's admin key: 404.
    for who in [&acme_agent, &c.acme.api_key] {
        for (method, path, body) in [
            ("GET", format!("/api/v1/tickets/{id}"), None),
            (
                "PATCH",
                format!("/api/v1/tickets/{id}"),
                Some(json!({ "status": "closed" })),
            ),
            ("GET", format!("/api/v1/tickets/{id}/comments"), None),
            (
                "POST",
                format!("/api/v1/tickets/{id}/comments"),
                Some(json!({ "body": "hi" })),
            ),
        ] {
            let (s, r) = c.call(method, &path, who, body).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {r}");
            assert_eq!(r["code"], "not_found");
        }
        // Lists hold only acme's objects.
        for path in ["/api/v1/tickets", "/api/v1/teams", "/api/v1/users"] {
            let (s, r) = c.call("GET", path, who, None).await;
            assert_eq!(s, StatusCode::OK);
            let text = r.to_string();
            assert!(
                !text.contains("Globex") && !text.contains("globex"),
                "{path}: {r}"
            );
        }
        let (_, r) = c
            .call(
                "GET",
                &format!("/api/v1/tickets?requester_id={globex_agent_id}"),
                who,
                None,
            )
            .await;
        assert_eq!(r["items"].as_array().unwrap().len(), 0);
        // Another tenant's team or agent cannot be referenced.
        let (s, _) = c
            .call(
                "POST",
                "/api/v1/tickets",
                who,
                Some(json!({ "subject": "x", "team_id": globex_team })),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let (s, _) = c
            .call(
                "POST",
                "/api/v1/tickets",
                who,
                Some(json!({ "subject": "x", "assignee_id": globex_agent_id })),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    }
    // Logging in to globex with acme's credentials fails.
    let (s, _) = c.login("globex", "agent@acme.test", "password-123").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Nothing of globex changed.
    let (_, still) = c
        .call("GET", &format!("/api/v1/tickets/{id}"), &globex_agent, None)
        .await;
    assert_eq!(still["status"], "new");
    assert_eq!(c.count("SELECT COUNT(*) FROM audit_log").await, before);
    assert_eq!(
        c.count(&format!(
            "SELECT COUNT(*) FROM comments WHERE ticket_id = {id}"
        ))
        .await,
        0
    );
}

async fn credentials_roles_and_bad_input_are_refused_without_changes(b: Backend) {
    let c = spawn_core(b).await;
    let (_, agent) = c.user(&c.acme, "agent@acme.test", "agent").await;
    let (_, customer) = c.user(&c.acme, "carol@acme.test", "customer").await;

    // No, malformed, unknown, tampered credentials: 401 with a JSON error.
    let r = c.app.get("/api/v1/tickets").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    for bad in ["hd_not-a-key", "not.a.jwt", &format!("{agent}x")] {
        let (s, r) = c.call("GET", "/api/v1/tickets", bad, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(r["code"], "unauthorized");
    }
    let (s, _) = c.login("acme", "agent@acme.test", "wrong-password").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = c.login("nope", "agent@acme.test", "password-123").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Roles: customers see no directory; agents create no users or teams.
    let (s, _) = c.call("GET", "/api/v1/users", &customer, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = c
        .call("POST", "/api/v1/users", &agent, Some(json!({ "email": "x@acme.test", "name": "x", "role": "admin", "password": "password-123" })))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = c
        .call(
            "POST",
            "/api/v1/teams",
            &agent,
            Some(json!({ "name": "t" })),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = c
        .call(
            "POST",
            "/api/v1/tickets",
            &customer,
            Some(json!({ "subject": "x", "category": "billing" })),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Bad input: 4xx, JSON, and nothing written.
    let tickets = c.count("SELECT COUNT(*) FROM tickets").await;
    let users = c.count("SELECT COUNT(*) FROM users").await;
    for body in [
        json!({ "subject": "" }),
        json!({ "subject": "x", "priority": "whenever" }),
        json!({ "subject": "x", "channel": "pigeon" }),
        json!({ "subject": "x", "tags": vec!["a"; 21] }),
        json!({ "subject": "x", "unknown": 1 }),
        json!({ "subject": 5 }),
    ] {
        let (s, r) = c
            .call("POST", "/api/v1/tickets", &agent, Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {r}");
        assert!(r["error"].is_string());
    }
    let r = c
        .app
        .client
        .post(format!("{}/api/v1/tickets", c.app.address))
        .bearer_auth(&agent)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    for body in [
        json!({ "email": "not-an-email", "name": "x", "role": "agent", "password": "password-123" }),
        json!({ "email": "y@acme.test", "name": "x", "role": "agent", "password": "short" }),
        json!({ "email": "y@acme.test", "name": "x", "role": "root", "password": "password-123" }),
    ] {
        let (s, _) = c
            .call("POST", "/api/v1/users", &c.acme.api_key, Some(body.clone()))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let (s, _) = c
        .call("POST", "/api/v1/users", &c.acme.api_key, Some(json!({ "email": "AGENT@acme.test", "name": "x", "role": "agent", "password": "password-123" })))
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "e-mails are unique per tenant, case-insensitively"
    );
    let (s, r) = c.call("GET", "/api/v1/tickets/abc", &agent, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
    let (s, _) = c
        .call("GET", "/api/v1/tickets?limit=1000", &agent, None)
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(c.count("SELECT COUNT(*) FROM tickets").await, tickets);
    assert_eq!(c.count("SELECT COUNT(*) FROM users").await, users);
    assert_eq!(c.count("SELECT COUNT(*) FROM outbox").await, 0);

    // A scoped key made by the admin works; a revoked one would not exist in the lookup.
    let (s, k) = c
        .call(
            "POST",
            "/api/v1/api-keys",
            &c.acme.api_key,
            Some(json!({ "name": "ai", "scopes": ["ai-callback"] })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let (s, me) = c
        .call("GET", "/api/v1/me", k["api_key"].as_str().unwrap(), None)
        .await;
    assert_eq!((s, me["role"].as_str()), (StatusCode::OK, Some("admin")));
    let (s, _) = c
        .call(
            "POST",
            "/api/v1/api-keys",
            &c.acme.api_key,
            Some(json!({ "name": "x", "scopes": ["root"] })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Keys are stored hashed: the database never holds one in clear.
    let stored = c
        .count(&format!(
            "SELECT COUNT(*) FROM api_keys WHERE key_hash = '{}'",
            c.acme.api_key
        ))
        .await;
    assert_eq!(stored, 0);
}

async fn tickets_page_newest_first_with_filters(b: Backend) {
    let c = spawn_core(b).await;
    let (_, agent) = c.user(&c.acme, "agent@acme.test", "agent").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let priority = if i % 2 == 0 { "high" } else { "low" };
        let (s, t) = c
            .call(
                "POST",
                "/api/v1/tickets",
                &agent,
                Some(json!({ "subject": format!("ticket {i}"), "priority": priority })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        ids.push(t["id"].as_i64().unwrap());
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/tickets?limit=3".to_string();
    loop {
        let (s, page) = c.call("GET", &path, &agent, None).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_i64().unwrap()),
        );
        match page["next_before"].as_i64() {
            Some(b) => path = format!("/api/v1/tickets?limit=3&before={b}"),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "every ticket once, newest first");
    let (_, high) = c
        .call("GET", "/api/v1/tickets?priority=high", &agent, None)
        .await;
    assert_eq!(high["items"].as_array().unwrap().len(), 4);
    assert!(high["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["priority"] == "high"));
    let (_, none) = c
        .call("GET", "/api/v1/tickets?status=solved", &agent, None)
        .await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
}

async fn the_sla_report_counts_open_breaches_and_tickets_solved_late(b: Backend) {
    let c = spawn_core(b).await;
    let key = c.acme.api_key.clone();
    let mut ids = Vec::new();
    for priority in ["urgent", "normal", "low"] {
        let (s, t) = c
            .call(
                "POST",
                "/api/v1/tickets",
                &key,
                Some(json!({ "subject": format!("{priority} one"), "priority": priority })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        assert_eq!(t["solved_at"], Value::Null);
        ids.push(t["id"].as_i64().unwrap());
    }
    let (urgent, normal, low) = (ids[0], ids[1], ids[2]);
    // Time passes: the urgent ticket is 6 hours past due, the low one due
    // within the hour.
    let at = helpdesk::ticketing::db::now();
    for sql in [
        format!(
            "UPDATE tickets SET created_at = {}, sla_due = {} WHERE id = {urgent}",
            at - 10 * 3600,
            at - 6 * 3600
        ),
        format!(
            "UPDATE tickets SET sla_due = {} WHERE id = {low}",
            at + 3600
        ),
    ] {
        sqlx::query(&sql).execute(&c.db.pool).await.unwrap();
    }
    let sla = |query: &'static str| {
        let c = &c;
        let key = key.clone();
        async move {
            let (s, r) = c
                .call("GET", &format!("/api/v1/analytics/sla{query}"), &key, None)
                .await;
            assert_eq!(s, StatusCode::OK, "{r}");
            r
        }
    };
    let r = sla("").await;
    assert_eq!(r["breached_open"], json!({ "urgent": 1 }), "{r}");
    assert_eq!(r["due_within_24h"], json!({ "low": 1 }), "{r}");
    assert_eq!(r["solved"], json!({}), "{r}");
    assert_eq!(r["breach_rate"], Value::Null);

    let patch = |id: i64, body: Value| {
        let c = &c;
        let key = key.clone();
        async move {
            let (s, t) = c
                .call("PATCH", &format!("/api/v1/tickets/{id}"), &key, Some(body))
                .await;
            assert_eq!(s, StatusCode::OK, "{t}");
            t
        }
    };
    // Solved late, solved in time: the open breach is gone, the history has both.
    let t = patch(urgent, json!({ "status": "solved" })).await;
    assert!(t["solved_at"].as_i64().unwrap() >= at, "{t}");
    patch(normal, json!({ "status": "closed" })).await;
    let r = sla("").await;
    assert_eq!(r["breached_open"], json!({}), "{r}");
    assert_eq!(
        r["solved"],
        json!({ "urgent": { "on_time": 0, "late": 1 }, "normal": { "on_time": 1, "late": 0 } }),
        "{r}"
    );
    assert_eq!(r["breach_rate"], 0.5);
    // Reopened: no longer solved; it counts again when solved again.
    let t = patch(normal, json!({ "status": "open" })).await;
    assert_eq!(t["solved_at"], Value::Null, "{t}");
    let r = sla("").await;
    assert_eq!(
        r["solved"],
        json!({ "urgent": { "on_time": 0, "late": 1 } }),
        "{r}"
    );
    assert_eq!(r["breach_rate"], 1.0);
    // A new priority moves the due time (counted from creation).
    let t = patch(low, json!({ "priority": "high" })).await;
    assert_eq!(
        t["sla_due"].as_i64().unwrap() - t["created_at"].as_i64().unwrap(),
        24 * 3600,
        "{t}"
    );
    // A window without resolutions; a bad window changes nothing and says why.
    let later = format!("?since={}", at + 3600);
    let (s, r) = c
        .call(
            "GET",
            &format!("/api/v1/analytics/sla{later}&until={}", at + 7200),
            &key,
            None,
        )
        .await;
    assert_eq!((s, &r["solved"]), (StatusCode::OK, &json!({})), "{r}");
    let (s, e) = c
        .call(
            "GET",
            &format!("/api/v1/analytics/sla?since={at}&until={}", at - 1),
            &key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e["error"].as_str().unwrap().contains("since"), "{e}");
    // Another tenant sees none of it.
    let (_, g) = c
        .call("GET", "/api/v1/analytics/sla", &c.globex.api_key, None)
        .await;
    assert_eq!(
        (&g["breached_open"], &g["solved"]),
        (&json!({}), &json!({})),
        "{g}"
    );
}

async fn the_audit_log_and_agents_labels_read_back_and_export_for_training(b: Backend) {
    let c = spawn_core(b).await;
    let (_, agent) = c.user(&c.acme, "agent@acme.test", "agent").await;
    let (_, customer) = c.user(&c.acme, "carol@acme.test", "customer").await;
    let mut ids = Vec::new();
    for subject in ["VPN drops at night", "Mailbox full", "Printer on fire"] {
        ids.push(
            c.ticket(
                &customer,
                json!({ "subject": subject, "body": "Please help." }),
            )
            .await,
        );
    }
    // Agents correct the routing: two category labels on the first ticket
    // (the latest is the one to train on), one on the second, a priority.
    for (id, patch) in [
        (ids[0], json!({ "category": "network" })),
        (ids[0], json!({ "category": "vpn" })),
        (ids[1], json!({ "category": "email" })),
        (ids[2], json!({ "priority": "urgent" })),
    ] {
        let (s, t) = c
            .call(
                "PATCH",
                &format!("/api/v1/tickets/{id}"),
                &agent,
                Some(patch),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{t}");
    }
    let get = |who: &str, path: &str| {
        let (c, who, path) = (&c, who.to_string(), path.to_string());
        async move { c.call("GET", &path, &who, None).await }
    };
    let (s, all) = get(&agent, "/api/v1/labels").await;
    assert_eq!(s, StatusCode::OK, "{all}");
    let tasks: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["task"].as_str().unwrap())
        .collect();
    assert_eq!(
        tasks,
        ["priority", "category", "category", "category"],
        "newest first"
    );
    assert_eq!(all["items"][0]["text"], "Printer on fire\nPlease help.");
    assert_eq!(all["items"][0]["previous"], "normal");
    // Pages of two, by task.
    let (_, p1) = get(&agent, "/api/v1/labels?task=category&limit=2").await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 2, "{p1}");
    let before = p1["next_before"].as_i64().unwrap();
    let (_, p2) = get(
        &agent,
        &format!("/api/v1/labels?task=category&limit=2&before={before}"),
    )
    .await;
    assert_eq!(p2["items"].as_array().unwrap().len(), 1, "{p2}");
    assert_eq!(p2["next_before"], Value::Null);
    assert_eq!(p2["items"][0]["label"], "network");
    // CSV for `helpdesk train --data`: each ticket once, its latest label.
    let r = c
        .app
        .client
        .get(format!(
            "{}/api/v1/labels?task=category&format=csv",
            c.app.address
        ))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let body = r.text().await.unwrap();
    let mut rows: Vec<(String, String)> = csv::Reader::from_reader(body.as_bytes())
        .records()
        .map(|x| {
            let x = x.unwrap();
            (x[0].to_string(), x[1].to_string())
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            (
                "Mailbox full\nPlease help.".to_string(),
                "email".to_string()
            ),
            (
                "VPN drops at night\nPlease help.".to_string(),
                "vpn".to_string()
            ),
        ],
        "{body}"
    );
    // Staff only; bad filters are 422; another tenant sees none of it.
    assert_eq!(
        get(&customer, "/api/v1/labels").await.0,
        StatusCode::FORBIDDEN
    );
    for bad in [
        "/api/v1/labels?task=colour",
        "/api/v1/labels?format=xml",
        "/api/v1/labels?format=csv",
        "/api/v1/labels?limit=0",
    ] {
        assert_eq!(
            get(&agent, bad).await.0,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}"
        );
    }
    let (_, g) = get(&c.globex.api_key, "/api/v1/labels").await;
    assert_eq!(g["items"], json!([]), "{g}");

    // The audit log: admins only, filtered, with before and after.
    assert_eq!(get(&agent, "/api/v1/audit").await.0, StatusCode::FORBIDDEN);
    let (s, a) = get(
        &c.acme.api_key,
        &format!(
            "/api/v1/audit?object=ticket:{}&action=ticket.update",
            ids[0]
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let entries = a["items"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{a}");
    assert_eq!(entries[0]["after"]["category"], "vpn");
    assert_eq!(entries[0]["before"]["category"], "network");
    assert_eq!(entries[1]["before"]["category"], Value::Null);
    let (_, mine) = get(&c.acme.api_key, "/api/v1/audit?limit=200").await;
    assert!(mine["items"].as_array().unwrap().len() >= 7, "{mine}");
    let (_, theirs) = get(&c.globex.api_key, "/api/v1/audit?action=ticket.update").await;
    assert_eq!(theirs["items"], json!([]), "{theirs}");
    assert_eq!(
        get(&c.acme.api_key, "/api/v1/audit?limit=201").await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

/// `helpdesk migrate`, `tenant create` and `user create` on the embedded
/// default (SQLite under the data directory), then the service serves them.
#[tokio::test]
async fn cli_creates_tenants_and_users_that_the_service_accepts() {
    let data = crate::helpers::data_dir();
    let helpdesk = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_helpdesk"))
            .current_dir(crate::helpers::repo_path(""))
            .env_remove("RUST_LOG")
            .env_remove("DATABASE_URL")
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = helpdesk(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = helpdesk(&[
        "tenant",
        "create",
        "acme",
        "--admin-email",
        "Admin@Acme.test",
        "--admin-password",
        "admin-pw-1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = created["api_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("hd_"), "{created}");
    assert!(
        created["tenant_id"].as_str().is_some_and(|t| t.len() == 36),
        "{created}"
    );
    let again = helpdesk(&[
        "tenant",
        "create",
        "acme",
        "--admin-email",
        "x@acme.test",
        "--admin-password",
        "admin-pw-1",
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let bad = helpdesk(&[
        "tenant",
        "create",
        "bad name",
        "--admin-email",
        "x@acme.test",
        "--admin-password",
        "admin-pw-1",
    ]);
    assert!(!bad.status.success());
    let out = helpdesk(&[
        "user",
        "create",
        "--tenant",
        "acme",
        "--email",
        "agent@acme.test",
        "--name",
        "Agent",
        "--role",
        "agent",
        "--password",
        "agent-pw-1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["role"], "agent");

    let mut settings = test_settings();
    settings.data_dir = data.path().to_path_buf();
    let app = spawn_app_with(settings, false).await;
    let me: Value = app
        .client
        .get(format!("{}/api/v1/me", app.address))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["role"].as_str(), me["email"].as_str()),
        (Some("admin"), Some("admin@acme.test"))
    );
    let r = app
        .post_json(
            "/api/v1/auth/login",
            &json!({ "tenant": "acme", "email": "agent@acme.test", "password": "agent-pw-1" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// The AI service's `/v1` routes: the tenant is the key's or token's;
/// `X-Tenant-Id` counts only for service keys; no credential = the header
/// (local use); a bad credential is 401.
async fn ai_routes_take_the_tenant_from_the_credential(b: Backend) {
    let c = spawn_core(b).await;
    let (_, agent) = c.user(&c.acme, "agent@acme.test", "agent").await;
    let put = |who: String, tenant: Option<String>, threshold: f64| {
        let mut req = c
            .app
            .client
            .put(format!("{}/v1/settings", c.app.address))
            .bearer_auth(who)
            .json(&json!({ "suggest_threshold": threshold }));
        if let Some(t) = tenant {
            req = req.header("x-tenant-id", t);
        }
        req.send()
    };
    let get = |who: &str| {
        c.app
            .client
            .get(format!("{}/v1/settings", c.app.address))
            .bearer_auth(who.to_string())
            .send()
    };
    // acme's admin key writes acme's settings; globex's key still sees defaults.
    let r = put(c.acme.api_key.clone(), None, 0.6).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen: Value = get(&agent).await.unwrap().json().await.unwrap();
    assert_eq!(
        seen["suggest_threshold"], 0.6,
        "a login token of acme sees acme's: {seen}"
    );
    let other: Value = get(&c.globex.api_key).await.unwrap().json().await.unwrap();
    assert_eq!(other["suggest_threshold"], 0.35);
    // Naming another tenant with an ordinary key: 403, nothing written.
    let r = put(
        c.acme.api_key.clone(),
        Some(c.globex.tenant_id.clone()),
        0.9,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let other: Value = get(&c.globex.api_key).await.unwrap().json().await.unwrap();
    assert_eq!(other["suggest_threshold"], 0.35);
    // A tenant's admin cannot mint a key that acts for every tenant...
    let (s, k) = c
        .call(
            "POST",
            "/api/v1/api-keys",
            &c.acme.api_key,
            Some(json!({ "name": "worker", "scopes": ["service"] })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{k}");
    // ...the operator can (`helpdesk key create`), and it may act for any tenant.
    let service = c.service_key().await;
    let r = put(service, Some(c.globex.tenant_id.clone()), 0.7)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let other: Value = get(&c.globex.api_key).await.unwrap().json().await.unwrap();
    assert_eq!(other["suggest_threshold"], 0.7);
    // A bad credential is 401, never the header's tenant.
    let r = put("hd_forged".into(), Some("default".into()), 0.1)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // No credential: the header, as before keys existed.
    let r = c.app.get_as("default", "/v1/settings").await;
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["suggest_threshold"], 0.35);
}

/// The outbox as a job queue: concurrent claimers never share a job; a
/// claim whose lease ran out goes to the next claimer (a killed worker loses
/// nothing) and the old claim can no longer complete it; failures back off
/// and end in the dead letter, which the ticket shows as a failed triage.
async fn outbox_jobs_are_claimed_once_retried_with_backoff_and_dead_lettered(b: Backend) {
    use helpdesk::ticketing::jobs::{self, Failed, QueuePolicy};
    let c = spawn_core(b).await;
    let (_, agent) = c.user(&c.acme, "agent@acme.test", "agent").await;
    let mut tickets = Vec::new();
    for i in 0..6 {
        let (s, t) = c
            .call(
                "POST",
                "/api/v1/tickets",
                &agent,
                Some(json!({ "subject": format!("job {i}") })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        tickets.push(t["id"].as_i64().unwrap());
    }
    let policy = QueuePolicy {
        lease_s: 60,
        max_attempts: 2,
        backoff_s: 5,
        max_backoff_s: 300,
    };
    let at = helpdesk::ticketing::db::now() + 1;

    // Four claimers at once: six jobs, each claimed exactly once.
    let mut claimers = Vec::new();
    for _ in 0..4 {
        let (db, policy) = (c.db.clone(), policy.clone());
        claimers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = jobs::claim(&db, &policy, at).await.unwrap() {
                got.push(j);
            }
            got
        }));
    }
    let mut claimed = Vec::new();
    for h in claimers {
        claimed.extend(h.await.unwrap());
    }
    let mut ids: Vec<i64> = claimed
        .iter()
        .map(|j| j.payload["ticket_id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, tickets, "every job once");
    assert!(claimed
        .iter()
        .all(|j| j.kind == "triage" && j.attempts == 1 && j.tenant_id == c.acme.tenant_id));

    // Within the lease nobody else gets them; after it, the next claimer does.
    assert!(jobs::claim(&c.db, &policy, at + 30)
        .await
        .unwrap()
        .is_none());
    let first = claimed.iter().min_by_key(|j| j.id).unwrap().clone();
    let again = jobs::claim(&c.db, &policy, at + 61)
        .await
        .unwrap()
        .expect("lease ran out");
    assert_eq!((again.id, again.attempts), (first.id, 2));
    assert!(
        !jobs::complete(&c.db, &first).await.unwrap(),
        "the lost claim cannot complete it"
    );
    assert!(jobs::complete(&c.db, &again).await.unwrap());
    assert_eq!(
        jobs::status(&c.db, first.id).await.unwrap().unwrap().0,
        "done"
    );

    // Failure: back off, retry, then the dead letter after max_attempts.
    let job = claimed.iter().max_by_key(|j| j.id).unwrap().clone();
    assert_eq!(
        jobs::fail(&c.db, &policy, &job, "AI service unreachable", at)
            .await
            .unwrap(),
        Failed::Retry(5)
    );
    let (status, attempts, error) = jobs::status(&c.db, job.id).await.unwrap().unwrap();
    assert_eq!(
        (status.as_str(), attempts, error.as_deref()),
        ("pending", 1, Some("AI service unreachable"))
    );
    // Other jobs' leases have run out by +100; claim until this one comes back.
    let mut retried = None;
    while let Some(j) = jobs::claim(&c.db, &policy, at + 100).await.unwrap() {
        if j.id == job.id {
            retried = Some(j);
        } else {
            assert!(jobs::complete(&c.db, &j).await.unwrap());
        }
    }
    let retried = retried.expect("due again after the backoff");
    assert_eq!(retried.attempts, 2);
    assert_eq!(
        jobs::fail(&c.db, &policy, &retried, "still down", at + 100)
            .await
            .unwrap(),
        Failed::Dead
    );
    assert!(
        jobs::claim(&c.db, &policy, at + 10_000)
            .await
            .unwrap()
            .is_none(),
        "dead jobs stay dead"
    );
    let ticket = retried.payload["ticket_id"].as_i64().unwrap();
    let (_, t) = c
        .call("GET", &format!("/api/v1/tickets/{ticket}"), &agent, None)
        .await;
    assert_eq!(t["triage"]["status"], "failed", "{t}");
    assert_eq!(t["triage"]["error"], "still down");
}

/// Security headers on every answer, CORS for allowed origins only, and
/// the per-key and per-IP rate limits (429 with Retry-After, JSON).
#[tokio::test]
async fn security_headers_cors_allow_list_and_rate_limits() {
    let c = spawn_core_custom(Backend::Sqlite, |s| {
        s.security.cors_origins = vec!["https://desk.acme.test".into()];
        s.security.rate_per_key = 0.5;
        s.security.burst_per_key = 3.0;
        s.security.rate_per_ip = 1.0;
        s.security.burst_per_ip = 8.0;
    })
    .await;
    let url = format!("{}/api/v1/me", c.app.address);
    let r = c
        .app
        .client
        .get(&url)
        .bearer_auth(&c.acme.api_key)
        .header("origin", "https://desk.acme.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert_eq!(h["access-control-allow-origin"], "https://desk.acme.test");
    assert!(h.get("strict-transport-security").is_none(), "no TLS here");
    // Behind a TLS proxy: HSTS.
    let r = c
        .app
        .client
        .get(&url)
        .bearer_auth(&c.globex.api_key)
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(r.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .contains("max-age="));
    // Another origin: no CORS headers; a preflight from it is not allowed.
    let pre = |origin: &'static str| {
        c.app
            .client
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
    };
    let r = pre("https://evil.test").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = pre("https://desk.acme.test").await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://desk.acme.test"
    );
    assert!(r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));

    // acme's key used one of its burst of 3 above: two more pass, the next
    // is 429; globex's key is not affected.
    let get = |key: &str| c.app.client.get(&url).bearer_auth(key.to_string()).send();
    assert_eq!(get(&c.acme.api_key).await.unwrap().status(), StatusCode::OK);
    assert_eq!(get(&c.acme.api_key).await.unwrap().status(), StatusCode::OK);
    let r = get(&c.acme.api_key).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(
        get(&c.globex.api_key).await.unwrap().status(),
        StatusCode::OK
    );
    // The IP's burst of 8 is spent next, whatever the key (no key at all too).
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(c.app.get("/api/v1/me").await.status());
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // The AI service's and the operational routes are not rate-limited here.
    assert_eq!(c.app.get("/health").await.status(), StatusCode::OK);
}

/// Attachments: bytes in the local store under the data directory,
/// metadata in the database; the ticket's visibility decides who may
/// upload, list and download; internal ones are staff only.
async fn attachments_are_stored_checked_and_fenced_by_tenant_and_role(b: Backend) {
    let c = spawn_core_custom(b, |s| s.attachments.max_bytes = 64 * 1024).await;
    let (_, agent) = c.user(&c.acme, "agent@acme.test", "agent").await;
    let (_, customer) = c.user(&c.acme, "carol@acme.test", "customer").await;
    let (_, other) = c.user(&c.acme, "dave@acme.test", "customer").await;
    let (_, t) = c
        .call(
            "POST",
            "/api/v1/tickets",
            &customer,
            Some(json!({ "subject": "Broken label" })),
        )
        .await;
    let id = t["id"].as_i64().unwrap();
    let upload = |who: &str, query: &str, ctype: &str, bytes: Vec<u8>| {
        c.app
            .client
            .post(format!(
                "{}/api/v1/tickets/{id}/attachments?{query}",
                c.app.address
            ))
            .bearer_auth(who.to_string())
            .header("content-type", ctype.to_string())
            .body(bytes)
            .send()
    };
    let png: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let r = upload(&customer, "filename=label.png", "image/png", png.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let a: Value = r.json().await.unwrap();
    assert_eq!(
        (
            a["size"].as_i64(),
            a["content_type"].as_str(),
            a["public"].as_bool()
        ),
        (Some(5000), Some("image/png"), Some(true))
    );
    use sha2::Digest;
    assert_eq!(a["sha256"], hex::encode(sha2::Sha256::digest(&png)));
    // The bytes are under the data directory, not named after the upload.
    let stored = walk(&c.settings.data_dir.join("attachments"));
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(std::fs::read(&stored[0]).unwrap(), png);
    assert!(!stored[0].to_string_lossy().contains("label.png"));
    // Download: the same bytes, as a download.
    let r = c
        .app
        .client
        .get(format!("{}/api/v1/attachments/{}", c.app.address, a["id"]))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment;"));
    assert_eq!(r.bytes().await.unwrap().to_vec(), png);
    // An internal attachment from the agent: hidden from the customer.
    let r = upload(
        &agent,
        "filename=notes.txt&public=false",
        "text/plain",
        b"internal".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let internal: Value = r.json().await.unwrap();
    let (_, seen) = c
        .call(
            "GET",
            &format!("/api/v1/tickets/{id}/attachments"),
            &customer,
            None,
        )
        .await;
    assert_eq!(seen["items"].as_array().unwrap().len(), 1, "{seen}");
    let (_, all) = c
        .call(
            "GET",
            &format!("/api/v1/tickets/{id}/attachments"),
            &agent,
            None,
        )
        .await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let (s, _) = c
        .call(
            "GET",
            &format!("/api/v1/attachments/{}", internal["id"]),
            &customer,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Another customer, another tenant: 404 for everything.
    for who in [&other, &c.globex.api_key] {
        let (s, _) = c
            .call(
                "GET",
                &format!("/api/v1/attachments/{}", a["id"]),
                who,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = c
            .call(
                "GET",
                &format!("/api/v1/tickets/{id}/attachments"),
                who,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let r = upload(who, "filename=x.txt", "text/plain", b"x".to_vec())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    // Bad input: clear 4xx, nothing stored.
    let before = c.count("SELECT COUNT(*) FROM attachments").await;
    for (query, ctype, bytes, status) in [
        (
            "filename=../../etc/passwd",
            "text/plain",
            b"x".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "filename=a.txt",
            "not a type",
            b"x".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "filename=a.txt",
            "text/plain",
            Vec::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "nofilename=1",
            "text/plain",
            b"x".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "filename=big.bin",
            "application/octet-stream",
            vec![0u8; 65 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "filename=a.txt&public=false",
            "text/plain",
            b"x".to_vec(),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let r = upload(&customer, query, ctype, bytes).await.unwrap();
        assert_eq!(r.status(), status, "{query} {ctype}");
    }
    assert_eq!(c.count("SELECT COUNT(*) FROM attachments").await, before);
    assert_eq!(walk(&c.settings.data_dir.join("attachments")).len(), 2);
}

/// An S3-compatible server (s3s-fs over a temporary folder) for one test,
/// stopped when dropped. Its binary comes from `scripts/install-test-tools.sh`
/// (`S3S_FS`, set by `scripts/test.sh`); without it the test fails.
struct S3Server {
    child: std::process::Child,
    root: tempfile::TempDir,
    endpoint: String,
}

impl S3Server {
    const KEY: &'static str = "helpdesk-test-key";
    const SECRET: &'static str = "helpdesk-test-secret";

    fn start(bucket: &str) -> Self {
        let bin = std::env::var("S3S_FS").unwrap_or_else(|_| {
            format!(
                "{}/.cache/helpdesk-ai/tools/bin/s3s-fs",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        assert!(
            std::path::Path::new(&bin).is_file(),
            "no S3-compatible server at {bin}: run scripts/install-test-tools.sh (scripts/test.sh does)"
        );
        let root = crate::helpers::data_dir();
        std::fs::create_dir(root.path().join(bucket)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", Self::KEY, "--secret-key", Self::SECRET])
            .arg(root.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "s3s-fs did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self {
            child,
            root,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `attachments.store = "s3"`: the bytes go to an S3-compatible server
/// (signed requests, path-style), come back on download, and stay fenced
/// by tenant; nothing is written to the local folder.
#[tokio::test]
async fn attachments_go_to_an_s3_compatible_store_when_configured() {
    let s3 = S3Server::start("helpdesk-attachments");
    // object_store reads credentials from the usual variables (this test
    // runs in its own process under nextest).
    std::env::set_var("AWS_ACCESS_KEY_ID", S3Server::KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", S3Server::SECRET);
    let c = s3.core().await;
    let id = c
        .ticket(
            &c.acme.api_key,
            json!({ "subject": "Printer log attached" }),
        )
        .await;
    let log: Vec<u8> = (0..20_000u32)
        .flat_map(|i| format!("line {i}: paper jam at tray {}\n", i % 3).into_bytes())
        .collect();
    let r = upload_text(&c, id, "printer.log", log.clone()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let a: Value = r.json().await.unwrap();
    // The object is in the server's bucket, byte for byte; nothing local.
    let stored = walk(&s3.root.path().join("helpdesk-attachments"));
    let objects: Vec<_> = stored
        .iter()
        .filter(|p| std::fs::read(p).map(|b| b == log).unwrap_or(false))
        .collect();
    assert_eq!(objects.len(), 1, "{stored:?}");
    assert!(walk(&c.settings.data_dir.join("attachments")).is_empty());
    let download = |key: String| {
        let url = format!("{}/api/v1/attachments/{}", c.app.address, a["id"]);
        let client = c.app.client.clone();
        async move { client.get(url).bearer_auth(key).send().await.unwrap() }
    };
    let r = download(c.acme.api_key.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), log);
    assert_eq!(
        download(c.globex.api_key.clone()).await.status(),
        StatusCode::NOT_FOUND
    );
    // A store that refuses (wrong secret) is an error, not a lost file.
    drop(c);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "wrong");
    let c = s3.core().await;
    let id = c
        .ticket(&c.acme.api_key, json!({ "subject": "Another log" }))
        .await;
    let r = upload_text(&c, id, "b.log", b"hello".to_vec()).await;
    assert!(r.status().is_server_error(), "{}", r.status());
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].is_string(), "{e}");
    assert_eq!(
        c.count("SELECT COUNT(*) FROM attachments").await,
        0,
        "no row without its bytes"
    );
}

impl S3Server {
    /// A core (SQLite) whose attachments go to this server's bucket.
    async fn core(&self) -> CoreApp {
        let endpoint = self.endpoint.clone();
        spawn_core_custom(Backend::Sqlite, move |s| {
            s.attachments.store = "s3".into();
            s.attachments.s3_bucket = Some("helpdesk-attachments".into());
            s.attachments.s3_endpoint = Some(endpoint);
            s.attachments.s3_region = Some("us-east-1".into());
            s.attachments.s3_allow_http = true;
        })
        .await
    }
}

/// Uploads `bytes` as a text file to acme's ticket `id`.
async fn upload_text(c: &CoreApp, id: i64, filename: &str, bytes: Vec<u8>) -> reqwest::Response {
    c.app
        .client
        .post(format!(
            "{}/api/v1/tickets/{id}/attachments?filename={filename}",
            c.app.address
        ))
        .bearer_auth(&c.acme.api_key)
        .header("content-type", "text/plain")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Assets and work orders: staff only, within the tenant, audited.
async fn assets_and_work_orders_belong_to_one_tenant_and_to_staff(b: Backend) {
    let c = spawn_core(b).await;
    let (agent_id, agent) = c.user(&c.acme, "agent@acme.test", "agent").await;
    let (_, customer) = c.user(&c.acme, "carol@acme.test", "customer").await;
    let (_, t) = c
        .call(
            "POST",
            "/api/v1/tickets",
            &customer,
            Some(json!({ "subject": "Laptop screen cracked" })),
        )
        .await;
    let ticket = t["id"].as_i64().unwrap();
    let (s, a) = c
        .call(
            "POST",
            "/api/v1/assets",
            &agent,
            Some(
                json!({ "tag": "LT-0042", "serial": "5CG123", "kind": "laptop",
            "owner_id": agent_id, "location": "Berlin 3F" }),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let asset = a["id"].as_i64().unwrap();
    let (s, e) = c
        .call(
            "POST",
            "/api/v1/assets",
            &agent,
            Some(json!({ "tag": "LT-0042", "kind": "laptop" })),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "a tag is unique in the tenant: {e}"
    );
    let (s, _) = c
        .call(
            "POST",
            "/api/v1/assets",
            &c.globex.api_key,
            Some(json!({ "tag": "LT-0042", "kind": "laptop" })),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "another tenant may use the same tag"
    );
    let (_, found) = c
        .call("GET", "/api/v1/assets?tag=LT-0042", &agent, None)
        .await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["items"][0]["serial"], "5CG123");
    let (s, a) = c
        .call(
            "PATCH",
            &format!("/api/v1/assets/{asset}"),
            &agent,
            Some(json!({ "location": null, "kind": "notebook" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(
        (a["location"].clone(), a["kind"].as_str()),
        (Value::Null, Some("notebook"))
    );

    let (s, w) = c
        .call("POST", "/api/v1/work-orders", &agent, Some(json!({ "ticket_id": ticket, "asset_id": asset,
            "scheduled_at": 1_800_000_000i64, "assignee_id": agent_id, "notes": "swap the panel" })))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    assert_eq!(w["status"], "scheduled");
    let wo = w["id"].as_i64().unwrap();
    let (s, w) = c
        .call(
            "PATCH",
            &format!("/api/v1/work-orders/{wo}"),
            &agent,
            Some(json!({ "status": "done" })),
        )
        .await;
    assert_eq!((s, w["status"].as_str()), (StatusCode::OK, Some("done")));
    let (_, listed) = c
        .call(
            "GET",
            &format!("/api/v1/work-orders?asset_id={asset}"),
            &agent,
            None,
        )
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(c.count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'work_order.%' OR action LIKE 'asset.%'").await, 5);

    // Customers: 403. Another tenant: 404, and cannot reference acme's rows.
    for path in [
        "/api/v1/assets".to_string(),
        format!("/api/v1/work-orders/{wo}"),
    ] {
        let (s, _) = c.call("GET", &path, &customer, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
    }
    for path in [
        format!("/api/v1/assets/{asset}"),
        format!("/api/v1/work-orders/{wo}"),
    ] {
        let (s, _) = c.call("GET", &path, &c.globex.api_key, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        let (s, _) = c
            .call("PATCH", &path, &c.globex.api_key, Some(json!({})))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, mine) = c
        .call("GET", "/api/v1/work-orders", &c.globex.api_key, None)
        .await;
    assert_eq!(mine["items"], json!([]));
    let before = c.count("SELECT COUNT(*) FROM work_orders").await;
    for body in [
        json!({ "ticket_id": ticket }),
        json!({ "ticket_id": 999999 }),
    ] {
        let (s, e) = c
            .call("POST", "/api/v1/work-orders", &c.globex.api_key, Some(body))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    }
    let (s, e) = c
        .call(
            "PATCH",
            &format!("/api/v1/work-orders/{wo}"),
            &agent,
            Some(json!({ "status": "lost" })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(c.count("SELECT COUNT(*) FROM work_orders").await, before);
}
