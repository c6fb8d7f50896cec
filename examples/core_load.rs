//! A closed-loop HTTP load client for the ticketing core (used by
//! `scripts/bench-core.sh`): `--concurrency` connections each send their
//! next request as soon as the last answered, for `--seconds`.
//!
//! Modes:
//! - `create`: `POST /api/v1/tickets` (a ticket and its outbox job, one
//!   transaction each);
//! - `read`: `GET /api/v1/tickets/{id}` over ids `1..=--ids`;
//! - `triage`: creates `--count` tickets at `--rate` per second and polls
//!   each until its triage leaves `pending`: create-to-triaged latency.
//!
//! Prints one JSON line: requests, errors, seconds, per_second, p50/p90/p99
//! (ms), and the acknowledged ticket ids when `--acked FILE` is given.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

struct Args {
    url: String,
    key: String,
    mode: String,
    concurrency: usize,
    seconds: f64,
    ids: u64,
    count: usize,
    rate: f64,
    acked: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:8080".into(),
        key: String::new(),
        mode: "create".into(),
        concurrency: 32,
        seconds: 10.0,
        ids: 1000,
        count: 50,
        rate: 2.0,
        acked: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = v,
            "--key" => a.key = v,
            "--mode" => a.mode = v,
            "--concurrency" => a.concurrency = v.parse().expect("--concurrency"),
            "--seconds" => a.seconds = v.parse().expect("--seconds"),
            "--ids" => a.ids = v.parse().expect("--ids"),
            "--count" => a.count = v.parse().expect("--count"),
            "--rate" => a.rate = v.parse().expect("--rate"),
            "--acked" => a.acked = Some(v),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!a.key.is_empty(), "--key is required");
    a
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

const SUBJECTS: [&str; 6] = [
    "VPN drops every few minutes since the update",
    "Invoice shows the wrong VAT number",
    "Cannot log in: account locked after password reset",
    "Printer on floor 3 jams on every duplex job",
    "ORA-12154 from the reporting server since the patch",
    "Refund for a double charge on my card",
];

#[tokio::main]
async fn main() {
    let a = args();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency.max(1) * 2)
        .build()
        .unwrap();
    if a.mode == "triage" {
        return triage(&a, &client).await;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(a.seconds);
    let errors = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (client, errors, acked, counter) = (
            client.clone(),
            errors.clone(),
            acked.clone(),
            counter.clone(),
        );
        let (url, key, mode, ids) = (a.url.clone(), a.key.clone(), a.mode.clone(), a.ids);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t0 = Instant::now();
                let r = if mode == "create" {
                    client
                        .post(format!("{url}/api/v1/tickets"))
                        .bearer_auth(&key)
                        .json(&json!({ "subject": SUBJECTS[(n % 6) as usize], "body": format!("load ticket {n}") }))
                        .send()
                        .await
                } else {
                    client
                        .get(format!("{url}/api/v1/tickets/{}", 1 + n % ids))
                        .bearer_auth(&key)
                        .send()
                        .await
                };
                match r {
                    Ok(r) if r.status().is_success() => {
                        if mode == "create" {
                            if let Ok(v) = r.json::<serde_json::Value>().await {
                                if let Some(id) = v["id"].as_i64() {
                                    acked.lock().unwrap().push(id);
                                }
                            }
                        } else {
                            let _ = r.bytes().await;
                        }
                        lat.push(t0.elapsed().as_secs_f64() * 1e3);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    if let Some(path) = &a.acked {
        let ids = acked.lock().unwrap();
        let mut f = std::fs::File::create(path).unwrap();
        for id in ids.iter() {
            writeln!(f, "{id}").unwrap();
        }
    }
    println!(
        "{}",
        json!({
            "mode": a.mode, "concurrency": a.concurrency, "requests": lat.len(),
            "errors": errors.load(Ordering::Relaxed), "seconds": secs,
            "per_second": lat.len() as f64 / secs,
            "p50_ms": quantile(&lat, 0.5), "p90_ms": quantile(&lat, 0.9), "p99_ms": quantile(&lat, 0.99),
        })
    );
}

/// Create-to-triaged latency: tickets at a steady rate, each polled every
/// 10 ms until its triage is no longer pending.
async fn triage(a: &Args, client: &reqwest::Client) {
    let mut tasks = Vec::new();
    let gap = Duration::from_secs_f64(1.0 / a.rate);
    for n in 0..a.count {
        let (client, url, key) = (client.clone(), a.url.clone(), a.key.clone());
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let r = client
                .post(format!("{url}/api/v1/tickets"))
                .bearer_auth(&key)
                .json(&json!({ "subject": SUBJECTS[n % 6], "body": format!("triage latency ticket {n}") }))
                .send()
                .await
                .ok()?;
            let id = r.json::<serde_json::Value>().await.ok()?["id"].as_i64()?;
            loop {
                let t: serde_json::Value = client
                    .get(format!("{url}/api/v1/tickets/{id}"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let status = t["triage"]["status"].as_str()?.to_string();
                if status != "pending" {
                    return Some((t0.elapsed().as_secs_f64() * 1e3, status));
                }
                if t0.elapsed() > Duration::from_secs(120) {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
        tokio::time::sleep(gap).await;
    }
    let mut lat = Vec::new();
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    let mut errors = 0;
    for t in tasks {
        match t.await.unwrap() {
            Some((ms, s)) => {
                lat.push(ms);
                *statuses.entry(s).or_default() += 1;
            }
            None => errors += 1,
        }
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "mode": "triage", "tickets": a.count, "rate_per_second": a.rate, "errors": errors,
            "statuses": statuses,
            "p50_ms": quantile(&lat, 0.5), "p90_ms": quantile(&lat, 0.9), "p99_ms": quantile(&lat, 0.99),
        })
    );
}
