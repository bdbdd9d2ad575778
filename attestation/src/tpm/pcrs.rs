//! PCR values supplied beside a quote, and the check that they are the values
//! the quote's `pcrDigest` binds.

use std::collections::BTreeMap;

use super::structures::{Attest, HashAlg, MAX_PCRS, PcrSelection};
use crate::error::{Error, ParseError, Result};

const PCRS: &str = "PCR values";

/// PCR values of one bank, by index. Unauthenticated until checked against a
/// quote's `pcrDigest` (see [`super::verify_quote`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrValues {
    /// The bank.
    pub bank: HashAlg,
    /// Index → value (each `bank.digest_len()` bytes).
    pub values: BTreeMap<u32, Vec<u8>>,
}

impl PcrValues {
    /// Values of `bank`, checking every index (< 32) and every length.
    pub fn new(bank: HashAlg, values: BTreeMap<u32, Vec<u8>>) -> Result<Self> {
        let v = Self { bank, values };
        v.validate()?;
        Ok(v)
    }

    /// Values from a list indexed by position (PCR 0 first), as Azure's vTPM quote
    /// JSON lists them.
    pub fn from_list<B: AsRef<[u8]>>(bank: HashAlg, list: &[B]) -> Result<Self> {
        let mut values = BTreeMap::new();
        for (i, v) in list.iter().enumerate() {
            let idx = u32::try_from(i).map_err(|_| ParseError::new(PCRS, "index", "too many PCR values"))?;
            values.insert(idx, v.as_ref().to_vec());
        }
        Self::new(bank, values)
    }

    /// The `bank` entry of a `quotes.json` file as the test vectors carry it:
    /// `[{"hash": "sha256", "pcrs": {"0": "hex", ...}, ...}, ...]`.
    pub fn from_quotes_json(bytes: &[u8], bank: HashAlg) -> Result<Self> {
        #[derive(serde::Deserialize)]
        struct Entry {
            hash: String,
            pcrs: BTreeMap<String, String>,
        }
        let entries: Vec<Entry> = serde_json::from_slice(bytes)
            .map_err(|e| ParseError::new("quotes.json", "entries", format!("not the expected JSON: {e}")))?;
        let entry = entries
            .into_iter()
            .find(|e| HashAlg::from_name(&e.hash) == Some(bank))
            .ok_or_else(|| ParseError::new("quotes.json", "hash", format!("no entry for bank {bank}")))?;
        let mut values = BTreeMap::new();
        for (k, v) in entry.pcrs {
            let idx: u32 = k
                .parse()
                .map_err(|_| ParseError::new("quotes.json", "pcrs", format!("PCR index {k:?} is not a number")))?;
            let val = hex::decode(&v)
                .map_err(|e| ParseError::new("quotes.json", "pcrs", format!("PCR {idx}: not hex: {e}")))?;
            values.insert(idx, val);
        }
        Self::new(bank, values)
    }

    fn validate(&self) -> Result<()> {
        for (idx, v) in &self.values {
            if *idx >= MAX_PCRS {
                return Err(ParseError::new(PCRS, "index", format!("PCR {idx} out of range (< {MAX_PCRS})")).into());
            }
            if v.len() != self.bank.digest_len() {
                return Err(ParseError::new(
                    PCRS,
                    "value",
                    format!("PCR {idx}: {} bytes, a {} value has {}", v.len(), self.bank, self.bank.digest_len()),
                )
                .into());
            }
        }
        Ok(())
    }

    /// Only the values at `indices` (which must all be present).
    pub(crate) fn subset(&self, indices: &[u32]) -> Result<PcrValues> {
        let mut values = BTreeMap::new();
        for idx in indices {
            let v = self.values.get(idx).ok_or_else(|| {
                Error::Binding(format!("the quote selects {} PCR {idx}, but no value was supplied for it", self.bank))
            })?;
            values.insert(*idx, v.clone());
        }
        Ok(PcrValues { bank: self.bank, values })
    }
}

/// The one bank whose PCRs a quote selects, and the selected indices. Quotes that
/// select PCRs in more than one bank are refused: Veil binds one bank per quote.
pub(crate) fn quoted_bank(attest: &Attest) -> Result<(Option<HashAlg>, Vec<u32>)> {
    let mut non_empty = attest.pcr_select.iter().filter(|s| !s.pcrs.is_empty());
    match (non_empty.next(), non_empty.next()) {
        (Some(s), None) => Ok((Some(s.bank), s.pcrs.clone())),
        (None, _) => Ok((attest.pcr_select.first().map(|s: &PcrSelection| s.bank), Vec::new())),
        (Some(a), Some(b)) => Err(Error::NotEvaluated(format!(
            "the quote selects PCRs in more than one bank ({} and {}); Veil verifies one bank per quote",
            a.bank, b.bank
        ))),
    }
}

/// Check that `pcrs` covers the quote's selection and that the digest (with
/// `digest_alg`, the signing scheme's hash) of the selected values in ascending
/// index order is the quote's `pcrDigest`. Returns the selected values.
pub(crate) fn check_pcr_digest(attest: &Attest, digest_alg: HashAlg, pcrs: &PcrValues) -> Result<PcrValues> {
    pcrs.validate()?;
    let (bank, selected) = quoted_bank(attest)?;
    if let Some(bank) = bank {
        if !selected.is_empty() && bank != pcrs.bank {
            return Err(Error::Binding(format!("the quote covers the {bank} bank, the PCR values are {}", pcrs.bank)));
        }
    }
    let sub = pcrs.subset(&selected)?;
    let computed = digest_alg.digest_parts(sub.values.values().map(Vec::as_slice));
    if computed != attest.pcr_digest {
        return Err(Error::Binding(format!(
            "the supplied {} PCR values do not match the quote's pcrDigest: quoted {}, computed {} ({} over PCRs {:?})",
            pcrs.bank,
            hex::encode(&attest.pcr_digest),
            hex::encode(&computed),
            digest_alg,
            selected
        )));
    }
    Ok(sub)
}
