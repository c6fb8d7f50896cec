use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_with, test_settings};

#[tokio::test]
async fn health_ready_and_info_describe_the_model() {
    let app = spawn_app().await;
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/ready").await.status(), 200);
    let info: Value = app.get("/info").await.json().await.unwrap();
    assert_eq!(info["model"], "all-minilm-l6-v2");
    assert_eq!(info["dims"], 384);
    assert_eq!(info["max_input_tokens"], 256);
    assert_eq!(info["device"], "cpu");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert!(info["threads"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn a_missing_model_keeps_the_service_unready_with_the_fix_in_the_error() {
    let mut s = test_settings();
    s.models_dir = std::env::temp_dir().join("helpdesk-no-models-here");
    let app = spawn_app_with(s, false).await;
    assert_eq!(app.get("/health").await.status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if app.state.load_error().is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "loader did not report"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let resp = app.get("/ready").await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("scripts/fetch-models.sh"),
        "{body}"
    );
    let resp = app
        .post_json("/embed", &serde_json::json!({ "inputs": "hi" }))
        .await;
    assert_eq!(resp.status(), 503);
}

#[tokio::test]
async fn metrics_count_requests_batches_and_tokens() {
    let app = spawn_app().await;
    for _ in 0..3 {
        let r = app
            .post_json(
                "/embed",
                &serde_json::json!({ "inputs": ["one ticket", "another"] }),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let _ = app
        .post_json("/embed", &serde_json::json!({ "inputs": [] }))
        .await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains("helpdesk_http_requests_total{route=\"/embed\",status=\"200\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("helpdesk_http_requests_total{route=\"/embed\",status=\"422\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("helpdesk_http_request_duration_seconds_count{route=\"/embed\"} 4"),
        "{text}"
    );
    assert!(text.contains("helpdesk_embed_queue_depth 0"), "{text}");
    let tokens: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("helpdesk_embed_tokens_total "))
        .unwrap()
        .parse()
        .unwrap();
    // The warm-up pass plus 3 requests of 2 short texts (4 and 3 tokens).
    assert!(tokens >= 21.0, "{tokens}");
    assert!(text.contains("helpdesk_embed_tokens_per_second"));
}

#[tokio::test]
async fn openapi_describes_every_route_and_unknown_routes_are_json_404() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/embed",
        "/v1/embeddings",
        "/health",
        "/ready",
        "/info",
        "/metrics",
        "/openapi.json",
        "/v1/classify",
        "/v1/sentiment",
        "/v1/urgency",
        "/v1/models",
        "/v1/models/{task}",
        "/v1/models/{task}/train",
        "/v1/models/{task}/promote",
        "/v1/models/{task}/rollback",
        "/v1/jobs/{id}",
        "/v1/kb/articles",
        "/v1/kb/search",
        "/v1/kb/suggest",
        "/v1/tickets/index",
        "/v1/tickets/similar",
        "/v1/settings",
        "/api/v1/auth/login",
        "/api/v1/me",
        "/api/v1/users",
        "/api/v1/teams",
        "/api/v1/api-keys",
        "/api/v1/tickets",
        "/api/v1/tickets/{id}",
        "/api/v1/tickets/{id}/comments",
        "/api/v1/tickets/{id}/triage",
        "/api/v1/tenant/settings",
        "/api/v1/events",
        "/api/v1/webhooks",
        "/api/v1/webhooks/{id}",
        "/v1/triage",
        "/api/v1/analytics/volume",
        "/api/v1/analytics/sentiment",
        "/api/v1/analytics/sla",
        "/api/v1/analytics/triage",
        "/api/v1/audit",
        "/api/v1/labels",
        "/api/v1/tickets/{id}/attachments",
        "/api/v1/attachments/{id}",
        "/api/v1/assets",
        "/api/v1/assets/{id}",
        "/api/v1/work-orders",
        "/api/v1/work-orders/{id}",
        "/api/v1/kb/articles",
        "/api/v1/kb/articles/{id}",
        "/v1/attachments/analyze",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from openapi.json"
        );
        let method = if doc["paths"][path]["post"].is_object() {
            "post"
        } else {
            "get"
        };
        let resp = if method == "post" {
            app.post_json(path, &serde_json::json!({ "inputs": "x", "input": "x" }))
                .await
        } else {
            app.get(path).await
        };
        // A handler's own 404 (no such job) is fine; the router's is not.
        let body = resp.text().await.unwrap();
        assert!(
            !body.contains("no such route"),
            "{path} is described but not served"
        );
    }
    let resp = app.get("/nope").await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
}
