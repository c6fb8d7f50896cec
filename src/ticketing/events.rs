//! Live events: ticket.created, ticket.updated, ticket.triaged and
//! comment.added, published after their transaction commits and streamed to
//! `GET /api/v1/events` (WebSocket) per tenant, filtered by role: staff see
//! every event of their tenant; a customer only those of their own tickets,
//! and no internal notes.
//!
//! Within one process the bus is a broadcast channel. With `REDIS_URL` (or
//! `events.redis_url`) every event is PUBLISHed to a Redis channel instead
//! and every process SUBSCRIBEs to it and re-broadcasts what arrives, so a
//! subscriber of one core process sees the events of all of them. The Redis
//! client is a small RESP implementation of the two commands it needs
//! (PUBLISH on one connection, SUBSCRIBE on another, reconnecting).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, Mutex};

use super::auth::Principal;
use super::CoreState;
use crate::error::ApiError;

pub const KINDS: [&str; 5] = [
    "ticket.created",
    "ticket.updated",
    "ticket.triaged",
    "comment.added",
    // A triage found the ticket completing a cluster of near-identical
    // recent tickets (staff only): the "VPN is down for everyone" case.
    "incident.detected",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub kind: String,
    pub tenant_id: String,
    pub ticket_id: i64,
    /// The ticket's requester (a customer sees only their own tickets).
    pub requester_id: String,
    /// False for internal notes and AI triage: staff only.
    pub public: bool,
    pub data: serde_json::Value,
    pub at: i64,
}

/// Where live events go beyond this process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EventsSettings {
    /// `redis://host:port`; the `REDIS_URL` variable when unset; neither:
    /// in-process only.
    pub redis_url: Option<String>,
    /// The pub/sub channel (deployments sharing a Redis pick their own).
    pub redis_channel: String,
}

impl Default for EventsSettings {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_channel: "helpdesk:events".into(),
        }
    }
}

pub fn redis_url(s: &EventsSettings) -> Option<String> {
    s.redis_url
        .clone()
        .or_else(|| std::env::var("REDIS_URL").ok())
        .filter(|u| !u.trim().is_empty())
}

/// The bus every core handler publishes to.
#[derive(Clone)]
pub struct EventBus {
    local: broadcast::Sender<Event>,
    redis: Option<Arc<Redis>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::local()
    }
}

impl EventBus {
    /// In-process only.
    pub fn local() -> Self {
        let (local, _) = broadcast::channel(1024);
        Self { local, redis: None }
    }

    /// Through Redis at `url` (`redis://host[:port][/db]`): checks the server
    /// answers, then subscribes in the background.
    pub async fn redis(url: &str, channel: &str) -> anyhow::Result<Self> {
        let addr = redis_addr(url)?;
        let mut probe = TcpStream::connect(&addr).await?;
        probe.write_all(&command(&["PING"])).await?;
        let mut reader = BufReader::new(probe);
        let pong = read_reply(&mut reader).await?;
        anyhow::ensure!(
            pong == Reply::Simple("PONG".into()),
            "Redis at {addr} answered {pong:?}"
        );
        let bus = Self {
            local: broadcast::channel(1024).0,
            redis: Some(Arc::new(Redis {
                addr: addr.clone(),
                channel: channel.to_string(),
                publisher: Mutex::new(None),
            })),
        };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(subscribe_forever(
            addr,
            channel.to_string(),
            bus.local.clone(),
            ready_tx,
        ));
        // Events published from now on reach this process too.
        let _ = tokio::time::timeout(Duration::from_secs(5), ready_rx).await;
        Ok(bus)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.local.subscribe()
    }

    /// Publishes an event; never fails the request that caused it (a lost
    /// live event is logged: the data itself is committed).
    pub async fn publish(&self, event: Event) {
        match &self.redis {
            None => {
                let _ = self.local.send(event);
            }
            Some(r) => {
                if let Err(e) = r.publish(&event).await {
                    tracing::warn!(error = %e, kind = event.kind, "event not published to Redis");
                    // This process's subscribers still get it.
                    let _ = self.local.send(event);
                }
            }
        }
    }
}

impl Event {
    pub fn new(
        kind: &str,
        tenant_id: &str,
        ticket_id: i64,
        requester_id: &str,
        public: bool,
        data: serde_json::Value,
    ) -> Self {
        Self {
            kind: kind.into(),
            tenant_id: tenant_id.into(),
            ticket_id,
            requester_id: requester_id.into(),
            public,
            data,
            at: super::db::now(),
        }
    }
}

/// Who may see an event.
pub fn visible_to(p: &Principal, e: &Event) -> bool {
    e.tenant_id == p.tenant_id && (p.is_staff() || (e.public && e.requester_id == p.user_id))
}

/// `GET /api/v1/events`: a WebSocket of the caller's events as JSON text
/// messages. Authenticated like every core route (`Authorization: Bearer`).
pub async fn stream(
    State(state): State<CoreState>,
    p: Principal,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|_| {
        ApiError::BadRequest("GET /api/v1/events is a WebSocket: send an Upgrade request".into())
    })?;
    let rx = state.events.subscribe();
    Ok(ws.on_upgrade(move |socket| forward(socket, rx, p)))
}

async fn forward(mut socket: WebSocket, mut rx: broadcast::Receiver<Event>, p: Principal) {
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Ok(e) if visible_to(&p, &e) => {
                    let Ok(text) = serde_json::to_string(&e) else { continue };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let note = serde_json::json!({ "kind": "lagged", "missed": n }).to_string();
                    if socket.send(Message::Text(note.into())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                // The client only listens; pings are answered by axum.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

// --- A minimal Redis client: RESP, PUBLISH and SUBSCRIBE. ---

struct Redis {
    addr: String,
    channel: String,
    publisher: Mutex<Option<BufReader<TcpStream>>>,
}

impl Redis {
    async fn publish(&self, event: &Event) -> anyhow::Result<()> {
        let payload = serde_json::to_string(event)?;
        let cmd = command(&["PUBLISH", &self.channel, &payload]);
        let mut conn = self.publisher.lock().await;
        // One retry on a fresh connection (the server may have restarted).
        for attempt in 0..2 {
            if conn.is_none() {
                *conn = Some(BufReader::new(TcpStream::connect(&self.addr).await?));
            }
            let Some(c) = conn.as_mut() else { continue };
            let sent = async {
                c.get_mut().write_all(&cmd).await?;
                read_reply(c).await
            }
            .await;
            match sent {
                Ok(Reply::Integer(_)) => return Ok(()),
                Ok(other) => anyhow::bail!("PUBLISH answered {other:?}"),
                Err(e) if attempt == 0 => {
                    tracing::debug!(error = %e, "Redis publisher reconnecting");
                    *conn = None;
                }
                Err(e) => return Err(e),
            }
        }
        anyhow::bail!("Redis unreachable")
    }
}

async fn subscribe_forever(
    addr: String,
    channel: String,
    local: broadcast::Sender<Event>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Err(e) = subscribe_once(&addr, &channel, &local, &mut ready).await {
            tracing::warn!(error = %e, "Redis subscription lost; reconnecting");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn subscribe_once(
    addr: &str,
    channel: &str,
    local: &broadcast::Sender<Event>,
    ready: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    let mut r = BufReader::new(stream);
    r.get_mut()
        .write_all(&command(&["SUBSCRIBE", channel]))
        .await?;
    loop {
        let reply = read_reply(&mut r).await?;
        let Reply::Array(parts) = reply else { continue };
        match parts.as_slice() {
            [Reply::Bulk(Some(kind)), ..] if kind == b"subscribe" => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            [Reply::Bulk(Some(kind)), _, Reply::Bulk(Some(payload))] if kind == b"message" => {
                match serde_json::from_slice::<Event>(payload) {
                    Ok(e) => {
                        let _ = local.send(e);
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable event from Redis"),
                }
            }
            _ => {}
        }
    }
}

/// `host:port` from `redis://[user:pass@]host[:port][/db]` (no auth or TLS).
fn redis_addr(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| anyhow::anyhow!("REDIS_URL must start with redis:// (got {url:?})"))?;
    anyhow::ensure!(
        !rest.contains('@'),
        "REDIS_URL with credentials is not supported"
    );
    let host = rest.split('/').next().unwrap_or_default();
    anyhow::ensure!(!host.is_empty(), "REDIS_URL has no host");
    Ok(if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:6379")
    })
}

/// A command as a RESP array of bulk strings.
fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

const MAX_BULK: usize = 64 * 1024 * 1024;

fn read_reply<'a, R>(
    r: &'a mut BufReader<R>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Reply>> + Send + 'a>>
where
    R: tokio::io::AsyncRead + Unpin + Send,
{
    Box::pin(async move {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            anyhow::bail!("Redis closed the connection");
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let (tag, rest) = line.split_at(line.len().min(1));
        Ok(match tag {
            "+" => Reply::Simple(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Integer(rest.parse()?),
            "$" => {
                let n: i64 = rest.parse()?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let n = n as usize;
                    anyhow::ensure!(n <= MAX_BULK, "Redis bulk reply of {n} bytes");
                    let mut buf = vec![0; n + 2];
                    r.read_exact(&mut buf).await?;
                    buf.truncate(n);
                    Reply::Bulk(Some(buf))
                }
            }
            "*" => {
                let n: i64 = rest.parse()?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(read_reply(r).await?);
                }
                Reply::Array(items)
            }
            other => anyhow::bail!("unexpected Redis reply type {other:?}"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resp_replies_parse() {
        let input = b"+PONG\r\n:3\r\n$5\r\nhello\r\n$-1\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\n{}\r\n-ERR no\r\n";
        let mut r = BufReader::new(&input[..]);
        assert_eq!(
            read_reply(&mut r).await.unwrap(),
            Reply::Simple("PONG".into())
        );
        assert_eq!(read_reply(&mut r).await.unwrap(), Reply::Integer(3));
        assert_eq!(
            read_reply(&mut r).await.unwrap(),
            Reply::Bulk(Some(b"hello".to_vec()))
        );
        assert_eq!(read_reply(&mut r).await.unwrap(), Reply::Bulk(None));
        assert_eq!(
            read_reply(&mut r).await.unwrap(),
            Reply::Array(vec![
                Reply::Bulk(Some(b"message".to_vec())),
                Reply::Bulk(Some(b"ch".to_vec())),
                Reply::Bulk(Some(b"{}".to_vec())),
            ])
        );
        assert_eq!(
            read_reply(&mut r).await.unwrap(),
            Reply::Error("ERR no".into())
        );
        assert!(read_reply(&mut r).await.is_err(), "end of stream");
        assert_eq!(
            command(&["PUBLISH", "c", "hi"]),
            b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2\r\nhi\r\n".to_vec()
        );
    }

    #[test]
    fn redis_urls_and_visibility() {
        assert_eq!(
            redis_addr("redis://127.0.0.1:6379").unwrap(),
            "127.0.0.1:6379"
        );
        assert_eq!(redis_addr("redis://cache/0").unwrap(), "cache:6379");
        assert!(redis_addr("http://x").is_err());
        let staff = Principal {
            tenant_id: "t".into(),
            user_id: "agent".into(),
            role: super::super::Role::Agent,
            scopes: vec![],
        };
        let customer = Principal {
            user_id: "carol".into(),
            role: super::super::Role::Customer,
            ..staff.clone()
        };
        let e = Event {
            kind: "comment.added".into(),
            tenant_id: "t".into(),
            ticket_id: 1,
            requester_id: "carol".into(),
            public: false,
            data: serde_json::Value::Null,
            at: 0,
        };
        assert!(visible_to(&staff, &e));
        assert!(!visible_to(&customer, &e), "an internal note");
        let public = Event {
            public: true,
            ..e.clone()
        };
        assert!(visible_to(&customer, &public));
        let other = Event {
            requester_id: "dave".into(),
            ..public.clone()
        };
        assert!(!visible_to(&customer, &other));
        let foreign = Event {
            tenant_id: "u".into(),
            ..public
        };
        assert!(!visible_to(&staff, &foreign));
    }
}
