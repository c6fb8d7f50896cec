//! KB article bodies to plain text in sections: Markdown or HTML in, a list
//! of (heading path, paragraphs) out. Headings are kept as structure, not as
//! text, so chunks can carry "Title › Section › Subsection" in front.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Markdown,
    Html,
    Text,
}

/// A run of text under one heading path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Enclosing headings, outermost first.
    pub headings: Vec<String>,
    /// Paragraphs (list items and table rows count as paragraphs).
    pub paragraphs: Vec<String>,
}

/// Collapses runs of whitespace to one space and trims.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

struct Builder {
    sections: Vec<Section>,
    headings: Vec<(usize, String)>,
    paragraph: String,
}

impl Builder {
    fn new() -> Self {
        Self {
            sections: vec![Section {
                headings: Vec::new(),
                paragraphs: Vec::new(),
            }],
            headings: Vec::new(),
            paragraph: String::new(),
        }
    }

    fn text(&mut self, t: &str) {
        if !self.paragraph.is_empty() && !self.paragraph.ends_with(' ') {
            self.paragraph.push(' ');
        }
        self.paragraph.push_str(t);
    }

    /// Appends as is: inline HTML tags split words without adding spaces.
    fn raw(&mut self, t: &str) {
        self.paragraph.push_str(t);
    }

    fn end_paragraph(&mut self) {
        let p = squash(&self.paragraph);
        self.paragraph.clear();
        if !p.is_empty() {
            if let Some(s) = self.sections.last_mut() {
                s.paragraphs.push(p);
            }
        }
    }

    fn heading(&mut self, level: usize, title: &str) {
        self.end_paragraph();
        let title = squash(title);
        if title.is_empty() {
            return;
        }
        self.headings.retain(|(l, _)| *l < level);
        self.headings.push((level, title));
        self.sections.push(Section {
            headings: self.headings.iter().map(|(_, h)| h.clone()).collect(),
            paragraphs: Vec::new(),
        });
    }

    fn finish(mut self) -> Vec<Section> {
        self.end_paragraph();
        self.sections.retain(|s| !s.paragraphs.is_empty());
        self.sections
    }
}

/// Markdown inline markup to text: links and images keep their text,
/// emphasis and code marks go, HTML tags inside go.
fn markdown_inline(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '!' if chars.get(i + 1) == Some(&'[') => i += 1,
            '[' => {
                // [text](url) → text; [text] alone stays.
                if let Some(close) = chars[i + 1..].iter().position(|&x| x == ']') {
                    let close = i + 1 + close;
                    if chars.get(close + 1) == Some(&'(') {
                        if let Some(end) = chars[close + 2..].iter().position(|&x| x == ')') {
                            out.extend(&chars[i + 1..close]);
                            i = close + 2 + end + 1;
                            continue;
                        }
                    }
                }
                out.push(c);
                i += 1;
            }
            '*' | '_' | '`' | '~' => {
                // Emphasis and code marks; a lone `_` inside a word stays.
                let inside_word = c == '_'
                    && i > 0
                    && chars[i - 1].is_alphanumeric()
                    && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
                if inside_word {
                    out.push(c);
                }
                i += 1;
            }
            '<' => match chars[i..].iter().position(|&x| x == '>') {
                Some(end)
                    if end > 1 && (chars[i + 1].is_ascii_alphabetic() || chars[i + 1] == '/') =>
                {
                    out.push(' ');
                    i += end + 1;
                }
                _ => {
                    out.push(c);
                    i += 1;
                }
            },
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

pub fn markdown(body: &str) -> Vec<Section> {
    let mut b = Builder::new();
    let mut fence: Option<String> = None;
    for raw in body.lines() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if let Some(f) = &fence {
            if trimmed.starts_with(f.as_str()) {
                fence = None;
                b.end_paragraph();
            } else {
                // Code keeps its text (error messages, commands are searchable).
                b.text(trimmed);
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            b.end_paragraph();
            fence = Some(trimmed[..3].to_string());
            continue;
        }
        if trimmed.is_empty() {
            b.end_paragraph();
            continue;
        }
        let hashes = trimmed.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && trimmed[hashes..].starts_with(' ') {
            let title = trimmed[hashes..].trim().trim_end_matches('#');
            b.heading(hashes, &markdown_inline(title));
            continue;
        }
        // Setext underlines turn the paragraph so far into a heading.
        if !b.paragraph.is_empty()
            && trimmed.len() >= 2
            && (trimmed.chars().all(|c| c == '=') || trimmed.chars().all(|c| c == '-'))
        {
            let title = std::mem::take(&mut b.paragraph);
            b.heading(if trimmed.starts_with('=') { 1 } else { 2 }, &title);
            continue;
        }
        if trimmed
            .chars()
            .all(|c| c == '-' || c == '*' || c == '_' || c == ' ')
            && trimmed.len() >= 3
        {
            b.end_paragraph(); // thematic break
            continue;
        }
        let item = trimmed
            .strip_prefix("- ")
            .or_else(|| trimmed.strip_prefix("* "))
            .or_else(|| trimmed.strip_prefix("+ "))
            .or_else(|| {
                let digits = trimmed.chars().take_while(char::is_ascii_digit).count();
                (digits > 0)
                    .then(|| trimmed[digits..].strip_prefix(". "))
                    .flatten()
            });
        let text = item.unwrap_or(trimmed).trim_start_matches('>').trim();
        if item.is_some() || trimmed.starts_with('|') {
            b.end_paragraph();
        }
        let text = if trimmed.starts_with('|') {
            if text.chars().all(|c| "|-: ".contains(c)) {
                continue; // table rule
            }
            text.trim_matches('|').replace('|', " · ")
        } else {
            text.to_string()
        };
        b.text(&markdown_inline(&text));
        if item.is_some() || trimmed.starts_with('|') {
            b.end_paragraph();
        }
    }
    b.finish()
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let ent = &rest[1..e];
            let ch = match ent {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                _ if ent.starts_with("#x") || ent.starts_with("#X") => {
                    u32::from_str_radix(&ent[2..], 16)
                        .ok()
                        .and_then(char::from_u32)
                }
                _ if ent.starts_with('#') => ent[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            ch.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

const BLOCK: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "tr",
    "td",
    "th",
    "table",
    "ul",
    "ol",
    "section",
    "article",
    "header",
    "footer",
    "blockquote",
    "pre",
    "dd",
    "dt",
    "hr",
    "main",
    "nav",
    "aside",
    "figcaption",
];

pub fn html(body: &str) -> Vec<Section> {
    let mut b = Builder::new();
    let mut rest = body;
    let mut heading: Option<(usize, String)> = None;
    let mut skip_until: Option<&'static str> = None;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            push_html_text(&mut b, &mut heading, skip_until, rest);
            break;
        };
        push_html_text(&mut b, &mut heading, skip_until, &rest[..lt]);
        rest = &rest[lt..];
        if rest.starts_with("<!--") {
            rest = rest.find("-->").map_or("", |e| &rest[e + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else { break };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(until) = skip_until {
            if closing && name == until {
                skip_until = None;
            }
            continue;
        }
        match name.as_str() {
            "script" | "style" | "noscript" | "template" | "head" if !closing => {
                skip_until = Some(match name.as_str() {
                    "script" => "script",
                    "style" => "style",
                    "noscript" => "noscript",
                    "template" => "template",
                    _ => "head",
                });
            }
            h if h.len() == 2
                && h.starts_with('h')
                && h[1..].parse::<usize>().is_ok_and(|n| (1..=6).contains(&n)) =>
            {
                let level = h[1..].parse().unwrap_or(1);
                if closing {
                    if let Some((l, t)) = heading.take() {
                        b.heading(l, &t);
                    }
                } else {
                    b.end_paragraph();
                    heading = Some((level, String::new()));
                }
            }
            n if BLOCK.contains(&n) && heading.is_none() => b.end_paragraph(),
            _ => {}
        }
    }
    if let Some((l, t)) = heading.take() {
        b.heading(l, &t);
    }
    b.finish()
}

fn push_html_text(
    b: &mut Builder,
    heading: &mut Option<(usize, String)>,
    skip: Option<&str>,
    raw: &str,
) {
    if skip.is_some() || raw.is_empty() {
        return;
    }
    let text = decode_entities(raw);
    match heading {
        Some((_, h)) => {
            h.push(' ');
            h.push_str(&text);
        }
        None => b.raw(&text),
    }
}

pub fn sections(body: &str, format: Format) -> Vec<Section> {
    match format {
        Format::Markdown => markdown(body),
        Format::Html => html(body),
        Format::Text => {
            let mut b = Builder::new();
            for line in body.lines() {
                if line.trim().is_empty() {
                    b.end_paragraph();
                } else {
                    b.text(line);
                }
            }
            b.finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_keeps_heading_paths_and_drops_markup() {
        let md = "# VPN\n\nIntro **text** with a [link](https://x.y/z).\n\n## Windows\n\n\
                  1. Open *Settings*\n2. Click `Connect`\n\n```\nerror 809: the connection failed\n```\n\n\
                  ### Error 809\nCheck UDP 500_4500.\n\n## macOS\nUse the app.\n";
        let s = markdown(md);
        assert_eq!(s[0].headings, ["VPN"]);
        assert_eq!(s[0].paragraphs, ["Intro text with a link."]);
        assert_eq!(s[1].headings, ["VPN", "Windows"]);
        assert_eq!(
            s[1].paragraphs,
            [
                "Open Settings",
                "Click Connect",
                "error 809: the connection failed"
            ]
        );
        assert_eq!(s[2].headings, ["VPN", "Windows", "Error 809"]);
        assert_eq!(s[2].paragraphs, ["Check UDP 500_4500."]);
        assert_eq!(s[3].headings, ["VPN", "macOS"]);
    }

    #[test]
    fn markdown_tables_and_setext_headings() {
        let md = "Printers\n========\n\n| model | driver |\n|---|---|\n| HP 4050 | PCL6 |\n";
        let s = markdown(md);
        assert_eq!(s[0].headings, ["Printers"]);
        assert_eq!(s[0].paragraphs, ["model · driver", "HP 4050 · PCL6"]);
    }

    #[test]
    fn html_drops_scripts_styles_and_tags_and_decodes_entities() {
        let h = "<html><head><title>x</title><style>p{}</style></head><body>\
                 <h1>Reset your <em>password</em></h1><p>Go to &quot;Account&quot; &amp; click <b>Reset</b>.</p>\
                 <script>alert(1)</script><h2>If it fails</h2><ul><li>Clear cookies</li><li>Retry &#8212; later</li></ul>\
                 <!-- hidden --></body></html>";
        let s = html(h);
        assert_eq!(s[0].headings, ["Reset your password"]);
        assert_eq!(s[0].paragraphs, ["Go to \"Account\" & click Reset."]);
        assert_eq!(s[1].headings, ["Reset your password", "If it fails"]);
        assert_eq!(s[1].paragraphs, ["Clear cookies", "Retry — later"]);
    }

    #[test]
    fn broken_markup_never_panics() {
        for body in [
            "<",
            "<h1>",
            "&",
            "&#99999999999;",
            "[a](",
            "```\nunclosed",
            "<p",
            "# ",
            "</h3>x",
            "&#x110000;",
        ] {
            let _ = markdown(body);
            let _ = html(body);
        }
        assert!(html("").is_empty());
    }
}
