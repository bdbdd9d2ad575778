//! The Veil runtime event log: what the runtime loaded after launch (its binary and
//! config digests, container image digests, each model's manifest digest and
//! signer), one JSON record per line, in the spirit of the TCG Canonical Event Log.
//!
//! ```text
//! {"register":"rtmr3","alg":"sha384","type":"veil.model-manifest","content":"sha256:ab..","digest":"<hex>"}
//! ```
//!
//! Each record's digest is `H("veil-runtime-event/v1" ‖ 0x00 ‖ type ‖ 0x00 ‖ content)`
//! with the register's hash (SHA-384 for TDX RTMRs, SHA-256 for the TPM's SHA-256
//! bank): domain-separated, so an event of one type can never be replayed as
//! another. The register starts at zero and each event extends it
//! (`new = H(old ‖ digest)`). A verifier replays the whole log and compares the
//! result with the register value from *verified* evidence before trusting any
//! event; only then are the events handed out, as [`VerifiedEvents`].
//!
//! Veil extends RTMR3 (TDX; RTMR0–2 belong to firmware, bootloader and kernel) and
//! PCR 23 (TPM; the application PCR, which starts at zero) by default.
//!
//! The format is Veil's own: the TCG CEL JSON encoding carries firmware-specific
//! content types and no domain separation for application events, and no crate
//! implements it; a line-oriented JSON record is simple to audit and to fuzz.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::error::{Error, Result};

/// Domain-separation prefix of every event digest.
pub const DOMAIN: &[u8] = b"veil-runtime-event/v1";

/// Upper bound on the number of events in a log (a log is small: a handful of
/// events per model load).
pub const MAX_EVENTS: usize = 4096;

/// Upper bound on one event's content.
pub const MAX_CONTENT: usize = 4096;

/// A measurement register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Register {
    /// TDX runtime measurement register 0–3 (SHA-384).
    Rtmr(u8),
    /// TPM PCR 0–23 (SHA-256 bank).
    Pcr(u8),
}

impl Register {
    /// The register Veil extends on TDX.
    pub const VEIL_RTMR: Register = Register::Rtmr(3);
    /// The register Veil extends on a TPM.
    pub const VEIL_PCR: Register = Register::Pcr(23);

    /// Digest length of this register's bank.
    pub fn digest_len(self) -> usize {
        match self {
            Register::Rtmr(_) => 48,
            Register::Pcr(_) => 32,
        }
    }

    fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Register::Rtmr(_) => {
                let mut h = sha2::Sha384::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
            Register::Pcr(_) => {
                let mut h = sha2::Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
        }
    }

    fn alg_name(self) -> &'static str {
        match self {
            Register::Rtmr(_) => "sha384",
            Register::Pcr(_) => "sha256",
        }
    }

    /// `H(old ‖ digest)`: the extend operation of RTMRs and PCRs.
    pub fn extend(self, old: &[u8], digest: &[u8]) -> Vec<u8> {
        self.hash(&[old, digest])
    }
}

impl TryFrom<String> for Register {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        let parse = |n: &str, max: u8| -> std::result::Result<u8, String> {
            match n.parse::<u8>() {
                Ok(i) if i <= max => Ok(i),
                _ => Err(format!("register {s:?}: index out of range 0..={max}")),
            }
        };
        if let Some(n) = s.strip_prefix("rtmr") {
            Ok(Register::Rtmr(parse(n, 3)?))
        } else if let Some(n) = s.strip_prefix("pcr") {
            Ok(Register::Pcr(parse(n, 23)?))
        } else {
            Err(format!("register {s:?}: expected rtmrN or pcrN"))
        }
    }
}

impl From<Register> for String {
    fn from(r: Register) -> String {
        match r {
            Register::Rtmr(i) => format!("rtmr{i}"),
            Register::Pcr(i) => format!("pcr{i}"),
        }
    }
}

/// One runtime event, as it appears on a line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The register extended.
    pub register: Register,
    /// The register bank's hash ("sha384" for RTMRs, "sha256" for PCRs).
    pub alg: String,
    /// Event type, e.g. `veil.model-manifest`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The measured value, e.g. `sha256:<hex>`.
    pub content: String,
    /// Hex digest extended into the register.
    pub digest: String,
}

/// Well-known event types.
pub mod types {
    /// Digest of the runtime binary.
    pub const BINARY: &str = "veil.binary";
    /// Digest of the runtime configuration.
    pub const CONFIG: &str = "veil.config";
    /// A container image digest.
    pub const CONTAINER_IMAGE: &str = "veil.container-image";
    /// A loaded model's manifest digest (OMS subject digest).
    pub const MODEL_MANIFEST: &str = "veil.model-manifest";
    /// A loaded model's signer (SHA-256 of the signer's SPKI).
    pub const MODEL_SIGNER: &str = "veil.model-signer";
    /// A loaded model's card (SHA-256 of the card file, as the signed manifest lists it).
    pub const MODEL_CARD: &str = "veil.model-card";
}

impl Event {
    /// Make an event (the runtime side): computes the digest.
    pub fn new(register: Register, event_type: &str, content: &str) -> Self {
        let digest = event_digest(register, event_type, content);
        Self {
            register,
            alg: register.alg_name().to_string(),
            event_type: event_type.to_string(),
            content: content.to_string(),
            digest: hex::encode(digest),
        }
    }

    /// The digest bytes this event extends.
    pub fn digest_bytes(&self) -> Result<Vec<u8>> {
        hex::decode(&self.digest).map_err(|e| Error::EventLog(format!("event digest is not hex: {e}")))
    }
}

/// The digest of an event of `event_type` with `content` for `register`'s bank.
pub fn event_digest(register: Register, event_type: &str, content: &str) -> Vec<u8> {
    register.hash(&[DOMAIN, &[0], event_type.as_bytes(), &[0], content.as_bytes()])
}

/// A parsed (not yet trusted) runtime event log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeLog {
    events: Vec<Event>,
}

impl RuntimeLog {
    /// Parse a log: one JSON record per line; blank lines are ignored. Every record
    /// is checked on its own (register/alg agree, digest recomputes from type and
    /// content); the log as a whole is trusted only after [`RuntimeLog::verify`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes).map_err(|e| Error::EventLog(format!("not UTF-8: {e}")))?;
        let mut events = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line_no = n.saturating_add(1);
            if line.trim().is_empty() {
                continue;
            }
            if events.len() >= MAX_EVENTS {
                return Err(Error::EventLog(format!("more than {MAX_EVENTS} events")));
            }
            let ev: Event = serde_json::from_str(line)
                .map_err(|e| Error::EventLog(format!("line {line_no}: not an event record: {e}")))?;
            if ev.alg != ev.register.alg_name() {
                return Err(Error::EventLog(format!(
                    "line {line_no}: {} uses {}, record says {:?}",
                    String::from(ev.register),
                    ev.register.alg_name(),
                    ev.alg
                )));
            }
            if ev.content.len() > MAX_CONTENT || ev.event_type.len() > 256 {
                return Err(Error::EventLog(format!("line {line_no}: event too large")));
            }
            if ev.event_type.contains('\0') || ev.content.contains('\0') {
                return Err(Error::EventLog(format!("line {line_no}: NUL in type or content")));
            }
            let want = hex::encode(event_digest(ev.register, &ev.event_type, &ev.content));
            if want != ev.digest.to_ascii_lowercase() {
                return Err(Error::EventLog(format!(
                    "line {line_no}: digest {} does not match its type and content (expected {want})",
                    ev.digest
                )));
            }
            events.push(ev);
        }
        Ok(Self { events })
    }

    /// Append an event (runtime side).
    pub fn push(&mut self, ev: Event) {
        self.events.push(ev);
    }

    /// Serialize: one JSON record per line.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for ev in &self.events {
            // Serializing these plain strings cannot fail.
            if let Ok(line) = serde_json::to_string(ev) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }

    /// The events, untrusted.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Replay: the value of every register the log touches, from zero.
    pub fn replay(&self) -> Result<BTreeMap<Register, Vec<u8>>> {
        let mut regs: BTreeMap<Register, Vec<u8>> = BTreeMap::new();
        for ev in &self.events {
            let d = ev.digest_bytes()?;
            let old = regs.entry(ev.register).or_insert_with(|| vec![0u8; ev.register.digest_len()]);
            *old = ev.register.extend(old, &d);
        }
        Ok(regs)
    }

    /// Replay and compare with register values taken from verified evidence. Every
    /// register the log touches must be present in `registers` and equal the
    /// replayed value; only then are the events returned as trusted.
    pub fn verify(&self, registers: &BTreeMap<Register, Vec<u8>>) -> Result<VerifiedEvents> {
        for (reg, value) in self.replay()? {
            let name = String::from(reg);
            let found = registers
                .get(&reg)
                .ok_or_else(|| Error::EventLog(format!("{name}: the evidence does not report this register")))?;
            if *found != value {
                return Err(Error::EventLog(format!(
                    "{name}: log replays to {}, evidence reports {}",
                    hex::encode(&value),
                    hex::encode(found)
                )));
            }
        }
        Ok(VerifiedEvents { events: self.events.clone() })
    }
}

/// The measurement registers that verified evidence reports: RTMR0–3 of a TD
/// quote, and the quoted PCRs of a TPM quote's SHA-256 bank.
pub fn registers_of(evidence: &crate::VerifiedEvidence) -> Result<BTreeMap<Register, Vec<u8>>> {
    use crate::Claims;
    let mut regs = BTreeMap::new();
    let hexv = |s: &str| hex::decode(s).map_err(|e| Error::EventLog(format!("register claim is not hex: {e}")));
    let mut tdx = |c: &crate::tdx::TdxClaims| -> Result<()> {
        for (i, v) in [&c.rtmr0, &c.rtmr1, &c.rtmr2, &c.rtmr3].into_iter().enumerate() {
            let i = u8::try_from(i).map_err(|_| Error::EventLog("RTMR index".into()))?;
            regs.insert(Register::Rtmr(i), hexv(v)?);
        }
        Ok(())
    };
    let tpm = |c: &crate::tpm::TpmClaims, regs: &mut BTreeMap<Register, Vec<u8>>| -> Result<()> {
        if c.pcr_bank != Some(crate::tpm::HashAlg::Sha256) {
            return Ok(());
        }
        for (i, v) in c.pcrs.iter().flatten() {
            let i = u8::try_from(*i).map_err(|_| Error::EventLog(format!("PCR index {i}")))?;
            regs.insert(Register::Pcr(i), hexv(v)?);
        }
        Ok(())
    };
    match evidence.claims() {
        Claims::Tdx(c) => tdx(c)?,
        Claims::Tpm(c) => tpm(c, &mut regs)?,
        Claims::AzTdxVtpm { tdx: t, tpm: p, .. } => {
            tdx(t)?;
            tpm(p, &mut regs)?;
        }
        Claims::AzSnpVtpm { tpm: p, .. } => tpm(p, &mut regs)?,
        _ => {}
    }
    Ok(regs)
}

impl RuntimeLog {
    /// Replay against *verified* evidence. Every register the log touches must be
    /// reported by the evidence and equal the replay; and Veil's own registers
    /// (RTMR3, PCR 23), whenever the evidence reports them, must equal the replay
    /// of the log's events for them (zero for none) — so a log cannot hide
    /// events by leaving a register out.
    pub fn verify_evidence(&self, evidence: &crate::VerifiedEvidence) -> Result<VerifiedEvents> {
        self.verify_registers(&registers_of(evidence)?)
    }

    /// [`RuntimeLog::verify_evidence`] against register values gathered from several
    /// pieces of verified evidence (a CPU report and a TPM quote bound to it).
    pub fn verify_registers(&self, regs: &BTreeMap<Register, Vec<u8>>) -> Result<VerifiedEvents> {
        if regs.is_empty() {
            return Err(Error::EventLog("the evidence reports no measurement register to replay against".into()));
        }
        let replayed = self.replay()?;
        for reg in [Register::VEIL_RTMR, Register::VEIL_PCR] {
            if let Some(found) = regs.get(&reg) {
                let want = replayed.get(&reg).cloned().unwrap_or_else(|| vec![0u8; reg.digest_len()]);
                if *found != want {
                    return Err(Error::EventLog(format!(
                        "{}: evidence reports {}, the log replays to {} (events missing or altered)",
                        String::from(reg),
                        hex::encode(found),
                        hex::encode(&want)
                    )));
                }
            }
        }
        self.verify(regs)
    }
}

/// Events whose log replayed to the verified register values.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedEvents {
    events: Vec<Event>,
}

impl VerifiedEvents {
    /// The trusted events.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The contents of events of `event_type`, in log order.
    pub fn values(&self, event_type: &str) -> impl Iterator<Item = &str> {
        self.events.iter().filter(move |e| e.event_type == event_type).map(|e| e.content.as_str())
    }

    /// Check every event against the allowed values of its type (policy
    /// `[runtime]`). Types without a rule are allowed; a rule for a type that
    /// never occurs fails (the policy expects that event).
    pub fn appraise(&self, allowed: &BTreeMap<String, Vec<String>>) -> Result<()> {
        for (ty, values) in allowed {
            let mut seen = false;
            for v in self.values(ty) {
                seen = true;
                if !values.iter().any(|a| a == v) {
                    return Err(Error::policy(format!("runtime.{ty}"), format!("one of [{}]", values.join(", ")), v));
                }
            }
            if !seen {
                return Err(Error::policy(
                    format!("runtime.{ty}"),
                    format!("one of [{}]", values.join(", ")),
                    "no such event",
                ));
            }
        }
        Ok(())
    }
}

/// Parse a log from untrusted bytes, for the fuzzer.
#[doc(hidden)]
pub fn fuzz_runtime_log(data: &[u8]) {
    if let Ok(log) = RuntimeLog::parse(data) {
        let _ = log.replay();
        let _ = log.verify(&BTreeMap::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RuntimeLog {
        let mut log = RuntimeLog::default();
        log.push(Event::new(Register::VEIL_RTMR, types::BINARY, "sha256:aa"));
        log.push(Event::new(Register::VEIL_RTMR, types::MODEL_MANIFEST, "sha256:bb"));
        log.push(Event::new(Register::VEIL_PCR, types::MODEL_SIGNER, "sha256:cc"));
        log
    }

    #[test]
    fn round_trip_and_replay() {
        let log = sample();
        let parsed = RuntimeLog::parse(log.to_jsonl().as_bytes()).unwrap();
        assert_eq!(parsed, log);
        let regs = parsed.replay().unwrap();
        assert_eq!(regs[&Register::Rtmr(3)].len(), 48);
        assert_eq!(regs[&Register::Pcr(23)].len(), 32);
        let v = parsed.verify(&regs).unwrap();
        assert_eq!(v.values(types::MODEL_MANIFEST).collect::<Vec<_>>(), ["sha256:bb"]);
        // Manual extend chain matches.
        let d1 = event_digest(Register::Rtmr(3), types::BINARY, "sha256:aa");
        let d2 = event_digest(Register::Rtmr(3), types::MODEL_MANIFEST, "sha256:bb");
        let r = Register::Rtmr(3).extend(&Register::Rtmr(3).extend(&[0; 48], &d1), &d2);
        assert_eq!(regs[&Register::Rtmr(3)], r);
    }

    #[test]
    fn tampered_content_is_refused() {
        let text = sample().to_jsonl().replace("sha256:bb", "sha256:bc");
        let e = RuntimeLog::parse(text.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("does not match its type and content"), "{e}");
    }

    #[test]
    fn dropped_or_reordered_events_do_not_replay() {
        let log = sample();
        let regs = log.replay().unwrap();
        let text = log.to_jsonl();
        let lines: Vec<&str> = text.lines().collect();
        let dropped = format!("{}\n{}\n", lines[1], lines[2]);
        let e = RuntimeLog::parse(dropped.as_bytes()).unwrap().verify(&regs).unwrap_err();
        assert!(e.to_string().contains("rtmr3: log replays to"), "{e}");
        let swapped = format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2]);
        assert!(RuntimeLog::parse(swapped.as_bytes()).unwrap().verify(&regs).is_err());
    }

    #[test]
    fn missing_register_and_bad_records_are_refused() {
        let log = sample();
        let mut regs = log.replay().unwrap();
        regs.remove(&Register::Pcr(23));
        assert!(log.verify(&regs).unwrap_err().to_string().contains("pcr23: the evidence does not report"));
        for bad in [
            "{",
            "{\"register\":\"rtmr4\",\"alg\":\"sha384\",\"type\":\"t\",\"content\":\"c\",\"digest\":\"00\"}",
            "{\"register\":\"rtmr3\",\"alg\":\"sha256\",\"type\":\"t\",\"content\":\"c\",\"digest\":\"00\"}",
            "{\"register\":\"pcr3\",\"alg\":\"sha256\",\"type\":\"t\",\"content\":\"c\",\"digest\":\"zz\"}",
            "{\"register\":\"pcr3\",\"alg\":\"sha256\",\"type\":\"t\",\"content\":\"c\",\"digest\":\"00\",\"x\":1}",
        ] {
            assert!(RuntimeLog::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(RuntimeLog::parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn appraisal_of_event_values() {
        let log = sample();
        let v = log.verify(&log.replay().unwrap()).unwrap();
        let mut allowed = BTreeMap::new();
        allowed.insert(types::MODEL_MANIFEST.to_string(), vec!["sha256:bb".to_string()]);
        assert!(v.appraise(&allowed).is_ok());
        allowed.insert(types::MODEL_MANIFEST.to_string(), vec!["sha256:00".to_string()]);
        let e = v.appraise(&allowed).unwrap_err();
        assert!(e.to_string().contains("runtime.veil.model-manifest"), "{e}");
        let mut need = BTreeMap::new();
        need.insert(types::CONTAINER_IMAGE.to_string(), vec!["sha256:dd".to_string()]);
        assert!(v.appraise(&need).is_err());
    }
}
