//! Dense layers: `act(x · wᵀ + b)` as one gemm call with the bias pre-loaded.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous, f32_slice, gelu_erf, gemm_f32, Strided, CHUNK};

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
        // Safety: the views describe the three buffers above, whose sizes
        // were checked: x is m×k row-major, wᵀ is read as k×n with row stride
        // 1 and column stride k, dst is m×n row-major.
        unsafe {
            gemm_f32(
                (m, n, k),
                Strided {
                    ptr: dst.as_mut_ptr(),
                    rs: n,
                    cs: 1,
                },
                Strided {
                    ptr: x.as_ptr(),
                    rs: k,
                    cs: 1,
                },
                Strided {
                    ptr: w.as_ptr(),
                    rs: 1,
                    cs: k,
                },
                true,
                true,
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

#[cfg(test)]
mod tests {
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
