//! Prometheus metrics, kept by hand: a few atomics and a text renderer are
//! all the service needs, without another dependency tree.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_bits: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((f64::from_bits(b) + v).to_bits())
            });
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            f64::from_bits(self.sum_bits.load(Ordering::Relaxed))
        );
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
const TOKEN_BOUNDS: &[f64] = &[16.0, 64.0, 256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0];

pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
    pub batch_size: Histogram,
    pub batch_tokens: Histogram,
    pub queue_depth: AtomicI64,
    pub tokens_total: AtomicU64,
    pub inference_nanos_total: AtomicU64,
    last_tokens_per_second_bits: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::default(),
            latency: Mutex::default(),
            batch_size: Histogram::new(BATCH_BOUNDS),
            batch_tokens: Histogram::new(TOKEN_BOUNDS),
            queue_depth: AtomicI64::new(0),
            tokens_total: AtomicU64::new(0),
            inference_nanos_total: AtomicU64::new(0),
            last_tokens_per_second_bits: AtomicU64::new(0f64.to_bits()),
        }
    }
}

impl Metrics {
    pub fn record_request(&self, route: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route.to_string(), status))
            .or_default() += 1;
        let hist = self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(route.to_string())
            .or_insert_with(|| std::sync::Arc::new(Histogram::new(LATENCY_BOUNDS)))
            .clone();
        hist.observe(seconds);
    }

    pub fn record_batch(&self, sequences: usize, tokens: usize, seconds: f64) {
        self.batch_size.observe(sequences as f64);
        self.batch_tokens.observe(tokens as f64);
        self.tokens_total
            .fetch_add(tokens as u64, Ordering::Relaxed);
        self.inference_nanos_total
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
        if seconds > 0.0 {
            self.last_tokens_per_second_bits
                .store((tokens as f64 / seconds).to_bits(), Ordering::Relaxed);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP helpdesk_http_requests_total HTTP requests by route and status.\n# TYPE helpdesk_http_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "helpdesk_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP helpdesk_http_request_duration_seconds Request latency.\n# TYPE helpdesk_http_request_duration_seconds histogram\n");
        for (route, h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            h.render(
                &mut out,
                "helpdesk_http_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        out.push_str("# HELP helpdesk_embed_batch_size Sequences per encoder forward pass.\n# TYPE helpdesk_embed_batch_size histogram\n");
        self.batch_size
            .render(&mut out, "helpdesk_embed_batch_size", "");
        out.push_str("# HELP helpdesk_embed_batch_tokens Tokens per encoder forward pass.\n# TYPE helpdesk_embed_batch_tokens histogram\n");
        self.batch_tokens
            .render(&mut out, "helpdesk_embed_batch_tokens", "");
        let _ = writeln!(
            out,
            "# HELP helpdesk_embed_queue_depth Sequences waiting for the encoder.\n# TYPE helpdesk_embed_queue_depth gauge\nhelpdesk_embed_queue_depth {}",
            self.queue_depth.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP helpdesk_embed_tokens_total Tokens encoded.\n# TYPE helpdesk_embed_tokens_total counter\nhelpdesk_embed_tokens_total {}",
            self.tokens_total.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP helpdesk_embed_inference_seconds_total Time spent in encoder forward passes.\n# TYPE helpdesk_embed_inference_seconds_total counter\nhelpdesk_embed_inference_seconds_total {}",
            self.inference_nanos_total.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(
            out,
            "# HELP helpdesk_embed_tokens_per_second Throughput of the last forward pass.\n# TYPE helpdesk_embed_tokens_per_second gauge\nhelpdesk_embed_tokens_per_second {}",
            f64::from_bits(self.last_tokens_per_second_bits.load(Ordering::Relaxed))
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.record_batch(1, 10, 0.01);
        m.record_batch(20, 600, 0.2);
        let text = m.render();
        assert!(
            text.contains("helpdesk_embed_batch_size_bucket{le=\"1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("helpdesk_embed_batch_size_bucket{le=\"32\"} 2"),
            "{text}"
        );
        assert!(text.contains("helpdesk_embed_batch_size_count 2"), "{text}");
        assert!(text.contains("helpdesk_embed_tokens_total 610"), "{text}");
    }
}
