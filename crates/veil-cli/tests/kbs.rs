//! The key broker as a real process on loopback (`veil kbs serve --dev`), driven by the
//! Veil KBS client with evidence from the simulated configfs-tsm, and by raw protocol
//! requests for the refusals.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::{Value, json};
use veil_enclave::kbs::{EvidenceProvider, KbsClient, KbsClientError};
use veil_enclave::tsm::TsmAttester;
use veil_host::kbs::admin::AdminClient;
use veil_sim::tsm::{Provider, TsmConfig, TsmSim};

mod common;

use common::{Broker, start_broker};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

fn admin(b: &Broker) -> AdminClient {
    AdminClient::new(&b.url, Some(&b.ca), &std::fs::read(&b.admin_key).unwrap()).unwrap()
}

fn provider(root: &Path) -> EvidenceProvider {
    EvidenceProvider::new(Arc::new(TsmAttester::new(root)))
}

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn refused_kind(e: KbsClientError) -> String {
    match e {
        KbsClientError::Refused { kind, .. } => kind,
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn simulated_cvm_obtains_a_model_key_and_refusals_have_the_right_class() {
    let b = start_broker();
    let rt = rt();
    let admin = admin(&b);
    let key = veil_seal::DataKey::from_bytes([7u8; 32]);
    let path = rt.block_on(admin.register_model_key(DIGEST, &key)).unwrap();
    assert_eq!(path, format!("veil/model-key/{}", &DIGEST[7..]));

    let client = KbsClient::new(&b.url, Some(&b.ca)).unwrap();
    let tsm = tempfile::tempdir().unwrap();
    let _sim = TsmSim::start(tsm.path(), Provider::SevGuest).unwrap();
    let got = rt.block_on(client.fetch(&provider(tsm.path()), &path)).unwrap();
    assert_eq!(got.as_slice(), &[7u8; 32]);

    // The token is an EAR JWT that verifies with the broker's published key and says simulated.
    let session = rt.block_on(client.attest(&provider(tsm.path()))).unwrap();
    let raw = Raw::new(&b);
    let jwks: jsonwebtoken::jwk::JwkSet = rt.block_on(async {
        raw.http.get(format!("{}/.well-known/jwks.json", b.url)).send().await.unwrap().json().await.unwrap()
    });
    let claims = veil_kbs::ear::verify(&session.token, &jwks).unwrap();
    let cpu = &claims.submods["cpu0"];
    assert!(cpu.veil.simulated);
    assert_eq!(cpu.veil.tee, "snp");
    assert_eq!(cpu.status, veil_kbs::ear::Status::Affirming);

    // A resource that does not exist.
    let e = rt.block_on(client.resource(&session, "veil/model-key/00")).unwrap_err();
    assert_eq!(refused_kind(e), "ResourceNotFound");

    // Wrong measurement: reference values name another one.
    rt.block_on(admin.set_reference_values(&json!({"allow_simulated": true, "measurements": ["00".repeat(48)]})))
        .unwrap();
    let e = rt.block_on(client.fetch(&provider(tsm.path()), &path)).unwrap_err();
    assert_eq!(refused_kind(e), "PolicyDeny");
    rt.block_on(admin.set_reference_values(&json!({"allow_simulated": true, "allow_any_measurement": true}))).unwrap();

    // Revoked model digest.
    rt.block_on(admin.revoke(DIGEST)).unwrap();
    let e = rt.block_on(client.fetch(&provider(tsm.path()), &path)).unwrap_err();
    assert_eq!(refused_kind(e), "PolicyDeny");

    // The audit log recorded the releases and the denials with reasons.
    let log = rt.block_on(admin.decisions(100)).unwrap();
    let events: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert!(events.contains(&"release") && events.contains(&"deny") && events.contains(&"revoke"), "{events:?}");
    let denial = log.as_array().unwrap().iter().rev().find(|e| e["event"] == "deny").unwrap();
    assert_eq!(denial["detail"], "model revoked");
    // And the metrics count them.
    let m =
        rt.block_on(async { raw.http.get(format!("{}/metrics", b.url)).send().await.unwrap().text().await.unwrap() });
    assert!(m.contains(r#"veil_kbs_decisions_total{outcome="released"} 1"#), "{m}");
    assert!(m.contains(r#"veil_kbs_decisions_total{outcome="denied"} 2"#), "{m}");
}

#[test]
fn debug_guests_are_refused() {
    let b = start_broker();
    let rt = rt();
    rt.block_on(admin(&b).register("veil/model-key/aa", b"k")).unwrap();
    let tsm = tempfile::tempdir().unwrap();
    let mut cfg = TsmConfig::default();
    cfg.snp.policy |= 1 << 19; // DEBUG
    let _sim = TsmSim::start_with(tsm.path(), Provider::SevGuest, cfg).unwrap();
    let client = KbsClient::new(&b.url, Some(&b.ca)).unwrap();
    let e = rt.block_on(client.fetch(&provider(tsm.path()), "veil/model-key/aa")).unwrap_err();
    assert_eq!(refused_kind(e), "PolicyDeny");
}

/// Raw protocol requests, for what the client never does.
struct Raw {
    http: reqwest::Client,
    url: String,
}

impl Raw {
    fn new(b: &Broker) -> Self {
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&b.ca).unwrap())
            .tls_built_in_root_certs(false)
            .build()
            .unwrap();
        Self { http, url: b.url.clone() }
    }

    async fn auth(&self, tee: &str) -> (String, String) {
        let r = self
            .http
            .post(format!("{}/kbs/v0/auth", self.url))
            .json(&json!({"version": "0.4.0", "tee": tee, "extra-params": {}}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["extra-params"], "");
        (cookie, body["nonce"].as_str().unwrap().to_owned())
    }

    async fn attest(&self, cookie: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/kbs/v0/attest", self.url))
            .header("cookie", cookie)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

/// Trustee's `sample` evidence (unsigned): the report data in base64, as its attester sends it.
fn sample_attestation(nonce: String) -> (veil_kbs::jwe::TeeKeyPair, Value) {
    use base64::Engine as _;
    let keys = veil_kbs::jwe::TeeKeyPair::generate().unwrap();
    let rd = veil_kbs::RuntimeData { nonce, tee_pubkey: keys.public().clone() };
    let report_data = veil_kbs::report_data(&rd, "").unwrap();
    let rd64 = base64::engine::general_purpose::STANDARD.encode(&report_data[..48]);
    let body = json!({"init-data": null, "runtime-data": rd, "tee-evidence": {
        "primary_evidence": {"svn": "1", "report_data": rd64}, "additional_evidence": ""}});
    (keys, body)
}

fn snp_attestation(tsm: &Path, nonce: &str) -> Value {
    let keys = veil_kbs::jwe::TeeKeyPair::generate().unwrap();
    let rd = veil_kbs::RuntimeData { nonce: nonce.into(), tee_pubkey: keys.public().clone() };
    let report_data = veil_kbs::report_data(&rd, "").unwrap();
    let primary = provider(tsm).primary(&report_data).unwrap();
    json!({"init-data": null, "runtime-data": rd, "tee-evidence": {"primary_evidence": primary, "additional_evidence": ""}})
}

#[test]
fn protocol_refusals() {
    let b = start_broker();
    let rt = rt();
    let raw = Raw::new(&b);
    let tsm = tempfile::tempdir().unwrap();
    let _sim = TsmSim::start(tsm.path(), Provider::SevGuest).unwrap();
    rt.block_on(async {
        // No token: TokenNotFound, in the protocol's error shape (decodes as kbs-types).
        let r = raw.http.get(format!("{}/kbs/v0/resource/veil/model-key/aa", raw.url)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let e: kbs_types::ErrorInformation = r.json().await.unwrap();
        assert_eq!(e.error_type, "https://github.com/confidential-containers/kbs/errors/TokenNotFound");

        // Wrong protocol version.
        let r = raw
            .http
            .post(format!("{}/kbs/v0/auth", raw.url))
            .json(&json!({"version": "0.1.1", "tee": "snp", "extra-params": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);

        // A good attestation, then the same nonce again: single use.
        let (cookie, nonce) = raw.auth("snp").await;
        let body = snp_attestation(tsm.path(), &nonce);
        let (status, tok) = raw.attest(&cookie, &body).await;
        assert_eq!(status, 200, "{tok}");
        assert!(tok["token"].is_string());
        let (status, e) = raw.attest(&cookie, &body).await;
        assert_eq!((status, e["type"].as_str().unwrap().rsplit('/').next().unwrap()), (401, "AttestationFailed"));

        // Replayed evidence in another session: its report data binds the old nonce.
        let (cookie2, _nonce2) = raw.auth("snp").await;
        let mut replay = body.clone();
        replay["runtime-data"]["nonce"] = json!(_nonce2);
        let (status, e) = raw.attest(&cookie2, &replay).await;
        assert_eq!((status, e["type"].as_str().unwrap().rsplit('/').next().unwrap()), (401, "AttestationFailed"));

        // Evidence from another session (its nonce) sent with this session's cookie.
        let (cookie3, _) = raw.auth("snp").await;
        let (_, nonce4) = raw.auth("snp").await;
        let (status, e) = raw.attest(&cookie3, &snp_attestation(tsm.path(), &nonce4)).await;
        assert_eq!((status, e["type"].as_str().unwrap().rsplit('/').next().unwrap()), (401, "AttestationFailed"));

        // An unknown session.
        let (status, e) = raw.attest("kbs-session-id=00", &body).await;
        assert_eq!((status, e["type"].as_str().unwrap().rsplit('/').next().unwrap()), (401, "UnAuthenticatedCookie"));

        // A tampered token as a bearer token.
        let t = tok["token"].as_str().unwrap();
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = String::from_utf8(b64.decode(&parts[1]).unwrap()).unwrap();
        let forged = payload.replace("\"simulated\":true", "\"simulated\":false");
        assert_ne!(forged, payload);
        parts[1] = b64.encode(forged);
        let r = raw
            .http
            .get(format!("{}/kbs/v0/resource/veil/model-key/aa", raw.url))
            .bearer_auth(parts.join("."))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let e: Value = r.json().await.unwrap();
        assert!(e["type"].as_str().unwrap().ends_with("TokenVerificationFailed"), "{e}");

        // Oversized body: 413 from the declared length, or (if the broker closed the
        // connection while the client was still writing) a broken pipe; never processed.
        let r = raw
            .http
            .post(format!("{}/kbs/v0/attest", raw.url))
            .header("cookie", &cookie)
            .body(vec![b' '; 2 << 20])
            .send()
            .await;
        match r {
            Ok(r) => assert_eq!(r.status().as_u16(), 413),
            Err(e) => assert!(
                format!("{e:?}").contains("BrokenPipe") || format!("{e:?}").contains("ConnectionReset"),
                "{e:?}"
            ),
        }

        // Admin API without an admin token, or with one that lacks the role or lives too long.
        let r =
            raw.http.post(format!("{}/kbs/v0/revoke", raw.url)).json(&json!({"digest": DIGEST})).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(&b.admin_key).unwrap()).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        for claims in [
            json!({"iat": now, "exp": now + 60}),
            json!({"iat": now, "exp": now + 86_400, "role": "admin"}),
            json!({"iat": now - 120, "exp": now - 60, "role": "admin"}),
        ] {
            let t = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256), &claims, &key)
                .unwrap();
            let r = raw
                .http
                .post(format!("{}/kbs/v0/revoke", raw.url))
                .bearer_auth(t)
                .json(&json!({"digest": DIGEST}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 401, "{claims}");
        }
    });
}

/// A broker from the dev configuration with `edit` applied to its kbs.toml.
fn start_edited(edit: impl Fn(String) -> String) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("kbs");
    veil_host::kbs::dev::ensure(&d).unwrap();
    let cfg = edit(std::fs::read_to_string(d.join("kbs.toml")).unwrap());
    std::fs::write(d.join("kbs.toml"), cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["kbs", "serve", "--config"])
        .arg(d.join("kbs.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    Broker {
        child,
        url: line.strip_prefix("kbs: ").unwrap().to_owned(),
        admin_key: d.join("admin.key"),
        ca: std::fs::read(d.join("tls.crt")).unwrap(),
        ca_path: d.join("tls.crt"),
        _dir: dir,
    }
}

#[test]
fn expired_sessions_are_refused() {
    let b = start_edited(|c| format!("{c}session_timeout_secs = 1\n"));
    let rt = rt();
    rt.block_on(admin(&b).register("veil/model-key/aa", b"k")).unwrap();
    let tsm = tempfile::tempdir().unwrap();
    let _sim = TsmSim::start(tsm.path(), Provider::SevGuest).unwrap();
    let raw = Raw::new(&b);
    rt.block_on(async {
        // Challenge, then attest too late.
        let (cookie, nonce) = raw.auth("snp").await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let (status, e) = raw.attest(&cookie, &snp_attestation(tsm.path(), &nonce)).await;
        assert_eq!((status, e["type"].as_str().unwrap().rsplit('/').next().unwrap()), (401, "ExpiredCookie"));
        // Attest in time, fetch too late.
        let (cookie, nonce) = raw.auth("snp").await;
        let (status, _) = raw.attest(&cookie, &snp_attestation(tsm.path(), &nonce)).await;
        assert_eq!(status, 200);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let r = raw
            .http
            .get(format!("{}/kbs/v0/resource/veil/model-key/aa", raw.url))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let e: Value = r.json().await.unwrap();
        assert!(e["type"].as_str().unwrap().ends_with("ExpiredCookie"), "{e}");
    });
}

#[test]
fn simulated_evidence_is_refused_without_the_opt_in() {
    let b = start_edited(|c| c.replace("danger_trust_simulator = true", "danger_trust_simulator = false"));
    let rt = rt();
    rt.block_on(admin(&b).register("veil/model-key/aa", b"k")).unwrap();
    let tsm = tempfile::tempdir().unwrap();
    let _sim = TsmSim::start(tsm.path(), Provider::SevGuest).unwrap();
    let client = KbsClient::new(&b.url, Some(&b.ca)).unwrap();
    let e = rt.block_on(client.fetch(&provider(tsm.path()), "veil/model-key/aa")).unwrap_err();
    assert_eq!(refused_kind(e), "AttestationFailed");
    // Trustee's unsigned `sample` TEE too.
    let raw = Raw::new(&b);
    rt.block_on(async {
        let (cookie, nonce) = raw.auth("sample").await;
        let (_keys, body) = sample_attestation(nonce);
        let (status, e) = raw.attest(&cookie, &body).await;
        assert_eq!((status, e["type"].as_str().unwrap().rsplit('/').next().unwrap()), (401, "AttestationFailed"));
    });
}

#[test]
fn sample_tee_is_accepted_with_the_opt_in_and_marked_simulated() {
    let b = start_broker();
    let rt = rt();
    rt.block_on(admin(&b).register("default/test/key1", b"sample secret")).unwrap();
    let raw = Raw::new(&b);
    rt.block_on(async {
        let (cookie, nonce) = raw.auth("sample").await;
        let (keys, body) = sample_attestation(nonce);
        let (status, tok) = raw.attest(&cookie, &body).await;
        assert_eq!(status, 200, "{tok}");
        let jwks: jsonwebtoken::jwk::JwkSet =
            raw.http.get(format!("{}/.well-known/jwks.json", raw.url)).send().await.unwrap().json().await.unwrap();
        let claims = veil_kbs::ear::verify(tok["token"].as_str().unwrap(), &jwks).unwrap();
        let cpu = &claims.submods["cpu0"];
        assert!(cpu.veil.simulated && cpu.veil.tee == "sample", "{:?}", cpu.veil);
        let r = raw
            .http
            .get(format!("{}/kbs/v0/resource/default/test/key1", raw.url))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let jwe: veil_kbs::jwe::FlatJwe = r.json().await.unwrap();
        assert_eq!(keys.open(&jwe).unwrap().as_slice(), b"sample secret");
    });
}

#[test]
fn simulated_tdx_cvm_obtains_a_key_with_collateral_and_without_it_is_not_affirmed() {
    let b = start_broker();
    let rt = rt();
    rt.block_on(admin(&b).register("veil/model-key/td", b"tdx key")).unwrap();
    let tsm = tempfile::tempdir().unwrap();
    let _sim = TsmSim::start(tsm.path(), Provider::TdxGuest).unwrap();
    let client = KbsClient::new(&b.url, Some(&b.ca)).unwrap();
    let issue = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let collateral: Value =
        serde_json::from_slice(&veil_sim::tdx::collateral_json(issue, issue + time::Duration::days(30)).unwrap())
            .unwrap();
    let mut ev = provider(tsm.path());
    ev.tdx_collateral = Some(collateral);
    assert_eq!(rt.block_on(client.fetch(&ev, "veil/model-key/td")).unwrap().as_slice(), b"tdx key");
    // Without collateral the TCB status is not evaluated: the platform is not affirmed.
    let e = rt.block_on(client.fetch(&provider(tsm.path()), "veil/model-key/td")).unwrap_err();
    assert_eq!(refused_kind(e), "PolicyDeny");
}

#[test]
fn rate_limits_and_metrics() {
    let b = start_edited(|c| format!("{c}rate_limit_per_sec = 0.5\nrate_limit_burst = 3\n"));
    let rt = rt();
    let raw = Raw::new(&b);
    rt.block_on(async {
        let mut statuses = Vec::new();
        for _ in 0..5 {
            let r = raw
                .http
                .post(format!("{}/kbs/v0/auth", raw.url))
                .json(&json!({"version": "0.4.0", "tee": "snp", "extra-params": {}}))
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 200, 429, 429]);
        let m = raw.http.get(format!("{}/metrics", raw.url)).send().await.unwrap().text().await.unwrap();
        assert!(m.contains(r#"veil_kbs_requests_total{endpoint="/kbs/v0/auth",status="200"} 3"#), "{m}");
        assert!(m.contains(r#"veil_kbs_requests_total{endpoint="/kbs/v0/auth",status="429"} 2"#), "{m}");
        assert!(m.contains("veil_kbs_request_duration_seconds_bucket"), "{m}");
    });
}

#[test]
fn veil_seal_registers_the_model_key_and_the_cvm_unseals_with_it() {
    let b = start_broker();
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    common::keygen(d, "owner", "SECP256R1", false);
    std::fs::create_dir(d.join("m")).unwrap();
    std::fs::write(d.join("m/README.md"), "---\nlicense: mit\n---\n").unwrap();
    std::fs::write(d.join("m/w.bin"), vec![5u8; 100_000]).unwrap();
    std::fs::write(d.join("ca.pem"), &b.ca).unwrap();
    let o = common::veil(
        &[
            "seal",
            "m",
            "--signing-key",
            "owner.pem",
            "--out",
            "m.veil",
            "--key-out",
            "m.key",
            "--kbs",
            &b.url,
            "--admin-key",
            b.admin_key.to_str().unwrap(),
            "--ca-cert",
            "ca.pem",
        ],
        d,
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let out = common::stdout(&o);
    let digest = out.lines().find_map(|l| l.strip_prefix("manifest digest: ")).unwrap();
    assert!(out.contains(&format!("veil/model-key/{}", &digest[7..])), "{out}");

    // The simulated CVM gets the key from the broker and unseals the bundle with it.
    let rt = rt();
    let tsm = tempfile::tempdir().unwrap();
    let _sim = TsmSim::start(tsm.path(), Provider::SevGuest).unwrap();
    let client = KbsClient::new(&b.url, Some(&b.ca)).unwrap();
    let key = rt.block_on(client.fetch(&provider(tsm.path()), &veil_kbs::model_key_path(digest))).unwrap();
    let key = veil_seal::DataKey::from_bytes(key.as_slice().try_into().unwrap());
    let signer = std::fs::read(d.join("owner.pub")).unwrap();
    let u = veil_seal::unseal::unseal(&d.join("m.veil"), &signer, &key).unwrap();
    assert_eq!(u.manifest_digest, digest);
    assert_eq!(u.file("w.bin").unwrap(), vec![5u8; 100_000].as_slice());
}

#[test]
fn init_data_must_match_host_data() {
    let b = start_broker();
    let rt = rt();
    let raw = Raw::new(&b);
    let toml = "algorithm = \"sha256\"\nversion = \"0.1.0\"\n[data]\n\"policy.rego\" = \"package agent_policy\"\n";
    let digest: [u8; 32] =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, toml.as_bytes()).as_ref().try_into().unwrap();
    let with_init = |mut body: Value| {
        body["init-data"] = json!({"format": "toml", "body": toml});
        body
    };
    // A CVM launched with this init-data (HOST_DATA = its SHA-256) is accepted, and the
    // token carries the init-data claims.
    let good = tempfile::tempdir().unwrap();
    let mut cfg = TsmConfig::default();
    cfg.snp.host_data = digest;
    let _sim = TsmSim::start_with(good.path(), Provider::SevGuest, cfg).unwrap();
    // One launched with other HOST_DATA is refused.
    let bad = tempfile::tempdir().unwrap();
    let _sim2 = TsmSim::start(bad.path(), Provider::SevGuest).unwrap();
    rt.block_on(async {
        let (cookie, nonce) = raw.auth("snp").await;
        let (status, tok) = raw.attest(&cookie, &with_init(snp_attestation(good.path(), &nonce))).await;
        assert_eq!(status, 200, "{tok}");
        let payload = tok["token"].as_str().unwrap().split('.').nth(1).unwrap().to_owned();
        use base64::Engine as _;
        let claims: Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let init = &claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["init_data_claims"];
        assert_eq!(init["algorithm"], "sha256", "{claims}");

        let (cookie, nonce) = raw.auth("snp").await;
        let (status, e) = raw.attest(&cookie, &with_init(snp_attestation(bad.path(), &nonce))).await;
        assert_eq!((status, e["type"].as_str().unwrap().rsplit('/').next().unwrap()), (401, "AttestationFailed"));
    });
}

fn token_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// TEE type `tpm` (Trustee's TPM evidence) from a real software TPM: the quote binds
/// the session, but a bare TPM's AK proves nothing until the operator lists it.
#[test]
fn a_bare_tpm_obtains_a_key_only_with_a_trusted_ak() {
    use veil_enclave::swtpm::Swtpm;
    use veil_enclave::tpm::TpmAttester;
    let b = start_broker();
    let rt = rt();
    let admin = admin(&b);
    let path = "veil/model-key/ab";
    rt.block_on(admin.register(path, b"tpm-key")).unwrap();
    let sw = Swtpm::start().unwrap();
    let tpm = Arc::new(TpmAttester::open(&sw.tcti()).unwrap());
    let provider = EvidenceProvider::tpm_only(tpm.clone());
    let client = KbsClient::new(&b.url, Some(&b.ca)).unwrap();

    // Unlisted AK: the attestation is contraindicated and the release denied.
    let session = rt.block_on(client.attest(&provider)).unwrap();
    let claims = token_claims(&session.token);
    let cpu = &claims["submods"]["cpu0"];
    assert_eq!(cpu["veil"]["tee"], "tpm", "{claims}");
    assert_eq!(cpu["ear.status"], "contraindicated", "{claims}");
    let e = rt.block_on(client.resource(&session, path)).unwrap_err();
    assert_eq!(refused_kind(e), "PolicyDeny");

    // Listed: released. The AK is the one the TPM holds now.
    let ak = tpm.ak().unwrap().unwrap();
    let ak_sha = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &ak.public_der));
    rt.block_on(
        admin.set_reference_values(
            &json!({"allow_simulated": true, "allow_any_measurement": true, "tpm_aks": [ak_sha]}),
        ),
    )
    .unwrap();
    let got = rt.block_on(client.fetch(&provider, path)).unwrap();
    assert_eq!(got.as_slice(), b"tpm-key");
}

/// Veil's composition: simulated SEV-SNP evidence with a software TPM's quote in
/// additional-evidence. The CPU report binds the quote; reference PCR values gate the
/// release on the runtime measurements in the TPM.
#[test]
fn a_cpu_tee_with_a_tpm_is_gated_on_its_pcrs() {
    use veil_enclave::swtpm::Swtpm;
    use veil_enclave::tpm::TpmAttester;
    let b = start_broker();
    let rt = rt();
    let admin = admin(&b);
    let path = "veil/model-key/cd";
    rt.block_on(admin.register(path, b"composite-key")).unwrap();
    let tsm = tempfile::tempdir().unwrap();
    let _sim = TsmSim::start(tsm.path(), Provider::SevGuest).unwrap();
    let sw = Swtpm::start().unwrap();
    let tpm = TpmAttester::open(&sw.tcti()).unwrap();
    tpm.extend(23, &[0x5a; 32]).unwrap();
    let pcr23 = hex::encode(tpm.read_pcrs(&[23]).unwrap()[&23]);
    let provider = provider(tsm.path()).with_tpm(Arc::new(tpm));
    let client = KbsClient::new(&b.url, Some(&b.ca)).unwrap();

    let session = rt.block_on(client.attest(&provider)).unwrap();
    let claims = token_claims(&session.token);
    let annotated = &claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"];
    assert_eq!(annotated["snp"]["tpm"]["claims"]["pcrs"]["23"], pcr23.as_str(), "{claims}");
    assert_eq!(rt.block_on(client.resource(&session, path)).unwrap().as_slice(), b"composite-key");

    // Reference PCR 23 names another value: denied; the right value: released.
    let reference = |v: &str| json!({"allow_simulated": true, "allow_any_measurement": true, "tpm_pcrs": {"23": v}});
    rt.block_on(admin.set_reference_values(&reference(&"00".repeat(32)))).unwrap();
    let e = rt.block_on(client.fetch(&provider, path)).unwrap_err();
    assert_eq!(refused_kind(e), "PolicyDeny");
    rt.block_on(admin.set_reference_values(&reference(&pcr23))).unwrap();
    assert_eq!(rt.block_on(client.fetch(&provider, path)).unwrap().as_slice(), b"composite-key");
}

/// Additional evidence the CPU report does not bind, or whose quote is not for this
/// session, is refused.
#[test]
fn composite_tpm_evidence_must_be_bound_and_fresh() {
    use veil_enclave::swtpm::Swtpm;
    use veil_enclave::tpm::TpmAttester;
    let b = start_broker();
    let rt = rt();
    let raw = Raw::new(&b);
    let tsm = tempfile::tempdir().unwrap();
    let _sim = TsmSim::start(tsm.path(), Provider::SevGuest).unwrap();
    let sw = Swtpm::start().unwrap();
    let tpm = TpmAttester::open(&sw.tcti()).unwrap();
    rt.block_on(async {
        // A quote over a stale qualifying data, correctly bound by the report: refused.
        let (cookie, nonce) = raw.auth("snp").await;
        let (ak, quote) = tpm.quote_now(&[0u8; 32]).unwrap();
        let additional = json!({"tpm": {
            "ak_public": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &ak.public_der),
            "tpm_quote": {
                "signature": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &quote.signature),
                "message": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &quote.attest),
                "pcrs": quote.pcr_values.values().map(hex::encode).collect::<Vec<_>>()}}})
        .to_string();
        let keys = veil_kbs::jwe::TeeKeyPair::generate().unwrap();
        let rd = veil_kbs::RuntimeData { nonce: nonce.clone(), tee_pubkey: keys.public().clone() };
        let report_data = veil_kbs::report_data(&rd, &additional).unwrap();
        let primary = provider(tsm.path()).primary(&report_data).unwrap();
        let body = json!({"runtime-data": rd, "tee-evidence": {"primary_evidence": primary, "additional_evidence": additional}});
        let (status, e) = raw.attest(&cookie, &body).await;
        assert_eq!((status, e["type"].as_str().unwrap().rsplit('/').next().unwrap()), (401, "AttestationFailed"));

        // Additional evidence swapped after the report was made: the report data no
        // longer matches.
        let (cookie, nonce) = raw.auth("snp").await;
        let rd = veil_kbs::RuntimeData { nonce, tee_pubkey: keys.public().clone() };
        let report_data = veil_kbs::report_data(&rd, "").unwrap();
        let primary = provider(tsm.path()).primary(&report_data).unwrap();
        let body = json!({"runtime-data": rd, "tee-evidence": {"primary_evidence": primary, "additional_evidence": additional}});
        let (status, _) = raw.attest(&cookie, &body).await;
        assert_eq!(status, 401);
    });
    // The audit log says why, in full: the stale quote, then the unbound report.
    let log = rt.block_on(admin(&b).decisions(10)).unwrap();
    let details: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "deny-attest")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(details.len(), 2, "{log}");
    assert!(details[0].contains("additional tpm evidence"), "{details:?}");
    assert!(details[1].contains("report"), "{details:?}");
}
