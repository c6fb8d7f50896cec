//! Personal data in text (OCR text of an attachment, a ticket's subject and
//! body): e-mail addresses, phone numbers, payment card numbers (Luhn
//! checked) and IBANs (ISO 7064 mod-97 checked). Each finding has its kind
//! and position; the redacted copy replaces each with `[KIND]`. The values
//! themselves are never logged nor returned: a finding carries only a
//! masked hint (the last four characters of a card or IBAN).

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Phone,
    Card,
    Iban,
}

impl PiiKind {
    fn tag(self) -> &'static str {
        match self {
            PiiKind::Email => "[EMAIL]",
            PiiKind::Phone => "[PHONE]",
            PiiKind::Card => "[CARD]",
            PiiKind::Iban => "[IBAN]",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PiiFinding {
    pub kind: PiiKind,
    /// Byte offsets into the text, `start..end`.
    pub start: usize,
    pub end: usize,
    /// Character (Unicode scalar) offsets, for clients that index so.
    pub char_start: usize,
    pub char_end: usize,
    /// A masked hint for a human (`•••• 4242`), never the value.
    pub hint: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PiiReport {
    pub findings: Vec<PiiFinding>,
    /// The text with every finding replaced by its `[KIND]` tag.
    pub redacted: String,
}

impl PiiReport {
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty()
    }

    /// How many of each kind, for logs and summaries (no values).
    pub fn counts(&self) -> std::collections::BTreeMap<PiiKind, usize> {
        let mut m = std::collections::BTreeMap::new();
        for f in &self.findings {
            *m.entry(f.kind).or_insert(0) += 1;
        }
        m
    }
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[a-z]{2,}\b").expect("email regex")
});
// 13 to 19 digits, in groups separated by single spaces or dashes.
static CARD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d(?:[ \-]?\d){12,18}\b").expect("card regex"));
// Country code, check digits, then 11 to 30 letters/digits, in groups of
// up to four separated by single spaces.
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b").expect("iban regex"));
// International (+CC …) or national with a leading 0 or an area code in
// parentheses; 7 to 15 digits in all, separated by spaces, dots or dashes.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?)?\d(?:[ .\-]?\d){6,14}\b")
        .expect("phone regex")
});

fn digits(s: &str) -> Vec<u32> {
    s.chars().filter_map(|c| c.to_digit(10)).collect()
}

/// The Luhn checksum of a card number.
pub fn luhn_ok(number: &str) -> bool {
    let d = digits(number);
    if d.len() < 13 {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &v)| {
            if i % 2 == 1 {
                let x = v * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                v
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616 check: move the first four characters to the end, letters to
/// numbers (A = 10), the remainder mod 97 is 1.
pub fn iban_ok(iban: &str) -> bool {
    let s: Vec<char> = iban.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&s.len()) {
        return false;
    }
    let mut rem: u32 = 0;
    for c in s[4..].iter().chain(&s[..4]) {
        let v = match c {
            '0'..='9' => *c as u32 - '0' as u32,
            'A'..='Z' => *c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn last4(s: &str) -> String {
    let tail: Vec<char> = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let start = tail.len().saturating_sub(4);
    tail[start..].iter().collect()
}

/// Digit runs shaped like a phone number that are something else: version
/// numbers (a one-digit group), IPv4 addresses, dates.
fn not_a_phone(s: &str) -> bool {
    let body = s
        .strip_prefix('+')
        .map_or(s, |r| r.trim_start_matches(|c: char| c.is_ascii_digit()));
    let groups: Vec<&str> = body
        .split([' ', '.', '-', '(', ')'])
        .filter(|g| !g.is_empty())
        .collect();
    let dots_only = !s.contains([' ', '-', '(', '+']);
    let one_digit_group = groups.len() > 1 && groups.iter().any(|g| g.len() < 2);
    let ipv4 = dots_only && groups.len() == 4 && groups.iter().all(|g| g.len() <= 3);
    let date = DATE.is_match(s);
    one_digit_group || ipv4 || date
}

static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:\d{4}[./\-]\d{1,2}[./\-]\d{1,2}|\d{1,2}[./\-]\d{1,2}[./\-]\d{4})$")
        .expect("date regex")
});

/// Finds personal data in `text`. Overlaps resolve by precedence: e-mail,
/// IBAN, card, then phone (a card number is not also reported as a phone).
pub fn scan(text: &str) -> PiiReport {
    let mut found: Vec<(usize, usize, PiiKind, String)> = Vec::new();
    let free = |found: &[(usize, usize, PiiKind, String)], s: usize, e: usize| {
        found.iter().all(|&(a, b, _, _)| e <= a || s >= b)
    };
    for m in EMAIL.find_iter(text) {
        let (user, domain) = m.as_str().split_once('@').unwrap_or(("", m.as_str()));
        let hint = format!("{}…@{domain}", user.chars().next().unwrap_or('?'));
        found.push((m.start(), m.end(), PiiKind::Email, hint));
    }
    // IBAN-shaped text whose checksum fails is no IBAN, but its digits are
    // not a card number or a phone either.
    let mut iban_shaped: Vec<(usize, usize, PiiKind, String)> = Vec::new();
    for m in IBAN.find_iter(text) {
        if iban_ok(m.as_str()) && free(&found, m.start(), m.end()) {
            let hint = format!("{}•• •••• {}", &m.as_str()[..2], last4(m.as_str()));
            found.push((m.start(), m.end(), PiiKind::Iban, hint));
        } else {
            iban_shaped.push((m.start(), m.end(), PiiKind::Iban, String::new()));
        }
    }
    let free = |found: &[(usize, usize, PiiKind, String)], s: usize, e: usize| {
        free(found, s, e) && free(&iban_shaped, s, e)
    };
    for m in CARD.find_iter(text) {
        let n = digits(m.as_str()).len();
        if (13..=19).contains(&n) && luhn_ok(m.as_str()) && free(&found, m.start(), m.end()) {
            let hint = format!("•••• {}", last4(m.as_str()));
            found.push((m.start(), m.end(), PiiKind::Card, hint));
        }
    }
    for m in PHONE.find_iter(text) {
        let s = m.as_str();
        let n = digits(s).len();
        // A bare run of digits is an order or ticket number more often than
        // a phone: a phone has a + prefix, parentheses, or separators.
        let shaped = s.starts_with('+')
            || s.contains('(')
            || s.chars().filter(|c| matches!(c, ' ' | '-' | '.')).count() >= 1;
        // A match glued to a word or decimal ("v1.2.3.4567", "x0800…") is not a phone.
        let before = text[..m.start()].chars().next_back();
        let glued = before.is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '/');
        // Nor the head of a longer run of digit groups (an account number).
        let mut after = text[m.end()..].chars();
        let continues = matches!(after.next(), Some(' ' | '.' | '-'))
            && after.next().is_some_and(|c| c.is_ascii_digit());
        if !continues
            && (7..=15).contains(&n)
            && shaped
            && !glued
            && !not_a_phone(s)
            && free(&found, m.start(), m.end())
        {
            let hint = format!("••• {}", last4(s));
            found.push((m.start(), m.end(), PiiKind::Phone, hint));
        }
    }
    found.sort_by_key(|f| f.0);
    let mut redacted = String::with_capacity(text.len());
    let mut at = 0;
    let mut findings = Vec::with_capacity(found.len());
    for (start, end, kind, hint) in found {
        redacted.push_str(&text[at..start]);
        redacted.push_str(kind.tag());
        at = end;
        findings.push(PiiFinding {
            kind,
            start,
            end,
            char_start: text[..start].chars().count(),
            char_end: text[..end].chars().count(),
            hint,
        });
    }
    redacted.push_str(&text[at..]);
    PiiReport { findings, redacted }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(r: &PiiReport) -> Vec<PiiKind> {
        r.findings.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn luhn_and_iban_checks_accept_real_numbers_and_refuse_one_digit_off() {
        assert!(luhn_ok("4242 4242 4242 4242"));
        assert!(luhn_ok("5555-5555-5555-4444"));
        assert!(!luhn_ok("4242 4242 4242 4241"));
        assert!(iban_ok("GB82 WEST 1234 5698 7654 32"));
        assert!(iban_ok("DE89370400440532013000"));
        assert!(!iban_ok("DE89370400440532013001"));
    }

    #[test]
    fn finds_each_kind_with_positions_and_redacts_them() {
        let text = "Contact jane.doe@example.com or +44 20 7946 0958. \
                    Card 4242 4242 4242 4242 was charged; refund to DE89 3704 0044 0532 0130 00 please.";
        let r = scan(text);
        assert_eq!(
            kinds(&r),
            vec![PiiKind::Email, PiiKind::Phone, PiiKind::Card, PiiKind::Iban]
        );
        for f in &r.findings {
            let value = &text[f.start..f.end];
            assert!(
                !r.redacted.contains(value),
                "{value} left in the redacted copy"
            );
            assert!(!f.hint.contains(value), "the hint must not carry the value");
        }
        assert_eq!(
            &text[r.findings[0].start..r.findings[0].end],
            "jane.doe@example.com"
        );
        assert_eq!(r.findings[2].hint, "•••• 4242");
        assert!(r
            .redacted
            .starts_with("Contact [EMAIL] or [PHONE]. Card [CARD] was charged"));
        assert!(r.redacted.ends_with("refund to [IBAN] please."));
    }

    #[test]
    fn numbers_that_fail_their_checksum_or_shape_are_not_flagged() {
        // Luhn fails; a bare order number; a version string; an error code.
        let text = "Card 4242 4242 4242 4241, order 1234567890, version 10.0.19045.3803, \
                    error 0x80070005, IBAN DE89 3704 0044 0532 0130 01, host 192.168.100.200, \
                    since 2024-01-15 and 15.01.2024";
        let r = scan(text);
        assert_eq!(kinds(&r), vec![], "{:?}", r.findings);
        assert_eq!(r.redacted, text);
    }

    #[test]
    fn char_offsets_count_characters_not_bytes() {
        let text = "Größe: bitte an jürgen@example.de schreiben";
        let r = scan(text);
        assert_eq!(r.findings.len(), 1);
        let f = &r.findings[0];
        let chars: Vec<char> = text.chars().collect();
        let by_chars: String = chars[f.char_start..f.char_end].iter().collect();
        assert_eq!(by_chars, &text[f.start..f.end]);
    }
}
