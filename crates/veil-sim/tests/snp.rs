//! SEV-SNP: report layout, signature, chain and certificate shapes, compared with real
//! Milan evidence where the shared vectors are present.

mod common;

use anyhow::{Context, Result, ensure};
use veil_sim::snp::{self, SnpOptions};
use x509_parser::prelude::*;

fn rd(tag: u8) -> [u8; 64] {
    let mut d = [0u8; 64];
    for (i, b) in d.iter_mut().enumerate() {
        *b = tag ^ (i as u8);
    }
    d
}

fn u32_at(r: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(r[off..off + 4].try_into().unwrap())
}

fn u64_at(r: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(r[off..off + 8].try_into().unwrap())
}

/// Verify the report signature: P-384 over 0..0x2A0, r and s little-endian.
fn verify_report(report: &[u8], cert_der: &[u8]) -> Result<()> {
    let (_, cert) = X509Certificate::from_der(cert_der)?;
    let point = cert.public_key().subject_public_key.data.as_ref();
    let mut sig = Vec::with_capacity(96);
    let mut r = report[0x2A0..0x2A0 + 48].to_vec();
    r.reverse();
    let mut s = report[0x2E8..0x2E8 + 48].to_vec();
    s.reverse();
    sig.extend_from_slice(&r);
    sig.extend_from_slice(&s);
    ensure!(report[0x2A0 + 48..0x2E8].iter().all(|b| *b == 0), "R padding not zero");
    ensure!(report[0x2E8 + 48..0x4A0].iter().all(|b| *b == 0), "S padding/reserved not zero");
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P384_SHA384_FIXED, point)
        .verify(&report[..0x2A0], &sig)
        .map_err(|_| anyhow::anyhow!("report signature does not verify"))
}

#[test]
fn vcek_report_layout_signature_and_chain() -> Result<()> {
    let opts =
        SnpOptions { measurement: [0x11; 48], host_data: [0x22; 32], guest_svn: 7, vmpl: 2, ..SnpOptions::default() };
    let ev = snp::report(&rd(0x5A), &opts)?;
    let r = &ev.report;
    assert_eq!(r.len(), 1184);
    assert_eq!(u32_at(r, 0x00), 3);
    assert_eq!(u32_at(r, 0x04), 7);
    assert_eq!(u64_at(r, 0x08), 0x30000);
    assert_eq!(u32_at(r, 0x30), 2);
    assert_eq!(u32_at(r, 0x34), 1, "signature algo ECDSA P-384");
    assert_eq!(u64_at(r, 0x38), snp::tcb_version());
    assert_eq!(u32_at(r, 0x48) >> 2 & 7, 0, "signing key = VCEK");
    assert_eq!(&r[0x50..0x90], &rd(0x5A));
    assert_eq!(&r[0x90..0xC0], &[0x11; 48]);
    assert_eq!(&r[0xC0..0xE0], &[0x22; 32]);
    assert_eq!(u64_at(r, 0x180), 0xd918_0000_0000_0004);
    assert_eq!(&r[0x188..0x18B], &[0x19, 0x01, 0x01], "CPUID fam/mod/step (v3)");
    assert!(r[0x18B..0x1A0].iter().all(|b| *b == 0));
    assert_eq!(&r[0x1A0..0x1E0], &snp::chip_id());
    assert_eq!(u64_at(r, 0x1E0), snp::tcb_version());
    assert_eq!(u64_at(r, 0x1F0), snp::tcb_version());
    assert!(r[0x1F8..0x2A0].iter().all(|b| *b == 0), "v3: no mitigation vectors");
    verify_report(r, &ev.cert)?;

    // Chain: ARK self-signed, ASK by ARK, VCEK by ASK (RSA-PSS SHA-384).
    let chain = common::pem_certs(&ev.chain_pem);
    assert_eq!(chain.len(), 2);
    let (ask, ark) = (&chain[0], &chain[1]);
    assert_eq!(ask.as_slice(), snp::ask_der());
    assert_eq!(ark.as_slice(), snp::ark_der());
    common::verify_issued_by(ark, ark)?;
    common::verify_issued_by(ask, ark)?;
    common::verify_issued_by(&ev.cert, ask)?;

    // A flipped bit in the signed region breaks the signature.
    let mut bad = r.clone();
    bad[0x50] ^= 1;
    assert!(verify_report(&bad, &ev.cert).is_err());
    Ok(())
}

#[test]
fn vlek_report_and_chain() -> Result<()> {
    let opts = SnpOptions { use_vlek: true, ..SnpOptions::default() };
    let ev = snp::report(&rd(1), &opts)?;
    assert_eq!(u32_at(&ev.report, 0x48) >> 2 & 7, 1, "signing key = VLEK");
    assert!(ev.report[0x1A0..0x1E0].iter().all(|b| *b == 0), "no chip id with VLEK");
    assert_eq!(ev.cert, snp::vlek_der());
    verify_report(&ev.report, &ev.cert)?;
    let chain = common::pem_certs(&ev.chain_pem);
    assert_eq!(chain.len(), 3, "ASK + ARK + ASVK");
    assert_eq!(chain[2], snp::asvk_der());
    common::verify_issued_by(snp::asvk_der(), snp::ark_der())?;
    common::verify_issued_by(&ev.cert, snp::asvk_der())?;
    // The VCEK key does not verify a VLEK report.
    assert!(verify_report(&ev.report, snp::vcek_der()).is_err());
    Ok(())
}

#[test]
fn versions_2_and_5() -> Result<()> {
    let v2 = snp::report(&rd(2), &SnpOptions { version: 2, ..SnpOptions::default() })?;
    assert_eq!(u32_at(&v2.report, 0), 2);
    assert!(v2.report[0x188..0x1A0].iter().all(|b| *b == 0), "v2: CPUID bytes reserved");
    verify_report(&v2.report, &v2.cert)?;

    let opts =
        SnpOptions { version: 5, launch_mit_vector: 0x1234, current_mit_vector: 0x5678, ..SnpOptions::default() };
    let v5 = snp::report(&rd(5), &opts)?;
    assert_eq!(u32_at(&v5.report, 0), 5);
    assert_eq!(u64_at(&v5.report, 0x1F8), 0x1234);
    assert_eq!(u64_at(&v5.report, 0x200), 0x5678);
    assert!(v5.report[0x208..0x2A0].iter().all(|b| *b == 0));
    verify_report(&v5.report, &v5.cert)?;

    assert!(snp::report(&rd(0), &SnpOptions { version: 4, ..SnpOptions::default() }).is_err());
    assert!(snp::report(&rd(0), &SnpOptions { vmpl: 4, ..SnpOptions::default() }).is_err());
    Ok(())
}

#[test]
fn deterministic_layout() -> Result<()> {
    let a = snp::report(&rd(9), &SnpOptions::default())?;
    let b = snp::report(&rd(9), &SnpOptions::default())?;
    assert_eq!(a.report[..0x2A0], b.report[..0x2A0], "signed region is a function of the options");
    assert_eq!(a.cert, b.cert);
    assert_eq!(a.chain_pem, b.chain_pem);
    assert_eq!(a.cert_table, b.cert_table);
    Ok(())
}

/// Parse a GHCB certificate table like a guest would.
fn parse_table(t: &[u8]) -> Vec<([u8; 16], Vec<u8>)> {
    let mut out = Vec::new();
    for entry in t.chunks_exact(24) {
        let guid: [u8; 16] = entry[..16].try_into().unwrap();
        if guid == [0; 16] {
            break;
        }
        let off = u32::from_le_bytes(entry[16..20].try_into().unwrap()) as usize;
        let len = u32::from_le_bytes(entry[20..24].try_into().unwrap()) as usize;
        out.push((guid, t[off..off + len].to_vec()));
    }
    out
}

#[test]
fn cert_table_holds_vcek_ask_ark() -> Result<()> {
    let ev = snp::report(&rd(3), &SnpOptions::default())?;
    let entries = parse_table(&ev.cert_table);
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0], (snp::guid::VCEK, ev.cert.clone()));
    assert_eq!(entries[1], (snp::guid::ASK, snp::ask_der().to_vec()));
    assert_eq!(entries[2], (snp::guid::ARK, snp::ark_der().to_vec()));
    assert_eq!(hex::encode(snp::guid::VCEK), "63da758de6644564adc5f4b93be8accd");
    let vlek = snp::report(&rd(3), &SnpOptions { use_vlek: true, ..SnpOptions::default() })?;
    let entries = parse_table(&vlek.cert_table);
    assert_eq!(entries[0], (snp::guid::VLEK, snp::vlek_der().to_vec()));
    Ok(())
}

fn amd_ext(cert: &X509Certificate<'_>, oid: &str) -> Option<Vec<u8>> {
    cert.extensions().iter().find(|e| e.oid.to_id_string() == oid).map(|e| e.value.to_vec())
}

#[test]
fn vcek_extensions_match_the_report() -> Result<()> {
    let (_, vcek) = X509Certificate::from_der(snp::vcek_der())?;
    let p = "1.3.6.1.4.1.3704.1";
    assert_eq!(vcek.tbs_certificate.serial.to_bytes_be(), vec![0u8], "serial 0 like AMD");
    assert_eq!(amd_ext(&vcek, &format!("{p}.1")), Some(vec![0x02, 0x01, 0x00]));
    assert_eq!(amd_ext(&vcek, &format!("{p}.2")), Some(b"\x16\x08Milan-B0".to_vec()));
    assert_eq!(amd_ext(&vcek, &format!("{p}.3.1")), Some(vec![0x02, 0x01, 4]));
    assert_eq!(amd_ext(&vcek, &format!("{p}.3.2")), Some(vec![0x02, 0x01, 0]));
    assert_eq!(amd_ext(&vcek, &format!("{p}.3.3")), Some(vec![0x02, 0x01, 24]));
    assert_eq!(amd_ext(&vcek, &format!("{p}.3.8")), Some(vec![0x02, 0x02, 0x00, 0xD9]));
    assert_eq!(amd_ext(&vcek, &format!("{p}.4")), Some(snp::chip_id().to_vec()));
    assert!(vcek.extensions().iter().all(|e| !e.critical));
    let cn = vcek.subject().iter_common_name().next().context("CN")?.as_str()?;
    assert_eq!(cn, "Veil Simulated SEV-VCEK");

    let (_, vlek) = X509Certificate::from_der(snp::vlek_der())?;
    assert_eq!(amd_ext(&vlek, &format!("{p}.2")), Some(b"\x16\x05Milan".to_vec()));
    assert_eq!(amd_ext(&vlek, &format!("{p}.4")), None, "no hwID on a VLEK");
    assert!(amd_ext(&vlek, &format!("{p}.5")).is_some(), "CSP_ID");

    for (der, cn) in [
        (snp::ark_der(), "Veil Simulated ARK-Milan"),
        (snp::ask_der(), "Veil Simulated SEV-Milan"),
        (snp::asvk_der(), "Veil Simulated SEV-VLEK-Milan"),
    ] {
        let (_, c) = X509Certificate::from_der(der)?;
        assert_eq!(c.subject().iter_common_name().next().context("CN")?.as_str()?, cn);
        assert_eq!(c.public_key().algorithm.algorithm.to_id_string(), "1.2.840.113549.1.1.1");
    }
    Ok(())
}

/// AMD's RSA-PSS AlgorithmIdentifier (SHA-384, MGF1-SHA-384, salt 48, trailerField 1).
const AMD_PSS_ALG: &str = "304606092a864886f70d01010a3039a00f300d06096086480165030402020500\
a11c301a06092a864886f70d010108300d06096086480165030402020500a203020130a303020101";
/// The same without trailerField, as on AMD's VLEK certificates.
const AMD_PSS_ALG_VLEK: &str = "304106092a864886f70d01010a3034a00f300d0609608648016503040202\
0500a11c301a06092a864886f70d010108300d06096086480165030402020500a203020130";

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

#[test]
fn shapes_match_real_milan_evidence() -> Result<()> {
    let Some(v) = common::vectors() else {
        return Ok(());
    };
    let alg = hex::decode(AMD_PSS_ALG)?;
    let real_vcek = std::fs::read(v.join("sev-snp/trustee-milan-vcek-v2/vcek.der"))?;
    let real_vlek = std::fs::read(v.join("sev-snp/trustee-milan-vlek-v3/vlek.der"))?;
    for der in [&real_vcek[..], snp::vcek_der(), snp::ark_der(), snp::ask_der(), snp::asvk_der()] {
        assert_eq!(count(der, &alg), 2, "AMD PSS AlgorithmIdentifier in TBS and outer");
    }
    let alg_vlek = hex::decode(AMD_PSS_ALG_VLEK)?;
    for der in [&real_vlek[..], snp::vlek_der()] {
        assert_eq!(count(der, &alg_vlek), 2, "VLEK: PSS AlgorithmIdentifier without trailerField");
    }
    let oids = |der: &[u8]| -> Result<Vec<(String, bool)>> {
        let (_, c) = X509Certificate::from_der(der)?;
        Ok(c.extensions().iter().map(|e| (e.oid.to_id_string(), e.critical)).collect())
    };
    assert_eq!(oids(snp::vcek_der())?, oids(&real_vcek)?, "VCEK extensions in AMD's order");
    assert_eq!(oids(snp::vlek_der())?, oids(&real_vlek)?, "VLEK extensions in AMD's order");
    let chain = std::fs::read(v.join("sev-snp/amd-kds-chains/ask_ark_milan.pem"))?;
    let real = common::pem_certs(&chain);
    assert_eq!(oids(snp::ask_der())?, oids(&real[0])?, "ASK extensions");
    assert_eq!(oids(snp::ark_der())?, oids(&real[1])?, "ARK extensions");

    // A real v3 Milan report: same size, same fields zero where ours are zero.
    let real_report = std::fs::read(v.join("sev-snp/trustee-milan-vlek-v3/report.bin"))?;
    let ours = snp::report(&rd(0), &SnpOptions { use_vlek: true, vmpl: 1, ..SnpOptions::default() })?;
    assert_eq!(real_report.len(), ours.report.len());
    for (off, len) in [(0x00, 4), (0x30, 4), (0x34, 4), (0x48, 4), (0x188, 3)] {
        assert_eq!(real_report[off..off + len], ours.report[off..off + len], "field at {off:#x}");
    }
    assert_eq!(real_report[0x180..0x188], ours.report[0x180..0x188], "same Milan TCB as the real VLEK report");
    for (lo, hi) in [(0x4C, 0x50), (0x18B, 0x1A0), (0x1EB, 0x1EC), (0x1EF, 0x1F0), (0x1F8, 0x2A0), (0x330, 0x4A0)] {
        assert!(real_report[lo..hi].iter().all(|b| *b == 0), "real reserved {lo:#x}");
        assert!(ours.report[lo..hi].iter().all(|b| *b == 0), "our reserved {lo:#x}");
    }
    Ok(())
}
