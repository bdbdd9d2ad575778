//! Attested-TLS handshakes against plain TLS (rustls), on loopback, one at a time:
//! each sample is a TCP connect and a whole TLS 1.3 handshake from a fresh client
//! connection (no session resumption), timed until the client has the server's
//! Finished and has sent its own.
//!
//! - `attested`: against a running `veil serve`, with the relying party's
//!   [`RaTlsVerifier`] verifying the certificate's evidence on every handshake
//!   (`every_handshake`: what a proxy does for each new connection);
//! - `attested-cached`: the same verifier as a client keeps it: the evidence is verified
//!   on the first handshake and the certificate recognised by its bytes afterwards;
//! - `pinned`: the same runtime, its certificate pinned by its bytes (plain TLS against
//!   the same server, evidence not looked at);
//! - `plain`: an in-process tokio-rustls server with an ordinary P-256 certificate under
//!   a P-256 CA (rcgen), verified by rustls' WebPKI verifier: plain TLS as anyone
//!   deploys it.
//!
//! All four use ring's provider, as the runtime and its client do. Prints one JSON
//! object per mode (median, min, max, p99 in ms, handshakes/s).
//!
//! `tls-handshake --url https://127.0.0.1:PORT --cert RUNTIME_CERT.pem [--n 300]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use veil_client::{ClientPolicy, RaTlsVerifier};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Accepts exactly the pinned certificate (by its bytes) and checks the handshake
/// signature with it: plain TLS to a known key.
#[derive(Debug)]
struct Pinned {
    der: Vec<u8>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the pinned certificate".into()))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn tls13(
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Res<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>> {
    Ok(rustls::ClientConfig::builder_with_provider(provider).with_protocol_versions(&[&rustls::version::TLS13])?)
}

/// `n` handshakes to `addr` (after `warm` untimed ones); returns each one's duration.
async fn handshakes(
    addr: &str,
    name: &str,
    mut cfg: rustls::ClientConfig,
    warm: usize,
    n: usize,
) -> Res<Vec<Duration>> {
    // Every sample a full handshake: a resumed one would not present (or check) the
    // certificate at all.
    cfg.resumption = rustls::client::Resumption::disabled();
    let connector = TlsConnector::from(Arc::new(cfg));
    let server = ServerName::try_from(name.to_string())?;
    let mut out = Vec::with_capacity(n);
    for i in 0..warm + n {
        let t0 = Instant::now();
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let tls = connector.connect(server.clone(), tcp).await?;
        let took = t0.elapsed();
        drop(tls);
        if i >= warm {
            out.push(took);
        }
    }
    Ok(out)
}

fn summary(mode: &str, what: &str, mut d: Vec<Duration>) -> serde_json::Value {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1e3;
    let total: f64 = d.iter().map(|x| x.as_secs_f64()).sum();
    let pick = |q: f64| d.get(((d.len() as f64 - 1.0) * q).round() as usize).copied().map_or(f64::NAN, ms);
    json!({
        "mode": mode,
        "what": what,
        "n": d.len(),
        "median_ms": pick(0.5),
        "p99_ms": pick(0.99),
        "min_ms": d.first().copied().map_or(f64::NAN, ms),
        "max_ms": d.last().copied().map_or(f64::NAN, ms),
        "per_s": d.len() as f64 / total,
    })
}

/// A plain TLS 1.3 server on loopback (CA-issued P-256 leaf for `localhost`), on its own
/// thread, as the runtime is its own process.
fn plain_server() -> Res<(String, rustls::RootCertStore)> {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "bench CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])?.signed_by(&leaf_key, &issuer)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )?;
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?.to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::spawn(move || {
        rt.block_on(async move {
            let Ok(listener) = TcpListener::from_std(listener) else { return };
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut sink = [0u8; 64];
                        let _ = tls.read(&mut sink).await;
                    }
                });
            }
        })
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone())?;
    Ok((addr, roots))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Res<()> {
    let mut url = String::new();
    let mut cert = String::new();
    let mut n = 300usize;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or_else(|| format!("{k}: a value is required"))?;
        match k.as_str() {
            "--url" => url = v,
            "--cert" => cert = v,
            "--n" => n = v.parse().map_err(|_| "--n: not a number")?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let addr = url.strip_prefix("https://").ok_or("--url: an https:// URL of a running veil serve is required")?;
    let addr = addr.trim_end_matches('/').to_string();
    let pem = std::fs::read(&cert).map_err(|e| format!("--cert {cert}: {e}"))?;
    let der = rustls_pemfile::certs(&mut pem.as_slice()).next().ok_or("--cert: no certificate in the file")??.to_vec();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let warm = 10;

    // The simulator's roots are trusted here because the runtime under test runs on the
    // simulated TEE; everything else is the relying party's default policy.
    let policy = ClientPolicy { danger_trust_simulator: true, ..ClientPolicy::default() };
    let every = Arc::new(RaTlsVerifier::new(policy.clone()).every_handshake());
    let d = handshakes(&addr, "localhost", every.client_config()?, warm, n).await?;
    let v = every.verified().ok_or("the attested handshake completed without a verified runtime")?;
    if !v.appraisal.simulated {
        return Err("expected simulated evidence from the runtime under test".into());
    }
    println!("{}", summary("attested", "veil serve; RA-TLS certificate's evidence verified on every handshake", d));

    let cached = Arc::new(RaTlsVerifier::new(policy));
    let d = handshakes(&addr, "localhost", cached.client_config()?, warm, n).await?;
    println!(
        "{}",
        summary(
            "attested-cached",
            "veil serve; evidence verified on the first handshake, the certificate recognised by its bytes after",
            d
        )
    );

    let pinned = Pinned { der, provider: provider.clone() };
    let cfg =
        tls13(provider.clone())?.dangerous().with_custom_certificate_verifier(Arc::new(pinned)).with_no_client_auth();
    let d = handshakes(&addr, "localhost", cfg, warm, n).await?;
    println!("{}", summary("pinned", "veil serve; certificate pinned by its bytes (plain TLS to the same server)", d));

    let (plain_addr, roots) = plain_server()?;
    let cfg = tls13(provider)?.with_root_certificates(roots).with_no_client_auth();
    let d = handshakes(&plain_addr, "localhost", cfg, warm, n).await?;
    println!(
        "{}",
        summary("plain", "in-process tokio-rustls server, P-256 leaf under a P-256 CA, WebPKI verification", d)
    );
    Ok(())
}
