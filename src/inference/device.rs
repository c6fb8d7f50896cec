use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::error::{InferenceError, Result};

/// The device a model runs on, as chosen on the command line or in config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    #[default]
    Cpu,
    Cuda,
    Metal,
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Metal => "metal",
        })
    }
}

/// The one place a device is chosen; logs what it chose.
pub fn select_device(kind: DeviceKind) -> Result<Device> {
    let device = match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        DeviceKind::Cuda if cfg!(feature = "cuda") => Device::new_cuda(0),
        DeviceKind::Metal if cfg!(feature = "metal") => Device::new_metal(0),
        other => {
            return Err(InferenceError::Device(
                other.to_string(),
                format!("this binary was built without the `{other}` feature (cargo build --features {other})"),
            ))
        }
    }
    .map_err(|e| InferenceError::Device(kind.to_string(), e.to_string()))?;
    tracing::info!(device = %kind, threads = compute_threads(), "selected inference device");
    Ok(device)
}

/// Threads the CPU kernels use (rayon's pool, which candle's matmul shares).
pub fn compute_threads() -> usize {
    rayon::current_num_threads()
}

/// Sizes rayon's global pool (0 = one thread per core). Call once, early:
/// candle reads `RAYON_NUM_THREADS` for its matmul parallelism.
pub fn configure_threads(threads: usize) {
    if threads > 0 {
        // Safety: called from main before any other thread is started.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    let n = if threads > 0 { threads } else { 0 };
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
}
