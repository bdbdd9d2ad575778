//! Appraisal: verified claims against reference values — the step after
//! verification, kept apart from it (go-sev-guest `validate` vs `verify`).
//!
//! A [`Policy`] is TOML (the relying-party policy schema, shared with the client):
//!
//! ```toml
//! allow_simulated = false          # default false: simulated evidence is refused
//! allow_debug = false              # default false: debug TEEs are refused
//! allow_not_evaluated = ["AK"]     # checks the verifier could not make that this
//!                                  # policy waives (default: none — any fails)
//! tee = ["snp", "tdx", "az-snp-vtpm"]   # allowed evidence kinds (default: any)
//! report_data = "hex"              # exact 64 bytes expected in the hardware report
//!
//! [snp]
//! measurement = ["hex", ...]       # any of
//! host_data = ["hex"]
//! vmpl = [0]
//! min_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }
//! allow_migration_agent = false
//!
//! [tdx]
//! mr_td = ["hex"]                  # also rtmr0..rtmr3, mr_config_id, mr_owner,
//! rtmr1 = ["hex"]                  # mr_owner_config, mr_seam
//! tcb_status = ["UpToDate"]        # default ["UpToDate"]
//!
//! [tpm]
//! pcrs = { "7" = ["hex"] }
//!
//! [runtime]                        # allowed values of runtime event-log entries
//! "veil.model-manifest" = ["sha256:..."]
//! ```
//!
//! Every rule is optional ("not checked if absent"); a rule whose claim the
//! evidence does not carry (e.g. a TCB status of a quote verified without
//! collateral) fails, so a policy never passes on missing data.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::verify::{Claims, VerifiedEvidence};

/// Reference values. See the module documentation for the TOML form.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Accept evidence from the Veil simulator (never in production).
    #[serde(default)]
    pub allow_simulated: bool,
    /// Accept TEEs launched in debug mode (never in production).
    #[serde(default)]
    pub allow_debug: bool,
    /// Allowed evidence kinds; absent = any.
    #[serde(default)]
    pub tee: Option<Vec<String>>,
    /// Checks the verifier could not make that this policy accepts as missing, by
    /// the name before the colon of the verifier's "not evaluated" item: "nonce",
    /// "AK", "event log", "PCR values", "TCB status", "QE identity". Anything not
    /// evaluated and not listed here fails the appraisal.
    #[serde(default)]
    pub allow_not_evaluated: Vec<String>,
    /// Exact report data expected in the hardware report (hex, 64 bytes).
    #[serde(default)]
    pub report_data: Option<String>,
    /// SEV-SNP rules.
    #[serde(default)]
    pub snp: Option<SnpPolicy>,
    /// TDX rules.
    #[serde(default)]
    pub tdx: Option<TdxPolicy>,
    /// TPM rules.
    #[serde(default)]
    pub tpm: Option<TpmPolicy>,
    /// Allowed runtime event values, by event type.
    #[serde(default)]
    pub runtime: BTreeMap<String, Vec<String>>,
}

/// SEV-SNP reference values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpPolicy {
    /// Allowed launch measurements (hex, 48 bytes).
    pub measurement: Option<Vec<String>>,
    /// Allowed HOST_DATA (hex, 32 bytes).
    pub host_data: Option<Vec<String>>,
    /// Allowed VMPLs.
    pub vmpl: Option<Vec<u64>>,
    /// Minimum reported TCB, per component.
    pub min_tcb: Option<BTreeMap<String, u64>>,
    /// Allow a migration agent to be associated with the guest.
    #[serde(default)]
    pub allow_migration_agent: bool,
}

/// TDX reference values (hex, 48 bytes each).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxPolicy {
    /// Allowed MRTD values.
    pub mr_td: Option<Vec<String>>,
    /// Allowed RTMR0 values.
    pub rtmr0: Option<Vec<String>>,
    /// Allowed RTMR1 values.
    pub rtmr1: Option<Vec<String>>,
    /// Allowed RTMR2 values.
    pub rtmr2: Option<Vec<String>>,
    /// Allowed RTMR3 values.
    pub rtmr3: Option<Vec<String>>,
    /// Allowed MRCONFIGID values.
    pub mr_config_id: Option<Vec<String>>,
    /// Allowed MROWNER values.
    pub mr_owner: Option<Vec<String>>,
    /// Allowed MROWNERCONFIG values.
    pub mr_owner_config: Option<Vec<String>>,
    /// Allowed MRSEAM values (TDX module).
    pub mr_seam: Option<Vec<String>>,
    /// Acceptable platform TCB statuses.
    #[serde(default = "default_tcb_status")]
    pub tcb_status: Vec<String>,
}

impl Default for TdxPolicy {
    fn default() -> Self {
        Self {
            mr_td: None,
            rtmr0: None,
            rtmr1: None,
            rtmr2: None,
            rtmr3: None,
            mr_config_id: None,
            mr_owner: None,
            mr_owner_config: None,
            mr_seam: None,
            tcb_status: default_tcb_status(),
        }
    }
}

fn default_tcb_status() -> Vec<String> {
    vec!["UpToDate".to_string()]
}

/// TPM reference values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmPolicy {
    /// PCR index → allowed values (hex) in the quoted bank.
    #[serde(default)]
    pub pcrs: BTreeMap<String, Vec<String>>,
}

impl Policy {
    /// Parse a policy from TOML. Unknown keys are an error, so a misspelt rule is
    /// never silently ignored.
    pub fn from_toml(text: &str) -> std::result::Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

fn claims_json(v: &impl serde::Serialize) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::policy("claims", "serializable claims", e))
}

/// Find a claim by its dotted path ("policy.debug"); absent means absent, never a
/// search elsewhere in the claims.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key)).filter(|v| !v.is_null())
}

fn str_claim<'a>(v: &'a Value, section: &str, key: &str) -> Result<&'a str> {
    lookup(v, key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::policy(format!("{section}.{key}"), "a value", "absent from the verified claims"))
}

fn u64_claim(v: &Value, section: &str, key: &str) -> Result<u64> {
    lookup(v, key)
        .and_then(Value::as_u64)
        .ok_or_else(|| Error::policy(format!("{section}.{key}"), "a number", "absent from the verified claims"))
}

fn bool_claim(v: &Value, section: &str, key: &str) -> Result<bool> {
    lookup(v, key)
        .and_then(Value::as_bool)
        .ok_or_else(|| Error::policy(format!("{section}.{key}"), "a flag", "absent from the verified claims"))
}

fn one_of(field: String, allowed: &[String], found: &str) -> Result<()> {
    let norm = |s: &str| s.trim().trim_start_matches("0x").to_ascii_lowercase();
    if allowed.iter().any(|a| norm(a) == norm(found)) {
        Ok(())
    } else {
        Err(Error::policy(field, format!("one of [{}]", allowed.join(", ")), found))
    }
}

/// Appraise verified evidence against a policy. The first failed rule is returned,
/// naming the claim, the allowed values and the found value. A policy with
/// `[runtime]` rules needs the runtime event log: use [`appraise_with_events`].
pub fn appraise(evidence: &VerifiedEvidence, policy: &Policy) -> Result<()> {
    appraise_with_events(evidence, None, policy)
}

/// Appraise verified evidence and, for `[runtime]` rules, the runtime events that
/// replayed against it.
pub fn appraise_with_events(
    evidence: &VerifiedEvidence,
    events: Option<&crate::runtime_log::VerifiedEvents>,
    policy: &Policy,
) -> Result<()> {
    if evidence.simulated() && !policy.allow_simulated {
        return Err(Error::policy("simulated", "hardware evidence (allow_simulated = false)", "simulated evidence"));
    }
    // Whatever the verifier could not check fails, unless this policy waives it.
    for item in evidence.not_evaluated_items() {
        let name = item.split(':').next().unwrap_or(item).trim();
        if !policy.allow_not_evaluated.iter().any(|w| w.eq_ignore_ascii_case(name)) {
            return Err(Error::policy(
                "not_evaluated",
                format!("every check evaluated (or \"{name}\" in allow_not_evaluated)"),
                item,
            ));
        }
    }
    if !policy.runtime.is_empty() {
        let events = events.ok_or_else(|| {
            Error::policy("runtime", "a runtime event log replayed against the evidence", "no event log")
        })?;
        events.appraise(&policy.runtime)?;
    }
    let kind = claims_json(&evidence.tee())?;
    let kind = kind.as_str().unwrap_or_default().to_string();
    if let Some(allowed) = &policy.tee {
        one_of("tee".into(), allowed, &kind)?;
    }
    let (snp, tdx, tpm) = match evidence.claims() {
        Claims::Snp(c) => (Some(claims_json(c)?), None, None),
        Claims::Tdx(c) => (None, Some(claims_json(c)?), None),
        Claims::Tpm(c) => (None, None, Some(claims_json(c)?)),
        Claims::AzSnpVtpm { snp, tpm, .. } => (Some(claims_json(snp)?), None, Some(claims_json(tpm)?)),
        Claims::AzTdxVtpm { tdx, tpm, .. } => (None, Some(claims_json(tdx)?), Some(claims_json(tpm)?)),
        // A certificate chain alone (no report), or claims this version does not
        // know: nothing to appraise, so nothing passes.
        _ => return Err(Error::policy("claims", "a verified report or quote", kind)),
    };
    if let Some(want) = &policy.report_data {
        let found = match (&snp, &tdx) {
            (Some(c), _) => str_claim(c, "snp", "report_data")?,
            (_, Some(c)) => str_claim(c, "tdx", "report_data")?,
            _ => return Err(Error::policy("report_data", want, "no hardware report in this evidence")),
        };
        one_of("report_data".into(), std::slice::from_ref(want), found)?;
    }
    if let Some(c) = &snp {
        appraise_snp(c, policy)?;
    } else if policy.snp.is_some() {
        return Err(Error::policy("snp", "SEV-SNP evidence", kind));
    }
    if let Some(c) = &tdx {
        appraise_tdx(c, policy)?;
    } else if policy.tdx.is_some() {
        return Err(Error::policy("tdx", "TDX evidence", kind));
    }
    if let Some(p) = &policy.tpm {
        let Some(c) = &tpm else { return Err(Error::policy("tpm", "TPM evidence", kind)) };
        let pcrs = lookup(c, "pcrs").and_then(Value::as_object);
        // PCR values are claims only when the verifier was given them.
        for (idx, allowed) in &p.pcrs {
            let found = pcrs.and_then(|m| m.get(idx)).and_then(Value::as_str).ok_or_else(|| {
                Error::policy(format!("tpm.pcrs.{idx}"), "a quoted PCR value", "not quoted / not supplied")
            })?;
            one_of(format!("tpm.pcrs.{idx}"), allowed, found)?;
        }
    }
    Ok(())
}

fn appraise_snp(c: &Value, policy: &Policy) -> Result<()> {
    if !policy.allow_debug && bool_claim(c, "snp", "policy.debug")? {
        return Err(Error::policy("snp.policy.debug", "debug disallowed", "debug allowed by the guest policy"));
    }
    let allow_ma = policy.snp.as_ref().is_some_and(|p| p.allow_migration_agent);
    if !allow_ma && bool_claim(c, "snp", "policy.migrate_ma")? {
        return Err(Error::policy("snp.policy.migrate_ma", "no migration agent", "migration agent allowed"));
    }
    let Some(p) = &policy.snp else { return Ok(()) };
    if let Some(allowed) = &p.measurement {
        one_of("snp.measurement".into(), allowed, str_claim(c, "snp", "measurement")?)?;
    }
    if let Some(allowed) = &p.host_data {
        one_of("snp.host_data".into(), allowed, str_claim(c, "snp", "host_data")?)?;
    }
    if let Some(allowed) = &p.vmpl {
        let found = u64_claim(c, "snp", "vmpl")?;
        if !allowed.contains(&found) {
            return Err(Error::policy("snp.vmpl", format!("{allowed:?}"), found));
        }
    }
    if let Some(min) = &p.min_tcb {
        for (component, min_value) in min {
            let found = u64_claim(c, "snp", &format!("reported_tcb.{component}"))?;
            if found < *min_value {
                return Err(Error::policy(format!("snp.reported_tcb.{component}"), format!(">= {min_value}"), found));
            }
        }
    }
    Ok(())
}

fn appraise_tdx(c: &Value, policy: &Policy) -> Result<()> {
    if !policy.allow_debug && bool_claim(c, "tdx", "td_attributes_flags.debug")? {
        return Err(Error::policy("tdx.td_attributes.debug", "debug off", "debug on"));
    }
    let default = TdxPolicy::default();
    let p = policy.tdx.as_ref().unwrap_or(&default);
    match lookup(c, "tcb_status").and_then(Value::as_str) {
        Some(status) => one_of("tdx.tcb_status".into(), &p.tcb_status, status)?,
        // Only reachable when the policy waived "TCB status" (see appraise).
        None if policy.allow_not_evaluated.iter().any(|w| w.eq_ignore_ascii_case("TCB status")) => {}
        None => {
            return Err(Error::policy(
                "tdx.tcb_status",
                format!("one of {:?}", p.tcb_status),
                "not evaluated (no collateral)",
            ));
        }
    }
    let rules: [(&str, &Option<Vec<String>>); 9] = [
        ("mr_td", &p.mr_td),
        ("rtmr0", &p.rtmr0),
        ("rtmr1", &p.rtmr1),
        ("rtmr2", &p.rtmr2),
        ("rtmr3", &p.rtmr3),
        ("mr_config_id", &p.mr_config_id),
        ("mr_owner", &p.mr_owner),
        ("mr_owner_config", &p.mr_owner_config),
        ("mr_seam", &p.mr_seam),
    ];
    for (key, allowed) in rules {
        if let Some(allowed) = allowed {
            one_of(format!("tdx.{key}"), allowed, str_claim(c, "tdx", key)?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_policy_keys_are_refused() {
        assert!(Policy::from_toml("allow_simulated = true\n").is_ok());
        assert!(Policy::from_toml("alow_simulated = true\n").is_err());
        assert!(Policy::from_toml("[tdx]\nmrtd = [\"00\"]\n").is_err());
    }

    #[test]
    fn tdx_default_status_is_up_to_date_only() {
        let p = Policy::from_toml("[tdx]\n").unwrap();
        assert_eq!(p.tdx.unwrap().tcb_status, vec!["UpToDate".to_string()]);
    }

    fn vectors() -> std::path::PathBuf {
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors"))
    }

    fn read(p: &str) -> Vec<u8> {
        std::fs::read(vectors().join(p)).unwrap()
    }

    fn at(s: &str) -> crate::Options {
        crate::Options::at(time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap())
    }

    fn snp(dir: &str) -> VerifiedEvidence {
        use crate::Verifier;
        let (r, v, c) = (
            read(&format!("{dir}/report.bin")),
            read(&format!("{dir}/vcek.der")),
            read(&format!("{dir}/cert_chain.pem")),
        );
        let ev = crate::snp::SnpEvidence { report: &r, vcek: Some(&v), vlek: None, chain: Some(&c) };
        crate::snp::SnpVerifier::default().verify(&ev, &at("2025-06-01T00:00:00Z")).unwrap()
    }

    fn tdx(dir: &str, with_collateral: bool, when: &str) -> VerifiedEvidence {
        use crate::Verifier;
        let q = read(&format!("{dir}/quote.bin"));
        let coll = with_collateral
            .then(|| crate::tdx::Collateral::from_json(&read(&format!("{dir}/collateral.json"))).unwrap());
        let ev = crate::tdx::TdxEvidence { quote: &q, collateral: coll.as_ref(), root: None };
        crate::tdx::TdxVerifier::default().verify(&ev, &at(when)).unwrap()
    }

    #[test]
    fn snp_reference_values() {
        let v = snp("sev-snp/trustee-milan-vcek-v2");
        let m = "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c";
        let ok = Policy::from_toml(&format!(
            "tee = [\"snp\"]\n[snp]\nmeasurement = [\"{m}\"]\nvmpl = [0]\nmin_tcb = {{ snp = 8, microcode = 115 }}\n"
        ))
        .unwrap();
        appraise(&v, &ok).unwrap();
        let e = appraise(&v, &Policy::from_toml("[snp]\nmeasurement = [\"00\"]\n").unwrap()).unwrap_err();
        assert!(e.to_string().contains("snp.measurement: expected one of [00], found a1f39304"), "{e}");
        let e = appraise(&v, &Policy::from_toml("[snp]\nmin_tcb = { snp = 9 }\n").unwrap()).unwrap_err();
        assert!(e.to_string().contains("snp.reported_tcb.snp: expected >= 9, found 8"), "{e}");
        let e = appraise(&v, &Policy::from_toml("[snp]\nmin_tcb = { nonsense = 1 }\n").unwrap()).unwrap_err();
        assert!(e.to_string().contains("absent from the verified claims"), "{e}");
        let e = appraise(&v, &Policy::from_toml("tee = [\"tdx\"]\n").unwrap()).unwrap_err();
        assert!(e.to_string().contains("tee"), "{e}");
        let e = appraise(&v, &Policy::from_toml("[tdx]\n").unwrap()).unwrap_err();
        assert!(e.to_string().contains("TDX evidence"), "{e}");
    }

    #[test]
    fn debug_guests_are_refused_unless_allowed() {
        // go-sev-guest's report has policy 0xb0000: DEBUG allowed.
        let v = snp("sev-snp/gosevguest-milan-attestation");
        let e = appraise(&v, &Policy::default()).unwrap_err();
        assert!(e.to_string().contains("snp.policy.debug"), "{e}");
        appraise(&v, &Policy::from_toml("allow_debug = true\n").unwrap()).unwrap();
        // trustee's tdx_quote_4 is a debug TD.
        let v = tdx("tdx/trustee-tdx_quote_4", false, "2023-06-15T00:00:00Z");
        let waive = Policy::from_toml("allow_not_evaluated = [\"TCB status\", \"QE identity\"]\n").unwrap();
        let e = appraise(&v, &waive).unwrap_err();
        assert!(e.to_string().contains("tdx.td_attributes.debug"), "{e}");
    }

    #[test]
    fn tdx_tcb_status_must_be_evaluated_and_allowed() {
        let when = "2025-07-19T10:00:34Z";
        let v = tdx("tdx/dcapqvl-tdx_quote", true, when);
        appraise(&v, &Policy::default()).unwrap();
        let mr_td = "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7";
        appraise(&v, &Policy::from_toml(&format!("[tdx]\nmr_td = [\"{mr_td}\"]\n")).unwrap()).unwrap();
        let e = appraise(&v, &Policy::from_toml("[tdx]\nrtmr3 = [\"11\"]\n").unwrap()).unwrap_err();
        assert!(e.to_string().contains("tdx.rtmr3"), "{e}");
        let e = appraise(&v, &Policy::from_toml("[tdx]\ntcb_status = [\"OutOfDate\"]\n").unwrap()).unwrap_err();
        assert!(e.to_string().contains("tdx.tcb_status"), "{e}");
        // Without collateral the TCB status is not evaluated, so any TDX policy fails.
        let v = tdx("tdx/dcapqvl-tdx_quote", false, when);
        let e = appraise(&v, &Policy::default()).unwrap_err();
        assert!(e.to_string().contains("TCB status: not evaluated, no collateral"), "{e}");
        // Waived explicitly, the status is not required (and the rest still applies).
        let waive = "allow_not_evaluated = [\"TCB status\", \"QE identity\"]\n";
        appraise(&v, &Policy::from_toml(waive).unwrap()).unwrap();
        let e = appraise(&v, &Policy::from_toml(&format!("{waive}[tdx]\nrtmr3 = [\"11\"]\n")).unwrap()).unwrap_err();
        assert!(e.to_string().contains("tdx.rtmr3"), "{e}");
    }

    #[test]
    fn tpm_pcrs() {
        use crate::Verifier;
        let d = "tpm/gotpmtools-gce-cos85-nonce9009";
        let (a, s, k) = (
            read(&format!("{d}/quote_sha256.tpms_attest.bin")),
            read(&format!("{d}/quote_sha256.tpmt_signature.bin")),
            read(&format!("{d}/ak_pub.pem")),
        );
        let pcrs =
            crate::tpm::PcrValues::from_quotes_json(&read(&format!("{d}/quotes.json")), crate::tpm::HashAlg::Sha256)
                .unwrap();
        let ev = crate::tpm::TpmEvidence {
            attest: &a,
            signature: &s,
            ak: &k,
            ak_chain: None,
            pcrs: Some(pcrs),
            event_log: None,
        };
        // A relying party that supplies the AK itself (no certificate) and checks no
        // nonce gets a refusal from the default policy, naming what was not checked.
        let unchecked = crate::tpm::TpmVerifier.verify(&ev, &at("2025-06-01T00:00:00Z")).unwrap();
        let e = appraise(&unchecked, &Policy::default()).unwrap_err();
        assert!(e.to_string().contains("nonce: not checked"), "{e}");
        let v = crate::tpm::TpmVerifier.verify(&ev, &at("2025-06-01T00:00:00Z").with_nonce(vec![0x90, 0x09])).unwrap();
        let e = appraise(&v, &Policy::default()).unwrap_err();
        assert!(e.to_string().contains("AK: not bound to a certificate"), "{e}");
        let waive = "allow_not_evaluated = [\"AK\", \"event log\"]\n";
        let pcr0 = "0f35c214608d93c7a6e68ae7359b4a8be5a0e99eea9107ece427c4dea4e439cf";
        appraise(&v, &Policy::from_toml(&format!("{waive}[tpm]\npcrs = {{ \"0\" = [\"{pcr0}\"] }}\n")).unwrap())
            .unwrap();
        let e =
            appraise(&v, &Policy::from_toml(&format!("{waive}[tpm.pcrs]\n\"0\" = [\"00\"]\n")).unwrap()).unwrap_err();
        assert!(e.to_string().contains("tpm.pcrs.0"), "{e}");
        let e =
            appraise(&v, &Policy::from_toml(&format!("{waive}[tpm.pcrs]\n\"24\" = [\"00\"]\n")).unwrap()).unwrap_err();
        assert!(e.to_string().contains("not quoted"), "{e}");
    }

    #[test]
    fn a_chain_without_a_report_has_nothing_to_appraise() {
        let d = "sev-snp/virtee-turin-vcek-chain";
        let (v, c) = (read(&format!("{d}/vcek.der")), read(&format!("{d}/cert_chain.pem")));
        let ev =
            crate::snp::SnpVerifier::default().verify_chain_only(&v, false, &c, &at("2025-06-01T00:00:00Z")).unwrap();
        let everything = Policy::from_toml("allow_not_evaluated = [\"SNP report\"]\n").unwrap();
        let e = appraise(&ev, &everything).unwrap_err();
        assert!(e.to_string().contains("a verified report or quote"), "{e}");
    }

    #[test]
    fn runtime_rules_need_a_replayed_event_log() {
        use crate::runtime_log::{Event, Register, RuntimeLog, types};
        let v = snp("sev-snp/trustee-milan-vcek-v2");
        let p = Policy::from_toml("[runtime]\n\"veil.model-manifest\" = [\"sha256:bb\"]\n").unwrap();
        let e = appraise(&v, &p).unwrap_err();
        assert!(e.to_string().contains("no event log"), "{e}");
        let mut log = RuntimeLog::default();
        log.push(Event::new(Register::VEIL_PCR, types::MODEL_MANIFEST, "sha256:bb"));
        let events = log.verify(&log.replay().unwrap()).unwrap();
        appraise_with_events(&v, Some(&events), &p).unwrap();
        let mut other = RuntimeLog::default();
        other.push(Event::new(Register::VEIL_PCR, types::MODEL_MANIFEST, "sha256:cc"));
        let events = other.verify(&other.replay().unwrap()).unwrap();
        assert!(appraise_with_events(&v, Some(&events), &p).is_err());
    }

    #[test]
    fn one_of_normalises_hex_case() {
        assert!(one_of("x".into(), &["ABcd".into()], "abcd").is_ok());
        let e = one_of("x".into(), &["00".into()], "01").unwrap_err();
        assert!(e.to_string().contains("x: expected one of [00], found 01"), "{e}");
    }
}
