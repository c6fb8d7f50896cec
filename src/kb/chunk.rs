//! Heading-aware chunks of about `target` tokens with `overlap` tokens of
//! context carried over, never across a heading. Each chunk's embedded text
//! starts with its heading path ("Title › Section › Subsection"), so a
//! passage about "error 809" under "VPN › Windows" is found by either.

use sha2::{Digest, Sha256};

use super::text::Section;

#[derive(Debug, Clone, Copy)]
pub struct ChunkConfig {
    /// Tokens a chunk aims for (the body, without the heading path).
    pub target: usize,
    /// Tokens of the previous chunk repeated at the start of the next.
    pub overlap: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self {
            target: 200,
            overlap: 40,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position in the article, from 0.
    pub index: usize,
    pub headings: Vec<String>,
    /// The passage itself.
    pub text: String,
    /// What is embedded and indexed: heading path, then the passage.
    pub embed_text: String,
    pub tokens: usize,
    /// sha256 of `embed_text`: an edit that leaves a chunk alone keeps its hash.
    pub hash: String,
}

/// Splits a paragraph longer than `max` tokens at sentence ends, then at
/// word boundaries.
fn pieces(paragraph: &str, max: usize, count: &dyn Fn(&str) -> usize) -> Vec<String> {
    if count(paragraph) <= max {
        return vec![paragraph.to_string()];
    }
    let mut sentences: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in paragraph.split(' ') {
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
        if word.ends_with(['.', '!', '?', ':', ';']) {
            sentences.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        sentences.push(cur);
    }
    let mut out = Vec::new();
    for s in sentences {
        if count(&s) <= max {
            out.push(s);
            continue;
        }
        let mut part = String::new();
        for word in s.split(' ') {
            let candidate = if part.is_empty() {
                word.to_string()
            } else {
                format!("{part} {word}")
            };
            if !part.is_empty() && count(&candidate) > max {
                out.push(std::mem::replace(&mut part, word.to_string()));
            } else {
                part = candidate;
            }
        }
        if !part.is_empty() {
            out.push(part);
        }
    }
    out
}

fn sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Chunks an article. `count` gives a text's token count (the encoder's
/// tokenizer in the service; anything monotone in tests).
pub fn chunk(
    title: &str,
    sections: &[Section],
    cfg: ChunkConfig,
    count: &dyn Fn(&str) -> usize,
) -> Vec<Chunk> {
    let target = cfg.target.max(8);
    let overlap = cfg.overlap.min(target / 2);
    let mut out: Vec<Chunk> = Vec::new();
    for section in sections {
        let mut path: Vec<String> = Vec::new();
        if !title.trim().is_empty()
            && section.headings.first().map(String::as_str) != Some(title.trim())
        {
            path.push(title.trim().to_string());
        }
        path.extend(section.headings.iter().cloned());
        let prefix = path.join(" › ");
        let units: Vec<(String, usize)> = section
            .paragraphs
            .iter()
            .flat_map(|p| pieces(p, target, count))
            .map(|u| {
                let n = count(&u);
                (u, n)
            })
            .collect();
        let mut start = 0;
        while start < units.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < units.len() && (end == start || tokens + units[end].1 <= target) {
                tokens += units[end].1;
                end += 1;
            }
            let text = units[start..end]
                .iter()
                .map(|(u, _)| u.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let embed_text = if prefix.is_empty() {
                text.clone()
            } else {
                format!("{prefix}\n{text}")
            };
            out.push(Chunk {
                index: out.len(),
                headings: path.clone(),
                hash: sha256(&embed_text),
                text,
                embed_text,
                tokens,
            });
            if end >= units.len() {
                break;
            }
            // Carry the last units (up to `overlap` tokens) into the next chunk,
            // always moving forward by at least one unit.
            let mut next = end;
            let mut carried = 0;
            while next > start + 1 && carried + units[next - 1].1 <= overlap {
                carried += units[next - 1].1;
                next -= 1;
            }
            start = next;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    fn section(headings: &[&str], paragraphs: &[String]) -> Section {
        Section {
            headings: headings.iter().map(|s| s.to_string()).collect(),
            paragraphs: paragraphs.to_vec(),
        }
    }

    fn para(tag: &str, n: usize) -> String {
        (0..n)
            .map(|i| format!("{tag}{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn chunks_stay_near_the_target_overlap_and_never_cross_a_heading() {
        let paragraphs: Vec<String> = (0..10).map(|i| para(&format!("p{i}w"), 30)).collect();
        let sections = vec![
            section(&["VPN", "Windows"], &paragraphs),
            section(&["VPN", "macOS"], &[para("mac", 20)]),
        ];
        let cfg = ChunkConfig {
            target: 100,
            overlap: 30,
        };
        let chunks = chunk("VPN guide", &sections, cfg, &words);
        let windows: Vec<&Chunk> = chunks
            .iter()
            .filter(|c| c.headings.last().unwrap() == "Windows")
            .collect();
        assert!(windows.len() >= 4, "{}", windows.len());
        for c in &windows {
            assert!(c.tokens <= 100, "{}", c.tokens);
            assert!(c.embed_text.starts_with("VPN guide › VPN › Windows\n"));
        }
        // Consecutive chunks share a 30-token paragraph.
        for pair in windows.windows(2) {
            let last_of_first = pair[0].text.lines().last().unwrap();
            assert_eq!(pair[1].text.lines().next().unwrap(), last_of_first);
        }
        // Every paragraph is somewhere; the macOS text is its own chunk.
        for p in &paragraphs {
            assert!(windows.iter().any(|c| c.text.contains(p.as_str())));
        }
        let mac = chunks.last().unwrap();
        assert_eq!(mac.headings, ["VPN guide", "VPN", "macOS"]);
        assert_eq!(mac.text, para("mac", 20));
        assert_eq!(
            chunks.iter().map(|c| c.index).collect::<Vec<_>>(),
            (0..chunks.len()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_long_paragraph_is_split_at_sentences_then_words() {
        let long = format!("{}. {}", para("a", 50), para("b", 300));
        let chunks = chunk(
            "T",
            &[section(&[], &[long])],
            ChunkConfig {
                target: 100,
                overlap: 0,
            },
            &words,
        );
        assert!(chunks.len() >= 4);
        assert!(chunks.iter().all(|c| c.tokens <= 100));
        assert!(chunks[0].text.ends_with("a49."), "{}", chunks[0].text);
    }

    #[test]
    fn hashes_change_only_with_the_chunk() {
        let a = chunk(
            "T",
            &[
                section(&["A"], &[para("x", 10)]),
                section(&["B"], &[para("y", 10)]),
            ],
            ChunkConfig::default(),
            &words,
        );
        let b = chunk(
            "T",
            &[
                section(&["A"], &[para("x", 10)]),
                section(&["B"], &[para("z", 10)]),
            ],
            ChunkConfig::default(),
            &words,
        );
        assert_eq!(a[0].hash, b[0].hash);
        assert_ne!(a[1].hash, b[1].hash);
        assert!(chunk("T", &[], ChunkConfig::default(), &words).is_empty());
    }
}
