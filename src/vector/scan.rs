//! An exact-search accelerator beside the embedded shard: every dense
//! vector as int8 (one scale per vector) and as 2-bit codes, with the
//! tenant, source and document of each row. A search scans the 2-bit codes
//! of the rows (8 rows at a time with AVX2; two threads share the work above
//! 20k rows), keeps the few hundred best, ranks those by their int8 codes,
//! and the caller rescores the best of them with the shard's originals.
//!
//! Why: scanning is bound by memory bandwidth. 100k × 384 int8 codes are
//! 38 MB (~2.3 ms a search here); their 2-bit codes are 9.6 MB. Two bits a
//! dimension are coarse (a dot product off by ~0.02 for unit vectors), but
//! a true top-10 neighbour of even uniform random vectors sits far above
//! the 400th best by that measure, and the int8 ranking after it is within
//! ~0.0005 of the exact one. The shard's own plain search scores point by
//! point (~7.5 ms) and its HNSW graph misses half the true neighbours of
//! uniform random vectors (BENCHMARKS.md).
//!
//! 2-bit codes: each component of the int8 code is one of four levels,
//! −3a, −a, a, 3a (`u` = 0..=3 stands for `2u − 3`), split at 0 and ±0.98 ×
//! the row's RMS (Lloyd–Max for a Gaussian), with `a` fitted per row by
//! least squares. Dimensions are padded to a multiple of 128; in a block of
//! 128, byte `j` holds dimensions `j`, `32 + j`, `64 + j`, `96 + j` in its
//! bit pairs 0–1, 2–3, 4–5, 6–7, so one 32-byte load unpacks into four
//! 32-lane vectors that line up with the query's int8 bytes (AVX2
//! `vpmaddubsw`: unsigned code × signed query byte).

use std::collections::HashMap;
use std::sync::RwLock;

/// Dimensions per packed block (32 bytes of 2-bit codes).
const BLOCK: usize = 128;
/// Candidates the 2-bit scan keeps per result asked for (at least `MIN_WIDE`).
const WIDEN: usize = 20;
const MIN_WIDE: usize = 800;

#[derive(Default)]
struct Rows {
    ids: Vec<u64>,
    tenant: Vec<u32>,
    /// `Source` as 0 (kb) / 1 (ticket).
    source: Vec<u8>,
    /// `point_id(tenant, source, doc, u32::MAX)`: the document of the row.
    doc: Vec<u64>,
    /// int8 codes, `padded` per row.
    codes: Vec<i8>,
    /// A code times this is the unit vector's component.
    scale: Vec<f32>,
    /// 2-bit codes, `padded / 4` bytes per row.
    bits: Vec<u8>,
    /// A level (`2u − 3`) times this is the unit vector's component.
    bits_scale: Vec<f32>,
    slot: HashMap<u64, usize>,
    tenants: HashMap<String, u32>,
}

pub struct DenseScan {
    dims: usize,
    /// `dims` rounded up to a multiple of `BLOCK`.
    padded: usize,
    rows: RwLock<Rows>,
}

/// What a row must match: a tenant, optionally a source, and not one document.
pub struct RowFilter<'a> {
    pub tenant: &'a str,
    pub source: Option<u8>,
    pub exclude_doc: Option<u64>,
}

/// `v` as int8 codes of the unit vector (`out` may be longer: padding stays
/// 0), and the scale that turns a code back into a component.
fn quantize(v: &[f32], out: &mut [i8]) -> f32 {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs())) / norm;
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    for (o, x) in out.iter_mut().zip(v) {
        *o = (x / norm / scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

/// The 2-bit codes of int8 codes (`dims` real ones, then padding) into
/// `out` (`codes.len() / 4` bytes), and the level scale in code units.
fn quantize2(codes: &[i8], dims: usize, out: &mut [u8]) -> f32 {
    let real = &codes[..dims];
    let rms = (real.iter().map(|&c| (c as f32).powi(2)).sum::<f32>() / dims.max(1) as f32).sqrt();
    let cut = 0.98 * rms;
    let level = |c: i8| -> u8 {
        let c = c as f32;
        match () {
            _ if c < -cut => 0,
            _ if c < 0.0 => 1,
            _ if c <= cut => 2,
            _ => 3,
        }
    };
    out.fill(0);
    let (mut cl, mut ll) = (0f32, 0f32);
    for (b, block) in codes.chunks_exact(BLOCK).enumerate() {
        for (i, &c) in block.iter().enumerate() {
            let u = level(c);
            let (j, k) = (i % 32, i / 32);
            out[b * 32 + j] |= u << (2 * k);
            if b * BLOCK + i < dims {
                let l = 2.0 * u as f32 - 3.0;
                cl += c as f32 * l;
                ll += l * l;
            }
        }
    }
    if ll > 0.0 {
        cl / ll
    } else {
        1.0
    }
}

/// Σ u·q over one row of 2-bit codes (u = 0..=3), portable.
#[inline(always)]
fn dot2_portable(packed: &[u8], q: &[i8]) -> i32 {
    let mut s = 0i32;
    for (b, bytes) in packed.chunks_exact(32).enumerate() {
        let q = &q[b * BLOCK..(b + 1) * BLOCK];
        for (j, &p) in bytes.iter().enumerate() {
            for k in 0..4 {
                s += ((p >> (2 * k)) & 3) as i32 * q[32 * k + j] as i32;
            }
        }
    }
    s
}

/// Σ c·q of two int8 rows.
#[inline(always)]
fn dot8_portable(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(x, y)| *x as i32 * *y as i32).sum()
}

/// The query as the scan needs it: padded int8 codes, their sum (to undo
/// the 2-bit codes' offset: `Σ (2u − 3)·q = 2·Σ u·q − 3·Σ q`) and scale.
struct Query {
    q: Vec<i8>,
    sum: i32,
    scale: f32,
}

/// Which rows a scan looks at.
#[derive(Clone, Copy)]
struct Want {
    tenant: u32,
    source: Option<u8>,
    exclude_doc: Option<u64>,
}

/// The `m` best (score, row) offered so far: offers above the floor are
/// appended, and the buffer is cut back to the best `m` when it holds `2m`
/// (amortised O(1) an offer, where a heap of 400 cost more than the scan).
struct Top {
    kept: Vec<(f32, usize)>,
    m: usize,
    floor: f32,
}

impl Top {
    fn new(m: usize) -> Self {
        Self {
            kept: Vec::with_capacity(2 * m.max(1)),
            m: m.max(1),
            floor: f32::NEG_INFINITY,
        }
    }

    /// What a row must beat to get in.
    #[inline(always)]
    fn floor(&self) -> f32 {
        self.floor
    }

    #[inline(always)]
    fn offer(&mut self, score: f32, r: usize) {
        if score > self.floor {
            self.kept.push((score, r));
            if self.kept.len() >= 2 * self.m {
                self.cut();
            }
        }
    }

    /// Keeps the best `m`; the floor becomes the worst of them.
    fn cut(&mut self) {
        if self.kept.len() > self.m {
            self.kept
                .select_nth_unstable_by(self.m - 1, |a, b| b.0.total_cmp(&a.0));
            self.kept.truncate(self.m);
        }
        if self.kept.len() == self.m {
            self.floor = self.kept.iter().map(|k| k.0).fold(f32::INFINITY, f32::min);
        }
    }

    /// The best `m`, best first.
    fn sorted(mut self) -> Vec<(f32, usize)> {
        self.cut();
        self.kept.sort_by(|a, b| b.0.total_cmp(&a.0));
        self.kept
    }
}

#[inline(always)]
fn wanted(rows: &Rows, r: usize, want: Want) -> bool {
    rows.tenant[r] == want.tenant
        && want.source.is_none_or(|s| rows.source[r] == s)
        && want.exclude_doc != Some(rows.doc[r])
}

/// Offers `top` every row of `range` that passes `want`, scored by its
/// 2-bit codes (an approximate code·query, in the int8 codes' units times
/// the row's scale), portable.
fn scan_into(
    rows: &Rows,
    bytes: usize,
    q: &Query,
    range: std::ops::Range<usize>,
    want: Want,
    top: &mut Top,
) {
    let offset = 3 * q.sum;
    for r in range {
        if wanted(rows, r, want) {
            let raw = 2 * dot2_portable(&rows.bits[r * bytes..(r + 1) * bytes], &q.q) - offset;
            top.offer(raw as f32 * rows.bits_scale[r], r);
        }
    }
}

/// Σ u·q of 8 consecutive rows of 2-bit codes starting at `p` (`bytes`
/// each), as 8 i32 in row order. Each query block is loaded once for the 8
/// rows; `vpmaddubsw` sums code·query pairs into i16 (at most 2·3·127 =
/// 762 a lane, 3,048 a block), blocks add up in i16 (safe up to 10 blocks,
/// 1,280 dimensions) before one `vpmaddwd` per row, and the 8 horizontal
/// sums share one `vphaddd` tree.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn dot2x8_avx2(p: *const u8, bytes: usize, q: &[i8]) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let blocks = bytes / 32;
    assert!(q.len() >= blocks * BLOCK && blocks <= 10);
    let qp = q.as_ptr();
    let mask = _mm256_set1_epi8(0x03);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_si256(); 8];
    for b in 0..blocks {
        // Safety: b < blocks: b·128 + 128 ≤ q.len(); the caller gives 8 rows
        // of `bytes` at `p`, and b·32 + 32 ≤ bytes.
        let qb = qp.add(b * BLOCK);
        let q0 = _mm256_loadu_si256(qb as *const __m256i);
        let q1 = _mm256_loadu_si256(qb.add(32) as *const __m256i);
        let q2 = _mm256_loadu_si256(qb.add(64) as *const __m256i);
        let q3 = _mm256_loadu_si256(qb.add(96) as *const __m256i);
        for (i, a) in acc.iter_mut().enumerate() {
            let v = _mm256_loadu_si256(p.add(i * bytes + b * 32) as *const __m256i);
            let u0 = _mm256_and_si256(v, mask);
            let u1 = _mm256_and_si256(_mm256_srli_epi16(v, 2), mask);
            let u2 = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
            let u3 = _mm256_and_si256(_mm256_srli_epi16(v, 6), mask);
            let s = _mm256_add_epi16(
                _mm256_add_epi16(_mm256_maddubs_epi16(u0, q0), _mm256_maddubs_epi16(u1, q1)),
                _mm256_add_epi16(_mm256_maddubs_epi16(u2, q2), _mm256_maddubs_epi16(u3, q3)),
            );
            *a = _mm256_add_epi16(*a, s);
        }
    }
    let w: [__m256i; 8] = std::array::from_fn(|i| _mm256_madd_epi16(acc[i], ones));
    let h01 = _mm256_hadd_epi32(w[0], w[1]);
    let h23 = _mm256_hadd_epi32(w[2], w[3]);
    let h45 = _mm256_hadd_epi32(w[4], w[5]);
    let h67 = _mm256_hadd_epi32(w[6], w[7]);
    let h0123 = _mm256_hadd_epi32(h01, h23);
    let h4567 = _mm256_hadd_epi32(h45, h67);
    _mm256_add_epi32(
        _mm256_permute2x128_si256(h0123, h4567, 0x20),
        _mm256_permute2x128_si256(h0123, h4567, 0x31),
    )
}

/// `scan_into` with AVX2: 8 rows at a time scored without a branch, and
/// only those above the current floor looked at one by one (filter, heap).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_into_avx2(
    rows: &Rows,
    bytes: usize,
    q: &Query,
    range: std::ops::Range<usize>,
    want: Want,
    top: &mut Top,
) {
    use std::arch::x86_64::*;
    let offset = _mm256_set1_ps((3 * q.sum) as f32);
    let two = _mm256_set1_ps(2.0);
    let base = rows.bits.as_ptr();
    let mut r = range.start;
    while r + 8 <= range.end {
        // Safety: rows r..r+8 exist (r + 8 ≤ range.end ≤ rows), so do their
        // codes and scales; prefetching is a hint.
        _mm_prefetch(
            base.add((r + 16).min(range.end - 1) * bytes) as *const i8,
            _MM_HINT_T0,
        );
        let raw = dot2x8_avx2(base.add(r * bytes), bytes, &q.q);
        let scale = _mm256_loadu_ps(rows.bits_scale.as_ptr().add(r));
        let score = _mm256_mul_ps(
            _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(raw), two), offset),
            scale,
        );
        let above = _mm256_cmp_ps(score, _mm256_set1_ps(top.floor()), _CMP_GT_OQ);
        let mut hits = _mm256_movemask_ps(above) as u32;
        if hits != 0 {
            let mut s = [0f32; 8];
            _mm256_storeu_ps(s.as_mut_ptr(), score);
            while hits != 0 {
                let i = hits.trailing_zeros() as usize;
                hits &= hits - 1;
                if wanted(rows, r + i, want) {
                    top.offer(s[i], r + i);
                }
            }
        }
        r += 8;
    }
    scan_into(rows, bytes, q, r..range.end, want, top);
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The `m` best rows of `range` by their 2-bit codes (see `scan_into`),
/// best first. Above 20k rows two threads share the work in chunks taken as
/// they go, so a thread that starts late (two busy cores) only does less.
/// (A kept pool of two threads was slower here: waking a sleeping thread
/// cost more than starting one.)
fn best(
    rows: &Rows,
    bytes: usize,
    q: &Query,
    range: std::ops::Range<usize>,
    want: Want,
    m: usize,
) -> Vec<(f32, usize)> {
    const CHUNK: usize = 4096;
    let avx2 = has_avx2() && bytes / 32 <= 10;
    let scan = |range: std::ops::Range<usize>, top: &mut Top| {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // Safety: the CPU has AVX2 (checked above).
            return unsafe { scan_into_avx2(rows, bytes, q, range, want, top) };
        }
        scan_into(rows, bytes, q, range, want, top)
    };
    if range.len() <= 20_000 {
        let mut top = Top::new(m);
        scan(range, &mut top);
        return top.sorted();
    }
    let next = std::sync::atomic::AtomicUsize::new(range.start);
    let work = || {
        let mut top = Top::new(m);
        loop {
            let start = next.fetch_add(CHUNK, std::sync::atomic::Ordering::Relaxed);
            if start >= range.end {
                return top;
            }
            scan(start..(start + CHUNK).min(range.end), &mut top);
        }
    };
    let (mine, theirs) = std::thread::scope(|s| {
        let helper = s.spawn(work);
        (work(), helper.join())
    });
    let Ok(theirs) = theirs else {
        // The helper's chunks are unknown: do it all again, alone.
        let mut top = Top::new(m);
        scan(range, &mut top);
        return top.sorted();
    };
    let mut all = mine.sorted();
    all.extend(theirs.sorted());
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    all.truncate(m);
    all
}

impl DenseScan {
    pub fn new(dims: usize) -> Self {
        Self {
            dims,
            padded: dims.div_ceil(BLOCK) * BLOCK,
            rows: RwLock::default(),
        }
    }

    /// Bytes of 2-bit codes per row.
    fn bytes(&self) -> usize {
        self.padded / 4
    }

    pub fn len(&self) -> usize {
        self.rows
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .ids
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts or replaces the row of point `id`.
    pub fn upsert(&self, id: u64, tenant: &str, source: u8, doc: u64, vector: &[f32]) {
        if vector.len() != self.dims {
            return;
        }
        let (d, bytes) = (self.padded, self.bytes());
        let mut codes = vec![0i8; d];
        let scale = quantize(vector, &mut codes);
        let mut bits = vec![0u8; bytes];
        let level = quantize2(&codes, self.dims, &mut bits);
        let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
        let next = rows.tenants.len() as u32;
        let t = *rows.tenants.entry(tenant.to_string()).or_insert(next);
        let r = match rows.slot.get(&id) {
            Some(&r) => r,
            None => {
                let r = rows.ids.len();
                rows.ids.push(id);
                rows.tenant.push(t);
                rows.source.push(source);
                rows.doc.push(doc);
                rows.scale.push(1.0);
                rows.bits_scale.push(1.0);
                rows.codes.resize((r + 1) * d, 0);
                rows.bits.resize((r + 1) * bytes, 0);
                rows.slot.insert(id, r);
                r
            }
        };
        rows.tenant[r] = t;
        rows.source[r] = source;
        rows.doc[r] = doc;
        rows.scale[r] = scale;
        rows.bits_scale[r] = level * scale;
        rows.codes[r * d..(r + 1) * d].copy_from_slice(&codes);
        rows.bits[r * bytes..(r + 1) * bytes].copy_from_slice(&bits);
    }

    /// Removes every row of one document.
    pub fn delete_doc(&self, doc: u64) {
        let (d, bytes) = (self.padded, self.bytes());
        let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
        let mut r = 0;
        while r < rows.ids.len() {
            if rows.doc[r] != doc {
                r += 1;
                continue;
            }
            // Swap the last row into this one.
            let last = rows.ids.len() - 1;
            let id = rows.ids[r];
            rows.slot.remove(&id);
            if r != last {
                let moved = rows.ids[last];
                rows.ids.swap(r, last);
                rows.tenant.swap(r, last);
                rows.source.swap(r, last);
                rows.doc.swap(r, last);
                rows.scale.swap(r, last);
                rows.bits_scale.swap(r, last);
                rows.codes.copy_within(last * d..(last + 1) * d, r * d);
                rows.bits
                    .copy_within(last * bytes..(last + 1) * bytes, r * bytes);
                rows.slot.insert(moved, r);
            }
            rows.ids.pop();
            rows.tenant.pop();
            rows.source.pop();
            rows.doc.pop();
            rows.scale.pop();
            rows.bits_scale.pop();
            rows.codes.truncate(last * d);
            rows.bits.truncate(last * bytes);
        }
    }

    /// The ids of the `m` rows nearest to `query` (cosine, int8) that pass
    /// `filter`, nearest first, with their approximate scores.
    pub fn candidates(&self, query: &[f32], filter: &RowFilter, m: usize) -> Vec<(u64, f32)> {
        if query.len() != self.dims || m == 0 {
            return Vec::new();
        }
        let (d, bytes) = (self.padded, self.bytes());
        let mut q = vec![0i8; d];
        let qscale = quantize(query, &mut q);
        let q = Query {
            sum: q.iter().map(|&x| x as i32).sum(),
            q,
            scale: qscale,
        };
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
        let Some(&t) = rows.tenants.get(filter.tenant) else {
            return Vec::new();
        };
        let want = Want {
            tenant: t,
            source: filter.source,
            exclude_doc: filter.exclude_doc,
        };
        let wide = (WIDEN * m).max(MIN_WIDE);
        let found = best(&rows, bytes, &q, 0..rows.ids.len(), want, wide);
        // The int8 codes rank the 2-bit scan's best.
        let mut exact: Vec<(f32, usize)> = found
            .into_iter()
            .map(|(_, r)| {
                let raw = dot8_portable(&rows.codes[r * d..(r + 1) * d], &q.q);
                (raw as f32 * rows.scale[r], r)
            })
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        exact.truncate(m);
        exact
            .into_iter()
            .map(|(s, r)| (rows.ids[r], s * q.scale))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::training::SplitMix;

    fn random(rng: &mut SplitMix, d: usize) -> Vec<f32> {
        (0..d)
            .map(|_| (rng.next_u64() % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (n(a) * n(b))
    }

    #[test]
    fn two_bit_codes_approximate_the_vector_and_both_kernels_agree() {
        let mut rng = SplitMix::new(3);
        for dims in [16usize, 100, 128, 384] {
            let padded = dims.div_ceil(BLOCK) * BLOCK;
            let bytes = padded / 4;
            let q: Vec<f32> = random(&mut rng, dims);
            let mut q8 = vec![0i8; padded];
            quantize(&q, &mut q8);
            let mut codes = Vec::new();
            let mut bits = Vec::new();
            let mut want = Vec::new();
            for _ in 0..8 {
                let v = random(&mut rng, dims);
                let mut c = vec![0i8; padded];
                quantize(&v, &mut c);
                let mut b = vec![0u8; bytes];
                let a = quantize2(&c, dims, &mut b);
                // The levels decode to the codes' direction: cosine > 0.9.
                let decoded: Vec<f32> = (0..dims)
                    .map(|i| {
                        let (blk, k, j) = (i / BLOCK, i % BLOCK / 32, i % 32);
                        let u = (b[blk * 32 + j] >> (2 * k)) & 3;
                        (2.0 * u as f32 - 3.0) * a
                    })
                    .collect();
                let c32: Vec<f32> = c[..dims].iter().map(|&x| x as f32).collect();
                assert!(cos(&decoded, &c32) > 0.9, "{dims} dims");
                // The portable kernel is Σ u·q.
                let naive: i32 = (0..padded)
                    .map(|i| {
                        let (blk, k, j) = (i / BLOCK, i % BLOCK / 32, i % 32);
                        ((b[blk * 32 + j] >> (2 * k)) & 3) as i32 * q8[i] as i32
                    })
                    .sum();
                assert_eq!(dot2_portable(&b, &q8), naive);
                want.push(naive);
                codes.extend(c);
                bits.extend(b);
            }
            let _ = codes;
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                // Safety: the CPU has AVX2; `bits` holds 8 rows of `bytes`.
                let got = unsafe { dot2x8_avx2(bits.as_ptr(), bytes, &q8) };
                let mut out = [0i32; 8];
                unsafe { std::arch::x86_64::_mm256_storeu_si256(out.as_mut_ptr() as *mut _, got) };
                assert_eq!(out.to_vec(), want, "{dims} dims");
            }
        }
    }

    #[test]
    fn candidates_hold_the_exact_neighbours_of_the_tenant_only() {
        let d = 64;
        let mut rng = SplitMix::new(7);
        let scan = DenseScan::new(d);
        let vectors: Vec<Vec<f32>> = (0..3000).map(|_| random(&mut rng, d)).collect();
        for (i, v) in vectors.iter().enumerate() {
            let tenant = if i % 3 == 0 { "globex" } else { "acme" };
            scan.upsert(i as u64, tenant, (i % 2) as u8, i as u64 / 4, v);
        }
        assert_eq!(scan.len(), 3000);
        for _ in 0..20 {
            let q = random(&mut rng, d);
            let f = RowFilter {
                tenant: "acme",
                source: None,
                exclude_doc: None,
            };
            let got = scan.candidates(&q, &f, 40);
            assert!(got.iter().all(|(id, _)| id % 3 != 0), "only acme's rows");
            let mut exact: Vec<(f32, u64)> = vectors
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 3 != 0)
                .map(|(i, v)| (cos(&q, v), i as u64))
                .collect();
            exact.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (_, id) in &exact[..10] {
                assert!(
                    got.iter().any(|(g, _)| g == id),
                    "true neighbour {id} missed"
                );
            }
            let (top, approx) = got[0];
            assert!((approx - cos(&q, &vectors[top as usize])).abs() < 0.02);
        }
        // Source and excluded document filter rows out.
        let q = random(&mut rng, d);
        let f = RowFilter {
            tenant: "acme",
            source: Some(1),
            exclude_doc: Some(1),
        };
        assert!(scan
            .candidates(&q, &f, 100)
            .iter()
            .all(|(id, _)| id % 2 == 1 && id / 4 != 1));
    }

    #[test]
    fn replacing_and_deleting_keep_the_rows_consistent() {
        let d = 16;
        let scan = DenseScan::new(d);
        let unit = |i: usize| {
            let mut v = vec![0.0; d];
            v[i] = 1.0;
            v
        };
        for i in 0..8 {
            scan.upsert(i as u64, "acme", 0, (i / 2) as u64, &unit(i));
        }
        scan.upsert(3, "acme", 0, 1, &unit(9)); // replaced, not added
        assert_eq!(scan.len(), 8);
        let f = RowFilter {
            tenant: "acme",
            source: None,
            exclude_doc: None,
        };
        assert_eq!(scan.candidates(&unit(9), &f, 1)[0].0, 3);
        scan.delete_doc(0); // rows 0 and 1
        assert_eq!(scan.len(), 6);
        for i in 2..8 {
            let top = scan.candidates(&unit(if i == 3 { 9 } else { i }), &f, 1);
            assert_eq!(top[0].0, i as u64, "row {i} after the swap");
        }
        assert!(scan
            .candidates(&unit(0), &f, 8)
            .iter()
            .all(|(id, _)| *id >= 2));
        let none = RowFilter {
            tenant: "nobody",
            ..f
        };
        assert!(scan.candidates(&unit(2), &none, 5).is_empty());
    }
}
