//! The knowledge base over HTTP on the embedded qdrant-edge index: import,
//! idempotent re-import, edit, delete, search, suggestions, tenant isolation.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

fn articles() -> Vec<Value> {
    vec![
        json!({ "id": "vpn-809", "title": "VPN error 809", "format": "markdown", "tags": ["network"],
            "body": "# VPN error 809\n\nThe VPN client shows error 809 when UDP ports 500 and 4500 are blocked.\n\n## Fix on Windows\n\n1. Open the firewall settings.\n2. Allow UDP 500 and 4500.\n3. Reconnect the VPN." }),
        json!({ "id": "pwd-reset", "title": "Reset your password", "format": "html",
            "body": "<h1>Reset your password</h1><p>Open the self-service portal and choose <b>Forgot password</b>. A reset link arrives by e-mail within five minutes.</p>" }),
        json!({ "id": "printer-jam", "title": "Printer paper jam", "format": "text", "visibility": "internal",
            "body": "When the office printer reports a paper jam, open tray 2, remove the stuck sheet and close the tray.\n\nIf the jam light stays on, power-cycle the printer." }),
    ]
}

async fn import(app: &TestApp, tenant: &str) {
    for a in articles() {
        let r = app.post_as(tenant, "/v1/kb/articles", &a).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
}

async fn search(app: &TestApp, tenant: &str, q: &str, extra: &str) -> Value {
    let r = app
        .get_as(
            tenant,
            &format!("/v1/kb/search?q={}&k=5{extra}", q.replace(' ', "%20")),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

#[tokio::test]
async fn articles_are_found_by_meaning_with_snippets_and_filters() {
    let app = spawn_app().await;
    import(&app, "acme").await;
    let r = search(&app, "acme", "my vpn keeps failing with 809", "").await;
    let top = &r["results"][0];
    assert_eq!(top["article_id"], "vpn-809", "{r}");
    assert!(
        top["snippet"].as_str().unwrap().contains("**809**"),
        "{top}"
    );
    assert!(top["score"].as_f64().unwrap() > 0.4);
    let r = search(&app, "acme", "I forgot my password", "").await;
    assert_eq!(r["results"][0]["article_id"], "pwd-reset", "{r}");
    // Internal articles are left out for customers; tags narrow the search.
    let r = search(&app, "acme", "printer jam", "&visibility=public").await;
    assert!(
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["article_id"] != "printer-jam"),
        "{r}"
    );
    let r = search(&app, "acme", "printer jam", "&tags=network").await;
    assert!(
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["article_id"] == "vpn-809"),
        "{r}"
    );
    // BM25 finds the exact code; hybrid fuses both lists.
    let r = search(&app, "acme", "4500", "&mode=bm25").await;
    assert_eq!(r["mode"], "bm25");
    assert_eq!(r["results"][0]["article_id"], "vpn-809", "{r}");
    assert!(
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["article_id"] == "vpn-809"),
        "only the VPN article has 4500: {r}"
    );
    let r = search(&app, "acme", "forgot password link", "&mode=hybrid").await;
    assert_eq!(r["mode"], "hybrid");
    assert_eq!(r["results"][0]["article_id"], "pwd-reset", "{r}");

    // Suggestions: one passage per article, best first.
    let r = app
        .post_as(
            "acme",
            "/v1/kb/suggest",
            &json!({ "subject": "VPN 809", "body": "cannot connect from home", "k": 3 }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    let ids: Vec<&str> = s["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["article_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.first(), Some(&"vpn-809"), "{s}");
    let mut dedup = ids.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(dedup.len(), ids.len(), "one passage per article: {ids:?}");

    // The tenant's threshold decides what is suggested: raised above every
    // score, nothing is; a bad value is refused and changes nothing; another
    // tenant keeps its own.
    let put = async |tenant: &'static str, body: Value| {
        app.client
            .put(format!("{}/v1/settings", app.address))
            .header("x-tenant-id", tenant)
            .json(&body)
            .send()
            .await
            .unwrap()
    };
    let defaults: Value = app
        .get_as("acme", "/v1/settings")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(defaults["suggest_threshold"], 0.35, "{defaults}");
    let top = s["results"][0]["score"].as_f64().unwrap();
    let r = put("acme", json!({ "suggest_threshold": top + 0.01 })).await;
    assert_eq!(r.status(), 200);
    let bad = put("acme", json!({ "suggest_threshold": 3.0 })).await;
    assert_eq!(bad.status(), 422);
    let bad: Value = bad.json().await.unwrap();
    assert!(
        bad["error"].as_str().unwrap().contains("suggest_threshold"),
        "{bad}"
    );
    let unknown = put("acme", json!({ "suggest_treshold": 0.5 })).await;
    assert_eq!(unknown.status(), 422, "unknown fields are refused");
    let now: Value = app
        .get_as("acme", "/v1/settings")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        (now["suggest_threshold"].as_f64().unwrap() - (top + 0.01)).abs() < 1e-6,
        "{now}"
    );
    assert_eq!(
        now["incident_min_tickets"], 3,
        "fields left out take their defaults"
    );
    let other: Value = app
        .get_as("globex", "/v1/settings")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other, defaults);
    let r: Value = app
        .post_as(
            "acme",
            "/v1/kb/suggest",
            &json!({ "subject": "VPN 809", "body": "cannot connect from home", "k": 3 }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["results"].as_array().unwrap().len(), 0, "{r}");
}

#[tokio::test]
async fn reimport_is_idempotent_edits_reindex_and_deletes_remove() {
    let app = spawn_app().await;
    import(&app, "acme").await;
    let again = app.post_as("acme", "/v1/kb/articles", &articles()[0]).await;
    assert_eq!(again.status(), 200);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["status"], "unchanged");

    let mut edited = articles()[1].clone();
    edited["body"] = json!(
        "<h1>Reset your password</h1><p>Call the service desk on extension 4242 to reset it.</p>"
    );
    let r = app.post_as("acme", "/v1/kb/articles", &edited).await;
    assert_eq!(r.status(), 200);
    let r = search(&app, "acme", "extension 4242", "").await;
    assert_eq!(r["results"][0]["article_id"], "pwd-reset");
    assert!(r["results"][0]["passage"]
        .as_str()
        .unwrap()
        .contains("4242"));
    let all = search(&app, "acme", "self-service portal forgot password", "").await;
    assert!(
        all["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| !x["passage"].as_str().unwrap().contains("self-service")),
        "the old text is gone: {all}"
    );

    let r = app
        .client
        .delete(format!("{}/v1/kb/articles/vpn-809", app.address))
        .header("x-tenant-id", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = search(&app, "acme", "vpn error 809", "").await;
    assert!(
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["article_id"] != "vpn-809"),
        "{r}"
    );
    let r = app
        .client
        .delete(format!("{}/v1/kb/articles/vpn-809", app.address))
        .header("x-tenant-id", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_articles() {
    let app = spawn_app().await;
    import(&app, "acme").await;
    let r = search(&app, "globex", "vpn error 809", "").await;
    assert_eq!(r["results"].as_array().unwrap().len(), 0, "{r}");
    let r = app
        .client
        .delete(format!("{}/v1/kb/articles/vpn-809", app.address))
        .header("x-tenant-id", "globex")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = search(&app, "acme", "vpn error 809", "").await;
    assert_eq!(
        r["results"][0]["article_id"], "vpn-809",
        "globex's delete changed nothing"
    );
}

#[tokio::test]
async fn bad_kb_requests_are_json_errors() {
    let app = spawn_app().await;
    let cases = [
        json!({ "id": "../x", "title": "t", "body": "b" }),
        json!({ "id": "a", "title": "", "body": "b" }),
        json!({ "id": "a", "title": "t", "body": "" }),
        json!({ "id": "a", "title": "t", "body": "b", "format": "pdf" }),
        json!({ "id": "a", "title": "t", "body": "<script>x</script>", "format": "html" }),
        json!({ "title": "t", "body": "b" }),
    ];
    for c in cases {
        let r = app.post_json("/v1/kb/articles", &c).await;
        assert_eq!(r.status(), 422, "{c}");
        let e: Value = r.json().await.unwrap();
        assert!(e["error"].is_string());
    }
    for q in [
        "/v1/kb/search?q=",
        "/v1/kb/search?q=x&k=0",
        "/v1/kb/search?q=x&mode=magic",
        "/v1/kb/search",
    ] {
        assert_eq!(app.get(q).await.status(), 422, "{q}");
    }
    let r = app
        .post_json("/v1/kb/suggest", &json!({ "subject": " " }))
        .await;
    assert_eq!(r.status(), 422);
    let r = search(&app, "default", "anything", "").await;
    assert_eq!(
        r["results"].as_array().unwrap().len(),
        0,
        "nothing was indexed by the bad requests"
    );
}

/// `helpdesk kb import DIR`: files become articles, a second run skips them,
/// and the service finds them; while the service has the index open, the
/// import refuses to run rather than corrupt it.
#[tokio::test]
async fn kb_import_indexes_a_folder_and_the_service_serves_it() {
    crate::helpers::require_model();
    let data = crate::helpers::data_dir();
    let docs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(docs.path().join("network")).unwrap();
    std::fs::write(
        docs.path().join("network/vpn.md"),
        "# VPN error 809\n\nAllow UDP ports 500 and 4500 in the firewall.",
    )
    .unwrap();
    std::fs::write(
        docs.path().join("password.html"),
        "<h1>Password reset</h1><p>Use the self-service portal.</p>",
    )
    .unwrap();
    std::fs::write(docs.path().join("notes.pdf"), "ignored").unwrap();
    let import = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_helpdesk"))
            .current_dir(crate::helpers::repo_path(""))
            .env_remove("RUST_LOG")
            .args(["--models-dir"])
            .arg(crate::helpers::models_dir())
            .arg("--data-dir")
            .arg(data.path())
            .args(["kb", "import", "--tenant", "acme"])
            .arg(docs.path())
            .output()
            .unwrap()
    };
    let out = import();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (first["files"].as_u64(), first["indexed"].as_u64()),
        (Some(2), Some(2)),
        "{first}"
    );
    let again: Value = serde_json::from_slice(&import().stdout).unwrap();
    assert_eq!(again["unchanged"], 2, "{again}");

    // `kb snapshot DEST`: a copy that opens as an index with the same chunks;
    // never over an existing folder.
    let snap = data.path().join("snapshot-1");
    let snapshot = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_helpdesk"))
            .current_dir(crate::helpers::repo_path(""))
            .env_remove("RUST_LOG")
            .arg("--data-dir")
            .arg(data.path())
            .args(["kb", "snapshot"])
            .arg(&snap)
            .output()
            .unwrap()
    };
    let out = snapshot();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let taken: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(taken["engine"], "edge", "{taken}");
    assert!(!snapshot().status.success());
    let acme = helpdesk::vector::SearchFilter::tenant("acme");
    let count = |path: &std::path::Path| {
        use helpdesk::vector::VectorIndex;
        helpdesk::vector::edge::EdgeIndex::open(path, 384)
            .unwrap()
            .count(&acme)
            .unwrap()
    };
    let original = count(&data.path().join("vectors/edge"));
    assert!(original >= 2);
    assert_eq!(count(&snap), original);

    let mut settings = crate::helpers::test_settings();
    settings.data_dir = data.path().to_path_buf();
    let app = crate::helpers::spawn_app_with(settings, true).await;
    let r = search(&app, "acme", "vpn 809 firewall", "").await;
    assert_eq!(r["results"][0]["article_id"], "network:vpn.md", "{r}");
    assert_eq!(r["results"][0]["title"], "VPN error 809");
    let busy = import();
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("open in another process"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
}

#[tokio::test]
async fn similar_tickets_come_with_resolutions_and_a_duplicate_flag() {
    let app = spawn_app().await;
    let now = 1_800_000_000i64;
    let tickets = [
        json!({ "id": "T-1", "subject": "VPN disconnects every ten minutes", "body": "Since this morning the VPN drops on my laptop.",
                "status": "solved", "resolution": "Updated the VPN client to 5.2", "created_at": now - 30 * 86400 }),
        json!({ "id": "T-2", "subject": "Printer on floor 3 is jammed", "body": "Paper stuck in tray 2.", "status": "open", "created_at": now - 3600 }),
        json!({ "id": "T-3", "subject": "VPN keeps disconnecting every 10 minutes", "body": "The VPN drops on my laptop since this morning.",
                "status": "open", "created_at": now - 7200 }),
    ];
    for t in &tickets {
        let r = app.post_as("acme", "/v1/tickets/index", t).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let body: Value = r.json().await.unwrap();
        assert!(body["incident"].is_null(), "{body}");
    }
    let r = app
        .post_as(
            "acme",
            "/v1/tickets/similar",
            &json!({ "subject": "VPN disconnects every ten minutes",
            "body": "The VPN drops on my laptop since this morning.", "created_at": now, "k": 3 }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    let results = s["results"].as_array().unwrap();
    let ids: Vec<&str> = results.iter().map(|x| x["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids[..2]
            .iter()
            .filter(|i| i.starts_with("T-1") || i.starts_with("T-3"))
            .count(),
        2,
        "{s}"
    );
    let t1 = results.iter().find(|x| x["id"] == "T-1").unwrap();
    assert_eq!(t1["resolution"], "Updated the VPN client to 5.2");
    assert_eq!(
        t1["duplicate"], false,
        "a month old: outside the duplicate window"
    );
    assert_eq!(s["duplicate_of"], "T-3", "{s}");
    // The asking ticket is left out; another tenant sees none of these.
    let r: Value = app
        .post_as(
            "acme",
            "/v1/tickets/similar",
            &json!({ "subject": "VPN disconnects", "exclude_id": "T-3" }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(r["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["id"] != "T-3"));
    let r: Value = app
        .post_as(
            "globex",
            "/v1/tickets/similar",
            &json!({ "subject": "VPN disconnects" }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["results"].as_array().unwrap().len(), 0);
    // Tickets never show up in KB search.
    let kb = search(&app, "acme", "vpn disconnects", "").await;
    assert_eq!(kb["results"].as_array().unwrap().len(), 0, "{kb}");
    let bad = app
        .post_as(
            "acme",
            "/v1/tickets/index",
            &json!({ "id": "x y", "subject": "a" }),
        )
        .await;
    assert_eq!(bad.status(), 422);
}

#[tokio::test]
async fn three_near_identical_tickets_within_half_an_hour_raise_an_incident() {
    let app = spawn_app().await;
    let t0 = 1_800_000_000i64;
    let texts = [
        "The VPN is down, I cannot connect from home",
        "VPN down for me too, cannot connect from home",
        "Cannot connect to the VPN from home, it is down",
    ];
    let mut last = Value::Null;
    for (i, text) in texts.iter().enumerate() {
        let r = app
            .post_as("acme", "/v1/tickets/index", &json!({ "id": format!("V-{i}"), "subject": text, "created_at": t0 + 300 * i as i64 }))
            .await;
        assert_eq!(r.status(), 200);
        last = r.json().await.unwrap();
        if i < 2 {
            assert!(
                last["incident"].is_null(),
                "two tickets are not an incident: {last}"
            );
        }
    }
    let tickets: Vec<&str> = last["incident"]["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(tickets[0], "V-2");
    assert_eq!(tickets.len(), 3, "{last}");
    // The same three a day apart are not an incident; another tenant's tickets never join.
    for (i, text) in texts.iter().enumerate() {
        let r: Value = app
            .post_as("globex", "/v1/tickets/index", &json!({ "id": format!("W-{i}"), "subject": text, "created_at": t0 + 86_400 * i as i64 }))
            .await
            .json()
            .await
            .unwrap();
        assert!(r["incident"].is_null(), "{r}");
    }
}
