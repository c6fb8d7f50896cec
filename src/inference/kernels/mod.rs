//! CPU kernels candle lacks in a fast form: exact (erf) GELU, fused
//! residual + LayerNorm (here), dense layers with fused bias and GELU
//! (`dense`), unpadded attention over packed sequences (`attention`). They run
//! on rayon, in chunks large enough that the pool's overhead stays small, and
//! are written branch-free so the compiler vectorises them (the crate builds
//! for x86-64-v3: AVX2 + FMA). Other devices use candle's own ops.

mod attention;
mod dense;

/// A row-major-or-strided f32 matrix as gemm reads it: first element, row
/// stride, column stride (in elements).
#[derive(Clone, Copy)]
pub(crate) struct Strided<P> {
    pub ptr: P,
    pub rs: usize,
    pub cs: usize,
}

/// `dst (m×n) [+]= lhs (m×k) · rhs (k×n)` with the gemm crate candle uses.
/// `accumulate` adds to what `dst` holds (a pre-loaded bias); `parallel`
/// spreads one call over rayon's pool.
///
/// # Safety
/// Each view must address `rows × cols` valid elements through its strides,
/// and `dst` must not overlap the inputs or be written by anyone else meanwhile.
pub(crate) unsafe fn gemm_f32(
    (m, n, k): (usize, usize, usize),
    dst: Strided<*mut f32>,
    lhs: Strided<*const f32>,
    rhs: Strided<*const f32>,
    accumulate: bool,
    parallel: bool,
) {
    let threads = rayon::current_num_threads();
    let parallelism = if parallel && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    gemm::gemm(
        m,
        n,
        k,
        dst.ptr,
        dst.cs as isize,
        dst.rs as isize,
        accumulate,
        lhs.ptr,
        lhs.cs as isize,
        lhs.rs as isize,
        rhs.ptr,
        rhs.cs as isize,
        rhs.rs as isize,
        if accumulate { 1.0 } else { 0.0 },
        1.0,
        false,
        false,
        false,
        parallelism,
    )
}

pub use attention::PackedAttention;
pub use dense::{dense, Activation, DenseOp};

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// exp(x) for f32 by range reduction and a degree-6 polynomial (Cephes
/// `expf`); relative error ~1e-7, no branches, so loops over it vectorise.
#[inline(always)]
#[allow(clippy::manual_clamp)] // f32::clamp's NaN checks stop vectorisation
pub fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // max/min and round-half-even map to single vector instructions
    // (f32::clamp and f32::round do not), so loops over this vectorise.
    let x = x.max(-87.0).min(88.0);
    let n = (x * LOG2E).round_ties_even();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 1.666_666_5e-1);
    let p = p.mul_add(r, 0.5);
    let p = (p * r).mul_add(r, r) + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// erf(x), Abramowitz & Stegun 7.1.26: absolute error below 1.5e-7 (5e-7 in f32).
#[inline(always)]
pub fn fast_erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / 0.327_591_1_f32.mul_add(a, 1.0);
    let poly = 1.061_405_4_f32;
    let poly = poly.mul_add(t, -1.453_152_1);
    let poly = poly.mul_add(t, 1.421_413_8);
    let poly = poly.mul_add(t, -0.284_496_72);
    let poly = poly.mul_add(t, 0.254_829_6);
    let y = 1.0 - poly * t * fast_exp(-a * a);
    y.copysign(x)
}

/// GELU as BERT defines it: x/2 * (1 + erf(x / sqrt 2)).
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + fast_erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

pub(crate) const CHUNK: usize = 16 * 1024;

/// Sum with eight independent accumulators, so it vectorises (a plain fold
/// is a serial chain of adds the compiler may not reorder).
#[inline(always)]
pub(crate) fn lanes_sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
pub(crate) fn lanes_max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a { x } else { *a };
        }
    }
    acc.iter().fold(tail, |m, &x| if x > m { x } else { m })
}

pub(crate) fn contiguous<'a>(s: &'a [f32], l: &Layout, what: &str) -> Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, what: &str) -> Result<&'a [f32]> {
    match s {
        CpuStorage::F32(v) => Ok(v),
        _ => candle_core::bail!("{what}: only f32 is supported"),
    }
}

/// In-place-free GELU (erf form) on a contiguous f32 tensor.
pub struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-fast"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous(f32_slice(s, self.name())?, l, self.name())?;
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| {
                for (d, &x) in d.iter_mut().zip(s) {
                    *d = gelu_erf(x);
                }
            });
        Ok((CpuStorage::F32(dst), l.shape().clone()))
    }
}

/// LayerNorm(x + residual) over the last dimension, with weight and bias
/// packed as one `[2, H]` tensor. Two passes over each row (mean, then
/// variance of the centred values) for accuracy.
pub struct AddLayerNorm {
    pub eps: f32,
}

impl CustomOp3 for AddLayerNorm {
    fn name(&self) -> &'static str {
        "add-layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        rs: &CpuStorage,
        rl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(f32_slice(xs, self.name())?, xl, self.name())?;
        let r = contiguous(f32_slice(rs, self.name())?, rl, self.name())?;
        let p = contiguous(f32_slice(ps, self.name())?, pl, self.name())?;
        let h = *xl.shape().dims().last().unwrap_or(&0);
        if h == 0 || x.len() != r.len() || p.len() != 2 * h {
            candle_core::bail!("add-layer-norm: shape mismatch");
        }
        let (w, b) = p.split_at(h);
        let rows_per_chunk = (CHUNK / h).max(1);
        let mut dst = vec![0f32; x.len()];
        let eps = self.eps;
        dst.par_chunks_mut(rows_per_chunk * h)
            .zip(
                x.par_chunks(rows_per_chunk * h)
                    .zip(r.par_chunks(rows_per_chunk * h)),
            )
            .for_each(|(d, (x, r))| {
                for ((d, x), r) in d.chunks_mut(h).zip(x.chunks(h)).zip(r.chunks(h)) {
                    let mut sum = 0f32;
                    for (d, (x, r)) in d.iter_mut().zip(x.iter().zip(r)) {
                        *d = x + r;
                        sum += *d;
                    }
                    let mean = sum / h as f32;
                    let mut var = 0f32;
                    for d in d.iter_mut() {
                        *d -= mean;
                        var += *d * *d;
                    }
                    let inv = 1.0 / (var / h as f32 + eps).sqrt();
                    for ((d, w), b) in d.iter_mut().zip(w).zip(b) {
                        *d = (*d * inv).mul_add(*w, *b);
                    }
                }
            });
        Ok((CpuStorage::F32(dst), xl.shape().clone()))
    }
}

/// `gelu(x)` with the fast kernel on CPU and candle's `gelu_erf` elsewhere.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        x.apply_op1_no_bwd(&GeluErf)
    } else {
        x.gelu_erf()
    }
}

/// `layer_norm(x + residual)`; `params` is `[2, H]` (weight row, bias row).
pub fn add_layer_norm(x: &Tensor, residual: &Tensor, params: &Tensor, eps: f32) -> Result<Tensor> {
    if x.device().is_cpu() {
        x.apply_op3_no_bwd(residual, params, &AddLayerNorm { eps })
    } else {
        let w = params.get(0)?;
        let b = params.get(1)?;
        candle_nn::ops::layer_norm(&(x + residual)?, &w, &b, eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erf_ref(x: f64) -> f64 {
        // Series for small |x|, continued fraction otherwise: enough digits to
        // judge a 1.5e-7 approximation.
        if x.abs() < 2.5 {
            let mut sum = x;
            let mut term = x;
            for n in 1..60 {
                term *= -x * x / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            2.0 / std::f64::consts::PI.sqrt() * sum
        } else {
            let a = x.abs();
            let mut f = 0.0;
            for n in (1..80).rev() {
                f = (n as f64 / 2.0) / (a + f);
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f);
            (1.0 - erfc).copysign(x)
        }
    }

    #[test]
    fn fast_exp_matches_std_to_float_precision() {
        for i in -8000..8000 {
            let x = i as f32 / 100.0;
            let (got, want) = (fast_exp(x), x.exp());
            assert!(
                ((got - want) / want).abs() < 3e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn fast_erf_is_within_its_stated_error() {
        for i in -6000..6000 {
            let x = i as f32 / 1000.0;
            let err = (fast_erf(x) as f64 - erf_ref(x as f64)).abs();
            // 1.5e-7 from the approximation, the rest from f32 rounding.
            assert!(err < 5e-7, "erf({x}) off by {err}");
        }
    }

    #[test]
    fn add_layer_norm_matches_candle_layer_norm() {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (7, 384), &dev).unwrap();
        let r = Tensor::randn(1f32, 2.0, (7, 384), &dev).unwrap();
        let w = Tensor::randn(1f32, 0.1, 384, &dev).unwrap();
        let b = Tensor::randn(0f32, 0.1, 384, &dev).unwrap();
        let p = Tensor::stack(&[&w, &b], 0).unwrap();
        let got = add_layer_norm(&x, &r, &p, 1e-12).unwrap();
        let want = candle_nn::ops::layer_norm_slow(&(&x + &r).unwrap(), &w, &b, 1e-12).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
    }

    #[test]
    fn gelu_matches_candle_gelu_erf() {
        let x = Tensor::randn(0f32, 4.0, 50_000, &candle_core::Device::Cpu).unwrap();
        let got = gelu(&x).unwrap();
        let want = x.gelu_erf().unwrap();
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }
}
