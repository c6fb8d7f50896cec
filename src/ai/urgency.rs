//! Urgency (low / normal / high / critical) from explicit signals in a
//! ticket plus its sentiment. A rule, not a model, so an agent can read why.
//!
//! Points:
//! - outage or blocker (`down`, `outage`, `cannot work`, `production`,
//!   `data loss`, `security breach`, …): 3
//! - widespread (`everyone`, `all users`, `whole team`, …): 1
//! - deadline (`urgent`, `asap`, `today`, `deadline`, `by tomorrow`, …): 1
//! - VIP requester (flag from the requester's record, or `ceo`, `vip`, …): 1
//! - repeated contact (previous contacts on the same issue, or `again`,
//!   `still`, `third time`, `no response`, …): 1
//! - negative sentiment with probability ≥ 0.75: 1
//!
//! Level: ≥ 5 critical, ≥ 3 high, ≥ 1 normal; 0 is normal too, unless the
//! text says there is no hurry (`no rush`, `when you have time`, …): low.
//! An outage is therefore at least high, and critical with two more signals.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    Low,
    Normal,
    High,
    Critical,
}

/// What the rule found, with the phrases that triggered each signal.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UrgencyAssessment {
    pub level: Urgency,
    pub points: u32,
    pub reasons: Vec<String>,
}

/// Facts about the ticket that are not in its text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    pub vip_requester: bool,
    /// Earlier tickets or replies from the same requester on the same issue.
    pub previous_contacts: u32,
    /// Probability that the ticket's sentiment is negative, if known.
    pub negative_sentiment: Option<f32>,
}

const OUTAGE: &[&str] = &[
    "down",
    "outage",
    "not working for anyone",
    "cannot work",
    "can't work",
    "unable to work",
    "production",
    "data loss",
    "lost data",
    "security breach",
    "hacked",
    "ransomware",
    "crashed",
    "server error",
    "offline",
    "blocked",
    "blocker",
];
const WIDESPREAD: &[&str] = &[
    "everyone",
    "all users",
    "whole team",
    "entire team",
    "whole office",
    "all staff",
    "company-wide",
];
const DEADLINE: &[&str] = &[
    "urgent",
    "urgently",
    "asap",
    "immediately",
    "today",
    "tonight",
    "by tomorrow",
    "deadline",
    "right now",
    "within the hour",
    "end of day",
    "eod",
    "emergency",
];
const VIP: &[&str] = &["ceo", "cfo", "cto", "vip", "executive", "board meeting"];
const REPEATED: &[&str] = &[
    "again",
    "still",
    "second time",
    "third time",
    "no response",
    "no reply",
    "follow up",
    "following up",
    "already reported",
    "reopen",
];
const NO_RUSH: &[&str] = &[
    "no rush",
    "not urgent",
    "when you have time",
    "whenever you can",
    "low priority",
    "no hurry",
];

/// Lower-cased words joined by single spaces, padded, so phrases match on
/// word boundaries (`down` does not match `download`).
fn normalise(text: &str) -> String {
    let words: Vec<String> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    format!(" {} ", words.join(" "))
}

fn found<'a>(norm: &str, phrases: &'a [&'a str]) -> Vec<&'a str> {
    phrases
        .iter()
        .copied()
        .filter(|p| norm.contains(&format!(" {p} ")))
        .collect()
}

pub fn assess(text: &str, ctx: Context) -> UrgencyAssessment {
    let norm = normalise(text);
    let mut points = 0;
    let mut reasons = Vec::new();
    let mut signal = |hits: Vec<&str>, weight: u32, what: &str| {
        if !hits.is_empty() {
            points += weight;
            reasons.push(format!("{what}: {}", hits.join(", ")));
        }
    };
    let outage = found(&norm, OUTAGE);
    let has_outage = !outage.is_empty();
    signal(outage, 3, "outage or blocker");
    signal(found(&norm, WIDESPREAD), 1, "widespread");
    signal(found(&norm, DEADLINE), 1, "deadline");
    let mut vip = found(&norm, VIP);
    if ctx.vip_requester {
        vip.insert(0, "VIP requester");
    }
    signal(vip, 1, "VIP");
    let mut repeated: Vec<&str> = found(&norm, REPEATED);
    let contacts = format!("{} previous contacts", ctx.previous_contacts);
    if ctx.previous_contacts > 0 {
        repeated.insert(0, &contacts);
    }
    signal(repeated, 1, "repeated contact");
    if let Some(p) = ctx.negative_sentiment.filter(|p| *p >= 0.75) {
        points += 1;
        reasons.push(format!("negative sentiment: {p:.2}"));
    }
    let no_rush = found(&norm, NO_RUSH);
    let level = match points {
        5.. => Urgency::Critical,
        3.. => Urgency::High,
        _ if !no_rush.is_empty() && !has_outage => {
            reasons.push(format!("no hurry: {}", no_rush.join(", ")));
            Urgency::Low
        }
        _ => Urgency::Normal,
    };
    UrgencyAssessment {
        level,
        points,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(text: &str, ctx: Context) -> Urgency {
        assess(text, ctx).level
    }

    #[test]
    fn a_widespread_outage_with_a_deadline_is_critical() {
        let a = assess(
            "VPN is down for everyone and we have a client demo today",
            Context::default(),
        );
        assert_eq!(a.level, Urgency::Critical);
        assert_eq!(a.points, 5);
        assert_eq!(a.reasons.len(), 3, "{:?}", a.reasons);
        assert!(a.reasons[0].contains("down"));
    }

    #[test]
    fn an_outage_alone_is_high() {
        assert_eq!(
            level("The payroll server crashed", Context::default()),
            Urgency::High
        );
    }

    #[test]
    fn words_match_whole_words_only() {
        // "download" is not "down", "stillness" is not "still".
        assert_eq!(
            level(
                "How do I download the stillness report?",
                Context::default()
            ),
            Urgency::Normal
        );
    }

    #[test]
    fn context_signals_count_without_words_in_the_text() {
        let ctx = Context {
            vip_requester: true,
            previous_contacts: 2,
            negative_sentiment: Some(0.9),
        };
        let a = assess("My printer prints blank pages", ctx);
        assert_eq!(a.points, 3);
        assert_eq!(a.level, Urgency::High);
        assert!(a.reasons.iter().any(|r| r.contains("2 previous contacts")));
        // Mild negativity does not count.
        let mild = Context {
            negative_sentiment: Some(0.6),
            ..Context::default()
        };
        assert_eq!(assess("My printer prints blank pages", mild).points, 0);
    }

    #[test]
    fn no_rush_is_low_unless_something_is_down() {
        assert_eq!(
            level(
                "Could you add me to the design list? No rush.",
                Context::default()
            ),
            Urgency::Low
        );
        assert_eq!(
            level(
                "Email is down, but no rush for the archive",
                Context::default()
            ),
            Urgency::High
        );
        assert_eq!(
            level("Please order a new mouse", Context::default()),
            Urgency::Normal
        );
    }

    #[test]
    fn levels_are_ordered() {
        assert!(Urgency::Low < Urgency::Normal && Urgency::High < Urgency::Critical);
        assert_eq!(
            serde_json::to_string(&Urgency::Critical).unwrap(),
            "\"critical\""
        );
    }
}
