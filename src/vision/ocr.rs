//! OCR with tesseract, through its C API (`capi.h`) loaded at run time:
//! the build needs neither tesseract's headers nor clang, and a machine
//! without the library still serves every other check, with the OCR step
//! reporting itself unavailable (`scripts/install-deps.sh` installs it).
//!
//! Preprocessing: grayscale, and small images upscaled so text reaches the
//! x-height tesseract reads best. Each thread of the blocking pool takes an
//! initialised engine from a pool (initialising one loads the traineddata,
//! ~0.1 s) and gives it back.

use std::ffi::{c_char, c_int, c_uchar, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

use image::GrayImage;
use serde::{Deserialize, Serialize};

type Api = *mut c_void;

/// The C functions used, resolved once.
struct Lib {
    _lib: libloading::Library,
    create: unsafe extern "C" fn() -> Api,
    delete: unsafe extern "C" fn(Api),
    init3: unsafe extern "C" fn(Api, *const c_char, *const c_char) -> c_int,
    set_psm: unsafe extern "C" fn(Api, c_int),
    set_image: unsafe extern "C" fn(Api, *const c_uchar, c_int, c_int, c_int, c_int),
    set_resolution: unsafe extern "C" fn(Api, c_int),
    utf8_text: unsafe extern "C" fn(Api) -> *mut c_char,
    mean_conf: unsafe extern "C" fn(Api) -> c_int,
    clear: unsafe extern "C" fn(Api),
    delete_text: unsafe extern "C" fn(*const c_char),
    version: unsafe extern "C" fn() -> *const c_char,
}

const LIB_NAMES: &[&str] = &[
    "libtesseract.so.5",
    "libtesseract.so",
    "libtesseract.5.dylib",
    "libtesseract.dylib",
];

impl Lib {
    fn open() -> Result<Self, String> {
        let mut last = String::new();
        for name in LIB_NAMES {
            // SAFETY: loading tesseract runs its static initialisers only.
            match unsafe { libloading::Library::new(name) } {
                Ok(lib) => return Self::resolve(lib).map_err(|e| format!("{name}: {e}")),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!(
            "libtesseract not found ({last}); install it with scripts/install-deps.sh \
             (Debian: tesseract-ocr)"
        ))
    }

    fn resolve(lib: libloading::Library) -> Result<Self, libloading::Error> {
        // SAFETY: the signatures are those of tesseract's capi.h (stable
        // since 3.02; BOOL is int, TessPageSegMode an int enum).
        unsafe {
            Ok(Self {
                create: *lib.get(b"TessBaseAPICreate\0")?,
                delete: *lib.get(b"TessBaseAPIDelete\0")?,
                init3: *lib.get(b"TessBaseAPIInit3\0")?,
                set_psm: *lib.get(b"TessBaseAPISetPageSegMode\0")?,
                set_image: *lib.get(b"TessBaseAPISetImage\0")?,
                set_resolution: *lib.get(b"TessBaseAPISetSourceResolution\0")?,
                utf8_text: *lib.get(b"TessBaseAPIGetUTF8Text\0")?,
                mean_conf: *lib.get(b"TessBaseAPIMeanTextConf\0")?,
                clear: *lib.get(b"TessBaseAPIClear\0")?,
                delete_text: *lib.get(b"TessDeleteText\0")?,
                version: *lib.get(b"TessVersion\0")?,
                _lib: lib,
            })
        }
    }
}

/// One initialised `TessBaseAPI`, used by one thread at a time.
struct Engine(Api);
// SAFETY: a TessBaseAPI may move between threads; the pool hands each to
// one thread at a time.
unsafe impl Send for Engine {}

/// The loaded library and its pool of engines for one language.
pub struct Tesseract {
    lib: Lib,
    lang: CString,
    pool: Mutex<Vec<Engine>>,
    pub version: String,
}

/// What OCR found in one image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OcrText {
    pub text: String,
    /// Tesseract's mean word confidence, 0-100.
    pub mean_confidence: i32,
    pub words: usize,
    /// The factor the image was upscaled by before recognition.
    pub scale: u32,
    pub language: String,
}

static ENGLISH: OnceLock<Result<Tesseract, String>> = OnceLock::new();

/// The process's English engine pool; `Err` says why OCR is unavailable.
pub fn english() -> Result<&'static Tesseract, String> {
    ENGLISH
        .get_or_init(|| Tesseract::load("eng"))
        .as_ref()
        .map_err(Clone::clone)
}

impl Tesseract {
    pub fn load(lang: &str) -> Result<Self, String> {
        let lib = Lib::open()?;
        // SAFETY: TessVersion returns a static NUL-terminated string.
        let version = unsafe { CStr::from_ptr((lib.version)()) }
            .to_string_lossy()
            .into_owned();
        let t = Self {
            lib,
            lang: CString::new(lang).map_err(|e| e.to_string())?,
            pool: Mutex::new(Vec::new()),
            version,
        };
        // Fail now, with the reason, when the traineddata is missing.
        let e = t.engine()?;
        t.give_back(e);
        Ok(t)
    }

    fn engine(&self) -> Result<Engine, String> {
        if let Some(e) = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(e);
        }
        // SAFETY: create returns a fresh handle; init3 with a NULL datapath
        // uses TESSDATA_PREFIX or the library's default.
        unsafe {
            let api = (self.lib.create)();
            if api.is_null() {
                return Err("TessBaseAPICreate failed".into());
            }
            if (self.lib.init3)(api, std::ptr::null(), self.lang.as_ptr()) != 0 {
                (self.lib.delete)(api);
                return Err(format!(
                    "tesseract could not load the {:?} traineddata (Debian: tesseract-ocr-{}; \
                     or set TESSDATA_PREFIX)",
                    self.lang,
                    self.lang.to_string_lossy()
                ));
            }
            // PSM_AUTO: page layout analysis, no orientation detection.
            (self.lib.set_psm)(api, 3);
            Ok(Engine(api))
        }
    }

    fn give_back(&self, e: Engine) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 8 {
            pool.push(e);
        } else {
            // SAFETY: the handle is ours and no longer used.
            unsafe { (self.lib.delete)(e.0) }
        }
    }

    /// Recognises the text of a grayscale image (`prepare` it first).
    pub fn recognize(&self, gray: &GrayImage, ppi: u32) -> Result<(String, i32), String> {
        let (w, h) = (gray.width(), gray.height());
        if w < 3 || h < 3 {
            return Ok((String::new(), 0));
        }
        let (wi, hi) = (
            c_int::try_from(w).map_err(|e| e.to_string())?,
            c_int::try_from(h).map_err(|e| e.to_string())?,
        );
        let e = self.engine()?;
        // SAFETY: the buffer outlives the calls (SetImage copies it into
        // the engine's own Pix); the text is freed with TessDeleteText.
        let out = unsafe {
            (self.lib.set_image)(e.0, gray.as_raw().as_ptr(), wi, hi, 1, wi);
            (self.lib.set_resolution)(e.0, ppi as c_int);
            let p = (self.lib.utf8_text)(e.0);
            let text = if p.is_null() {
                String::new()
            } else {
                let s = CStr::from_ptr(p).to_string_lossy().into_owned();
                (self.lib.delete_text)(p);
                s
            };
            let conf = (self.lib.mean_conf)(e.0);
            (self.lib.clear)(e.0);
            (text, conf)
        };
        self.give_back(e);
        Ok(out)
    }
}

impl Drop for Tesseract {
    fn drop(&mut self) {
        for e in self
            .pool
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            // SAFETY: pooled handles are unused.
            unsafe { (self.lib.delete)(e.0) }
        }
    }
}

/// The upscale factor for an image whose short side is `short`: text in
/// screenshots and small scans is read best at ~2× (x-height ≥ 20 px), but
/// the long side stays under `max_long`.
pub fn scale_for(short: u32, long: u32, max_long: u32) -> u32 {
    let mut s = if short < 600 {
        3
    } else if short < 1200 {
        2
    } else {
        1
    };
    while s > 1 && long * s > max_long {
        s -= 1;
    }
    s
}

/// Grayscale, upscaled by `scale_for`: what `recognize` reads.
pub fn prepare(gray: &GrayImage) -> (GrayImage, u32) {
    let (w, h) = (gray.width(), gray.height());
    let s = scale_for(w.min(h), w.max(h), 4096);
    if s == 1 {
        return (gray.clone(), 1);
    }
    let up = image::imageops::resize(gray, w * s, h * s, image::imageops::FilterType::CatmullRom);
    (up, s)
}

/// Reads the text of `gray` with the English engine.
pub fn read_text(gray: &GrayImage) -> Result<OcrText, String> {
    let t = english()?;
    let (img, scale) = prepare(gray);
    // Screens are ~96 ppi; upscaling makes it ~96·scale. Scans (short side
    // ≥ 1200) are usually 300.
    let ppi = if scale == 1 { 300 } else { 96 * scale };
    let (text, conf) = t.recognize(&img, ppi)?;
    let text = text.trim().to_string();
    Ok(OcrText {
        words: text.split_whitespace().count(),
        text,
        mean_confidence: conf,
        scale,
        language: "eng".into(),
    })
}

/// Word accuracy of `got` against `truth`: 1 − (word-level edit distance /
/// words in `truth`), words compared as they are (case and punctuation
/// count), whitespace and line breaks ignored.
pub fn word_accuracy(got: &str, truth: &str) -> f64 {
    let a: Vec<&str> = got.split_whitespace().collect();
    let b: Vec<&str> = truth.split_whitespace().collect();
    if b.is_empty() {
        return if a.is_empty() { 1.0 } else { 0.0 };
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, wa) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, wb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(wa != wb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    1.0 - prev[b.len()] as f64 / b.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_accuracy_counts_substitutions_insertions_and_deletions() {
        assert_eq!(word_accuracy("a b c d", "a b c d"), 1.0);
        assert_eq!(word_accuracy("a x c d", "a b c d"), 0.75);
        assert_eq!(word_accuracy("a b c", "a b c d"), 0.75);
        assert_eq!(word_accuracy("a b q c d", "a b c d"), 0.75);
        assert_eq!(word_accuracy("a\nb  c\td", "a b c d"), 1.0);
    }

    #[test]
    fn upscale_factor_fits_the_long_side_limit() {
        assert_eq!(scale_for(480, 640, 4096), 3);
        assert_eq!(scale_for(1080, 1920, 4096), 2);
        assert_eq!(scale_for(1080, 3000, 4096), 1);
        assert_eq!(scale_for(2000, 3000, 4096), 1);
        assert_eq!(scale_for(500, 1500, 4096), 2);
    }
}
