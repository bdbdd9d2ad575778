//! Verification cost on one core (criterion runs single-threaded), against the
//! bars of DESIGN.md §9:
//! - SNP report with a cached (already verified) VCEK chain: ≤ 1 ms;
//! - TDX quote with verified collateral cached: ≤ 0.5 ms and ≤ 0.5× `dcap_qvl::verify::verify`
//!   on the same quote and collateral (dcap-qvl re-checks collateral and chain every call);
//! - TPM quote (RSA-2048 AK, 24 PCRs);
//! - composite evidence: an Azure SEV-SNP CVM's HCL report (SNP report, cached chain)
//!   bound to its vTPM quote (RSA-2048 AK, 24 PCRs, nonce), both verified per call.
//!
//! Run: `cargo bench -p veil-benches --bench verify`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use veil_attestation::{Options, Verifier, azure, snp, tdx, tpm};
use veil_benches::vectors;

fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

fn read(p: &str) -> Vec<u8> {
    std::fs::read(vectors().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn bench_snp(c: &mut Criterion) {
    let report = read("sev-snp/trustee-milan-vcek-v2/report.bin");
    let vcek = read("sev-snp/trustee-milan-vcek-v2/vcek.der");
    let chain = read("sev-snp/trustee-milan-vcek-v2/cert_chain.pem");
    let opts = Options::at(at("2025-06-01T00:00:00Z"));
    let v = snp::SnpVerifier::default();
    let ev = snp::SnpEvidence { report: &report, vcek: Some(&vcek), vlek: None, chain: Some(&chain) };
    v.verify(&ev, &opts).unwrap();
    c.bench_function("snp_verify_cached_chain", |b| b.iter(|| v.verify(black_box(&ev), &opts).unwrap()));
    // The floor: one P-384 ECDSA verification alone, over the same signed bytes,
    // with the library the verifier uses (aws-lc-rs) and with ring for comparison.
    let parsed = snp::parse_report(&report).unwrap();
    let sig = parsed.signature_p1363();
    let cert = x509_parser::parse_x509_certificate(&vcek).unwrap().1;
    let key = cert.public_key().subject_public_key.data.to_vec();
    let signed = &report[..snp::SIGNED_LEN];
    c.bench_function("snp_p384_signature_only_aws_lc", |b| {
        b.iter(|| {
            aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED, &key)
                .verify(black_box(signed), &sig)
                .unwrap()
        })
    });
    c.bench_function("snp_p384_signature_only_ring", |b| {
        b.iter(|| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P384_SHA384_FIXED, &key)
                .verify(black_box(signed), &sig)
                .unwrap()
        })
    });
    c.bench_function("snp_verify_cold", |b| {
        b.iter(|| snp::SnpVerifier::default().verify(black_box(&ev), &opts).unwrap())
    });
}

fn bench_tdx(c: &mut Criterion) {
    let quote = read("tdx/dcapqvl-tdx_quote/quote.bin");
    let coll_json = read("tdx/dcapqvl-tdx_quote/collateral.json");
    let when = at("2025-07-19T10:00:34Z");
    let opts = Options::at(when);
    let collateral = tdx::Collateral::from_json(&coll_json).unwrap();
    let v = tdx::TdxVerifier::default();
    let ev = tdx::TdxEvidence { quote: &quote, collateral: Some(&collateral), root: None };
    v.verify(&ev, &opts).unwrap();
    let qvl_coll: dcap_qvl::QuoteCollateralV3 = serde_json::from_slice(&coll_json).unwrap();
    let now = u64::try_from(when.unix_timestamp()).unwrap();
    dcap_qvl::verify::verify(&quote, &qvl_coll, now).unwrap();
    let mut g = c.benchmark_group("tdx_verify");
    g.bench_function("veil_cached_collateral", |b| b.iter(|| v.verify(black_box(&ev), &opts).unwrap()));
    g.bench_function("dcap_qvl", |b| b.iter(|| dcap_qvl::verify::verify(black_box(&quote), &qvl_coll, now).unwrap()));
    g.bench_function("veil_cold", |b| b.iter(|| tdx::TdxVerifier::default().verify(black_box(&ev), &opts).unwrap()));
    g.finish();
}

fn bench_tpm(c: &mut Criterion) {
    let d = "tpm/gotpmtools-gce-cos85-nonce9009";
    let attest = read(&format!("{d}/quote_sha256.tpms_attest.bin"));
    let sig = read(&format!("{d}/quote_sha256.tpmt_signature.bin"));
    let ak = read(&format!("{d}/ak_pub.pem"));
    let pcrs = tpm::PcrValues::from_quotes_json(&read(&format!("{d}/quotes.json")), tpm::HashAlg::Sha256).unwrap();
    let opts = Options::at(at("2025-06-01T00:00:00Z")).with_nonce(vec![0x90, 0x09]);
    let ev = tpm::TpmEvidence {
        attest: &attest,
        signature: &sig,
        ak: &ak,
        ak_chain: None,
        pcrs: Some(pcrs),
        event_log: None,
    };
    tpm::TpmVerifier.verify(&ev, &opts).unwrap();
    c.bench_function("tpm_quote_verify", |b| b.iter(|| tpm::TpmVerifier.verify(black_box(&ev), &opts).unwrap()));
}

fn bench_composite(c: &mut Criterion) {
    let d = "azure-snp-vtpm/trustee-evidence-v1";
    let hcl = read(&format!("{d}/hcl_report.bin"));
    let quote = read(&format!("{d}/tpm_quote.json"));
    let vcek = read(&format!("{d}/vcek.pem"));
    let chain = read(&format!("{d}/cert_chain.pem"));
    let opts = Options::at(at("2025-06-01T00:00:00Z")).with_nonce(b"challenge".to_vec());
    let ev = azure::AzSnpEvidence { hcl_report: &hcl, tpm_quote: &quote, vcek: &vcek, chain: Some(&chain) };
    let v = azure::AzSnpVtpmVerifier::default();
    v.verify(&ev, &opts).unwrap();
    c.bench_function("composite_az_snp_vtpm_cached_chain", |b| b.iter(|| v.verify(black_box(&ev), &opts).unwrap()));
}

criterion_group!(benches, bench_snp, bench_tdx, bench_tpm, bench_composite);
criterion_main!(benches);
