use std::path::PathBuf;
use std::time::{Duration, Instant};

use helpdesk::ai::AiState;
use helpdesk::config::Settings;
use helpdesk::startup::Application;

pub const MODEL: &str = "all-minilm-l6-v2";

/// The keys issue 3 requires in every evaluation report (`eval --json`, a
/// training job's result).
pub const REPORT_KEYS: [&str; 7] = [
    "accuracy",
    "macro_f1",
    "ece",
    "coverage",
    "precision_at_threshold",
    "per_class",
    "confusion",
];

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn models_dir() -> PathBuf {
    repo_path("models")
}

/// Fails loudly when the model is missing: tests never pass by skipping.
pub fn require_model() {
    let dir = models_dir().join(MODEL);
    assert!(
        dir.join("model.safetensors").is_file(),
        "model files missing in {}: run scripts/fetch-models.sh first",
        dir.display()
    );
}

/// The test model on the CPU, as the library loads it (fails loudly when it
/// is missing).
pub fn cpu_encoder() -> helpdesk::inference::TextEncoder {
    require_model();
    helpdesk::inference::load_text_encoder(
        MODEL,
        &models_dir(),
        helpdesk::inference::DeviceKind::Cpu,
        false,
    )
    .unwrap()
}

/// Runs `helpdesk --models-dir … --data-dir DATA ARGS…` from the repository
/// root and returns its stdout as JSON; a failure shows its stderr.
pub fn cli_json(data: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_helpdesk"))
        .current_dir(repo_path(""))
        .env_remove("RUST_LOG")
        .arg("--models-dir")
        .arg(models_dir())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("run helpdesk");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// A fresh data directory per test, removed when the test ends.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("helpdesk-test-")
        .tempdir()
        .expect("temp dir")
}

/// Settings for a test app. The data directory is a fresh temporary one,
/// kept alive by the returned app.
pub fn test_settings() -> Settings {
    let mut s = Settings::default();
    s.server.bind = "127.0.0.1:0".parse().unwrap();
    s.models_dir = models_dir();
    s.model.allow_download = false;
    s
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AiState,
    /// Removed when the app is dropped.
    pub _data: Option<tempfile::TempDir>,
}

impl TestApp {
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(format!("{}{}", self.address, path))
            .json(body)
            .send()
            .await
            .expect("request failed")
    }

    /// A POST as `tenant` (the `X-Tenant-Id` header).
    pub async fn post_as(
        &self,
        tenant: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}{}", self.address, path))
            .header("x-tenant-id", tenant)
            .json(body)
            .send()
            .await
            .expect("request failed")
    }

    pub async fn get_as(&self, tenant: &str, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{}", self.address, path))
            .header("x-tenant-id", tenant)
            .send()
            .await
            .expect("request failed")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{}", self.address, path))
            .send()
            .await
            .expect("request failed")
    }
}

/// Starts the real application on port 0 and waits until it is ready.
pub async fn spawn_app() -> TestApp {
    require_model();
    spawn_app_with(test_settings(), true).await
}

pub async fn spawn_app_with(mut settings: Settings, wait_ready: bool) -> TestApp {
    // Never the repository's ./data: a temporary directory unless the test chose one.
    let data = (settings.data_dir == Settings::default().data_dir).then(data_dir);
    if let Some(d) = &data {
        settings.data_dir = d.path().to_path_buf();
    }
    let app = Application::build(settings).await.expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let test_app = TestApp {
        address,
        client,
        state,
        _data: data,
    };
    if wait_ready {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = test_app.get("/ready").await;
            if r.status() == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "app not ready: {}",
                r.text().await.unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    test_app
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

pub fn norm(a: &[f32]) -> f64 {
    a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}

#[derive(serde::Deserialize)]
pub struct Reference {
    pub text: String,
    pub tokens_untruncated: usize,
    pub embedding: Vec<f32>,
}

pub fn reference() -> Vec<Reference> {
    std::fs::read_to_string(repo_path("tests/fixtures/minilm_reference.jsonl"))
        .expect("reference fixture")
        .lines()
        .map(|l| serde_json::from_str(l).expect("reference line"))
        .collect()
}
