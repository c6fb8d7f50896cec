//! The triage loop in one process (`helpdesk serve`), on SQLite and on
//! PostgreSQL: a ticket in, the worker claims its job, the AI service
//! triages it with the tenant's real trained head and calls back into the
//! core, which routes it when the confidence clears the tenant's threshold,
//! stores the prediction and adds an internal note with KB suggestions.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::core_api::{spawn_core_with, Backend, CoreApp};
use crate::helpers::{repo_path, require_model};

/// The jargon fixture's rows of one split, as training examples.
fn jargon(split: &str) -> Vec<Value> {
    let mut r = csv::Reader::from_path(repo_path("tests/fixtures/jargon_tickets.csv")).unwrap();
    r.records()
        .map(|x| x.unwrap())
        .filter(|x| &x[2] == split)
        .map(|x| json!({ "text": &x[0], "label": &x[1] }))
        .collect()
}

async fn wait_ready(c: &CoreApp) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.app.get("/ready").await.status() != 200 {
        assert!(Instant::now() < deadline, "the model did not load");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Trains acme's `team` head through the AI service with acme's admin key.
pub async fn train_team_head(c: &CoreApp) {
    let (s, started) = c
        .call(
            "POST",
            "/v1/models/team/train",
            &c.acme.api_key,
            Some(json!({ "examples": jargon("train"), "heldout": jargon("test"), "seed": 7 })),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{started}");
    let url = started["status_url"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, job) = c.call("GET", url, &c.acme.api_key, None).await;
        match job["status"].as_str().unwrap() {
            "succeeded" => break,
            "failed" => panic!("training failed: {job}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "training did not finish: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the ticket (as `who`) until its triage has left `pending`.
pub async fn triaged(c: &CoreApp, who: &str, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, t) = c
            .call("GET", &format!("/api/v1/tickets/{id}"), who, None)
            .await;
        assert_eq!(s, StatusCode::OK, "{t}");
        if t["triage"]["status"] != "pending" {
            return t;
        }
        assert!(Instant::now() < deadline, "not triaged in time: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

on_both!(
    a_ticket_is_triaged_routed_and_noted_once,
    triage_results_apply_by_the_tenants_rules,
    kb_articles_kept_by_the_core_are_indexed_by_the_ai_service,
    image_attachments_lose_their_gps_and_get_checked_by_the_worker,
    a_screenshots_text_routes_the_ticket_and_finds_the_kb_answer,
    a_label_barcode_links_the_asset_and_a_repeated_screenshot_the_tickets,
    the_tenants_pipeline_and_label_sets_shape_its_triage,
);

async fn a_ticket_is_triaged_routed_and_noted_once(b: Backend) {
    require_model();
    let c = spawn_core_with(b, true).await;
    wait_ready(&c).await;
    train_team_head(&c).await;
    let (_, customer) = c.user(&c.acme, "carol@acme.test", "customer").await;
    // Route whenever the head is at least this sure; the article is given
    // to the AI service directly here.
    let teams = routing_setup(
        &c,
        "/v1/kb/articles",
        json!({
            "id": "vpn-gateway",
            "title": "GlobalProtect cannot find the VPN gateway",
            "body": "When GlobalProtect says the gateway is not found, check that the portal address is vpn.acme.test, then sign out and in again. If it still fails from home, restart the GlobalProtect service."
        }),
        0.05,
    )
    .await;

    // A customer's ticket comes in; the worker has it triaged.
    let (s, t) = c
        .call(
            "POST",
            "/api/v1/tickets",
            &customer,
            Some(json!({ "subject": "GlobalProtect says gateway not found since yesterday", "body": "I work from home and the VPN will not connect." })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let id = t["id"].as_i64().unwrap();
    let t = triaged(&c, &c.acme.api_key, id).await;
    let tr = &t["triage"];
    assert_eq!(tr["status"], "applied", "{t}");
    assert_eq!(tr["labels"]["team"]["top"], "network", "{tr}");
    assert_eq!(t["team_id"], teams["network"], "{t}");
    assert_eq!(tr["applied"]["team_id"], teams["network"]);
    assert_eq!(tr["labels"]["team"]["version"], 1);
    let conf = tr["labels"]["team"]["confidence"].as_f64().unwrap();
    assert!(conf > 0.05 && conf <= 1.0, "{conf}");
    assert!(!tr["labels"]["team"]["evidence"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(
        ["negative", "neutral", "positive"].contains(&tr["sentiment"]["label"].as_str().unwrap())
    );
    assert!(
        ["low", "normal", "high", "critical"].contains(&tr["urgency"]["level"].as_str().unwrap())
    );
    assert_eq!(tr["suggestions"][0]["article_id"], "vpn-gateway", "{tr}");
    assert_eq!(tr["attempts"], 1);
    // The suggestion is an internal note: the agent sees it, the customer not.
    let (_, notes) = c
        .call(
            "GET",
            &format!("/api/v1/tickets/{id}/comments"),
            &c.acme.api_key,
            None,
        )
        .await;
    let note = notes["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["public"] == false)
        .unwrap_or_else(|| panic!("no internal note: {notes}"));
    assert!(
        note["body"]
            .as_str()
            .unwrap()
            .contains("GlobalProtect cannot find the VPN gateway"),
        "{note}"
    );
    let (_, seen) = c
        .call(
            "GET",
            &format!("/api/v1/tickets/{id}/comments"),
            &customer,
            None,
        )
        .await;
    assert!(seen["items"].as_array().unwrap().is_empty(), "{seen}");
    let (_, mine) = c
        .call("GET", &format!("/api/v1/tickets/{id}"), &customer, None)
        .await;
    assert!(
        mine.get("triage").is_none(),
        "customers do not see the AI's reading: {mine}"
    );
    assert_eq!(
        c.count(&format!(
            "SELECT COUNT(*) FROM outbox WHERE idempotency_key = 'triage:{id}' AND status = 'done'"
        ))
        .await,
        1
    );

    // The same result delivered again (a retried job) changes nothing.
    let service = c.service_key().await;
    let replay = c
        .app
        .client
        .post(format!("{}/api/v1/tickets/{id}/triage", c.app.address))
        .bearer_auth(&service)
        .header("x-tenant-id", &c.acme.tenant_id)
        .json(&json!({ "labels": { "team": { "label": "database", "top": "database", "confidence": 0.99, "threshold": 0.5, "version": 1, "alternatives": [], "evidence": [] } } }))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::OK);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["replayed"], true, "{replay}");
    let (_, again) = c
        .call(
            "GET",
            &format!("/api/v1/tickets/{id}"),
            &c.acme.api_key,
            None,
        )
        .await;
    assert_eq!(again["team_id"], teams["network"]);
    assert_eq!(
        c.count(&format!(
            "SELECT COUNT(*) FROM predictions WHERE ticket_id = {id}"
        ))
        .await,
        1
    );
    assert_eq!(
        c.count(&format!(
            "SELECT COUNT(*) FROM comments WHERE ticket_id = {id} AND public = 0"
        ))
        .await,
        1
    );

    // Only the AI service's keys may post results; another tenant's is 404.
    let (s, _) = c
        .call(
            "POST",
            &format!("/api/v1/tickets/{id}/triage"),
            &c.acme.api_key,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, k) = c
        .call(
            "POST",
            "/api/v1/api-keys",
            &c.globex.api_key,
            Some(json!({ "name": "ai", "scopes": ["ai-callback"] })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let (s, r) = c
        .call(
            "POST",
            &format!("/api/v1/tickets/{id}/triage"),
            k["api_key"].as_str().unwrap(),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{r}");
    // An ordinary key cannot have the AI service call back either.
    let (s, _) = c
        .call(
            "POST",
            "/v1/triage",
            &c.acme.api_key,
            Some(json!({ "ticket_id": id, "subject": "x", "callback": true })),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // A ticket no team of the tenant fits, under a strict threshold: it
    // stays in the triage queue (the threshold rules: the next test).
    let (s, _) = c
        .call(
            "PUT",
            "/api/v1/tenant/settings",
            &c.acme.api_key,
            Some(json!({ "route_threshold": 0.99 })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, t) = c
        .call(
            "POST",
            "/api/v1/tickets",
            &customer,
            Some(json!({ "subject": "Where can I find the holiday calendar for next year?" })),
        )
        .await;
    let id2 = t["id"].as_i64().unwrap();
    let t = triaged(&c, &c.acme.api_key, id2).await;
    assert_eq!(t["triage"]["status"], "abstained", "{t}");
    assert_eq!(t["team_id"], Value::Null);
    assert!(
        t["triage"]["skipped"]["team"].is_string(),
        "why not routed: {t}"
    );
    let (_, queue) = c
        .call(
            "GET",
            "/api/v1/tickets?triage=abstained",
            &c.acme.api_key,
            None,
        )
        .await;
    let ids: Vec<i64> = queue["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![id2]);
    // The similar earlier ticket is found; the audit log has both triages.
    assert_eq!(
        c.count("SELECT COUNT(*) FROM audit_log WHERE action = 'ticket.triage'")
            .await,
        2
    );
    // Analytics: coverage and accuracy of the triage; an agent's re-route
    // is a label for training and counts against the AI's accuracy.
    let (s, a) = c
        .call("GET", "/api/v1/analytics/triage", &c.acme.api_key, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(
        (
            a["tickets"]["applied"].as_i64(),
            a["tickets"]["abstained"].as_i64()
        ),
        (Some(1), Some(1)),
        "{a}"
    );
    assert_eq!(a["coverage"], 0.5);
    assert_eq!(
        (
            a["accuracy"]["team"]["compared"].as_i64(),
            a["accuracy"]["team"]["correct"].as_i64()
        ),
        (Some(1), Some(1)),
        "{a}"
    );
    let (s, _) = c
        .call(
            "PATCH",
            &format!("/api/v1/tickets/{id}"),
            &c.acme.api_key,
            Some(json!({ "team_id": teams["database"] })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        c.count(&format!("SELECT COUNT(*) FROM labels WHERE ticket_id = {id} AND task = 'team' AND label = '{}' AND previous = '{}'", teams["database"], teams["network"])).await,
        1
    );
    let (_, a) = c
        .call("GET", "/api/v1/analytics/triage", &c.acme.api_key, None)
        .await;
    assert_eq!(a["accuracy"]["team"]["correct"], 0, "{a}");
    assert_eq!(a["accuracy"]["team"]["accuracy"], 0.0);
    let (_, v) = c
        .call(
            "GET",
            "/api/v1/analytics/volume?by=team",
            &c.acme.api_key,
            None,
        )
        .await;
    let mut keys: Vec<(String, i64)> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap().to_string(),
                p["count"].as_i64().unwrap(),
            )
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![("(none)".to_string(), 1), ("database".to_string(), 1)],
        "{v}"
    );
    let (_, st) = c
        .call("GET", "/api/v1/analytics/sentiment", &c.acme.api_key, None)
        .await;
    let total: i64 = st["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["count"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 2, "{st}");
    let (s, _) = c
        .call("GET", "/api/v1/analytics/sla", &customer, None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "staff only");
    let (s, e) = c
        .call(
            "GET",
            "/api/v1/analytics/volume?by=nope",
            &c.acme.api_key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    // Bad settings are refused and change nothing.
    let (s, e) = c
        .call(
            "PUT",
            "/api/v1/tenant/settings",
            &c.acme.api_key,
            Some(json!({ "route_threshold": 7 })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (_, now) = c
        .call("GET", "/api/v1/tenant/settings", &c.acme.api_key, None)
        .await;
    assert!(
        (now["route_threshold"].as_f64().unwrap() - 0.99).abs() < 1e-6,
        "{now}"
    );
}

/// A triage result as the AI service would post it: one routing head.
fn result(task: &str, label: Option<&str>, top: &str, confidence: f64) -> Value {
    json!({ "labels": { task: { "label": label, "top": top, "confidence": confidence,
        "threshold": 0.8, "version": 3, "alternatives": [], "evidence": [] } } })
}

/// The core's rules for a result, with results posted by the AI's service
/// key (no worker: nothing else triages these tickets).
async fn triage_results_apply_by_the_tenants_rules(b: Backend) {
    let c = &crate::core_api::spawn_core(b).await;
    let service = c.service_key().await;
    let (_, team) = c
        .call(
            "POST",
            "/api/v1/teams",
            &c.acme.api_key,
            Some(json!({ "name": "network" })),
        )
        .await;
    let network = team["id"].as_i64().unwrap();
    let new_ticket = |body: Value| async move {
        let (s, t) = c
            .call("POST", "/api/v1/tickets", &c.acme.api_key, Some(body))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        t["id"].as_i64().unwrap()
    };
    let post = |id: i64, body: Value| {
        let service = service.clone();
        let tenant = c.acme.tenant_id.clone();
        async move {
            let r = c
                .app
                .client
                .post(format!("{}/api/v1/tickets/{id}/triage", c.app.address))
                .bearer_auth(service)
                .header("x-tenant-id", tenant)
                .json(&body)
                .send()
                .await
                .unwrap();
            let s = r.status();
            (s, r.json::<Value>().await.unwrap())
        }
    };
    let settings = |v: Value| async move {
        let (s, r) = c
            .call("PUT", "/api/v1/tenant/settings", &c.acme.api_key, Some(v))
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
    };

    // No tenant threshold: the head's own decision counts.
    let a = new_ticket(json!({ "subject": "VPN" })).await;
    let (s, r) = post(a, result("team", None, "network", 0.7)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "abstained");
    assert!(
        r["skipped"]["team"]
            .as_str()
            .unwrap()
            .contains("head's threshold"),
        "{r}"
    );
    let b2 = new_ticket(json!({ "subject": "VPN" })).await;
    let (_, r) = post(b2, result("team", Some("network"), "network", 0.85)).await;
    assert_eq!(
        (r["status"].as_str(), r["applied"]["team_id"].as_i64()),
        (Some("applied"), Some(network)),
        "{r}"
    );

    // The tenant's threshold overrides the head's either way.
    settings(json!({ "route_threshold": 0.6 })).await;
    let d = new_ticket(json!({ "subject": "VPN" })).await;
    let (_, r) = post(d, result("team", None, "network", 0.7)).await;
    assert_eq!(r["status"], "applied", "{r}");
    settings(json!({ "route_threshold": 0.9 })).await;
    let e = new_ticket(json!({ "subject": "VPN" })).await;
    let (_, r) = post(e, result("team", Some("network"), "network", 0.85)).await;
    assert_eq!(r["status"], "abstained", "{r}");
    assert!(
        r["skipped"]["team"]
            .as_str()
            .unwrap()
            .contains("tenant's threshold 0.900"),
        "{r}"
    );
    let (_, t) = c
        .call(
            "GET",
            &format!("/api/v1/tickets/{e}"),
            &c.acme.api_key,
            None,
        )
        .await;
    assert_eq!(
        (t["team_id"].clone(), t["triage"]["status"].as_str()),
        (Value::Null, Some("abstained"))
    );

    // What a person set is kept; a category is set when there is none.
    let f = new_ticket(json!({ "subject": "VPN", "category": "access" })).await;
    let (_, r) = post(f, result("category", Some("network"), "network", 0.95)).await;
    assert_eq!(r["status"], "abstained");
    assert_eq!(r["skipped"]["category"], "the ticket already has one");
    let g = new_ticket(json!({ "subject": "VPN" })).await;
    let (_, r) = post(g, result("category", Some("vpn"), "vpn", 0.95)).await;
    assert_eq!(r["applied"]["category"], "vpn", "{r}");

    // Priority: from a head while the ticket is new (its SLA follows);
    // without a priority head, urgency raises it, never lowers it.
    let h = new_ticket(json!({ "subject": "VPN" })).await;
    let (_, r) = post(h, result("priority", Some("urgent"), "urgent", 0.95)).await;
    assert_eq!(r["applied"]["priority"], "urgent", "{r}");
    let (_, t) = c
        .call(
            "GET",
            &format!("/api/v1/tickets/{h}"),
            &c.acme.api_key,
            None,
        )
        .await;
    assert_eq!(
        t["sla_due"].as_i64().unwrap() - t["created_at"].as_i64().unwrap(),
        4 * 3600
    );
    let i = new_ticket(json!({ "subject": "VPN" })).await;
    let urgent =
        json!({ "urgency": { "level": "critical", "points": 5, "reasons": ["outage: down"] } });
    let (_, r) = post(i, urgent.clone()).await;
    assert_eq!(r["applied"]["priority"], "urgent", "{r}");
    let j = new_ticket(json!({ "subject": "VPN", "priority": "urgent" })).await;
    let calm = json!({ "urgency": { "level": "high", "points": 3, "reasons": [] } });
    let (_, r) = post(j, calm).await;
    assert_eq!(r["status"], "abstained", "never lowered: {r}");
    // A tenant whose pipeline leaves routing to people (assist): urgency
    // does not raise the priority either.
    settings(json!({ "route_threshold": 0.9, "pipeline": "assist" })).await;
    let assisted = new_ticket(json!({ "subject": "VPN" })).await;
    let (_, r) = post(assisted, urgent.clone()).await;
    assert_eq!(r["status"], "abstained", "{r}");
    assert!(r["applied"].get("priority").is_none(), "{r}");
    settings(json!({ "route_threshold": 0.9 })).await;
    let k = new_ticket(json!({ "subject": "VPN" })).await;
    c.call(
        "PATCH",
        &format!("/api/v1/tickets/{k}"),
        &c.acme.api_key,
        Some(json!({ "status": "open" })),
    )
    .await;
    let (_, r) = post(k, result("priority", Some("high"), "high", 0.95)).await;
    assert!(
        r["skipped"]["priority"]
            .as_str()
            .unwrap()
            .contains("being worked"),
        "{r}"
    );

    // Routing off: the prediction is stored, nothing applied.
    settings(json!({ "route_threshold": null, "auto_route_disabled": true })).await;
    let m = new_ticket(json!({ "subject": "VPN" })).await;
    let (_, r) = post(m, result("team", Some("network"), "network", 0.99)).await;
    assert_eq!(r["status"], "abstained");
    assert!(
        r["skipped"]["team"].as_str().unwrap().contains("off"),
        "{r}"
    );
    assert_eq!(
        c.count(&format!(
            "SELECT COUNT(*) FROM predictions WHERE ticket_id = {m}"
        ))
        .await,
        1
    );

    // Bad results are 422 and change nothing; a missing ticket is 404.
    let n = new_ticket(json!({ "subject": "VPN" })).await;
    let (s, _) = post(n, result("team", Some("network"), "network", 1.5)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = post(n, json!({ "labels": "nope" })).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        c.count(&format!(
            "SELECT COUNT(*) FROM predictions WHERE ticket_id = {n}"
        ))
        .await,
        0
    );
    let (s, _) = post(999_999, json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A triage that completes an incident raises `incident.detected` (here
    // queued for the tenant's webhook that asks for it; the worker is off).
    let (s, h) = c
        .call(
            "POST",
            "/api/v1/webhooks",
            &c.acme.api_key,
            Some(json!({ "url": "http://127.0.0.1:9/hook", "events": ["incident.detected"] })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{h}");
    let q = new_ticket(json!({ "subject": "VPN down" })).await;
    let (s, r) = post(q, json!({ "incident": ["3", "4", q.to_string()] })).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let incident_jobs = || {
        c.count(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'webhook' AND payload LIKE '%incident.detected%'",
        )
    };
    assert_eq!(incident_jobs().await, 1);
    // Without an incident, none.
    let plain = new_ticket(json!({ "subject": "VPN" })).await;
    post(plain, json!({})).await;
    assert_eq!(incident_jobs().await, 1);
}

/// KB articles written to the core reach the AI service's index through
/// the worker, and leave it when deleted; customers read public ones only.
async fn kb_articles_kept_by_the_core_are_indexed_by_the_ai_service(b: Backend) {
    require_model();
    let c = spawn_core_with(b, true).await;
    wait_ready(&c).await;
    let (_, customer) = c.user(&c.acme, "carol@acme.test", "customer").await;
    let article = json!({ "id": "vpn-gateway", "title": "GlobalProtect cannot find the VPN gateway",
        "body": "When GlobalProtect says the gateway is not found, set the portal to vpn.acme.test and sign in again." });
    let (s, a) = c
        .call(
            "POST",
            "/api/v1/kb/articles",
            &c.acme.api_key,
            Some(article.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    assert_eq!(a["index_status"], "pending");
    let (s, _) = c
        .call("POST", "/api/v1/kb/articles", &c.acme.api_key,
            Some(json!({ "id": "escalation", "title": "Escalation matrix", "body": "Call the on-duty lead.", "visibility": "internal" })))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let search = || async {
        let (s, r) = c
            .call(
                "GET",
                "/v1/kb/search?q=GlobalProtect%20gateway%20not%20found&k=5",
                &c.acme.api_key,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["article_id"] == "vpn-gateway")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, a) = c
            .call(
                "GET",
                "/api/v1/kb/articles/vpn-gateway",
                &c.acme.api_key,
                None,
            )
            .await;
        if a["index_status"] == "indexed" {
            break;
        }
        assert!(Instant::now() < deadline, "not indexed: {a}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(search().await, "the AI service finds the core's article");
    // Customers: public articles only; another tenant: nothing.
    let (_, seen) = c.call("GET", "/api/v1/kb/articles", &customer, None).await;
    let ids: Vec<&str> = seen["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["vpn-gateway"]);
    let (s, _) = c
        .call("GET", "/api/v1/kb/articles/escalation", &customer, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = c
        .call(
            "POST",
            "/api/v1/kb/articles",
            &customer,
            Some(article.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = c
        .call(
            "GET",
            "/api/v1/kb/articles/vpn-gateway",
            &c.globex.api_key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = c
        .call(
            "DELETE",
            "/api/v1/kb/articles/vpn-gateway",
            &c.globex.api_key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, e) = c
        .call(
            "POST",
            "/api/v1/kb/articles",
            &c.acme.api_key,
            Some(json!({ "id": "x", "title": "", "body": "b" })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    // Deleted in the core: gone from the index.
    let (s, _) = c
        .call(
            "DELETE",
            "/api/v1/kb/articles/vpn-gateway",
            &c.acme.api_key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(60);
    while search().await {
        assert!(Instant::now() < deadline, "still indexed after the delete");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        c.count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'kb.%'")
            .await,
        3
    );
}

/// An image attachment is stored without its metadata (GPS reported as
/// removed) and the worker has the AI service check it.
async fn image_attachments_lose_their_gps_and_get_checked_by_the_worker(b: Backend) {
    require_model();
    let c = spawn_core_with(b, true).await;
    wait_ready(&c).await;
    let (_, customer) = c.user(&c.acme, "carol@acme.test", "customer").await;
    let (_, t) = c
        .call(
            "POST",
            "/api/v1/tickets",
            &customer,
            Some(json!({ "subject": "Photo of the label" })),
        )
        .await;
    let id = t["id"].as_i64().unwrap();
    let upload = |ctype: &'static str, bytes: Vec<u8>| {
        c.app
            .client
            .post(format!(
                "{}/api/v1/tickets/{id}/attachments?filename=photo.jpg",
                c.app.address
            ))
            .bearer_auth(customer.clone())
            .header("content-type", ctype)
            .body(bytes)
            .send()
    };
    let jpeg = helpdesk::vision::testdata::jpeg_with_gps();
    let r = upload("image/jpeg", jpeg.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["privacy"]["gps"], true, "{a}");
    assert!(
        a["privacy"]["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "GPSLatitudeRef"),
        "{a}"
    );
    assert!(a["size"].as_u64().unwrap() < jpeg.len() as u64);
    // The stored copy has no EXIF left.
    let stored = c
        .app
        .client
        .get(format!("{}/api/v1/attachments/{}", c.app.address, a["id"]))
        .bearer_auth(&customer)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let left = helpdesk::vision::exif_report(&stored);
    assert!(left.removed.is_empty() && !left.gps, "{left:?}");
    // A file that only claims to be an image is kept, and its check says why it failed.
    let r = upload("image/png", b"not really a png".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // A damaged image is refused at the door.
    let mut broken = b"\x89PNG\r\n\x1a\n".to_vec();
    broken.extend_from_slice(&[0, 0, 0, 13, b'I', b'H']);
    let r = upload("image/png", broken).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let deadline = Instant::now() + Duration::from_secs(60);
    let items = loop {
        // The analysis is the agents' (it reads the file and links tickets).
        let (_, list) = c
            .call(
                "GET",
                &format!("/api/v1/tickets/{id}/attachments"),
                &c.acme.api_key,
                None,
            )
            .await;
        let items = list["items"].as_array().unwrap().clone();
        if items.iter().all(|a| !a["analysis"].is_null()) {
            break items;
        }
        assert!(Instant::now() < deadline, "not checked: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(items.len(), 2);
    let report = &items[0]["analysis"];
    assert_eq!(
        (report["format"].as_str(), report["width"].as_u64()),
        (Some("jpeg"), Some(64)),
        "{report}"
    );
    assert_eq!(report["phash"].as_str().unwrap().len(), 16);
    assert!(
        report["exif"]["removed"].as_array().unwrap().is_empty(),
        "checked the stored copy"
    );
    assert!(
        items[1]["analysis"]["error"]
            .as_str()
            .unwrap()
            .contains("not an image"),
        "{}",
        items[1]
    );
    assert_eq!(
        c.count("SELECT COUNT(*) FROM outbox WHERE kind = 'attachment_check' AND status = 'done'")
            .await,
        2
    );
}

/// Uploads `bytes` as an attachment of ticket `id` and returns it.
async fn attach(c: &CoreApp, who: &str, id: i64, name: &str, bytes: Vec<u8>) -> Value {
    let r = c
        .app
        .client
        .post(format!(
            "{}/api/v1/tickets/{id}/attachments?filename={name}",
            c.app.address
        ))
        .bearer_auth(who)
        .header("content-type", "image/png")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

/// The attachment's stored report, once the worker's check has written it.
async fn checked(c: &CoreApp, who: &str, ticket: i64, attachment: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, list) = c
            .call(
                "GET",
                &format!("/api/v1/tickets/{ticket}/attachments"),
                who,
                None,
            )
            .await;
        let found = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == attachment)
            .cloned()
            .unwrap_or_else(|| panic!("no attachment {attachment}: {list}"));
        if !found["analysis"].is_null() {
            return found;
        }
        assert!(Instant::now() < deadline, "not checked: {found}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the routing tests start from: acme's teams "network" and
/// "database", one KB article (posted to `kb_path`: the core's or the AI
/// service's) and a routing threshold. Returns team name → id.
async fn routing_setup(
    c: &CoreApp,
    kb_path: &str,
    article: Value,
    threshold: f64,
) -> std::collections::HashMap<&'static str, i64> {
    let mut teams = std::collections::HashMap::new();
    for name in ["network", "database"] {
        let (s, t) = c
            .call(
                "POST",
                "/api/v1/teams",
                &c.acme.api_key,
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        teams.insert(name, t["id"].as_i64().unwrap());
    }
    let (s, a) = c
        .call("POST", kb_path, &c.acme.api_key, Some(article))
        .await;
    assert!(s.is_success(), "{a}");
    let (s, r) = c
        .call(
            "PUT",
            "/api/v1/tenant/settings",
            &c.acme.api_key,
            Some(json!({ "route_threshold": threshold })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    teams
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(crate::helpers::repo_path("tests/fixtures").join(path)).unwrap()
}

async fn a_screenshots_text_routes_the_ticket_and_finds_the_kb_answer(b: Backend) {
    require_model();
    let c = spawn_core_with(b, true).await;
    wait_ready(&c).await;
    train_team_head(&c).await;
    let (_, customer) = c.user(&c.acme, "dan@acme.test", "customer").await;
    let teams = routing_setup(
        &c,
        "/api/v1/kb/articles",
        json!({
            "id": "ora-12154",
            "title": "ORA-12154: TNS could not resolve the connect identifier",
            "body": "ORA-12154 means the client cannot find the database alias in tnsnames.ora. Copy the current tnsnames.ora from the share to the Oracle client folder and restart SQL Developer."
        }),
        0.5,
    )
    .await;
    // The ticket says nothing but "see the screenshot": the AI abstains.
    let (_, t) = c
        .call(
            "POST",
            "/api/v1/tickets",
            &customer,
            Some(json!({ "subject": "It does not work", "body": "See the screenshot." })),
        )
        .await;
    let id = t["id"].as_i64().unwrap();
    let t = triaged(&c, &c.acme.api_key, id).await;
    assert_eq!(t["triage"]["status"], "abstained", "{}", t["triage"]);
    assert!(t["team_id"].is_null());
    // The screenshot of the error dialog: the check reads it, and the
    // ticket is triaged again with its text.
    let a = attach(
        &c,
        &customer,
        id,
        "error.png",
        fixture("screenshots/ora_error.png"),
    )
    .await;
    let aid = a["id"].as_i64().unwrap();
    let a = checked(&c, &c.acme.api_key, id, aid).await;
    let report = &a["analysis"];
    assert_eq!(report["kind"]["kind"], "screenshot", "{report}");
    assert!(
        report["ocr"]["text"]
            .as_str()
            .unwrap()
            .contains("ORA-12154"),
        "{report}"
    );
    // The customer sees the file, not the analysis.
    let (_, mine) = c
        .call(
            "GET",
            &format!("/api/v1/tickets/{id}/attachments"),
            &customer,
            None,
        )
        .await;
    assert!(mine["items"][0]["analysis"].is_null(), "{mine}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let t = loop {
        let (_, t) = c
            .call(
                "GET",
                &format!("/api/v1/tickets/{id}"),
                &c.acme.api_key,
                None,
            )
            .await;
        if t["triage"]["revision"].as_i64().unwrap_or(1) > 1 {
            break t;
        }
        assert!(Instant::now() < deadline, "not re-triaged: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let tr = &t["triage"];
    assert_eq!(tr["attachments"], json!([aid]), "{tr}");
    assert_eq!(tr["labels"]["team"]["top"], "database", "{tr}");
    assert_eq!(t["team_id"], teams["database"], "{t}");
    assert_eq!(tr["status"], "applied", "{tr}");
    assert_eq!(tr["suggestions"][0]["article_id"], "ora-12154", "{tr}");
    // One prediction row per ticket, at the later revision; the note says why.
    assert_eq!(
        c.count(&format!(
            "SELECT COUNT(*) FROM predictions WHERE ticket_id = {id}"
        ))
        .await,
        1
    );
    let (_, notes) = c
        .call(
            "GET",
            &format!("/api/v1/tickets/{id}/comments"),
            &c.acme.api_key,
            None,
        )
        .await;
    assert!(
        notes["items"].as_array().unwrap().iter().any(|n| n["body"]
            .as_str()
            .unwrap()
            .contains(&format!("attachment(s) {aid}"))),
        "{notes}"
    );
}

async fn a_label_barcode_links_the_asset_and_a_repeated_screenshot_the_tickets(b: Backend) {
    require_model();
    let c = spawn_core_with(b, true).await;
    wait_ready(&c).await;
    let (_, tech) = c.user(&c.acme, "tina@acme.test", "agent").await;
    let (s, asset) = c
        .call(
            "POST",
            "/api/v1/assets",
            &c.acme.api_key,
            Some(json!({ "tag": "ASSET-000123", "serial": "SN-7XK2-9941", "kind": "laptop" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{asset}");
    let asset_id = asset["id"].as_i64().unwrap();
    // Another tenant's asset with the same tag must never be linked.
    let (s, _) = c
        .call(
            "POST",
            "/api/v1/assets",
            &c.globex.api_key,
            Some(json!({ "tag": "ASSET-000123", "kind": "laptop" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, t) = c
        .call(
            "POST",
            "/api/v1/tickets",
            &tech,
            Some(json!({ "subject": "Laptop fan is loud" })),
        )
        .await;
    let id = t["id"].as_i64().unwrap();
    let (s, wo) = c
        .call(
            "POST",
            "/api/v1/work-orders",
            &tech,
            Some(json!({ "ticket_id": id, "notes": "check the fan" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{wo}");
    // The technician's photo of the label: a Code 128 of the serial.
    let bar =
        helpdesk::vision::barcode::render("SN-7XK2-9941", rxing::BarcodeFormat::CODE_128, 420, 120);
    let mut label = image::GrayImage::from_pixel(700, 300, image::Luma([245]));
    image::imageops::replace(&mut label, &bar, 80, 60);
    let label = helpdesk::vision::testdata::photographed(&label);
    let mut png = Vec::new();
    image::DynamicImage::ImageLuma8(label)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let a = attach(&c, &tech, id, "label.png", png).await;
    let a = checked(&c, &tech, id, a["id"].as_i64().unwrap()).await;
    assert_eq!(a["asset_id"], asset_id, "{a}");
    assert_eq!(
        a["analysis"]["links"]["asset"]["tag"], "ASSET-000123",
        "{a}"
    );
    let (_, t) = c
        .call("GET", &format!("/api/v1/tickets/{id}"), &tech, None)
        .await;
    assert_eq!(t["asset_id"], asset_id, "{t}");
    let (_, wo) = c
        .call(
            "GET",
            &format!("/api/v1/work-orders/{}", wo["id"]),
            &tech,
            None,
        )
        .await;
    assert_eq!(wo["asset_id"], asset_id, "{wo}");

    // The same error screenshot on two tickets: the later links to the earlier.
    let shot = fixture("screenshots/ora_error.png");
    let mut ids = Vec::new();
    for subject in ["Billing reports fail", "Cannot open reports"] {
        let (_, t) = c
            .call(
                "POST",
                "/api/v1/tickets",
                &tech,
                Some(json!({ "subject": subject })),
            )
            .await;
        let tid = t["id"].as_i64().unwrap();
        let a = attach(&c, &tech, tid, "shot.png", shot.clone()).await;
        checked(&c, &tech, tid, a["id"].as_i64().unwrap()).await;
        ids.push(tid);
    }
    let (_, later) = c
        .call("GET", &format!("/api/v1/tickets/{}", ids[1]), &tech, None)
        .await;
    let links = later["links"].as_array().unwrap();
    assert_eq!(links.len(), 1, "{later}");
    assert_eq!(links[0]["ticket_id"], ids[0]);
    assert_eq!(links[0]["reason"], "near_duplicate_image");
    assert_eq!(links[0]["detail"]["distance"], 0);
    let (_, earlier) = c
        .call("GET", &format!("/api/v1/tickets/{}", ids[0]), &tech, None)
        .await;
    assert_eq!(
        earlier["links"][0]["ticket_id"], ids[1],
        "links read both ways: {earlier}"
    );
    // The label photo is not a near-duplicate of the screenshot.
    let (_, first) = c
        .call("GET", &format!("/api/v1/tickets/{id}"), &tech, None)
        .await;
    assert!(first["links"].as_array().unwrap().is_empty(), "{first}");
}

/// A zero-shot head of acme's for `task` from label descriptions.
async fn zero_shot(c: &CoreApp, task: &str, descriptions: Value) {
    let (s, r) = c
        .call(
            "POST",
            &format!("/v1/models/{task}/train"),
            &c.acme.api_key,
            Some(json!({ "descriptions": descriptions })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["promoted"], true, "{r}");
}

async fn the_tenants_pipeline_and_label_sets_shape_its_triage(b: Backend) {
    require_model();
    let c = spawn_core_with(b, true).await;
    wait_ready(&c).await;
    let teams = routing_setup(
        &c,
        "/v1/kb/articles",
        json!({
            "id": "vpn-gateway",
            "title": "GlobalProtect cannot find the VPN gateway",
            "body": "When GlobalProtect says the gateway is not found, check that the portal address is vpn.acme.test, then sign out and in again."
        }),
        0.05,
    )
    .await;
    zero_shot(
        &c,
        "team",
        json!({ "network": "VPN, Wi-Fi, DNS, firewalls and network connectivity",
                "database": "database servers, SQL queries, Oracle and PostgreSQL errors" }),
    )
    .await;
    // The tenant's own label set: which product a ticket is about.
    zero_shot(
        &c,
        "product",
        json!({ "globalprotect": "GlobalProtect VPN client, gateway and portal",
                "outlook": "Outlook email client and mailbox" }),
    )
    .await;
    let put = |v: Value| {
        let c = &c;
        async move {
            c.call("PUT", "/api/v1/tenant/settings", &c.acme.api_key, Some(v))
                .await
        }
    };
    let (s, r) = put(
        json!({ "route_threshold": 0.05, "thresholds": { "product": 0.0 },
        "label_sets": ["product"], "pipeline": "routing-only" }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let ticket = |subject: &'static str| {
        let c = &c;
        async move {
            let (s, t) = c
                .call(
                    "POST",
                    "/api/v1/tickets",
                    &c.acme.api_key,
                    Some(json!({ "subject": subject, "body": "From home, since this morning." })),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{t}");
            triaged(c, &c.acme.api_key, t["id"].as_i64().unwrap()).await
        }
    };

    // routing-only: routed and tagged with the product, no KB search.
    let t = ticket("GlobalProtect says the VPN gateway is not found").await;
    let tr = &t["triage"];
    assert_eq!(tr["status"], "applied", "{t}");
    assert_eq!(t["team_id"], teams["network"], "{t}");
    assert_eq!(tr["labels"]["product"]["top"], "globalprotect", "{tr}");
    assert_eq!(t["tags"], json!(["product:globalprotect"]), "{t}");
    assert_eq!(
        tr["applied"]["tags"],
        json!(["product:globalprotect"]),
        "{tr}"
    );
    assert_eq!(tr["suggestions"], json!([]), "{tr}");
    assert_eq!(tr["similar"], json!([]), "{tr}");

    // assist: nothing routed (the ticket waits for a human), the KB answer
    // and the similar earlier ticket are there; no label sets, no tags.
    let (s, r) = put(json!({ "route_threshold": 0.05, "pipeline": "assist" })).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let t = ticket("GlobalProtect cannot reach the VPN gateway").await;
    let tr = &t["triage"];
    assert_eq!(tr["status"], "abstained", "{t}");
    assert_eq!(t["team_id"], Value::Null, "{t}");
    assert_eq!(tr["labels"], json!({}), "{tr}");
    assert_eq!(t["tags"], json!([]), "{t}");
    assert_eq!(tr["suggestions"][0]["article_id"], "vpn-gateway", "{tr}");
    assert!(!tr["similar"].as_array().unwrap().is_empty(), "{tr}");
    assert!(tr["sentiment"]["label"].is_string(), "{tr}");

    // Bad settings are refused with why, and change nothing.
    for (bad, why) in [
        (json!({ "pipeline": "nope" }), "pipeline must be one of"),
        (json!({ "label_sets": ["team"] }), "routing heads"),
        (json!({ "label_sets": ["a b"] }), "label set"),
        (
            json!({ "thresholds": { "colour": 0.5 } }),
            "thresholds.colour",
        ),
        (json!({ "thresholds": { "team": 1.5 } }), "thresholds.team"),
    ] {
        let (s, e) = put(bad.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {e}");
        assert!(e["error"].as_str().unwrap().contains(why), "{bad}: {e}");
    }
    let (_, now) = c
        .call("GET", "/api/v1/tenant/settings", &c.acme.api_key, None)
        .await;
    assert_eq!(now["pipeline"], "assist", "{now}");
    // The AI service refuses an unknown pipeline too.
    let (s, e) = c
        .call(
            "POST",
            "/v1/triage",
            &c.acme.api_key,
            Some(json!({ "ticket_id": 1, "subject": "x", "pipeline": "nope" })),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
}
