//! CPU kernels candle lacks in a fast form: exact (erf) GELU, fused
//! residual + LayerNorm. They run on rayon, in chunks large enough that the
//! pool's overhead stays small, and are written branch-free so the compiler
//! vectorises them (the crate builds for x86-64-v3: AVX2 + FMA).
//! Other devices use candle's own ops (see `bert.rs`).

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

const CHUNK: usize = 16 * 1024;

/// Sum with eight independent accumulators, so it vectorises (a plain fold
/// is a serial chain of adds the compiler may not reorder).
#[inline(always)]
fn lanes_sum(xs: &[f32]) -> f32 {
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
fn lanes_max(xs: &[f32]) -> f32 {
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

fn contiguous<'a>(s: &'a [f32], l: &Layout, what: &str) -> Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

fn f32_slice<'a>(s: &'a CpuStorage, what: &str) -> Result<&'a [f32]> {
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

/// What to apply to a dense layer's output in the same pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Gelu,
}

/// `act(x · wᵀ + b)` in one gemm call: the output buffer starts as the bias
/// rows and gemm accumulates into it, then GELU (if any) runs over it while it
/// is still in cache. `w` is `[out, in]` as stored in the checkpoint.
pub struct DenseOp {
    pub act: Activation,
}

impl CustomOp3 for DenseOp {
    fn name(&self) -> &'static str {
        "dense-bias-act"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous(f32_slice(xs, self.name())?, xl, self.name())?;
        let w = contiguous(f32_slice(ws, self.name())?, wl, self.name())?;
        let b = contiguous(f32_slice(bs, self.name())?, bl, self.name())?;
        let (m, k) = xl.shape().dims2()?;
        let (n, k2) = wl.shape().dims2()?;
        if k != k2 || b.len() != n {
            candle_core::bail!("dense: x is {m}x{k}, w is {n}x{k2}, b has {}", b.len());
        }
        let mut dst = vec![0f32; m * n];
        dst.par_chunks_mut(n * (CHUNK / n).max(1))
            .for_each(|rows| rows.chunks_mut(n).for_each(|r| r.copy_from_slice(b)));
        let threads = rayon::current_num_threads();
        // Safety: the pointers and strides describe the three buffers above,
        // whose sizes were checked: x is m×k row-major, wᵀ is read as k×n with
        // row stride 1 and column stride k, dst is m×n row-major.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                true,
                x.as_ptr(),
                1,
                k as isize,
                w.as_ptr(),
                k as isize,
                1,
                1.0,
                1.0,
                false,
                false,
                false,
                if threads > 1 {
                    gemm::Parallelism::Rayon(threads)
                } else {
                    gemm::Parallelism::None
                },
            );
        }
        if self.act == Activation::Gelu {
            dst.par_chunks_mut(CHUNK)
                .for_each(|c| c.iter_mut().for_each(|v| *v = gelu_erf(*v)));
        }
        Ok((CpuStorage::F32(dst), Shape::from((m, n))))
    }
}

/// `act(x · wᵀ + b)`: the fused kernel on CPU, candle's ops elsewhere.
pub fn dense(x: &Tensor, w: &Tensor, b: &Tensor, act: Activation) -> Result<Tensor> {
    if x.device().is_cpu() {
        return x.apply_op3_no_bwd(w, b, &DenseOp { act });
    }
    let y = x.matmul(&w.t()?)?.broadcast_add(b)?;
    match act {
        Activation::None => Ok(y),
        Activation::Gelu => y.gelu_erf(),
    }
}

/// A raw pointer that rayon tasks may share because each writes a disjoint range.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    // A method, so closures capture the whole (Sync) wrapper, not the bare pointer.
    fn ptr(&self) -> *mut f32 {
        self.0
    }
}

/// Self-attention over packed sequences, without padding: input `[T, 3H]`
/// (query, key, value projections side by side, query pre-scaled), output
/// `[T, H]`. One rayon task per (sequence, head): scores = Q·Kᵀ and the
/// output P·V as two single-threaded gemm calls that read Q, K and V in place
/// through their strides and write straight into the output's rows, with the
/// softmax between them; nothing is padded, gathered or copied.
pub struct PackedAttention {
    pub lens: Vec<usize>,
    pub heads: usize,
    pub head_dim: usize,
}

impl CustomOp1 for PackedAttention {
    fn name(&self) -> &'static str {
        "packed-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = contiguous(f32_slice(s, self.name())?, l, self.name())?;
        let (t, three_h) = l.shape().dims2()?;
        let (nh, hd) = (self.heads, self.head_dim);
        let h = nh * hd;
        if three_h != 3 * h || self.lens.iter().sum::<usize>() != t {
            candle_core::bail!(
                "packed-attention: qkv is {t}x{three_h}, lens sum to {}",
                self.lens.iter().sum::<usize>()
            );
        }
        let mut offsets = Vec::with_capacity(self.lens.len());
        let mut acc = 0;
        for &n in &self.lens {
            offsets.push(acc);
            acc += n;
        }
        let mut out = vec![0f32; t * h];
        let shared = SharedOut(out.as_mut_ptr());
        (0..self.lens.len() * nh).into_par_iter().for_each(|task| {
            let (seq, head) = (task / nh, task % nh);
            let (n, off) = (self.lens[seq], offsets[seq]);
            let q = &qkv[off * three_h + head * hd..];
            let k = &qkv[off * three_h + h + head * hd..];
            let v = &qkv[off * three_h + 2 * h + head * hd..];
            let mut scores = vec![0f32; n * n];
            // Safety (both gemm calls): q, k, v start at this head's columns of
            // this sequence's first row and are read n rows of hd columns with
            // row stride 3H (in bounds: the sequence's rows are in qkv);
            // scores is n×n; the output block is n rows of hd columns with
            // row stride H, written by this task alone.
            unsafe {
                // scores = Q · Kᵀ (K read transposed through its strides).
                gemm::gemm(
                    n,
                    n,
                    hd,
                    scores.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    q.as_ptr(),
                    1,
                    three_h as isize,
                    k.as_ptr(),
                    three_h as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            for s in scores.chunks_mut(n) {
                // Max, exp and sum as separate loops: each vectorises alone.
                let max = lanes_max(s);
                for x in s.iter_mut() {
                    *x = fast_exp(*x - max);
                }
                let inv = 1.0 / lanes_sum(s);
                for x in s.iter_mut() {
                    *x *= inv;
                }
            }
            unsafe {
                // out rows of this sequence, this head's columns = P · V.
                gemm::gemm(
                    n,
                    hd,
                    n,
                    shared.ptr().add(off * h + head * hd),
                    1,
                    h as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    n as isize,
                    v.as_ptr(),
                    1,
                    three_h as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((t, h))))
    }
}

#[cfg(test)]
mod dense_tests {
    use super::*;

    #[test]
    fn fused_dense_matches_matmul_plus_bias_then_gelu() {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (37, 64), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.2, (96, 64), &dev).unwrap();
        let b = Tensor::randn(0f32, 0.5, 96, &dev).unwrap();
        let linear = x
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap();
        for (act, want) in [
            (Activation::None, linear.clone()),
            (Activation::Gelu, linear.gelu_erf().unwrap()),
        ] {
            let got = dense(&x, &w, &b, act).unwrap();
            let diff = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-4, "{act:?}: max diff {diff}");
        }
    }

    #[test]
    fn dense_rejects_mismatched_shapes() {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::zeros((2, 8), candle_core::DType::F32, &dev).unwrap();
        let w = Tensor::zeros((4, 9), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap();
        assert!(dense(&x, &w, &b, Activation::None).is_err());
    }
}
