#![no_main]
// An untrusted server certificate through the RA-TLS check (X.509, the CBOR extension,
// the KBS attestation JSON, evidence verification), and the extension parser alone.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    veil_kbs::ratls::fuzz_decode(data);
    veil_client::ratls::fuzz_certificate(data);
});
