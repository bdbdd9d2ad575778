//! Verification case files: the schema of `shared/vectors/cases.toml`.
//!
//! A case names the evidence kind, its files by role, the time to verify at, the
//! expected outcome, and optionally the expected report data / nonce, a byte
//! mutation to apply in memory, and the expected DCAP TCB status. The same schema
//! is written by `veil attest simulate` (`DIR/case.toml`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// A whole case file: `[[case]]` tables.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CaseFile {
    /// The cases, in file order.
    #[serde(rename = "case", default)]
    pub cases: Vec<Case>,
}

/// Flip bits of one file before verifying (in memory only).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Mutation {
    /// The role whose file is mutated.
    pub role: String,
    /// Byte offset.
    pub offset: usize,
    /// XOR mask.
    pub xor: u8,
}

/// One verification case.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Case {
    /// Unique name.
    pub name: String,
    /// Evidence kind: snp, tdx, tpm, az-snp-vtpm, az-tdx-vtpm, sgx, nvidia-gpu.
    pub kind: String,
    /// Folder of the vector set, relative to the case file's folder.
    pub dir: String,
    /// Role → file. A value without "/" is inside `dir`; with "/" it is relative to
    /// the case file's folder.
    pub files: BTreeMap<String, String>,
    /// RFC 3339 verification time.
    pub verify_at: String,
    /// "accept" or "reject".
    pub expect: String,
    /// Why a reject case fails (signature, chain, expired, nonce, tcb, binding).
    #[serde(default)]
    pub reason: Option<String>,
    /// Expected DCAP platform TCB status.
    #[serde(default)]
    pub expect_status: Option<String>,
    /// Expected DCAP QE identity status.
    #[serde(default)]
    pub expect_qe_status: Option<String>,
    /// Expected advisory IDs.
    #[serde(default)]
    pub expect_advisories: Option<Vec<String>>,
    /// The case covers only part of an appraisal.
    #[serde(default)]
    pub partial: bool,
    /// Files derived rather than taken as-is.
    #[serde(default)]
    pub derived: bool,
    /// Evidence produced by the Veil simulator.
    #[serde(default)]
    pub simulated: bool,
    /// Expected report data (hex, 64 bytes).
    #[serde(default)]
    pub report_data: Option<String>,
    /// Expected TPM nonce (hex; "" = empty).
    #[serde(default)]
    pub nonce: Option<String>,
    /// Mutation applied before verifying.
    #[serde(default)]
    pub mutate: Option<Mutation>,
    /// TPM PCR bank covered by the quote.
    #[serde(default)]
    pub pcr_bank: Option<String>,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
    /// Values read from the evidence.
    #[serde(default)]
    pub claims: Option<toml::Table>,
}

impl CaseFile {
    /// Load and parse a case file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: CaseFile = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let mut seen = std::collections::BTreeSet::new();
        for c in &file.cases {
            if !seen.insert(c.name.as_str()) {
                bail!("{}: duplicate case name {:?}", path.display(), c.name);
            }
        }
        Ok(file)
    }
}

impl Case {
    /// Resolve the file for `role` against `base` (the case file's folder).
    pub fn path(&self, base: &Path, role: &str) -> Option<PathBuf> {
        let v = self.files.get(role)?;
        Some(if v.contains('/') { base.join(v) } else { base.join(&self.dir).join(v) })
    }

    /// Read the file for `role`, applying the case's mutation if it targets it.
    pub fn read(&self, base: &Path, role: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(path) = self.path(base, role) else { return Ok(None) };
        let mut bytes =
            std::fs::read(&path).with_context(|| format!("case {}: reading {role} {}", self.name, path.display()))?;
        if let Some(m) = &self.mutate {
            if m.role == role {
                let len = bytes.len();
                let b = bytes.get_mut(m.offset).with_context(|| {
                    format!("case {}: mutation offset {} beyond {role} ({len} bytes)", self.name, m.offset)
                })?;
                *b ^= m.xor;
            }
        }
        Ok(Some(bytes))
    }

    /// Whether the case expects acceptance.
    pub fn expects_accept(&self) -> anyhow::Result<bool> {
        match self.expect.as_str() {
            "accept" => Ok(true),
            "reject" => Ok(false),
            other => bail!("case {}: expect must be accept or reject, found {other:?}", self.name),
        }
    }
}
