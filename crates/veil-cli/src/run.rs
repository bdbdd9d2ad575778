//! Verify evidence given as files by role — the one path behind both
//! `veil attest verify <kind> --<role> F ...` and `veil attest verify --case FILE`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use veil_attestation::{Error, Options, VerifiedEvidence, Verifier, azure, snp, tdx, tpm};

use crate::cases::Case;

/// The evidence kinds `veil attest verify` knows.
pub const KINDS: &[&str] = &["snp", "tdx", "tpm", "az-snp-vtpm", "az-tdx-vtpm"];

/// Everything one verification needs, by role name.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Evidence kind.
    pub kind: String,
    /// Role → file bytes.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Verification time.
    pub at: OffsetDateTime,
    /// Expected report data (SNP/TDX/Azure hardware report).
    pub report_data: Option<Vec<u8>>,
    /// Expected TPM nonce.
    pub nonce: Option<Vec<u8>>,
    /// TPM PCR bank.
    pub pcr_bank: Option<String>,
    /// Trust the simulator's roots.
    pub danger_trust_simulator: bool,
}

/// Parse an RFC 3339 time.
pub fn parse_time(s: &str) -> anyhow::Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).with_context(|| format!("not an RFC 3339 time: {s:?}"))
}

/// Parse hex (empty string = empty bytes).
pub fn parse_hex(what: &str, s: &str) -> anyhow::Result<Vec<u8>> {
    hex::decode(s.trim()).with_context(|| format!("{what}: not hex: {s:?}"))
}

impl Inputs {
    /// Inputs for one case of a case file whose folder is `base`.
    pub fn from_case(case: &Case, base: &Path, danger_trust_simulator: bool) -> anyhow::Result<Self> {
        let mut files = BTreeMap::new();
        for role in case.files.keys() {
            if let Some(bytes) = case.read(base, role)? {
                files.insert(role.clone(), bytes);
            }
        }
        if let Some(m) = &case.mutate {
            if !case.files.contains_key(&m.role) {
                bail!("case {}: mutation targets role {:?}, which has no file", case.name, m.role);
            }
        }
        Ok(Self {
            kind: case.kind.clone(),
            files,
            at: parse_time(&case.verify_at)?,
            report_data: case.report_data.as_deref().map(|s| parse_hex("report_data", s)).transpose()?,
            nonce: case.nonce.as_deref().map(|s| parse_hex("nonce", s)).transpose()?,
            pcr_bank: case.pcr_bank.clone(),
            danger_trust_simulator,
        })
    }

    fn get(&self, role: &str) -> Option<&[u8]> {
        self.files.get(role).map(Vec::as_slice)
    }

    fn need(&self, role: &str) -> anyhow::Result<&[u8]> {
        self.get(role).with_context(|| format!("{} evidence needs --{}", self.kind, role.replace('_', "-")))
    }

    fn options(&self) -> Options {
        let mut o = Options::at(self.at).danger_trust_simulator(self.danger_trust_simulator);
        o.report_data = self.report_data.clone();
        o.nonce = self.nonce.clone();
        o
    }

    /// Verify. The outer error is a usage problem (missing role, unknown kind); the
    /// inner one is the verifier's typed refusal.
    pub fn verify(&self) -> anyhow::Result<Result<VerifiedEvidence, Error>> {
        let opts = self.options();
        Ok(match self.kind.as_str() {
            "snp" => {
                let verifier = snp::SnpVerifier::default();
                match self.get("report") {
                    Some(report) => {
                        // Trustee's JSON form (as the KBS protocol carries it) is
                        // converted to the report bytes, refused unless it round-trips.
                        let converted;
                        let report = if report.trim_ascii_start().starts_with(b"{") {
                            converted = match snp::json::report_from_trustee_json(report) {
                                Ok(r) => r,
                                Err(e) => return Ok(Err(e)),
                            };
                            converted.as_slice()
                        } else {
                            report
                        };
                        let ev = snp::SnpEvidence {
                            report,
                            vcek: self.get("vcek"),
                            vlek: self.get("vlek"),
                            chain: self.get("chain"),
                        };
                        verifier.verify(&ev, &opts)
                    }
                    None => {
                        // Chain-only (partial): a VCEK/VLEK and its chain, no report.
                        let (cert, is_vlek) = match (self.get("vcek"), self.get("vlek")) {
                            (Some(c), None) => (c, false),
                            (None, Some(c)) => (c, true),
                            _ => bail!("snp evidence needs --report, or exactly one of --vcek / --vlek with --chain"),
                        };
                        verifier.verify_chain_only(cert, is_vlek, self.need("chain")?, &opts)
                    }
                }
            }
            "tdx" => {
                let collateral = match self.get("collateral") {
                    Some(json) => match tdx::Collateral::from_json(json) {
                        Ok(c) => Some(c),
                        Err(e) => return Ok(Err(e)),
                    },
                    None => None,
                };
                let ev = tdx::TdxEvidence {
                    quote: self.need("quote")?,
                    collateral: collateral.as_ref(),
                    root: self.get("root"),
                };
                tdx::TdxVerifier::default().verify(&ev, &opts)
            }
            "tpm" => {
                let bank = match &self.pcr_bank {
                    Some(b) => Some(tpm::HashAlg::from_name(b).with_context(|| format!("unknown PCR bank {b:?}"))?),
                    None => None,
                };
                let pcrs = match (self.get("pcrs"), bank) {
                    (Some(json), Some(bank)) => match tpm::PcrValues::from_quotes_json(json, bank) {
                        Ok(p) => Some(p),
                        Err(e) => return Ok(Err(e)),
                    },
                    (Some(_), None) => bail!("--pcrs needs --pcr-bank"),
                    _ => None,
                };
                let ak_chain = match (self.get("ak_cert"), self.get("root")) {
                    (Some(ak_cert), Some(root)) => Some(tpm::AkCertChain {
                        ak_cert,
                        intermediates: self.get("intermediate").into_iter().collect(),
                        root,
                    }),
                    (None, None) => None,
                    _ => bail!("an AK certificate chain needs --ak-cert, --root (and usually --intermediate)"),
                };
                let ev = tpm::TpmEvidence {
                    attest: self.need("attest")?,
                    signature: self.need("signature")?,
                    ak: self.need("ak")?,
                    ak_chain,
                    pcrs,
                    event_log: self.get("event_log"),
                };
                tpm::TpmVerifier.verify(&ev, &opts)
            }
            "az-snp-vtpm" => {
                let ev = azure::AzSnpEvidence {
                    hcl_report: self.need("hcl_report")?,
                    tpm_quote: self.need("tpm_quote")?,
                    vcek: self.need("vcek")?,
                    chain: self.get("chain"),
                };
                azure::AzSnpVtpmVerifier::default().verify(&ev, &opts)
            }
            "az-tdx-vtpm" => {
                let collateral = match self.get("collateral") {
                    Some(json) => match tdx::Collateral::from_json(json) {
                        Ok(c) => Some(c),
                        Err(e) => return Ok(Err(e)),
                    },
                    None => None,
                };
                let ev = azure::AzTdxEvidence {
                    hcl_report: self.need("hcl_report")?,
                    tpm_quote: self.need("tpm_quote")?,
                    td_quote: self.need("td_quote")?,
                    collateral: collateral.as_ref(),
                    root: self.get("root"),
                };
                azure::AzTdxVtpmVerifier::default().verify(&ev, &opts)
            }
            other => bail!("evidence kind {other:?} is not supported (supported: {})", KINDS.join(", ")),
        })
    }
}
