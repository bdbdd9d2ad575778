//! Compare a verification outcome with what a case expects, and render results.

use serde_json::Value;
use veil_attestation::{Error, VerifiedEvidence};

use crate::cases::Case;

/// The verdict on one case.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Whether the outcome is what the case expects.
    pub matched: bool,
    /// One line: what happened.
    pub summary: String,
}

/// Look up a claim by key in the claims JSON, searching nested objects (Azure
/// evidence nests the TDX claims under "tdx").
fn find_claim<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m.get(key).or_else(|| m.values().find_map(|x| find_claim(x, key))),
        _ => None,
    }
}

/// Judge `outcome` against `case`.
pub fn judge(case: &Case, outcome: &Result<VerifiedEvidence, Error>) -> anyhow::Result<Verdict> {
    let want_accept = case.expects_accept()?;
    Ok(match outcome {
        Ok(v) => {
            let claims = serde_json::to_value(v.claims())?;
            let status = find_claim(&claims, "tcb_status").and_then(Value::as_str).map(str::to_owned);
            let mut problems = Vec::new();
            if !want_accept {
                problems.push(format!("accepted, but expected a refusal ({})", case.reason.as_deref().unwrap_or("?")));
            }
            if let Some(want) = &case.expect_status {
                if status.as_deref() != Some(want.as_str()) {
                    problems.push(format!("TCB status {status:?}, expected {want}"));
                }
            }
            if let Some(want) = &case.expect_qe_status {
                let found = find_claim(&claims, "qe_tcb_status").and_then(Value::as_str);
                if found != Some(want.as_str()) {
                    problems.push(format!("QE status {found:?}, expected {want}"));
                }
            }
            if let Some(want) = &case.expect_advisories {
                let found: Vec<String> = find_claim(&claims, "advisory_ids")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                let (mut a, mut b) = (found.clone(), want.clone());
                a.sort();
                b.sort();
                if a != b {
                    problems.push(format!("advisories {found:?}, expected {want:?}"));
                }
            }
            let mut summary = format!("accepted{}", status.map(|s| format!(", TCB {s}")).unwrap_or_default());
            if v.simulated() {
                summary.push_str(", SIMULATED");
            }
            if !v.not_evaluated_items().is_empty() {
                summary.push_str(&format!("; not evaluated: {}", v.not_evaluated_items().join("; ")));
            }
            if !problems.is_empty() {
                summary = format!("{summary} — {}", problems.join("; "));
            }
            Verdict { matched: problems.is_empty(), summary }
        }
        Err(e) => {
            let mut problems = Vec::new();
            if want_accept {
                problems.push("refused, but expected acceptance".to_string());
            }
            // A reject case that names a TCB status (e.g. NoMatchingTcbLevel) must be
            // refused for that status.
            if let (false, Some(want)) = (want_accept, &case.expect_status) {
                if !e.to_string().contains(want.as_str()) {
                    problems.push(format!("refusal does not name TCB status {want}"));
                }
            }
            let mut summary = format!("refused [{}] {e}", serde_json::to_value(e.kind())?.as_str().unwrap_or("?"));
            if !problems.is_empty() {
                summary = format!("{summary} — {}", problems.join("; "));
            }
            Verdict { matched: problems.is_empty(), summary }
        }
    })
}

/// The JSON printed by `--json`: the verified evidence, or the typed error.
pub fn to_json(outcome: &Result<VerifiedEvidence, Error>) -> Value {
    match outcome {
        Ok(v) => serde_json::json!({ "verified": true, "evidence": v }),
        Err(e) => serde_json::json!({
            "verified": false,
            "error": { "kind": e.kind(), "message": e.to_string() },
        }),
    }
}
