//! Model cards (Hugging Face style: a YAML front-matter header, then Markdown) and the
//! policy that gates sealing and loading on the card's fields.
//!
//! The card travels in a sealed bundle in plaintext, so a broker or runtime can apply the
//! policy before any key is released; its SHA-256 is a resource of the signed OMS
//! manifest, so the plaintext copy is bound to the signer.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::Error;

/// The largest card accepted, in bytes.
pub const MAX_CARD_LEN: usize = 1 << 20;

/// A parsed model card.
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    /// The card as written.
    pub text: String,
    /// The top-level fields of the YAML header.
    pub fields: BTreeMap<String, Value>,
}

impl Card {
    /// Parses a card: optional UTF-8 BOM, a `---` line, a YAML mapping, a `---` line, Markdown.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_CARD_LEN {
            return Err(Error::Card(format!("card is {} bytes, more than the {MAX_CARD_LEN} accepted", text.len())));
        }
        let body = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = body.split_inclusive('\n');
        let first = lines.next().unwrap_or_default();
        if first.trim_end() != "---" {
            return Err(Error::Card("card has no YAML header (the first line must be `---`)".into()));
        }
        let mut yaml = String::new();
        let mut closed = false;
        for line in lines {
            if line.trim_end() == "---" {
                closed = true;
                break;
            }
            yaml.push_str(line);
        }
        if !closed {
            return Err(Error::Card("card's YAML header is not closed by a `---` line".into()));
        }
        let fields: BTreeMap<String, Value> = if yaml.trim().is_empty() {
            BTreeMap::new()
        } else {
            serde_saphyr::from_str(&yaml)
                .map_err(|e| Error::Card(format!("card's YAML header: {}", e.to_string().escape_debug())))?
        };
        Ok(Self { text: text.to_owned(), fields })
    }

    /// The card's licence field, if it is a string.
    pub fn license(&self) -> Option<&str> {
        self.fields.get("license").and_then(Value::as_str)
    }
}

/// What a card must say: required fields and allow-lists, read from TOML:
///
/// ```toml
/// required = ["license", "language"]
/// [allowed]
/// license = ["apache-2.0", "mit"]
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CardPolicy {
    /// Fields that must be present and not empty.
    #[serde(default)]
    pub required: Vec<String>,
    /// For each field, the values allowed (compared ASCII case-insensitively). A list-valued
    /// field passes only if every item is allowed.
    #[serde(default)]
    pub allowed: BTreeMap<String, Vec<String>>,
}

impl CardPolicy {
    /// Parses a policy from TOML.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| Error::Card(format!("card policy: {e}")))
    }

    /// Checks `card` against the policy, naming the first field that fails.
    pub fn check(&self, card: &Card) -> Result<(), Error> {
        let fail = |field: &str, reason: String| Error::CardPolicy { field: field.to_owned(), reason };
        for field in &self.required {
            match card.fields.get(field) {
                None | Some(Value::Null) => return Err(fail(field, "required, but the card does not set it".into())),
                Some(Value::String(s)) if s.trim().is_empty() => return Err(fail(field, "required, but empty".into())),
                Some(Value::Array(a)) if a.is_empty() => return Err(fail(field, "required, but empty".into())),
                Some(_) => {}
            }
        }
        for (field, allowed) in &self.allowed {
            let ok = |v: &str| allowed.iter().any(|a| a.eq_ignore_ascii_case(v.trim()));
            match card.fields.get(field) {
                None | Some(Value::Null) => {
                    return Err(fail(field, format!("must be one of {allowed:?}, but the card does not set it")));
                }
                Some(Value::String(s)) => {
                    if !ok(s) {
                        return Err(fail(field, format!("{s:?} is not one of {allowed:?}")));
                    }
                }
                Some(Value::Array(items)) => {
                    if items.is_empty() {
                        return Err(fail(
                            field,
                            format!("must be one of {allowed:?}, but the card gives an empty list"),
                        ));
                    }
                    for item in items {
                        match item.as_str() {
                            Some(s) if ok(s) => {}
                            Some(s) => return Err(fail(field, format!("{s:?} is not one of {allowed:?}"))),
                            None => return Err(fail(field, format!("list item {item} is not a string"))),
                        }
                    }
                }
                Some(other) => return Err(fail(field, format!("{other} is not a string or a list of strings"))),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = "---\nlicense: apache-2.0\nlanguage:\n- en\nbase_model: HuggingFaceTB/SmolLM2-135M\ntags: [a, b]\n---\n# SmolLM2\n";

    #[test]
    fn parses_front_matter() {
        let c = Card::parse(CARD).unwrap();
        assert_eq!(c.license(), Some("apache-2.0"));
        assert_eq!(c.fields["language"], serde_json::json!(["en"]));
        assert_eq!(c.fields["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(c.text, CARD);
    }

    #[test]
    fn crlf_and_bom() {
        let c = Card::parse("\u{feff}---\r\nlicense: mit\r\n---\r\ntext").unwrap();
        assert_eq!(c.license(), Some("mit"));
    }

    #[test]
    fn refuses_cards_without_a_header() {
        for bad in ["# no header", "---\nlicense: mit\n", "", "---\n- a list\n---\n", "---\nlicense: [\n---\n"] {
            let e = Card::parse(bad).unwrap_err();
            assert!(matches!(e, Error::Card(_)), "{bad:?}: {e}");
        }
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut y = String::from("---\na0: &a0 [x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            y.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n", p = i - 1));
        }
        y.push_str("---\n");
        assert!(matches!(Card::parse(&y), Err(Error::Card(_))));
    }

    #[test]
    fn policy_allows_and_requires() {
        let p = CardPolicy::from_toml("required = [\"license\", \"language\"]\n[allowed]\nlicense = [\"Apache-2.0\", \"mit\"]\nlanguage = [\"en\", \"fr\"]\n").unwrap();
        p.check(&Card::parse(CARD).unwrap()).unwrap();

        let e = p.check(&Card::parse("---\nlicense: gpl-3.0\nlanguage: en\n---\n").unwrap()).unwrap_err();
        assert!(matches!(&e, Error::CardPolicy { field, .. } if field == "license"), "{e}");
        let e = p.check(&Card::parse("---\nlicense: mit\n---\n").unwrap()).unwrap_err();
        assert!(matches!(&e, Error::CardPolicy { field, .. } if field == "language"), "{e}");
        let e = p.check(&Card::parse("---\nlicense: mit\nlanguage: [en, de]\n---\n").unwrap()).unwrap_err();
        assert!(matches!(&e, Error::CardPolicy { field, reason } if field == "language" && reason.contains("\"de\"")));
        let e = p.check(&Card::parse("---\nlicense: {a: 1}\nlanguage: en\n---\n").unwrap()).unwrap_err();
        assert!(matches!(&e, Error::CardPolicy { field, .. } if field == "license"), "{e}");
        let only_allowed = CardPolicy::from_toml("[allowed]\nlicense = [\"mit\"]\n").unwrap();
        let e = only_allowed.check(&Card::parse("---\nlicense: []\n---\n").unwrap()).unwrap_err();
        assert!(matches!(&e, Error::CardPolicy { field, .. } if field == "license"), "{e}");
        let e = p.check(&Card::parse("---\nlicense: ''\nlanguage: en\n---\n").unwrap()).unwrap_err();
        assert!(matches!(&e, Error::CardPolicy { field, .. } if field == "license"), "{e}");
    }

    #[test]
    fn policy_refuses_unknown_keys() {
        assert!(matches!(CardPolicy::from_toml("requird = []"), Err(Error::Card(_))));
    }
}
