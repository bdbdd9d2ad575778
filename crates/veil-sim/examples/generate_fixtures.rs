//! One-shot generator of the simulator's fixtures (run by `fixtures/generate.sh`).
//!
//! SIMULATED - NOT A SECRET, NOT A REAL ROOT. Everything written here is a public test
//! fixture: keys are committed to the repository on purpose.
//!
//! Inputs: three RSA-4096 PKCS#8 PEM keys made by the `openssl` CLI (ring cannot
//! generate RSA keys). Every EC key is generated here with ring. Certificates are built
//! with the hand-written DER writer in `src/der.rs`, so their shape (AMD's RSA-PSS
//! AlgorithmIdentifier with an explicit trailerField, serial 0 leaves, AMD and Intel
//! extensions) is fully under control.
//!
//! Usage: `generate_fixtures RSA_DIR FIXTURES_DIR DANGER_DIR`

#![forbid(unsafe_code)]

#[allow(dead_code)]
#[path = "../src/der.rs"]
mod der;
#[allow(dead_code)]
#[path = "../src/names.rs"]
mod names;
#[allow(dead_code)]
#[path = "../src/params.rs"]
mod params;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use der::oids;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use sha2::Digest as _;

/// AMD's private enterprise arc.
const AMD: [u64; 7] = [1, 3, 6, 1, 4, 1, 3704];
/// Intel SGX extension arc 1.2.840.113741.1.13.1.
const SGX: [u64; 7] = [1, 2, 840, 113741, 1, 13, 1];

fn arc(base: &[u64], tail: &[u64]) -> Vec<u64> {
    base.iter().chain(tail).copied().collect()
}

enum Signer<'a> {
    /// RSA-PSS SHA-384 with AMD's AlgorithmIdentifier.
    RsaPss(&'a RsaKeyPair),
    /// The same, without the trailerField (as AMD's VLEK certificates are signed).
    RsaPssNoTrailer(&'a RsaKeyPair),
    P256(&'a EcdsaKeyPair),
}

struct Cert {
    der: Vec<u8>,
    subject: Vec<u8>,
    ski: [u8; 20],
}

struct CertSpec<'a> {
    serial: Vec<u8>,
    issuer: &'a [u8],
    subject: Vec<u8>,
    spki: Vec<u8>,
    public_key_bits: Vec<u8>,
    extensions: Vec<Vec<u8>>,
}

use names::{amd_name, intel_name, key_id as ski_of};

fn build(spec: CertSpec<'_>, signer: &Signer<'_>, rng: &SystemRandom) -> Result<Cert> {
    let alg = match signer {
        Signer::RsaPss(_) => der::alg_rsa_pss_sha384(true),
        Signer::RsaPssNoTrailer(_) => der::alg_rsa_pss_sha384(false),
        Signer::P256(_) => der::alg_ecdsa_sha256(),
    };
    let not_before = time::OffsetDateTime::from_unix_timestamp(params::CERT_NOT_BEFORE)?;
    let not_after = time::OffsetDateTime::from_unix_timestamp(params::CERT_NOT_AFTER)?;
    let validity = der::seq(&[&der::time(not_before), &der::time(not_after)]);
    let ext_refs: Vec<&[u8]> = spec.extensions.iter().map(Vec::as_slice).collect();
    let tbs = der::seq(&[
        &der::ctx_cons(0, &der::uint(2)),
        &der::uint_bytes(&spec.serial),
        &alg,
        spec.issuer,
        &validity,
        &spec.subject,
        &spec.spki,
        &der::ctx_cons(3, &der::seq(&ext_refs)),
    ]);
    let sig = match signer {
        Signer::RsaPss(key) | Signer::RsaPssNoTrailer(key) => {
            let mut sig = vec![0u8; key.public().modulus_len()];
            key.sign(&signature::RSA_PSS_SHA384, rng, &tbs, &mut sig).map_err(|_| anyhow!("RSA-PSS signing failed"))?;
            sig
        }
        Signer::P256(key) => key.sign(rng, &tbs).map_err(|_| anyhow!("ECDSA signing failed"))?.as_ref().to_vec(),
    };
    Ok(Cert {
        der: der::seq(&[&tbs, &alg, &der::bits(&sig)]),
        ski: ski_of(&spec.public_key_bits),
        subject: spec.subject,
    })
}

/// A 20-byte positive serial derived from the subject CN (Intel uses 20-byte serials).
fn intel_serial(cn: &str) -> Vec<u8> {
    let digest = sha2::Sha256::digest(cn.as_bytes());
    let mut serial = digest[..20].to_vec();
    serial[0] = (serial[0] & 0x7f) | 0x10;
    serial
}

fn rsa_key(dir: &Path, name: &str) -> Result<(RsaKeyPair, Vec<u8>)> {
    let path = dir.join(format!("{name}.pem"));
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let pkcs8 = der::pem_decode(&text, "PRIVATE KEY").context("no PRIVATE KEY block")?;
    let key = RsaKeyPair::from_pkcs8(&pkcs8).map_err(|e| anyhow!("{name}: {e}"))?;
    if key.public().modulus_len() != 512 {
        bail!("{name}: expected RSA-4096");
    }
    Ok((key, pkcs8))
}

fn ec_key(alg: &'static signature::EcdsaSigningAlgorithm, rng: &SystemRandom) -> Result<(EcdsaKeyPair, Vec<u8>)> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, rng).map_err(|_| anyhow!("EC keygen"))?;
    let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), rng).map_err(|e| anyhow!("{e}"))?;
    Ok((key, pkcs8.as_ref().to_vec()))
}

struct Out {
    dir: PathBuf,
}

impl Out {
    fn write(&self, rel: &str, what: &str, label: &str, der: &[u8]) -> Result<()> {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let text = format!(
            "# {marker}\n# Veil simulator fixture: {what}.\n# Generated once by crates/veil-sim/fixtures/generate.sh; public on purpose.\n{pem}",
            marker = params::MARKER,
            pem = der::pem(label, der)
        );
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, rsa_dir, fixtures, danger] = args.as_slice() else {
        bail!("usage: generate_fixtures RSA_DIR FIXTURES_DIR DANGER_DIR");
    };
    let rng = SystemRandom::new();
    let out = Out { dir: PathBuf::from(fixtures) };
    let danger = PathBuf::from(danger);
    std::fs::create_dir_all(&danger)?;

    // ---------------------------------------------------------------- SEV-SNP
    let (ark_key, ark_pk8) = rsa_key(Path::new(rsa_dir), "ark")?;
    let (ask_key, ask_pk8) = rsa_key(Path::new(rsa_dir), "ask")?;
    let (asvk_key, asvk_pk8) = rsa_key(Path::new(rsa_dir), "asvk")?;
    let (vcek_key, vcek_pk8) = ec_key(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)?;
    let (vlek_key, vlek_pk8) = ec_key(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)?;

    let rsa_spki = |k: &RsaKeyPair| {
        let pk = k.public().as_ref().to_vec();
        (der::spki_rsa(&pk), pk)
    };
    let vcek_crl = "https://veil-sim.invalid/vcek/v1/Milan/crl";
    let vlek_crl = "https://veil-sim.invalid/vlek/v1/Milan/crl";

    let ark_subject = amd_name(params::snp::ARK_CN);
    let (spki, bits) = rsa_spki(&ark_key);
    let ark = build(
        CertSpec {
            serial: vec![0x01, 0x00, 0x00],
            issuer: &ark_subject,
            subject: ark_subject.clone(),
            extensions: vec![
                der::extension(oids::KEY_USAGE, true, &der::key_usage(&[5, 6])),
                der::extension(oids::SKI, false, &der::octets(&ski_of(&bits))),
                der::extension(oids::BASIC_CONSTRAINTS, true, &der::basic_constraints(true, None)),
                der::extension(oids::CRL_DP, false, &der::crl_dp(vcek_crl)),
            ],
            spki,
            public_key_bits: bits,
        },
        &Signer::RsaPss(&ark_key),
        &rng,
    )?;

    let sub_ca = |key: &RsaKeyPair, cn: &str, serial: Vec<u8>, crl: &str| -> Result<Cert> {
        let (spki, bits) = rsa_spki(key);
        build(
            CertSpec {
                serial,
                issuer: &ark.subject,
                subject: amd_name(cn),
                extensions: vec![
                    der::extension(oids::SKI, false, &der::octets(&ski_of(&bits))),
                    der::extension(oids::AKI, false, &der::aki(&ark.ski)),
                    der::extension(oids::BASIC_CONSTRAINTS, true, &der::basic_constraints(true, Some(0))),
                    der::extension(oids::KEY_USAGE, true, &der::key_usage(&[5])),
                    der::extension(oids::CRL_DP, false, &der::crl_dp(crl)),
                ],
                spki,
                public_key_bits: bits,
            },
            &Signer::RsaPss(&ark_key),
            &rng,
        )
    };
    let ask = sub_ca(&ask_key, params::snp::ASK_CN, vec![0x01, 0x00, 0x01], vcek_crl)?;
    let asvk = sub_ca(&asvk_key, params::snp::ASVK_CN, vec![0x01, 0x01, 0x01], vlek_crl)?;

    let amd_ext = |tail: &[u64], value: Vec<u8>| der::extension(&arc(&AMD, tail), false, &value);
    let spl_exts = || {
        vec![
            amd_ext(&[1, 3, 1], der::uint(params::snp::BL_SPL.into())),
            amd_ext(&[1, 3, 2], der::uint(params::snp::TEE_SPL.into())),
            amd_ext(&[1, 3, 4], der::uint(0)),
            amd_ext(&[1, 3, 5], der::uint(0)),
            amd_ext(&[1, 3, 6], der::uint(0)),
            amd_ext(&[1, 3, 7], der::uint(0)),
            amd_ext(&[1, 3, 3], der::uint(params::snp::SNP_SPL.into())),
            amd_ext(&[1, 3, 8], der::uint(params::snp::UCODE_SPL.into())),
        ]
    };
    let ec_spki384 = |k: &EcdsaKeyPair| {
        let point = k.public_key().as_ref().to_vec();
        (der::spki_ec(oids::P384, &point), point)
    };

    let mut vcek_exts =
        vec![amd_ext(&[1, 1], der::uint(0)), amd_ext(&[1, 2], der::ia5(params::snp::VCEK_PRODUCT_NAME))];
    vcek_exts.extend(spl_exts());
    // hwID: the 64 raw chip-id bytes directly in extnValue (no inner DER), as AMD does.
    vcek_exts.push(amd_ext(&[1, 4], params::snp::chip_id().to_vec()));
    let (spki, bits) = ec_spki384(&vcek_key);
    let vcek = build(
        CertSpec {
            serial: vec![0],
            issuer: &ask.subject,
            subject: amd_name(params::snp::VCEK_CN),
            extensions: vcek_exts,
            spki,
            public_key_bits: bits,
        },
        &Signer::RsaPss(&ask_key),
        &rng,
    )?;

    let mut vlek_exts =
        vec![amd_ext(&[1, 1], der::uint(0)), amd_ext(&[1, 2], der::ia5(params::snp::VLEK_PRODUCT_NAME))];
    vlek_exts.extend(spl_exts());
    vlek_exts.push(amd_ext(&[1, 5], der::ia5(params::snp::VLEK_CSP_ID)));
    let (spki, bits) = ec_spki384(&vlek_key);
    let vlek = build(
        CertSpec {
            serial: vec![0],
            issuer: &asvk.subject,
            subject: amd_name(params::snp::VLEK_CN),
            extensions: vlek_exts,
            spki,
            public_key_bits: bits,
        },
        &Signer::RsaPssNoTrailer(&asvk_key),
        &rng,
    )?;

    out.write("snp/ark.key.pem", "simulated AMD ARK-Milan private key (RSA-4096, PKCS#8)", "PRIVATE KEY", &ark_pk8)?;
    out.write(
        "snp/ask.key.pem",
        "simulated AMD ASK (SEV-Milan) private key (RSA-4096, PKCS#8)",
        "PRIVATE KEY",
        &ask_pk8,
    )?;
    out.write(
        "snp/asvk.key.pem",
        "simulated AMD ASVK (SEV-VLEK-Milan) private key (RSA-4096, PKCS#8)",
        "PRIVATE KEY",
        &asvk_pk8,
    )?;
    out.write("snp/vcek.key.pem", "simulated VCEK private key (P-384, PKCS#8)", "PRIVATE KEY", &vcek_pk8)?;
    out.write("snp/vlek.key.pem", "simulated VLEK private key (P-384, PKCS#8)", "PRIVATE KEY", &vlek_pk8)?;
    out.write(
        "snp/ark.pem",
        "simulated AMD ARK-Milan certificate (self-signed, RSA-PSS SHA-384)",
        "CERTIFICATE",
        &ark.der,
    )?;
    out.write("snp/ask.pem", "simulated AMD ASK (SEV-Milan) certificate, signed by the ARK", "CERTIFICATE", &ask.der)?;
    out.write(
        "snp/asvk.pem",
        "simulated AMD ASVK (SEV-VLEK-Milan) certificate, signed by the ARK",
        "CERTIFICATE",
        &asvk.der,
    )?;
    out.write("snp/vcek.pem", "simulated VCEK certificate, signed by the ASK", "CERTIFICATE", &vcek.der)?;
    out.write("snp/vlek.pem", "simulated VLEK certificate, signed by the ASVK", "CERTIFICATE", &vlek.der)?;
    std::fs::write(danger.join("sim_ark_milan.der"), &ark.der)?;
    std::fs::write(danger.join("sim_ask_milan.der"), &ask.der)?;
    std::fs::write(danger.join("sim_asvk_milan.der"), &asvk.der)?;

    // ---------------------------------------------------------------- Intel DCAP
    let p256 = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let (root_key, root_pk8) = ec_key(p256, &rng)?;
    let (pca_key, pca_pk8) = ec_key(p256, &rng)?;
    let (tcb_key, tcb_pk8) = ec_key(p256, &rng)?;
    let (pck_key, pck_pk8) = ec_key(p256, &rng)?;
    let (ak_key, ak_pk8) = ec_key(p256, &rng)?;
    // Certificates are signed with the ASN.1 (DER) ECDSA form; load ASN.1 twins.
    let asn1 = |pk8: &[u8]| {
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pk8, &rng).map_err(|e| anyhow!("{e}"))
    };
    let root_signer = asn1(&root_pk8)?;
    let pca_signer = asn1(&pca_pk8)?;

    let ec_spki256 = |k: &EcdsaKeyPair| {
        let point = k.public_key().as_ref().to_vec();
        (der::spki_ec(oids::P256, &point), point)
    };
    let root_crl_uri = "https://veil-sim.invalid/IntelSGXRootCA.der";
    let pck_crl_uri = "https://veil-sim.invalid/sgx/certification/v4/pckcrl?ca=platform&encoding=der";

    let root_subject = intel_name(params::tdx::ROOT_CN);
    let (spki, bits) = ec_spki256(&root_key);
    let root_ski = ski_of(&bits);
    let root = build(
        CertSpec {
            serial: intel_serial(params::tdx::ROOT_CN),
            issuer: &root_subject,
            subject: root_subject.clone(),
            extensions: vec![
                der::extension(oids::AKI, false, &der::aki(&root_ski)),
                der::extension(oids::CRL_DP, false, &der::crl_dp(root_crl_uri)),
                der::extension(oids::SKI, false, &der::octets(&root_ski)),
                der::extension(oids::KEY_USAGE, true, &der::key_usage(&[5, 6])),
                der::extension(oids::BASIC_CONSTRAINTS, true, &der::basic_constraints(true, Some(1))),
            ],
            spki,
            public_key_bits: bits,
        },
        &Signer::P256(&root_signer),
        &rng,
    )?;

    let issued = |issuer: &Cert,
                  signer: &EcdsaKeyPair,
                  key: &EcdsaKeyPair,
                  cn: &str,
                  crl_uri: &str,
                  ca: Option<u64>,
                  extra: Vec<Vec<u8>>|
     -> Result<Cert> {
        let (spki, bits) = ec_spki256(key);
        let (ku, bc) = match ca {
            Some(path_len) => (der::key_usage(&[5, 6]), der::basic_constraints(true, Some(path_len))),
            None => (der::key_usage(&[0, 1]), der::basic_constraints(false, None)),
        };
        let mut extensions = vec![
            der::extension(oids::AKI, false, &der::aki(&issuer.ski)),
            der::extension(oids::CRL_DP, false, &der::crl_dp(crl_uri)),
            der::extension(oids::SKI, false, &der::octets(&ski_of(&bits))),
            der::extension(oids::KEY_USAGE, true, &ku),
            der::extension(oids::BASIC_CONSTRAINTS, true, &bc),
        ];
        extensions.extend(extra);
        build(
            CertSpec {
                serial: intel_serial(cn),
                issuer: &issuer.subject,
                subject: intel_name(cn),
                extensions,
                spki,
                public_key_bits: bits,
            },
            &Signer::P256(signer),
            &rng,
        )
    };
    let platform_ca =
        issued(&root, &root_signer, &pca_key, params::tdx::PLATFORM_CA_CN, root_crl_uri, Some(0), vec![])?;
    let tcb_signing = issued(&root, &root_signer, &tcb_key, params::tdx::TCB_SIGNING_CN, root_crl_uri, None, vec![])?;

    // The SGX extension, shaped like a real Platform-CA-issued PCK certificate.
    let sgx = |tail: &[u64]| der::oid(&arc(&SGX, tail));
    let mut tcb_parts: Vec<Vec<u8>> = params::tdx::SGX_COMPONENTS
        .iter()
        .zip(1u64..)
        .map(|(svn, i)| der::seq(&[&sgx(&[2, i]), &der::uint((*svn).into())]))
        .collect();
    tcb_parts.push(der::seq(&[&sgx(&[2, 17]), &der::uint(params::tdx::PCE_SVN.into())]));
    tcb_parts.push(der::seq(&[&sgx(&[2, 18]), &der::octets(&params::tdx::SGX_COMPONENTS)]));
    let tcb_refs: Vec<&[u8]> = tcb_parts.iter().map(Vec::as_slice).collect();
    let sgx_ext = der::seq(&[
        &der::seq(&[&sgx(&[1]), &der::octets(&params::tdx::PPID)]),
        &der::seq(&[&sgx(&[2]), &der::seq(&tcb_refs)]),
        &der::seq(&[&sgx(&[3]), &der::octets(&params::tdx::PCE_ID)]),
        &der::seq(&[&sgx(&[4]), &der::octets(&params::tdx::FMSPC)]),
        &der::seq(&[&sgx(&[5]), &der::enumerated(1)]),
        &der::seq(&[&sgx(&[6]), &der::octets(&params::tdx::PLATFORM_INSTANCE_ID)]),
        &der::seq(&[
            &sgx(&[7]),
            &der::seq(&[
                &der::seq(&[&sgx(&[7, 1]), &der::boolean(true)]),
                &der::seq(&[&sgx(&[7, 2]), &der::boolean(true)]),
                &der::seq(&[&sgx(&[7, 3]), &der::boolean(true)]),
            ]),
        ]),
    ]);
    let pck = issued(
        &platform_ca,
        &pca_signer,
        &pck_key,
        params::tdx::PCK_CN,
        pck_crl_uri,
        None,
        vec![der::extension(&SGX, false, &sgx_ext)],
    )?;

    // The QE report certifying the attestation key, signed by the PCK key once, here,
    // as a real QE does when it generates its attestation key.
    let ak_point = ak_key.public_key().as_ref();
    let ak_raw = ak_point.get(1..).context("AK point")?; // x || y, 64 bytes
    let mut hash_input = ak_raw.to_vec();
    hash_input.extend_from_slice(&params::tdx::qe_auth_data());
    let qe_hash = sha2::Sha256::digest(&hash_input);
    let mut qe_report = vec![0u8; 384];
    qe_report[0..16].copy_from_slice(&params::tdx::SGX_COMPONENTS);
    qe_report[48..64].copy_from_slice(&params::tdx::QE_ATTRIBUTES);
    qe_report[64..96].copy_from_slice(&params::tdx::QE_MRENCLAVE);
    qe_report[128..160].copy_from_slice(&params::tdx::QE_MRSIGNER);
    qe_report[256..258].copy_from_slice(&params::tdx::QE_ISV_PROD_ID.to_le_bytes());
    qe_report[258..260].copy_from_slice(&params::tdx::QE_ISV_SVN.to_le_bytes());
    qe_report[320..352].copy_from_slice(&qe_hash);
    let qe_sig = pck_key.sign(&rng, &qe_report).map_err(|_| anyhow!("QE report signing"))?;

    out.write("tdx/root.key.pem", "simulated Intel SGX Root CA private key (P-256, PKCS#8)", "PRIVATE KEY", &root_pk8)?;
    out.write(
        "tdx/pck_platform_ca.key.pem",
        "simulated Intel SGX PCK Platform CA private key (P-256, PKCS#8)",
        "PRIVATE KEY",
        &pca_pk8,
    )?;
    out.write(
        "tdx/tcb_signing.key.pem",
        "simulated Intel SGX TCB Signing private key (P-256, PKCS#8)",
        "PRIVATE KEY",
        &tcb_pk8,
    )?;
    out.write("tdx/pck.key.pem", "simulated PCK private key (P-256, PKCS#8)", "PRIVATE KEY", &pck_pk8)?;
    out.write(
        "tdx/attestation_key.key.pem",
        "simulated TD QE attestation key (P-256, PKCS#8)",
        "PRIVATE KEY",
        &ak_pk8,
    )?;
    out.write("tdx/root.pem", "simulated Intel SGX Root CA certificate (self-signed)", "CERTIFICATE", &root.der)?;
    out.write(
        "tdx/pck_platform_ca.pem",
        "simulated Intel SGX PCK Platform CA certificate",
        "CERTIFICATE",
        &platform_ca.der,
    )?;
    out.write("tdx/tcb_signing.pem", "simulated Intel SGX TCB Signing certificate", "CERTIFICATE", &tcb_signing.der)?;
    out.write("tdx/pck.pem", "simulated PCK certificate (Platform CA issued, SGX extension)", "CERTIFICATE", &pck.der)?;
    out.write(
        "tdx/qe_report.pem",
        "simulated TD QE report (384 bytes) certifying the attestation key",
        "VEIL SIM QE REPORT",
        &qe_report,
    )?;
    out.write(
        "tdx/qe_report_sig.pem",
        "PCK signature (raw r||s) over the simulated QE report",
        "VEIL SIM QE REPORT SIGNATURE",
        qe_sig.as_ref(),
    )?;
    std::fs::write(danger.join("sim_intel_sgx_root_ca.der"), &root.der)?;
    std::fs::write(danger.join("sim_intel_sgx_pck_platform_ca.der"), &platform_ca.der)?;
    std::fs::write(danger.join("sim_intel_sgx_tcb_signing.der"), &tcb_signing.der)?;

    // ---------------------------------------------------------------- TPM
    let (_, tpm_ak_pk8) = ec_key(p256, &rng)?;
    out.write("tpm/ak.key.pem", "simulated TPM attestation key (ECDSA P-256, PKCS#8)", "PRIVATE KEY", &tpm_ak_pk8)?;

    println!("fixtures written to {fixtures}; public simulated certificates to {}", danger.display());
    Ok(())
}
