//! Rego policies (regorus): the attestation policy maps verified claims to an EAR
//! trustworthiness vector; the resource policy decides, from the token's claims and the
//! requested path, whether to release. Both deny by default.

use std::collections::BTreeMap;

use serde_json::Value;

/// The default attestation policy.
pub const DEFAULT_ATTESTATION_POLICY: &str = include_str!("../../policies/attestation.rego");
/// The default resource policy.
pub const DEFAULT_RESOURCE_POLICY: &str = include_str!("../../policies/resource.rego");

/// EAR claim names and the Rego rules that produce them.
const VECTOR_RULES: [(&str, &str); 8] = [
    ("instance-identity", "instance_identity"),
    ("configuration", "configuration"),
    ("executables", "executables"),
    ("file-system", "file_system"),
    ("hardware", "hardware"),
    ("runtime-opaque", "runtime_opaque"),
    ("storage-opaque", "storage_opaque"),
    ("sourced-data", "sourced_data"),
];

/// A policy error (a bad policy, or a failed evaluation).
#[derive(Debug, thiserror::Error)]
#[error("policy: {0}")]
pub struct PolicyError(pub String);

/// A policy parsed once with its data loaded; each evaluation works on a clone, which
/// costs far less than parsing the policy again.
#[derive(Clone)]
pub struct Prepared {
    engine: regorus::Engine,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared")
    }
}

impl Prepared {
    /// Parses `rego` and loads `data`.
    pub fn new(rego: &str, data: &Value) -> Result<Self, PolicyError> {
        let mut e = regorus::Engine::new();
        e.add_policy("policy.rego".into(), rego.into()).map_err(|err| PolicyError(err.to_string()))?;
        e.add_data(regorus::Value::from(data.clone())).map_err(|err| PolicyError(err.to_string()))?;
        // Analyse and schedule the modules now, once: regorus does it on an engine's
        // first evaluation, and every request evaluates a clone, so without this each
        // request would pay for the analysis again (half of the broker's policy cost).
        e.eval_bool_query("true".into(), false).map_err(|err| PolicyError(err.to_string()))?;
        Ok(Self { engine: e })
    }

    fn with_input(&self, input: &Value) -> regorus::Engine {
        let mut e = self.engine.clone();
        e.set_input(regorus::Value::from(input.clone()));
        e
    }

    /// Evaluates an attestation policy: the trustworthiness vector.
    pub fn trust_vector(&self, input: &Value) -> Result<BTreeMap<String, i8>, PolicyError> {
        let mut e = self.with_input(input);
        // One query for the whole package: rules the policy does not define are absent (0).
        let results = e.eval_query("data.policy".into(), false).map_err(|err| PolicyError(err.to_string()))?;
        let package = match results.result.first().and_then(|r| r.expressions.first()) {
            Some(x) => to_json(&x.value)?,
            None => Value::Null,
        };
        let mut out = BTreeMap::new();
        for (claim, rule) in VECTOR_RULES {
            let n = match package.get(rule) {
                None | Some(Value::Null) => 0,
                Some(Value::Number(n)) => n
                    .as_i64()
                    .and_then(|n| i8::try_from(n).ok())
                    .filter(|n| (-127..=127).contains(n))
                    .ok_or_else(|| PolicyError(format!("{rule} = {n}: not an AR4SI value")))?,
                Some(other) => return Err(PolicyError(format!("{rule} = {other}: not a number"))),
            };
            out.insert(claim.to_owned(), n);
        }
        Ok(out)
    }

    /// Evaluates a resource policy: `Ok(())` to allow, `Err(reasons)` to deny.
    pub fn decide(&self, input: &Value) -> Result<Result<(), Vec<String>>, PolicyError> {
        let mut e = self.with_input(input);
        let allow = to_json(&e.eval_rule("data.policy.allow".into()).map_err(|err| PolicyError(err.to_string()))?)?;
        if allow == Value::Bool(true) {
            return Ok(Ok(()));
        }
        let reasons = match e.eval_rule("data.policy.deny".into()) {
            Ok(v) => match to_json(&v)? {
                Value::Array(a) => {
                    a.into_iter().map(|r| r.as_str().map_or_else(|| r.to_string(), str::to_owned)).collect()
                }
                _ => Vec::new(),
            },
            Err(_) => Vec::new(),
        };
        Ok(Err(if reasons.is_empty() { vec!["denied by the resource policy".to_owned()] } else { reasons }))
    }
}

fn to_json(v: &regorus::Value) -> Result<Value, PolicyError> {
    let s = v.to_json_str().map_err(|e| PolicyError(e.to_string()))?;
    serde_json::from_str(&s).map_err(|e| PolicyError(e.to_string()))
}

/// Checks that a policy parses (before it is stored).
pub fn check(rego: &str) -> Result<(), PolicyError> {
    let mut e = regorus::Engine::new();
    e.add_policy("policy.rego".into(), rego.into()).map(|_| ()).map_err(|err| PolicyError(err.to_string()))
}

/// Evaluates an attestation policy once (parsing it): the trustworthiness vector.
pub fn trust_vector(rego: &str, data: &Value, input: &Value) -> Result<BTreeMap<String, i8>, PolicyError> {
    Prepared::new(rego, data)?.trust_vector(input)
}

/// Evaluates a resource policy once (parsing it).
pub fn decide(rego: &str, data: &Value, input: &Value) -> Result<Result<(), Vec<String>>, PolicyError> {
    Prepared::new(rego, data)?.decide(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(measurement: &str, debug: bool) -> Value {
        json!({"tee": "snp", "simulated": true, "debug": debug, "measurement": measurement, "tcb": "x",
               "snp_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}, "init_data": "00"})
    }

    #[test]
    fn default_attestation_policy() {
        let data = json!({"reference": {"measurements": ["aa"]}});
        let v = trust_vector(DEFAULT_ATTESTATION_POLICY, &data, &input("aa", false)).unwrap();
        assert_eq!((v["hardware"], v["configuration"], v["executables"], v["file-system"]), (2, 2, 2, 0));
        let v = trust_vector(DEFAULT_ATTESTATION_POLICY, &data, &input("bb", false)).unwrap();
        assert_eq!(v["executables"], 96);
        let v = trust_vector(DEFAULT_ATTESTATION_POLICY, &data, &input("aa", true)).unwrap();
        assert_eq!(v["configuration"], 97);
        // No reference values: unmeasured is a warning, unless explicitly allowed.
        let v = trust_vector(DEFAULT_ATTESTATION_POLICY, &json!({}), &input("aa", false)).unwrap();
        assert_eq!(v["executables"], 33);
        let dev = json!({"reference": {"allow_any_measurement": true}});
        assert_eq!(trust_vector(DEFAULT_ATTESTATION_POLICY, &dev, &input("aa", false)).unwrap()["executables"], 2);
        let min = json!({"reference": {"measurements": ["aa"], "min_snp_tcb": {"snp": 9}}});
        assert_eq!(trust_vector(DEFAULT_ATTESTATION_POLICY, &min, &input("aa", false)).unwrap()["hardware"], 96);
    }

    #[test]
    fn tpm_rules_of_the_default_attestation_policy() {
        let tpm = |ak: &str, pcr23: &str| {
            json!({"tee": "tpm", "simulated": false, "debug": false, "measurement": "dd",
                   "tpm": {"ak_sha256": ak, "ak_bound_by": "none", "pcr_digest": "dd", "pcrs": {"23": pcr23}}})
        };
        // A bare TPM with an AK nobody listed is contraindicated; a listed one affirms.
        let none = json!({"reference": {"measurements": ["dd"]}});
        assert_eq!(trust_vector(DEFAULT_ATTESTATION_POLICY, &none, &tpm("a1", "00")).unwrap()["hardware"], 97);
        let listed = json!({"reference": {"measurements": ["dd"], "tpm_aks": ["a1"]}});
        let v = trust_vector(DEFAULT_ATTESTATION_POLICY, &listed, &tpm("a1", "00")).unwrap();
        assert_eq!((v["hardware"], v["executables"], v["file-system"]), (2, 2, 0));
        // Reference PCRs: matched affirms file-system, a mismatch contraindicates it,
        // and evidence without a TPM when PCRs are required fails too.
        let pcrs = json!({"reference": {"measurements": ["dd", "aa"], "tpm_aks": ["a1"], "tpm_pcrs": {"23": "77"}}});
        assert_eq!(trust_vector(DEFAULT_ATTESTATION_POLICY, &pcrs, &tpm("a1", "77")).unwrap()["file-system"], 2);
        assert_eq!(trust_vector(DEFAULT_ATTESTATION_POLICY, &pcrs, &tpm("a1", "78")).unwrap()["file-system"], 96);
        assert_eq!(trust_vector(DEFAULT_ATTESTATION_POLICY, &pcrs, &input("aa", false)).unwrap()["file-system"], 96);
        // The AK rule is for bare TPMs only: an SNP guest needs no listed AK.
        assert_eq!(trust_vector(DEFAULT_ATTESTATION_POLICY, &none, &input("dd", false)).unwrap()["hardware"], 2);
    }

    #[test]
    fn default_resource_policy() {
        let claims = |status: &str, sim: bool, debug: bool| {
            json!({"submods": {"cpu0": {"ear.status": status, "veil": {"simulated": sim, "debug": debug}}},
                   "resource": {"repository": "veil", "type": "model-key", "tag": "ab"}, "revoked": ["cd"]})
        };
        let allow_sim = json!({"reference": {"allow_simulated": true}});
        assert_eq!(decide(DEFAULT_RESOURCE_POLICY, &allow_sim, &claims("affirming", true, false)).unwrap(), Ok(()));
        let r = decide(DEFAULT_RESOURCE_POLICY, &json!({}), &claims("affirming", true, false)).unwrap().unwrap_err();
        assert_eq!(r, ["simulated evidence is not allowed"]);
        let r = decide(DEFAULT_RESOURCE_POLICY, &allow_sim, &claims("warning", true, true)).unwrap().unwrap_err();
        assert!(r.contains(&"debug guest".to_owned()) && r.iter().any(|x| x.contains("warning")), "{r:?}");
        let mut revoked = claims("affirming", false, false);
        revoked["revoked"] = json!(["ab"]);
        let r = decide(DEFAULT_RESOURCE_POLICY, &json!({}), &revoked).unwrap().unwrap_err();
        assert_eq!(r, ["model revoked"]);
        let r = decide(DEFAULT_RESOURCE_POLICY, &json!({}), &json!({"submods": {}})).unwrap().unwrap_err();
        assert_eq!(r, ["no cpu0 attestation result"]);
        assert!(check("package policy\nallow if {").is_err());
    }
}
