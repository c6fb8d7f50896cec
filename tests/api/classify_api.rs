//! The label heads over HTTP: the shipped sentiment head, urgency, training
//! as a job, versions, the promotion gate, rollback, hot reload and tenant
//! isolation.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{repo_path, spawn_app, TestApp};

/// The jargon fixture as (text, label) rows of one split.
fn jargon(split: &str) -> Vec<Value> {
    let mut r = csv::Reader::from_path(repo_path("tests/fixtures/jargon_tickets.csv")).unwrap();
    r.records()
        .map(|x| x.unwrap())
        .filter(|x| &x[2] == split)
        .map(|x| json!({ "text": &x[0], "label": &x[1] }))
        .collect()
}

fn texts(rows: &[Value]) -> Vec<&str> {
    rows.iter().map(|r| r["text"].as_str().unwrap()).collect()
}

/// Share of `results` (a `/v1/classify` reply's) whose `task` answer is the
/// row's label.
fn accuracy(results: &[Value], rows: &[Value], task: &str) -> f64 {
    assert_eq!(results.len(), rows.len());
    let correct = results
        .iter()
        .zip(rows)
        .filter(|(p, gold)| p[task]["top"] == gold["label"])
        .count();
    correct as f64 / rows.len() as f64
}

async fn wait_for_job(app: &TestApp, tenant: &str, url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let r = app.get_as(tenant, url).await;
        assert_eq!(r.status(), 200);
        let job: Value = r.json().await.unwrap();
        match job["status"].as_str().unwrap() {
            "succeeded" | "failed" => return job,
            "queued" | "running" => {}
            other => panic!("unexpected job status {other}"),
        }
        assert!(
            Instant::now() < deadline,
            "training job did not finish: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn train(app: &TestApp, tenant: &str, task: &str, body: Value) -> Value {
    let r = app
        .post_as(tenant, &format!("/v1/models/{task}/train"), &body)
        .await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let started: Value = r.json().await.unwrap();
    let job = wait_for_job(app, tenant, started["status_url"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    job
}

async fn classify(app: &TestApp, tenant: &str, task: &str, texts: &[&str]) -> Value {
    let r = app
        .post_as(
            tenant,
            "/v1/classify",
            &json!({ "inputs": texts, "task": task }),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

#[tokio::test]
async fn the_shipped_sentiment_head_answers_with_three_labels_and_scores() {
    let app = spawn_app().await;
    let r = app
        .post_json(
            "/v1/sentiment",
            &json!({ "inputs": [
                "Thank you so much, the technician was wonderful and fixed everything.",
                "This is terrible, the system crashed again and I lost all my work."
            ]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["version"], 0, "the shipped head is version 0");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["label"], "positive", "{body}");
    assert_eq!(results[1]["label"], "negative", "{body}");
    for r in results {
        let sum: f64 = r["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["probability"].as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-4);
    }
    // The neutral band: below the calibrated threshold the answer is neutral.
    let card: Value = app.get("/v1/models/sentiment").await.json().await.unwrap();
    let threshold = card["versions"][0]["threshold"].as_f64().unwrap();
    assert!(threshold > 0.5 && threshold < 1.0, "{card}");
    assert_eq!(card["versions"][0]["neutral_label"], "neutral");
}

#[tokio::test]
async fn urgency_combines_signals_with_negative_sentiment() {
    let app = spawn_app().await;
    let r = app
        .post_json(
            "/v1/urgency",
            &json!({ "text": "The VPN is down for everyone and we cannot work, this is awful and unacceptable.",
                     "previous_contacts": 1 }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let u: Value = r.json().await.unwrap();
    assert_eq!(u["level"], "critical", "{u}");
    assert_eq!(u["sentiment"]["label"], "negative", "{u}");
    let reasons: Vec<&str> = u["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("negative sentiment")),
        "{reasons:?}"
    );
    let calm: Value = app
        .post_json("/v1/urgency", &json!({ "text": "When you have time, could you add me to the marketing list? No rush." }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(calm["level"], "low", "{calm}");
}

#[tokio::test]
async fn a_tenant_trains_a_head_over_http_and_classifies_with_evidence() {
    let app = spawn_app().await;
    let train_rows = jargon("train");
    let test_rows = jargon("test");
    let job = train(
        &app,
        "acme",
        "team",
        json!({ "examples": train_rows, "heldout": test_rows, "seed": 7 }),
    )
    .await;
    let result = &job["result"];
    assert_eq!(result["version"], 1);
    assert_eq!(result["promoted"], true);
    assert_eq!(
        result["card"]["kind"], "softmax",
        "6 examples per team: a trained head"
    );
    assert_eq!(job["phase"], "evaluating");
    let report = &result["report"];
    for key in crate::helpers::REPORT_KEYS {
        assert!(report.get(key).is_some(), "report lacks {key}");
    }

    let versions: Value = app
        .get_as("acme", "/v1/models/team")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(versions["active"], 1);
    assert_eq!(
        versions["versions"][0]["labels"].as_array().unwrap().len(),
        7
    );

    // Held-out tickets, classified through the API.
    let texts = texts(&test_rows);
    let body = classify(&app, "acme", "team", &texts).await;
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), texts.len());
    let acc = accuracy(results, &test_rows, "team");
    eprintln!("jargon held-out accuracy over HTTP: {acc:.3}");
    assert!(acc >= 0.75, "accuracy {acc}");
    let first = &results[0]["team"];
    assert_eq!(first["version"], 1);
    assert!(!first["evidence"].as_array().unwrap().is_empty());
    assert!(first["probabilities"].as_array().unwrap().len() == 7);

    // Another tenant sees none of it.
    assert_eq!(app.get_as("globex", "/v1/models/team").await.status(), 404);
    let r = app
        .post_as(
            "globex",
            "/v1/classify",
            &json!({ "inputs": "printer offline", "task": "team" }),
        )
        .await;
    assert_eq!(r.status(), 404);
    let url = format!("/v1/jobs/{}", job["id"]);
    assert_eq!(app.get_as("globex", &url).await.status(), 404);
    assert_eq!(app.get_as("acme", &url).await.status(), 200);
}

#[tokio::test]
async fn the_gate_keeps_a_worse_version_and_promote_rollback_reload_without_restart() {
    let app = spawn_app().await;
    let train_rows = jargon("train");
    let test_rows = jargon("test");
    let body = json!({ "examples": train_rows, "heldout": test_rows });
    train(&app, "acme", "team", body.clone()).await;

    // Version 2 learns from labels shuffled across teams: worse on held-out.
    let mut scrambled = train_rows.clone();
    let n = scrambled.len();
    for i in 0..n {
        scrambled[i]["label"] = train_rows[(i * 7 + 3) % n]["label"].clone();
    }
    let job = train(
        &app,
        "acme",
        "team",
        json!({ "examples": scrambled, "heldout": test_rows }),
    )
    .await;
    let gate = &job["result"]["card"]["gate"];
    assert_eq!(job["result"]["version"], 2);
    assert_eq!(gate["promoted"], false, "{gate}");
    assert!(
        gate["candidate"].as_f64() < gate["active"].as_f64(),
        "{gate}"
    );
    let v: Value = app
        .get_as("acme", "/v1/models/team")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["active"], 1);
    assert_eq!(v["versions"].as_array().unwrap().len(), 2);

    // Promote by hand; the next request runs on version 2.
    let r = app
        .post_as("acme", "/v1/models/team/promote", &json!({ "version": 2 }))
        .await;
    assert_eq!(r.status(), 200);
    let p = classify(&app, "acme", "team", &["VPN keeps disconnecting"]).await;
    assert_eq!(p["results"][0]["team"]["version"], 2);

    // Roll back: version 1 again, then nothing earlier to go back to.
    let r = app
        .post_as("acme", "/v1/models/team/rollback", &json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let p = classify(&app, "acme", "team", &["VPN keeps disconnecting"]).await;
    assert_eq!(p["results"][0]["team"]["version"], 1);
    let r = app
        .post_as("acme", "/v1/models/team/rollback", &json!({}))
        .await;
    assert_eq!(r.status(), 409);

    // A promotion from outside the service (the CLI writes the same state
    // file) is picked up without a restart.
    app.state.heads.store.promote("acme", "team", 2).unwrap();
    let p = classify(&app, "acme", "team", &["VPN keeps disconnecting"]).await;
    assert_eq!(p["results"][0]["team"]["version"], 2);
    // Promoting a version that does not exist changes nothing.
    let r = app
        .post_as("acme", "/v1/models/team/promote", &json!({ "version": 9 }))
        .await;
    assert_eq!(r.status(), 404);
    let v: Value = app
        .get_as("acme", "/v1/models/team")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["active"], 2);
}

#[tokio::test]
async fn bad_requests_are_json_errors_and_change_nothing() {
    let app = spawn_app().await;
    let cases = [
        ("/v1/classify", json!({ "inputs": "x" }), 422),
        (
            "/v1/classify",
            json!({ "inputs": "x", "task": "../etc" }),
            422,
        ),
        (
            "/v1/classify",
            json!({ "inputs": "x", "task": "nosuchtask" }),
            404,
        ),
        (
            "/v1/classify",
            json!({ "inputs": [], "task": "sentiment" }),
            422,
        ),
        ("/v1/sentiment", json!({ "text": "wrong field" }), 422),
        (
            "/v1/models/team/train",
            json!({ "examples": [{ "text": "a", "label": "x" }, { "text": "b", "label": "x" }] }),
            422,
        ),
        (
            "/v1/models/team/train",
            json!({ "examples": [{ "text": " ", "label": "x" }, { "text": "b", "label": "y" }] }),
            422,
        ),
        ("/v1/models/team/train", json!({ "examples": "nope" }), 422),
        ("/v1/models/team/promote", json!({ "version": 1 }), 404),
        ("/v1/models/team/rollback", json!({}), 409),
    ];
    for (path, body, status) in cases {
        let r = app.post_json(path, &body).await;
        assert_eq!(r.status().as_u16(), status, "{path} {body}");
        let e: Value = r.json().await.unwrap();
        assert!(e["error"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
    }
    let r = app
        .post_as("bad tenant!", "/v1/sentiment", &json!({ "inputs": "hi" }))
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(app.get("/v1/models/team").await.status(), 404);
    assert_eq!(app.get("/v1/jobs/1").await.status(), 404);
    assert_eq!(app.get("/v1/jobs/abc").await.status(), 404);
}

#[tokio::test]
async fn a_zero_shot_head_from_label_descriptions_routes_a_new_tenants_tickets() {
    let app = spawn_app().await;
    let test_rows = jargon("test");
    let descriptions = json!({
        "database": "database servers, SQL queries, Oracle and PostgreSQL errors",
        "devops": "build pipelines, deployments, containers and Kubernetes",
        "email": "email, Outlook, Exchange mailboxes and mail delivery",
        "endpoint": "laptops, desktops, Windows updates and installed software",
        "erp": "SAP transactions, purchase orders, invoices and ERP postings",
        "identity": "sign-in, passwords, accounts, MFA and Azure AD access",
        "network": "VPN, Wi-Fi, DNS, firewalls and network connectivity"
    });
    let r = app
        .post_as(
            "newco",
            "/v1/models/team/train",
            &json!({ "descriptions": descriptions, "heldout": test_rows }),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["card"]["kind"], "zero_shot");
    assert_eq!(out["promoted"], true);
    let acc = out["report"]["accuracy"].as_f64().unwrap();
    eprintln!("zero-shot on the jargon test tickets: {acc:.3} (chance 0.143)");
    assert!(acc >= 0.5, "zero-shot accuracy {acc}");
    let p = classify(
        &app,
        "newco",
        "team",
        &["Outlook keeps asking for my mailbox password"],
    )
    .await;
    let team = &p["results"][0]["team"];
    assert_eq!(team["version"], 1);
    // The evidence of a zero-shot answer is the label descriptions it matched.
    assert!(
        team["evidence"][0]["text"].as_str().unwrap().contains(','),
        "{team}"
    );

    let bad = app
        .post_as(
            "newco",
            "/v1/models/team/train",
            &json!({ "descriptions": { "only": "one label" } }),
        )
        .await;
    assert_eq!(bad.status(), 422);
    let v: Value = app
        .get_as("newco", "/v1/models/team")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["versions"].as_array().unwrap().len(),
        1,
        "the bad request added nothing"
    );
}

#[tokio::test]
async fn a_head_on_layer_features_answers_over_http_and_in_triage_from_one_pass() {
    use helpdesk::ml::cache::LayerFeatures;
    use helpdesk::ml::Embedder;

    let app = spawn_app().await;
    let (train_rows, test_rows) = (jargon("train"), jargon("test"));
    let body = |layers: bool| {
        json!({ "examples": train_rows, "heldout": test_rows, "seed": 7,
                "layer_features": layers })
    };
    let job = train(&app, "acme", "queue", body(true)).await;
    let card = &job["result"]["card"];
    assert!(
        card["encoder"].as_str().unwrap().ends_with("+layers"),
        "{card}"
    );
    assert_eq!(card["dims"], 384 * 6, "six layers' means");
    train(&app, "acme", "queue_base", body(false)).await;

    // Both heads in one request: one pass, each head reads its own vectors.
    let texts = texts(&test_rows);
    let r = app
        .post_as(
            "acme",
            "/v1/classify",
            &json!({ "inputs": texts, "tasks": ["queue", "queue_base"] }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let got: Value = r.json().await.unwrap();
    let results = got["results"].as_array().unwrap();
    let acc = accuracy(results, &test_rows, "queue");
    eprintln!("jargon held-out accuracy, layer features over HTTP: {acc:.3}");
    assert!(acc >= 0.75, "accuracy {acc}");

    // The service's answers are the stored head's on the library's layer
    // features: the batcher hands each head the right vector.
    let enc = crate::helpers::cpu_encoder();
    let features = LayerFeatures(&enc).embed(&texts).unwrap();
    let base = enc.embed(&texts, true, true).unwrap();
    let store = &app.state.heads.store;
    let (layered, plain) = (
        store.load("acme", "queue", 1).unwrap(),
        store.load("acme", "queue_base", 1).unwrap(),
    );
    assert!(layered.card.reads_layers() && !plain.card.reads_layers());
    for (i, text) in texts.iter().enumerate() {
        for (task, model, v) in [
            ("queue", &layered, &features[i]),
            ("queue_base", &plain, &base[i]),
        ] {
            let want = model.predict(v, text);
            let got = &results[i][task];
            assert_eq!(got["top"], want.top.as_str(), "{task} {i}");
            let conf = got["confidence"].as_f64().unwrap();
            assert!(
                (conf - f64::from(want.confidence)).abs() < 1e-3,
                "{task} {i}: {conf} vs {}",
                want.confidence
            );
        }
    }

    // A triage reads the same: both label sets and the sentiment, whichever
    // vectors each head reads, from its one pass.
    let text = texts[0];
    let r = app
        .post_as(
            "acme",
            "/v1/triage",
            &json!({ "ticket_id": 1, "subject": text, "label_sets": ["queue", "queue_base"] }),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let reply: Value = r.json().await.unwrap();
    let t = &reply["result"];
    for task in ["queue", "queue_base"] {
        assert_eq!(t["labels"][task]["top"], results[0][task]["top"], "{t}");
        let (a, b) = (
            t["labels"][task]["confidence"].as_f64().unwrap(),
            results[0][task]["confidence"].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-3, "{task}: triage {a} vs classify {b}");
    }
    let s: Value = app
        .post_as("acme", "/v1/sentiment", &json!({ "inputs": [text] }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["sentiment"]["label"], s["results"][0]["label"], "{t} {s}");

    // A zero-shot head reads base vectors: asking for layer features is a 422
    // that creates nothing.
    let r = app
        .post_as(
            "acme",
            "/v1/models/zs/train",
            &json!({ "descriptions": { "a": "printer jams", "b": "vpn drops" },
                     "layer_features": true }),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("layer_features"));
    assert_eq!(app.get_as("acme", "/v1/models/zs").await.status(), 404);

    // A base-vector version of a task whose active version reads layer
    // features still faces the gate: the active one is scored on its own
    // vectors of the same held-out examples.
    let job = train(&app, "acme", "queue", body(false)).await;
    let gate = &job["result"]["card"]["gate"];
    assert_eq!(gate["active_version"], 1, "{gate}");
    assert!(gate["active"].as_f64().unwrap() > 0.5, "{gate}");
    assert!(
        gate["reason"]
            .as_str()
            .unwrap()
            .contains("active version's"),
        "{gate}"
    );
}

/// An MLP head (`"kind": "mlp"`) trains as a job, records its kind, and
/// answers over HTTP exactly as the head loaded back from its files does on
/// the library's vectors; a bad `hidden_units` is a 422 that creates nothing.
#[tokio::test]
async fn an_mlp_head_trains_over_http_and_answers_as_the_stored_head() {
    let app = spawn_app().await;
    let (train_rows, test_rows) = (jargon("train"), jargon("test"));
    for (body, why) in [
        (
            json!({ "examples": train_rows, "hidden_units": 64 }),
            "kind",
        ),
        (
            json!({ "examples": train_rows, "kind": "mlp", "hidden_units": 0 }),
            "within",
        ),
    ] {
        let r = app.post_as("acme", "/v1/models/mlp/train", &body).await;
        assert_eq!(r.status(), 422, "{why}");
        assert!(r.text().await.unwrap().contains(why));
    }
    assert_eq!(app.get_as("acme", "/v1/models/mlp").await.status(), 404);

    let job = train(
        &app,
        "acme",
        "mlp",
        json!({ "examples": train_rows, "heldout": test_rows, "seed": 7,
                "kind": "mlp", "hidden_units": 64 }),
    )
    .await;
    let card = &job["result"]["card"];
    assert_eq!(card["kind"], "mlp", "{card}");
    let acc = card["metrics"]["accuracy"].as_f64().unwrap();
    eprintln!("jargon held-out accuracy, MLP head: {acc:.3}");
    assert!(acc >= 0.7, "accuracy {acc}: {card}");

    let stored = app.state.heads.store.load("acme", "mlp", 1).unwrap();
    assert_eq!(stored.card.kind, helpdesk::ml::HeadKind::Mlp);
    let texts = texts(&test_rows);
    let enc = crate::helpers::cpu_encoder();
    let vectors = enc.embed(&texts, true, true).unwrap();
    let got = classify(&app, "acme", "mlp", &texts).await;
    let results = got["results"].as_array().unwrap();
    for (i, text) in texts.iter().enumerate() {
        let want = stored.predict(&vectors[i], text);
        assert_eq!(results[i]["mlp"]["top"], want.top.as_str(), "{i}");
        let conf = results[i]["mlp"]["confidence"].as_f64().unwrap();
        assert!((conf - f64::from(want.confidence)).abs() < 1e-3, "{i}");
    }
}

/// Banking77 rows of `file` as `{text, label}`: per intent, those at
/// positions `from..to` in file order.
fn banking77(file: &str, from: usize, to: usize) -> Vec<Value> {
    let mut r = csv::Reader::from_path(repo_path(file)).unwrap();
    let mut seen = std::collections::HashMap::<String, usize>::new();
    r.records()
        .map(|x| x.unwrap())
        .filter(|x| {
            let n = seen.entry(x[1].to_string()).or_default();
            *n += 1;
            (from + 1..=to).contains(n)
        })
        .map(|x| json!({ "text": &x[0], "label": &x[1] }))
        .collect()
}

/// Unlabelled texts (`"unlabelled"`): labels are propagated to them and they
/// train the head beside 5 labelled queries per Banking77 intent (60
/// unlabelled ones per intent); held-out
/// accuracy rises above the same head's without them, the card says how many
/// were used (texts of labelled or held-out examples are not), and bad uses
/// are 422s that create nothing.
#[tokio::test]
async fn unlabelled_tickets_lift_a_head_trained_on_five_labels_per_intent() {
    let app = spawn_app().await;
    let labelled = banking77("tests/fixtures/banking77_train10.csv", 0, 5);
    let heldout = banking77("tests/fixtures/banking77_test4.csv", 0, 4);
    // 60 more train queries per intent, their labels dropped (the first 5 of
    // them repeat the labelled ones, some repeat a held-out query: those are
    // not used).
    let pool = banking77("bench/banking77/train.csv", 0, 65);
    let unlabelled: Vec<&str> = texts(&pool);
    let known: std::collections::HashSet<&str> = texts(&labelled)
        .into_iter()
        .chain(texts(&heldout))
        .map(str::trim)
        .collect();
    let fresh: std::collections::HashSet<&str> = unlabelled
        .iter()
        .map(|t| t.trim())
        .filter(|t| !known.contains(t))
        .collect();
    assert_eq!((labelled.len(), heldout.len()), (385, 308));

    for (body, why) in [
        (
            json!({ "examples": labelled, "unlabelled": ["ok", " "] }),
            "unlabelled text 1 is empty",
        ),
        (
            json!({ "examples": labelled, "unlabelled": ["ok"], "kind": "knn" }),
            "only softmax and mlp",
        ),
        (
            json!({ "examples": labelled, "unlabelled_weight": 0.5 }),
            "for training with unlabelled",
        ),
        (
            json!({ "examples": labelled, "unlabelled": ["ok"], "unlabelled_weight": 0 }),
            "above 0",
        ),
        (
            json!({ "examples": labelled, "unlabelled": ["ok"], "unlabelled_weight": 1.5 }),
            "above 0",
        ),
        (
            json!({ "descriptions": { "a": "x", "b": "y" }, "unlabelled": ["ok"] }),
            "need labelled examples",
        ),
    ] {
        let r = app.post_as("acme", "/v1/models/intent/train", &body).await;
        assert_eq!(r.status(), 422, "{why}");
        assert!(r.text().await.unwrap().contains(why), "{why}");
    }
    assert_eq!(app.get_as("acme", "/v1/models/intent").await.status(), 404);

    let base = json!({ "examples": labelled, "heldout": heldout, "promote": "always" });
    let without = train(&app, "acme", "intent", base.clone()).await;
    let mut body = base;
    body["unlabelled"] = json!(unlabelled);
    let with = train(&app, "acme", "intent", body).await;
    let (a, b) = (&without["result"]["card"], &with["result"]["card"]);
    let acc = |c: &Value| c["metrics"]["accuracy"].as_f64().unwrap();
    let used = &b["training"]["unlabelled"];
    eprintln!(
        "banking77, 5 labelled per intent: accuracy {:.3} alone, {:.3} with {} unlabelled; {used}",
        acc(a),
        acc(b),
        fresh.len()
    );
    assert_eq!(used["given"], unlabelled.len());
    assert_eq!(used["used"], fresh.len(), "{used}");
    assert_eq!(b["training"]["head"]["pseudo_labelled"], fresh.len());
    assert_eq!(b["train_examples"], a["train_examples"]);
    assert!(a["training"].get("unlabelled").is_none());
    assert_eq!(used["kept"], true, "{used}");
    let val_loss = |v: &Value| v["val_loss"].as_f64().unwrap();
    assert!(
        val_loss(&b["training"]["head"]) < val_loss(&used["first_head"]),
        "{b}"
    );
    assert!(
        acc(b) >= acc(a) + LIFT_UNLABELLED,
        "{} vs {}",
        acc(b),
        acc(a)
    );
}

// Measured 0.792 → 0.812 (6 of the 308 held-out queries); with 20 unlabelled
// queries per intent instead of 60 it was 0.786, within noise — the graph
// needs neighbours to spread along.
const LIFT_UNLABELLED: f64 = 0.01;
