//! Self-attention over packed sequences, without padding.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};
use rayon::prelude::*;

use super::{contiguous, f32_slice, fast_exp, gemm_f32, lanes_max, lanes_sum, Strided};

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
                gemm_f32(
                    (n, n, hd),
                    Strided {
                        ptr: scores.as_mut_ptr(),
                        rs: n,
                        cs: 1,
                    },
                    Strided {
                        ptr: q.as_ptr(),
                        rs: three_h,
                        cs: 1,
                    },
                    Strided {
                        ptr: k.as_ptr(),
                        rs: 1,
                        cs: three_h,
                    },
                    false,
                    false,
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
                gemm_f32(
                    (n, hd, n),
                    Strided {
                        ptr: shared.ptr().add(off * h + head * hd),
                        rs: h,
                        cs: 1,
                    },
                    Strided {
                        ptr: scores.as_ptr(),
                        rs: n,
                        cs: 1,
                    },
                    Strided {
                        ptr: v.as_ptr(),
                        rs: three_h,
                        cs: 1,
                    },
                    false,
                    false,
                );
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((t, h))))
    }
}
