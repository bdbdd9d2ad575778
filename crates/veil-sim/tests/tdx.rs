//! TDX: quotes and collateral checked by an independent verifier (dcap-qvl 0.7.1,
//! anchored at the simulated root), and layouts compared with real quotes.

mod common;

use anyhow::{Context, Result};
use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::verify::QuoteVerifier;
use time::OffsetDateTime;
use time::macros::datetime;
use veil_sim::tdx::{self, TdxOptions};

const ISSUE: OffsetDateTime = datetime!(2026-03-01 00:00:00 UTC);
const NEXT: OffsetDateTime = datetime!(2026-03-31 00:00:00 UTC);

fn secs(t: OffsetDateTime) -> u64 {
    t.unix_timestamp() as u64
}

fn collateral() -> Result<QuoteCollateralV3> {
    Ok(serde_json::from_slice(&tdx::collateral_json(ISSUE, NEXT)?)?)
}

fn rd() -> [u8; 64] {
    let mut d = [0u8; 64];
    d[..5].copy_from_slice(b"hello");
    d[63] = 0xEE;
    d
}

fn verifier() -> QuoteVerifier {
    QuoteVerifier::new(tdx::root_der().to_vec())
}

#[test]
fn v4_quote_verifies_with_dcap_qvl_up_to_date() -> Result<()> {
    let opts = TdxOptions { mr_owner: [0x42; 48], ..TdxOptions::default() };
    let quote = tdx::quote(&rd(), &opts)?;
    let report = verifier().verify(&quote, &collateral()?, secs(ISSUE) + 3600)?;
    assert_eq!(report.status, "UpToDate");
    assert!(report.advisory_ids.is_empty());
    let td = report.report.as_td10().context("TD 1.0 report")?;
    assert_eq!(td.report_data, rd());
    assert_eq!(td.mr_td, opts.mr_td);
    assert_eq!(td.rt_mr0, opts.rtmr[0]);
    assert_eq!(td.mr_owner, [0x42; 48]);
    assert_eq!(report.ppid, veil_sim::params::tdx::PPID.to_vec());

    // Layout: 48-byte header + 584-byte body, then the declared signature data exactly.
    assert_eq!(u16::from_le_bytes([quote[0], quote[1]]), 4);
    let sig_len = u32::from_le_bytes(quote[632..636].try_into()?) as usize;
    assert_eq!(quote.len(), 636 + sig_len, "no trailing bytes");
    Ok(())
}

#[test]
fn v5_quote_verifies_with_dcap_qvl() -> Result<()> {
    let opts = TdxOptions { version: 5, ..TdxOptions::default() };
    let quote = tdx::quote(&rd(), &opts)?;
    assert_eq!(u16::from_le_bytes([quote[48], quote[49]]), 3, "body type TD 1.5");
    assert_eq!(u32::from_le_bytes(quote[50..54].try_into()?), 648);
    let report = verifier().verify(&quote, &collateral()?, secs(NEXT) - 1)?;
    assert_eq!(report.status, "UpToDate");
    Ok(())
}

#[test]
fn older_tcb_is_out_of_date_and_outside_window_fails() -> Result<()> {
    let old = TdxOptions { tee_tcb_svn: [2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], ..TdxOptions::default() };
    let quote = tdx::quote(&rd(), &old)?;
    let report = verifier().verify(&quote, &collateral()?, secs(ISSUE) + 10)?;
    assert_eq!(report.status, "OutOfDate");
    assert_eq!(report.advisory_ids, vec![tdx::SIM_ADVISORY.to_string()]);

    let good = tdx::quote(&rd(), &TdxOptions::default())?;
    assert!(verifier().verify(&good, &collateral()?, secs(NEXT) + 10).is_err(), "expired");
    assert!(verifier().verify(&good, &collateral()?, secs(ISSUE) - 10).is_err(), "not yet");
    // Anchored at Intel's real root, simulated evidence is refused.
    assert!(dcap_qvl::verify::verify(&good, &collateral()?, secs(ISSUE) + 10).is_err());
    Ok(())
}

#[test]
fn tampering_is_detected() -> Result<()> {
    let quote = tdx::quote(&rd(), &TdxOptions::default())?;
    for offset in [0x30 + 520, 0x30 + 136, 700, 640 + 64 + 100] {
        let mut bad = quote.clone();
        bad[offset] ^= 1;
        assert!(verifier().verify(&bad, &collateral()?, secs(ISSUE) + 10).is_err(), "flip at {offset} accepted");
    }
    let mut c = collateral()?;
    c.tcb_info = c.tcb_info.replace("UpToDate", "UpToDatf");
    let quote_ok = tdx::quote(&rd(), &TdxOptions::default())?;
    assert!(verifier().verify(&quote_ok, &c, secs(ISSUE) + 10).is_err(), "TCB info signature");
    // Debug TD is refused by dcap-qvl's attribute check.
    let debug = TdxOptions { td_attributes: 0x1000_0001, ..TdxOptions::default() };
    assert!(verifier().verify(&tdx::quote(&rd(), &debug)?, &collateral()?, secs(ISSUE) + 10).is_err());
    Ok(())
}

#[test]
fn pck_extension_parses_like_intels() -> Result<()> {
    let ext = dcap_qvl::intel::parse_pck_extension(tdx::pck_der())?;
    assert_eq!(ext.fmspc, veil_sim::params::tdx::FMSPC);
    assert_eq!(ext.cpu_svn, veil_sim::params::tdx::SGX_COMPONENTS);
    assert_eq!(ext.pce_svn, veil_sim::params::tdx::PCE_SVN);
    assert_eq!(ext.pce_id, vec![0, 0]);
    assert_eq!(ext.sgx_type, 1);
    assert_eq!(ext.smt_enabled, Some(true));
    assert_eq!(ext.platform_instance_id, Some(veil_sim::params::tdx::PLATFORM_INSTANCE_ID.to_vec()));
    common::verify_issued_by(tdx::pck_der(), tdx::platform_ca_der())?;
    common::verify_issued_by(tdx::platform_ca_der(), tdx::root_der())?;
    common::verify_issued_by(tdx::tcb_signing_der(), tdx::root_der())?;
    common::verify_issued_by(tdx::root_der(), tdx::root_der())?;
    Ok(())
}

#[test]
fn deterministic_layout() -> Result<()> {
    let a = tdx::quote(&rd(), &TdxOptions::default())?;
    let b = tdx::quote(&rd(), &TdxOptions::default())?;
    assert_eq!(a.len(), b.len());
    assert_eq!(a[..632], b[..632], "header and body");
    assert_eq!(a[632 + 4 + 64..], b[632 + 4 + 64..], "everything after the ISV signature");
    assert!(tdx::quote(&rd(), &TdxOptions { version: 3, ..TdxOptions::default() }).is_err());
    assert!(tdx::collateral_json(NEXT, ISSUE).is_err());
    Ok(())
}

/// Walk the signature data of a v4 quote; returns (qe cert type, inner type, inner len, declared end).
fn walk(q: &[u8]) -> (u16, u16, usize, usize) {
    let base = 632;
    let sig_len = u32::from_le_bytes(q[base..base + 4].try_into().unwrap()) as usize;
    let p = base + 4 + 128;
    let t = u16::from_le_bytes(q[p..p + 2].try_into().unwrap());
    let qa = p + 6 + 384 + 64;
    let auth = u16::from_le_bytes(q[qa..qa + 2].try_into().unwrap()) as usize;
    let inner = qa + 2 + auth;
    let it = u16::from_le_bytes(q[inner..inner + 2].try_into().unwrap());
    let il = u32::from_le_bytes(q[inner + 2..inner + 6].try_into().unwrap()) as usize;
    (t, it, il, base + 4 + sig_len)
}

#[test]
fn layout_matches_real_v4_quote() -> Result<()> {
    let Some(v) = common::vectors() else {
        return Ok(());
    };
    let real = std::fs::read(v.join("tdx/dcapqvl-tdx_quote/quote.bin"))?;
    let ours = tdx::quote(&rd(), &TdxOptions::default())?;
    assert_eq!(real[..12], ours[..12], "version, key type, TEE type, reserved");
    assert_eq!(real[12..28], ours[12..28], "QE vendor id");
    let (rt, rit, ril, rend) = walk(&real);
    let (ot, oit, oil, oend) = walk(&ours);
    assert_eq!((rt, rit), (6, 5));
    assert_eq!((ot, oit), (6, 5));
    assert_eq!(ours.len(), oend);
    // Both chains end "-----END CERTIFICATE-----\n\0" and hold three certificates.
    assert_eq!(real[rend - 27..rend], ours[oend - 27..oend]);
    let real_chain = common::pem_certs(&real[rend - ril..rend]);
    let our_chain = common::pem_certs(&ours[oend - oil..oend]);
    assert_eq!((real_chain.len(), our_chain.len()), (3, 3));
    // TD attributes / XFAM / TEE_TCB_SVN shapes of a real TD.
    assert_eq!(real[48 + 120..48 + 128], ours[48 + 120..48 + 128], "TD attributes");
    assert_eq!(real[48 + 128..48 + 136], ours[48 + 128..48 + 136], "XFAM");
    // Real PCK extension has the same size and structure as ours.
    let real_ext = dcap_qvl::intel::parse_pck_extension(&real_chain[0])?;
    let our_ext = dcap_qvl::intel::parse_pck_extension(&our_chain[0])?;
    assert_eq!(real_ext.raw_extension.len(), our_ext.raw_extension.len());
    Ok(())
}

#[test]
fn collateral_json_has_dcap_qvl_shape() -> Result<()> {
    let json: serde_json::Value = serde_json::from_slice(&tdx::collateral_json(ISSUE, NEXT)?)?;
    let keys: Vec<&str> = json.as_object().context("object")?.keys().map(String::as_str).collect();
    let mut expected = vec![
        "pck_crl_issuer_chain",
        "root_ca_crl",
        "pck_crl",
        "tcb_info_issuer_chain",
        "tcb_info",
        "tcb_info_signature",
        "qe_identity_issuer_chain",
        "qe_identity",
        "qe_identity_signature",
    ];
    expected.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, expected);
    let tcb: serde_json::Value = serde_json::from_str(json["tcb_info"].as_str().context("tcb_info")?)?;
    assert_eq!(tcb["id"], "TDX");
    assert_eq!(tcb["version"], 3);
    assert_eq!(tcb["issueDate"], "2026-03-01T00:00:00Z");
    assert_eq!(tcb["nextUpdate"], "2026-03-31T00:00:00Z");
    assert_eq!(tcb["fmspc"], hex::encode_upper(veil_sim::params::tdx::FMSPC));
    assert_eq!(tcb["tcbLevels"][0]["tcbStatus"], "UpToDate");
    assert_eq!(tcb["tcbLevels"][1]["tcbStatus"], "OutOfDate");
    let qe: serde_json::Value = serde_json::from_str(json["qe_identity"].as_str().context("qe")?)?;
    assert_eq!(qe["id"], "TD_QE");
    assert_eq!(qe["version"], 2);

    // CRLs parse and are issued by the right names.
    use x509_parser::prelude::*;
    let root_crl = hex::decode(json["root_ca_crl"].as_str().context("crl")?)?;
    let (_, crl) = CertificateRevocationList::from_der(&root_crl)?;
    let (_, root) = X509Certificate::from_der(tdx::root_der())?;
    assert_eq!(crl.issuer().as_raw(), root.subject().as_raw());
    let pck_crl = hex::decode(json["pck_crl"].as_str().context("crl")?)?;
    let (_, crl) = CertificateRevocationList::from_der(&pck_crl)?;
    let (_, pca) = X509Certificate::from_der(tdx::platform_ca_der())?;
    assert_eq!(crl.issuer().as_raw(), pca.subject().as_raw());
    assert_eq!(crl.iter_revoked_certificates().count(), 1);
    Ok(())
}
