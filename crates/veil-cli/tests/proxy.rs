//! The relying party's tools end to end, as real processes on loopback: `veil verify`
//! reports on a runtime against a policy file, and `veil proxy` lets the official
//! `openai` Python package talk to a verified runtime unchanged — and refuses, with an
//! OpenAI-shaped error, when the runtime does not pass the policy.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

mod common;
use common::{Proc, cached_model, keygen, run, seal_full, start_broker, start_runtime, stdout, veil, venv_bin};

const API_KEY: &str = "proxy-test-key";

/// Starts `veil proxy`; returns it and its base URL (`http://127.0.0.1:PORT/v1`).
fn start_proxy(upstream: &str, policy: &Path) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["proxy", "--upstream", upstream, "--policy"])
        .arg(policy)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().expect("the proxy printed nothing").unwrap();
    let url = line.strip_prefix("proxy: ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_owned();
    (Proc(child), url)
}

/// The client side, exactly as an application would write it with the `openai` package.
const CLIENT: &str = r#"
import json, sys
from openai import OpenAI, APIStatusError
client = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
out = {}
try:
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2", temperature=0, max_tokens=24,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}])
    chat = raw.parse()
    out["chat"] = chat.choices[0].message.content
    out["chat_receipt_verified"] = raw.headers.get("veil-receipt-verified")
    out["chat_has_receipt"] = bool((chat.model_extra or {}).get("veil_receipt"))
    stream = client.chat.completions.create(
        model="smollm2", temperature=0, max_tokens=24, stream=True,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}])
    out["stream"] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    emb = client.embeddings.create(model="minilm", input=["The cat sat on the mat.", "Stock markets fell."])
    out["embedding_dims"] = [len(d.embedding) for d in emb.data]
except APIStatusError as e:
    out["error_status"] = e.status_code
    out["error"] = e.body
print(json.dumps(out))
"#;

fn openai_client(base_url: &str) -> Value {
    let mut child = Command::new(venv_bin("python"))
        .args(["-", base_url, API_KEY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(CLIENT.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "the openai client failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn the_openai_package_talks_to_a_verified_runtime_through_the_proxy_and_is_refused_otherwise() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let b = start_broker();
    keygen(d, "owner", "SECP256R1", false);
    let (chat, signer) = seal_full(d, &b, &cached_model("smollm2"), "smollm2");
    let (embed, _) = seal_full(d, &b, &cached_model("minilm"), "minilm");
    let key_hash = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, API_KEY.as_bytes()));
    let cfg = d.join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{state}\"\n[kbs]\nurl = \"{url}\"\nca_cert = \"{ca}\"\n[tee]\nkind = \"sim\"\n\
             danger_simulated = true\n[api]\nkey_hashes = [\"sha256:{key_hash}\"]\n\
             [[model]]\nname = \"smollm2\"\nkind = \"chat\"\nbundle = \"{d}/smollm2.veil\"\nsigner = \"{d}/owner.pub\"\n\
             [[model]]\nname = \"minilm\"\nkind = \"embedding\"\nbundle = \"{d}/minilm.veil\"\nsigner = \"{d}/owner.pub\"\n",
            state = d.join("state").display(),
            url = b.url,
            ca = b.ca_path.display(),
            d = d.display(),
        ),
    )
    .unwrap();
    let tmp = d.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let r = start_runtime(&cfg, &tmp).unwrap_or_else(|(c, e)| panic!("runtime exited {c}: {e}"));

    let policy = |name: &str, text: String| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let good = policy(
        "good.toml",
        format!("allow_simulated = true\nmodels = [\"{chat}\", \"{embed}\"]\nsigners = [\"{signer}\"]\n"),
    );
    let default = policy("default.toml", format!("models = [\"{chat}\"]\n"));
    let other = format!("sha256:{}", "ab".repeat(32));
    let wrong_model = policy("wrong-model.toml", format!("allow_simulated = true\nmodels = [\"{other}\"]\n"));

    // `veil verify`: a report, and the exit status.
    let o = veil(&["verify", &r.url, "--policy", good.to_str().unwrap(), "--nonce"], d);
    let report = stdout(&o);
    assert!(o.status.success(), "{report}");
    for line in ["✓ evidence", "✓ binding", "✓ fresh", "✓ roots", "✓ model", "✓ signer", "PASS"] {
        assert!(report.contains(line), "{line:?} missing from\n{report}");
    }
    let o = veil(&["verify", &r.url, "--policy", default.to_str().unwrap(), "--json"], d);
    assert_eq!(o.status.code(), Some(1), "simulated evidence under the default policy must fail");
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["verified"], false);
    let failed: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["roots"], "{v}");
    let o = veil(&["verify", &r.url, "--policy", wrong_model.to_str().unwrap()], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(&format!("✗ model        model {other} is not in the runtime's event log")),
        "{}",
        stdout(&o)
    );

    // The proxy with a policy the runtime passes: the official client works unchanged,
    // and every answer's receipt was checked.
    let (_p, base) = start_proxy(&r.url, &good);
    let out = openai_client(&base);
    assert!(out.get("error").is_none(), "{out}");
    assert!(out["chat"].as_str().unwrap().contains("Paris"), "{out}");
    assert!(out["chat_receipt_verified"].as_str().unwrap().starts_with("seq="), "{out}");
    assert_eq!(out["chat_has_receipt"], true, "{out}");
    assert!(out["stream"].as_str().unwrap().contains("Paris"), "{out}");
    assert_eq!(out["embedding_dims"], serde_json::json!([384, 384]), "{out}");

    // Simulated evidence under a policy that does not accept it, or another model: the
    // request never reaches the runtime, and the client gets an OpenAI-shaped 502.
    for (policy, why) in [(&default, "simulated root"), (&wrong_model, "not in the runtime's event log")] {
        let (_p, base) = start_proxy(&r.url, policy);
        let out = openai_client(&base);
        assert_eq!(out["error_status"], 502, "{out}");
        let msg = out["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("failed verification") && msg.contains(why), "{out}");
        assert_eq!(out["error"]["type"], "veil_verification_error", "{out}");
    }

    // A man in the middle: a TLS endpoint with a valid certificate but no evidence.
    let (_mitm, mitm) = mitm_server(d);
    let o = veil(&["verify", &mitm, "--policy", good.to_str().unwrap()], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("✗ evidence"), "{}", stdout(&o));
    assert!(stdout(&o).contains("RA-TLS evidence extension"), "{}", stdout(&o));

    // A relay: the genuine runtime's evidence, re-wrapped in a certificate for the
    // attacker's own key (runtime data and pubkey-hash rewritten to name it). Every
    // binding the attacker controls matches; the report data the TEE signed does not.
    let (_relay, relay) = relay_server(d, &r.cert);
    let o = veil(&["verify", &relay, "--policy", good.to_str().unwrap()], d);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let report = stdout(&o);
    assert!(report.contains("✗ evidence"), "{report}");
    assert!(report.contains("report_data mismatch"), "{report}");
    // The proxy refuses it too, before the request leaves.
    let (_p, base) = start_proxy(&relay, &good);
    let out = openai_client(&base);
    assert_eq!(out["error_status"], 502, "{out}");
}

/// A TLS server presenting the runtime's certificate evidence (from `runtime_cert`, PEM)
/// in a certificate for another key, rewritten so that every binding the holder of
/// that key can forge names it: the RA-TLS `pubkey-hash` and the runtime data's
/// `tee-pubkey`. Only the report data signed by the TEE still names the runtime's key.
fn relay_server(d: &Path, runtime_cert: &Path) -> (Proc, String) {
    use base64::Engine as _;
    let pem = std::fs::read_to_string(runtime_cert).unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>())
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let oid = x509_parser::oid_registry::Oid::from(&veil_kbs::ratls::OID_TAGGED_EVIDENCE).unwrap();
    let ext = cert.extensions().iter().find(|e| e.oid == oid).expect("the runtime's certificate has evidence");
    let genuine = veil_kbs::ratls::decode(ext.value).unwrap();

    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let point = rcgen::PublicKeyData::der_bytes(&kp).to_vec();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut att = genuine.attestation.clone();
    att.runtime_data.tee_pubkey = veil_kbs::TeePubKey::EC {
        crv: "P-256".into(),
        alg: "ES256".into(),
        x: b64.encode(&point[1..33]),
        y: b64.encode(&point[33..65]),
    };
    let spki = rcgen::PublicKeyData::subject_public_key_info(&kp);
    let forged = veil_kbs::ratls::encode(genuine.tee, &genuine.raw, &spki, &att).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(&veil_kbs::ratls::OID_TAGGED_EVIDENCE, forged));
    let c = params.self_signed(&kp).unwrap();
    std::fs::write(d.join("relay.crt"), c.pem()).unwrap();
    std::fs::write(d.join("relay.key"), kp.serialize_pem()).unwrap();
    s_server(d, "relay.crt", "relay.key")
}

/// A TLS server (openssl s_server) with an ordinary self-signed certificate: what a
/// man in the middle would present. Returns it and its URL.
fn mitm_server(d: &Path) -> (Proc, String) {
    let o = run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "mitm.key",
            "-out",
            "mitm.crt",
        ])
        .current_dir(d));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s_server(d, "mitm.crt", "mitm.key")
}

/// `openssl s_server` on a free loopback port with `cert` and `key` (in `d`).
fn s_server(d: &Path, cert: &str, key: &str) -> (Proc, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept", &port.to_string(), "-cert", cert, "-key", key])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (Proc(child), format!("https://127.0.0.1:{port}"))
}
