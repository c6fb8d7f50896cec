use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::{cosine, norm, reference, spawn_app, spawn_app_with, test_settings};

async fn assert_json_error(resp: reqwest::Response, status: u16, needle: &str) {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.expect("error body is JSON");
    let msg = body["error"].as_str().expect("error field");
    assert!(msg.contains(needle), "`{msg}` should mention `{needle}`");
    assert!(body["code"].is_string());
}

#[tokio::test]
async fn tei_embed_returns_unit_vectors_that_match_the_reference() {
    let app = spawn_app().await;
    let refs = reference();
    let texts: Vec<&str> = refs.iter().take(8).map(|r| r.text.as_str()).collect();
    let resp = app.post_json("/embed", &json!({ "inputs": texts })).await;
    assert_eq!(resp.status(), 200);
    let vectors: Vec<Vec<f32>> = resp.json().await.unwrap();
    assert_eq!(vectors.len(), 8);
    for (v, r) in vectors.iter().zip(&refs) {
        assert_eq!(v.len(), 384);
        assert!((norm(v) - 1.0).abs() < 1e-4);
        assert!(cosine(v, &r.embedding) >= 0.9999);
    }
}

#[tokio::test]
async fn tei_embed_accepts_a_single_string_and_normalize_false() {
    let app = spawn_app().await;
    let resp = app
        .post_json(
            "/embed",
            &json!({ "inputs": "printer on fire", "normalize": false }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let vectors: Vec<Vec<f32>> = resp.json().await.unwrap();
    assert_eq!(vectors.len(), 1);
    assert!((norm(&vectors[0]) - 1.0).abs() > 0.01);
}

#[tokio::test]
async fn openai_embeddings_report_usage_and_decode_from_base64() {
    let app = spawn_app().await;
    let input = ["reset my password", "the VPN drops every ten minutes"];
    let floats: Value = app
        .post_json(
            "/v1/embeddings",
            &json!({ "input": input, "model": "all-minilm-l6-v2" }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(floats["object"], "list");
    assert_eq!(floats["model"], "all-minilm-l6-v2");
    let enc = app.state.encoder().unwrap();
    let expected_tokens: usize = enc
        .tokenizer
        .tokenize(&input, true)
        .unwrap()
        .iter()
        .map(|t| t.ids.len())
        .sum();
    assert_eq!(floats["usage"]["prompt_tokens"], expected_tokens);
    assert_eq!(floats["usage"]["total_tokens"], expected_tokens);
    let data = floats["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);

    let b64: Value = app
        .post_json(
            "/v1/embeddings",
            &json!({ "input": input, "model": "x", "encoding_format": "base64" }),
        )
        .await
        .json()
        .await
        .unwrap();
    for i in 0..2 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64["data"][i]["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let float: Vec<f32> = serde_json::from_value(data[i]["embedding"].clone()).unwrap();
        assert_eq!(decoded, float);
    }
}

#[tokio::test]
async fn an_empty_input_list_is_422() {
    let app = spawn_app().await;
    assert_json_error(
        app.post_json("/embed", &json!({ "inputs": [] })).await,
        422,
        "empty",
    )
    .await;
    assert_json_error(
        app.post_json("/v1/embeddings", &json!({ "input": [] }))
            .await,
        422,
        "empty",
    )
    .await;
}

#[tokio::test]
async fn too_many_inputs_is_413() {
    let mut s = test_settings();
    s.server.max_inputs = 4;
    let app = spawn_app_with(s, true).await;
    let resp = app
        .post_json("/embed", &json!({ "inputs": ["a", "b", "c", "d", "e"] }))
        .await;
    assert_json_error(resp, 413, "limit is 4").await;
}

#[tokio::test]
async fn wrong_types_are_422_and_broken_json_is_400() {
    let app = spawn_app().await;
    assert_json_error(
        app.post_json("/embed", &json!({ "inputs": 42 })).await,
        422,
        "string",
    )
    .await;
    assert_json_error(
        app.post_json("/embed", &json!({ "inputs": [1, 2] })).await,
        422,
        "string",
    )
    .await;
    assert_json_error(
        app.post_json("/embed", &json!({ "text": "hi" })).await,
        422,
        "inputs",
    )
    .await;
    assert_json_error(
        app.post_json("/embed", &json!({ "inputs": "hi", "normalize": "yes" }))
            .await,
        422,
        "normalize",
    )
    .await;
    assert_json_error(
        app.post_json("/v1/embeddings", &json!({ "input": [[101, 102]] }))
            .await,
        422,
        "token",
    )
    .await;
    let resp = app
        .client
        .post(format!("{}/embed", app.address))
        .header("content-type", "application/json")
        .body("{\"inputs\": [")
        .send()
        .await
        .unwrap();
    assert_json_error(resp, 400, "").await;
    let resp = app
        .client
        .post(format!("{}/embed", app.address))
        .body("inputs=hi")
        .send()
        .await
        .unwrap();
    assert_json_error(resp, 415, "Content-Type").await;
}

#[tokio::test]
async fn too_long_input_is_422_unless_truncate_is_set() {
    let app = spawn_app().await;
    let long = "keyboard ".repeat(300);
    assert_json_error(
        app.post_json("/embed", &json!({ "inputs": long })).await,
        422,
        "truncate",
    )
    .await;
    let ok = app
        .post_json("/embed", &json!({ "inputs": long, "truncate": true }))
        .await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let mut s = test_settings();
    s.server.max_body_bytes = 4096;
    let app = spawn_app_with(s, true).await;
    let resp = app
        .post_json("/embed", &json!({ "inputs": "a ".repeat(5000) }))
        .await;
    assert_json_error(resp, 413, "").await;
}

#[tokio::test]
async fn a_full_queue_answers_429_and_recovers() {
    let mut s = test_settings();
    s.server.max_concurrent_requests = 1;
    let app = spawn_app_with(s, true).await;
    let held = app.state.encoder().unwrap().try_reserve().unwrap();
    let resp = app.post_json("/embed", &json!({ "inputs": "hello" })).await;
    assert_json_error(resp, 429, "overloaded").await;
    drop(held);
    assert_eq!(
        app.post_json("/embed", &json!({ "inputs": "hello" }))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn concurrent_requests_each_get_their_own_vectors() {
    let app = spawn_app().await;
    let refs = reference();
    let mut tasks = Vec::new();
    for chunk in refs.chunks(5) {
        let texts: Vec<String> = chunk.iter().map(|r| r.text.clone()).collect();
        let expected: Vec<Vec<f32>> = chunk.iter().map(|r| r.embedding.clone()).collect();
        let (client, url) = (app.client.clone(), format!("{}/embed", app.address));
        tasks.push(tokio::spawn(async move {
            let v: Vec<Vec<f32>> = client
                .post(url)
                .json(&json!({ "inputs": texts, "truncate": true }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for (got, want) in v.iter().zip(&expected) {
                assert!(cosine(got, want) >= 0.9999);
            }
            v.len()
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, refs.len());
}
