//! Live events over WebSocket (per tenant, filtered by role), across two
//! core processes through Redis, and signed, retried webhooks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::core_api::{spawn_core, spawn_core_custom, Backend};
use crate::helpers::TestApp;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribe(app: &TestApp, bearer: &str) -> Socket {
    let url = format!("{}/api/v1/events", app.address.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    let (socket, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("WebSocket upgrade");
    assert_eq!(resp.status(), 101);
    socket
}

/// The next event on the socket, or `None` after `wait`.
async fn next_event(s: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, s.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket ended: {other:?}"),
        }
    }
}

async fn expect_event(s: &mut Socket) -> Value {
    next_event(s, Duration::from_secs(10))
        .await
        .expect("an event within 10 s")
}

on_both!(
    events_reach_the_tenants_subscribers_filtered_by_role,
    webhooks_are_signed_and_retried_until_delivered,
);

async fn events_reach_the_tenants_subscribers_filtered_by_role(b: Backend) {
    let c = spawn_core(b).await;
    let (_, agent) = c.user(&c.acme, "agent@acme.test", "agent").await;
    let (_, customer) = c.user(&c.acme, "carol@acme.test", "customer").await;
    let (_, other) = c.user(&c.acme, "dave@acme.test", "customer").await;
    let (_, globex) = c.user(&c.globex, "agent@globex.test", "agent").await;
    let mut agent_ws = subscribe(&c.app, &agent).await;
    let mut customer_ws = subscribe(&c.app, &customer).await;
    let mut other_ws = subscribe(&c.app, &other).await;
    let mut globex_ws = subscribe(&c.app, &globex).await;
    // Not without credentials, and not as plain HTTP.
    let r = c.app.get("/api/v1/events").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, e) = c.call("GET", "/api/v1/events", &agent, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");

    let (_, t) = c
        .call(
            "POST",
            "/api/v1/tickets",
            &customer,
            Some(json!({ "subject": "Printer jams" })),
        )
        .await;
    let id = t["id"].as_i64().unwrap();
    for ws in [&mut agent_ws, &mut customer_ws] {
        let e = expect_event(ws).await;
        assert_eq!(
            (e["kind"].as_str(), e["ticket_id"].as_i64()),
            (Some("ticket.created"), Some(id)),
            "{e}"
        );
        assert_eq!(e["data"]["subject"], "Printer jams");
    }
    // An internal note: staff only.
    let (s, _) = c
        .call(
            "POST",
            &format!("/api/v1/tickets/{id}/comments"),
            &agent,
            Some(json!({ "body": "check tray 2", "public": false })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let e = expect_event(&mut agent_ws).await;
    assert_eq!(
        (e["kind"].as_str(), e["public"].as_bool()),
        (Some("comment.added"), Some(false))
    );
    // A public reply and a status change reach the customer too (the note
    // before them did not).
    c.call(
        "POST",
        &format!("/api/v1/tickets/{id}/comments"),
        &agent,
        Some(json!({ "body": "on my way" })),
    )
    .await;
    c.call(
        "PATCH",
        &format!("/api/v1/tickets/{id}"),
        &agent,
        Some(json!({ "status": "open" })),
    )
    .await;
    let e = expect_event(&mut customer_ws).await;
    assert_eq!(e["kind"], "comment.added");
    assert_eq!(e["data"]["body"], "on my way", "{e}");
    let e = expect_event(&mut customer_ws).await;
    assert_eq!(e["kind"], "ticket.updated");
    assert_eq!(e["data"]["after"]["status"], "open");
    // Another customer of the tenant and another tenant's agent saw nothing
    // of it; their own tenant's events still reach them.
    assert_eq!(
        next_event(&mut other_ws, Duration::from_millis(300)).await,
        None
    );
    c.call(
        "POST",
        "/api/v1/tickets",
        &globex,
        Some(json!({ "subject": "Globex only" })),
    )
    .await;
    let e = expect_event(&mut globex_ws).await;
    assert_eq!(
        e["data"]["subject"], "Globex only",
        "the first event globex sees is its own: {e}"
    );
    assert_eq!(e["tenant_id"], c.globex.tenant_id.as_str());
}

/// Two core processes share PostgreSQL and Redis: an event from one
/// reaches a subscriber of the other.
#[tokio::test]
async fn events_cross_core_processes_through_redis() {
    let channel = format!("helpdesk-test:{}", uuid::Uuid::new_v4());
    let c = spawn_core_custom(Backend::Postgres, |s| {
        s.events.redis_url = Some(
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        );
        s.events.redis_channel = channel.clone();
    })
    .await;
    let second = c.another_process().await;
    assert_ne!(second.address, c.app.address);
    let mut ws = subscribe(&second, &c.acme.api_key).await;
    let (s, t) = c
        .call(
            "POST",
            "/api/v1/tickets",
            &c.acme.api_key,
            Some(json!({ "subject": "Seen next door" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let e = expect_event(&mut ws).await;
    assert_eq!(e["kind"], "ticket.created");
    assert_eq!(e["ticket_id"], t["id"]);
    assert_eq!(e["data"]["subject"], "Seen next door");
    // Exactly once: Redis is the only path, the local broadcast does not echo it.
    assert_eq!(next_event(&mut ws, Duration::from_millis(500)).await, None);
}

/// A delivery as received: headers and body.
type Delivery = (axum::http::HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Delivery>>>,
}

/// A webhook receiver that fails its first delivery with a 500.
async fn spawn_receiver() -> (String, Receiver) {
    let r = Receiver::default();
    let state = r.clone();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(s): axum::extract::State<Receiver>,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    let mut got = s.got.lock().unwrap();
                    got.push((headers, body.to_vec()));
                    if got.len() == 1 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    }
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, r)
}

async fn webhooks_are_signed_and_retried_until_delivered(b: Backend) {
    let c = spawn_core_custom(b, |s| {
        s.worker.enabled = true;
        s.worker.backoff_s = 1;
    })
    .await;
    let (url, receiver) = spawn_receiver().await;
    // Admins only; bad input refused.
    let (_, agent) = c.user(&c.acme, "agent@acme.test", "agent").await;
    let (s, _) = c
        .call(
            "POST",
            "/api/v1/webhooks",
            &agent,
            Some(json!({ "url": url })),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for bad in [
        json!({ "url": "ftp://x" }),
        json!({ "url": url, "events": ["ticket.deleted"] }),
    ] {
        let (s, e) = c
            .call("POST", "/api/v1/webhooks", &c.acme.api_key, Some(bad))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    }
    let (s, hook) = c
        .call(
            "POST",
            "/api/v1/webhooks",
            &c.acme.api_key,
            Some(json!({ "url": url, "events": ["ticket.created"] })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();
    let (_, listed) = c
        .call("GET", "/api/v1/webhooks", &c.acme.api_key, None)
        .await;
    assert!(
        listed["items"][0].get("secret").is_none(),
        "secret shown once: {listed}"
    );
    let (_, none) = c
        .call("GET", "/api/v1/webhooks", &c.globex.api_key, None)
        .await;
    assert_eq!(none["items"], json!([]));
    let (s, _) = c
        .call(
            "DELETE",
            &format!("/api/v1/webhooks/{}", hook["id"]),
            &c.globex.api_key,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's webhook");

    let (_, t) = c
        .call(
            "POST",
            "/api/v1/tickets",
            &c.acme.api_key,
            Some(json!({ "subject": "Hooked" })),
        )
        .await;
    // globex's ticket does not go to acme's hook.
    c.call(
        "POST",
        "/api/v1/tickets",
        &c.globex.api_key,
        Some(json!({ "subject": "Not yours" })),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while receiver.got.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no retried delivery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "one failure, one success, nothing after");
    let delivery = |i: usize| {
        got[i].0["x-helpdesk-delivery"]
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(delivery(0), delivery(1), "a retry keeps its delivery id");
    for (headers, body) in &got {
        let ts: i64 = headers["x-helpdesk-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let sig = headers["x-helpdesk-signature"].to_str().unwrap();
        assert_eq!(
            sig,
            helpdesk::ticketing::webhooks::signature(&secret, ts, body)
        );
        assert_ne!(
            sig,
            helpdesk::ticketing::webhooks::signature("whsec_wrong", ts, body)
        );
        let e: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(e["kind"], "ticket.created");
        assert_eq!(e["ticket_id"], t["id"]);
        assert_eq!(headers["x-helpdesk-event"], "ticket.created");
    }
}
