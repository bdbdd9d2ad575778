//! The serving runtime end to end, as real processes on loopback: the key broker
//! (`veil kbs serve --dev`) and the runtime (`veil serve`) on the simulated SEV-SNP TEE,
//! serving sealed SmolLM2 and MiniLM through the OpenAI-compatible API.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

mod common;
use common::{Broker, cached_model, keygen, seal, start_broker, start_runtime, stderr, stdout, veil};

const API_KEY: &str = "test-key-1";

fn config(d: &Path, b: &Broker, signer: &str, extra: &str) -> PathBuf {
    let key_hash = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, API_KEY.as_bytes()));
    let text = format!(
        r#"state_dir = "{state}"
reattest_secs = 1
[kbs]
url = "{url}"
ca_cert = "{ca}"
[tee]
kind = "sim"
danger_simulated = true
[api]
key_hashes = ["sha256:{key_hash}"]
[[model]]
name = "smollm2"
kind = "chat"
bundle = "{d}/smollm2.veil"
signer = "{d}/{signer}"
[[model]]
name = "minilm"
kind = "embedding"
bundle = "{d}/minilm.veil"
signer = "{d}/{signer}"
{extra}"#,
        state = d.join("state").display(),
        url = b.url,
        ca = b.ca_path.display(),
        d = d.display(),
    );
    let p = d.join(format!("serve-{signer}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn client(cert: &Path) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(cert).unwrap()).unwrap())
        .build()
        .unwrap()
}

async fn post(c: &reqwest::Client, url: &str, body: &Value, key: Option<&str>) -> (u16, String) {
    let mut r = c.post(url).json(body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let resp = r.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// `veil kbs admin ... revoke DIGEST`.
fn revoke(d: &Path, b: &Broker, digest: &str) {
    let admin = b.admin_key.to_str().unwrap();
    let ca = b.ca_path.to_str().unwrap();
    let o = veil(&["kbs", "admin", "--kbs", &b.url, "--admin-key", admin, "--ca-cert", ca, "revoke", digest], d);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f64>().sqrt() * b.iter().map(|x| x * x).sum::<f64>().sqrt())
}

/// Every regular file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn sealed_models_are_served_over_tls_and_withdrawn_on_revocation() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let b = start_broker();
    keygen(d, "owner", "SECP256R1", false);
    let chat_digest = seal(d, &b, &cached_model("smollm2"), "smollm2");
    seal(d, &b, &cached_model("minilm"), "minilm");
    let runtime_tmp = d.join("runtime-tmp");
    std::fs::create_dir(&runtime_tmp).unwrap();
    let before: Vec<PathBuf> = files(d);

    let cfg = config(d, &b, "owner.pub", "");
    let r = start_runtime(&cfg, &runtime_tmp).unwrap_or_else(|(c, e)| panic!("runtime exited {c}: {e}"));
    let c = client(&r.cert);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let chat_url = format!("{}/v1/chat/completions", r.url);
    let question = json!({"model": "smollm2", "temperature": 0, "max_tokens": 16,
        "messages": [{"role": "user", "content": "What is the capital of France? Answer in one word."}]});
    rt.block_on(async {
        // Models.
        let m: Value =
            c.get(format!("{}/v1/models", r.url)).bearer_auth(API_KEY).send().await.unwrap().json().await.unwrap();
        let ids: Vec<&str> = m["data"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["smollm2", "minilm"], "{m}");

        // Fresh evidence binds the caller's nonce and the TLS key in the certificate, by
        // the broker protocol's report-data rule, and verifies (simulated roots trusted).
        let nonce = hex::encode([9u8; 32]);
        let a: Value =
            c.get(format!("{}/v1/attestation?nonce={nonce}", r.url)).send().await.unwrap().json().await.unwrap();
        let rd: veil_kbs::RuntimeData = serde_json::from_value(a["runtime-data"].clone()).unwrap();
        assert_eq!(rd.nonce, nonce);
        let additional = a["tee-evidence"]["additional_evidence"].as_str().unwrap();
        let expected = veil_kbs::report_data(&rd, additional).unwrap();
        assert_eq!(a["report_data"], hex::encode(expected));
        let veil_kbs::TeePubKey::EC { x, y, .. } = &rd.tee_pubkey else { panic!("{a}") };
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut point = vec![4u8];
        point.extend(b64.decode(x).unwrap());
        point.extend(b64.decode(y).unwrap());
        let pem = std::fs::read_to_string(&r.cert).unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>())
            .unwrap();
        assert!(der.windows(65).any(|w| w == point.as_slice()), "the attested key is not the certificate's key");
        // The certificate's own evidence (RA-TLS) and the fresh evidence both verify, name
        // both models in the event log (SNP alone: bound by the report data), and the
        // fresh evidence is refused for another nonce.
        let policy = veil_client::ratls::ClientPolicy { danger_trust_simulator: true, ..Default::default() };
        let verifiers = veil_client::evidence::Verifiers::default();
        let cert =
            veil_client::ratls::verify_certificate(&der, &policy, &verifiers, time::OffsetDateTime::now_utc()).unwrap();
        assert!(cert.appraisal.simulated);
        let fresh = veil_client::ratls::verify_fresh(&a, &nonce, &cert, &policy, &verifiers).unwrap();
        let events = fresh.runtime_events.as_ref().unwrap();
        assert_eq!(events.bound_by, "report-data");
        let manifests: Vec<&str> = events
            .events
            .iter()
            .filter(|e| e.event_type == "veil.model-manifest")
            .map(|e| e.content.as_str())
            .collect();
        assert_eq!(manifests.len(), 2);
        assert!(manifests.contains(&chat_digest.as_str()), "{manifests:?}");
        assert!(veil_client::ratls::verify_fresh(&a, &hex::encode([8u8; 32]), &cert, &policy, &verifiers).is_err());
        let strict = veil_client::ratls::ClientPolicy::default();
        let e = veil_client::ratls::verify_certificate(&der, &strict, &verifiers, time::OffsetDateTime::now_utc())
            .unwrap_err();
        assert!(e.to_string().contains("simulat"), "{e}");
        assert_eq!(a["models"].as_array().unwrap().len(), 2);
        let bad = c.get(format!("{}/v1/attestation?nonce=zz", r.url)).send().await.unwrap();
        assert_eq!(bad.status().as_u16(), 400);

        // A chat completion with a sensible answer.
        let (s, body) = post(&c, &chat_url, &question, Some(API_KEY)).await;
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let answer = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(answer.contains("Paris"), "{v}");
        assert_eq!(v["object"], "chat.completion");
        // Its receipt verifies with the attested key and names this request and answer.
        use veil_enclave::serve::receipt;
        let r1 = receipt::verify(v["veil_receipt"].as_str().unwrap(), &rd.tee_pubkey).unwrap();
        assert_eq!(r1.req, receipt::sha256_hex(&serde_json::to_vec(&question).unwrap()));
        assert_eq!(r1.resp, receipt::json_answer_hash(&v).unwrap());
        assert_eq!(
            (r1.model.as_str(), r1.manifest.as_str(), r1.id.as_str()),
            ("smollm2", chat_digest.as_str(), v["id"].as_str().unwrap())
        );
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 10);

        // The same, streamed: SSE chunks, the same text, a finish reason, then [DONE].
        let mut q = question.clone();
        q["stream"] = json!(true);
        let (s, body) = post(&c, &chat_url, &q, Some(API_KEY)).await;
        assert_eq!(s, 200, "{body}");
        let events: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
        assert_eq!(events.last(), Some(&"[DONE]"), "{body}");
        let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
        let text: String =
            chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<Vec<_>>().concat();
        assert_eq!(text, answer);
        let receipt_chunk = chunks.last().unwrap();
        assert_eq!(receipt_chunk["choices"], json!([]), "{body}");
        let r2 = receipt::verify(receipt_chunk["veil_receipt"].as_str().unwrap(), &rd.tee_pubkey).unwrap();
        assert_eq!(r2.resp, receipt::sha256_hex(text.as_bytes()));
        assert!(r2.seq > r1.seq);

        // Both receipts are records of the audit log, under their own sequence numbers
        // and with the same hashes; the log verifies against the certificate's key, and
        // an edited record is named.
        let log_path = d.join("state/audit.log");
        let log = std::fs::read_to_string(&log_path).unwrap();
        let records: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        for r in [&r1, &r2] {
            let rec = &records[r.seq as usize];
            assert_eq!((rec["seq"].as_u64(), rec["type"].as_str()), (Some(r.seq), Some("receipt")), "{rec}");
            assert_eq!((rec["req"].as_str(), rec["resp"].as_str()), (Some(r.req.as_str()), Some(r.resp.as_str())));
        }
        assert!(records.iter().any(|r| r["path"] == "/v1/attestation" && r["status"] == 400), "{log}");
        assert!(!log.contains("Paris") && !log.contains("capital"), "the log holds request or answer text");
        let o = veil(&["audit", "verify", log_path.to_str().unwrap(), "--cert", r.cert.to_str().unwrap()], d);
        assert!(o.status.success(), "{}", stderr(&o));
        let summary: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(summary["runs"], 1);
        let mut lines: Vec<String> = log.lines().map(str::to_owned).collect();
        let i = r1.seq as usize;
        lines[i] = lines[i].replace(&r1.resp, &receipt::sha256_hex(b"another answer"));
        std::fs::write(d.join("edited.log"), lines.join("\n") + "\n").unwrap();
        let o = veil(&["audit", "verify", "edited.log"], d);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains(&format!("record at line {}", i + 2)), "{}", stderr(&o));
        assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop", "{body}");

        // Text completion.
        let (s, body) = post(
            &c,
            &format!("{}/v1/completions", r.url),
            &json!({"model": "smollm2", "prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}),
            Some(API_KEY),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");

        // Embeddings: a paraphrase ranks above an unrelated sentence; base64 is the same vector.
        let input = json!([
            "The cat sits on the mat.",
            "A cat is sitting on a rug.",
            "Quarterly revenue rose by four percent."
        ]);
        let (s, body) =
            post(&c, &format!("{}/v1/embeddings", r.url), &json!({"model": "minilm", "input": input}), Some(API_KEY))
                .await;
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let vecs: Vec<Vec<f64>> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
            .collect();
        assert!(cosine(&vecs[0], &vecs[1]) > cosine(&vecs[0], &vecs[2]) + 0.4);
        let r3 = receipt::verify(v["veil_receipt"].as_str().unwrap(), &rd.tee_pubkey).unwrap();
        assert_eq!((r3.model.as_str(), r3.resp.clone()), ("minilm", receipt::json_answer_hash(&v).unwrap()));
        let (_, body) = post(
            &c,
            &format!("{}/v1/embeddings", r.url),
            &json!({"model": "minilm", "input": "The cat sits on the mat.", "encoding_format": "base64"}),
            Some(API_KEY),
        )
        .await;
        let v: Value = serde_json::from_str(&body).unwrap();
        let raw =
            base64::engine::general_purpose::STANDARD.decode(v["data"][0]["embedding"].as_str().unwrap()).unwrap();
        let floats: Vec<f64> = raw.chunks(4).map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap()))).collect();
        assert!(cosine(&floats, &vecs[0]) > 0.9999);

        // Refusals in OpenAI's error shape.
        let (s, body) = post(&c, &chat_url, &question, None).await;
        assert_eq!(s, 401, "{body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["type"], "authentication_error");
        assert_eq!(post(&c, &chat_url, &question, Some("wrong")).await.0, 401);
        let (s, body) = post(
            &c,
            &chat_url,
            &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
            Some(API_KEY),
        )
        .await;
        assert_eq!(s, 404, "{body}");
        let mut n2 = question.clone();
        n2["n"] = json!(2);
        let (s, body) = post(&c, &chat_url, &n2, Some(API_KEY)).await;
        assert_eq!(s, 400, "{body}");
        let msg = serde_json::from_str::<Value>(&body).unwrap()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains("\"n\""), "{body}");
        let resp = c
            .post(&chat_url)
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let e: Value = resp.json().await.unwrap();
        assert_eq!(e["error"]["type"], "invalid_request_error");
        // Oversized body: refused from the declared length before the body is read, so
        // the runtime may answer 413 and close while the client is still writing; then
        // the client sees a broken pipe or a reset instead of the answer (the runtime's
        // own unit test reads the 413 itself). Either way it was never processed, and the
        // runtime goes on serving.
        let big = "x".repeat(2 << 20);
        match client(&r.cert).post(&chat_url).bearer_auth(API_KEY).body(big).send().await {
            Ok(resp) => {
                assert_eq!(resp.status().as_u16(), 413);
                assert_eq!(resp.headers().get("connection").and_then(|v| v.to_str().ok()), Some("close"));
            }
            Err(e) => assert!(
                format!("{e:?}").contains("BrokenPipe") || format!("{e:?}").contains("ConnectionReset"),
                "{e:?}"
            ),
        }
        let mut huge = question.clone();
        huge["max_tokens"] = json!(100_000);
        let (s, body) = post(&c, &chat_url, &huge, Some(API_KEY)).await;
        assert!(s == 400 && body.contains("context length"), "{s} {body}");
    });

    // Metrics: behind the API key; tokens, requests and queue depth by model.
    rt.block_on(async {
        let unauth = c.get(format!("{}/metrics", r.url)).send().await.unwrap();
        assert_eq!(unauth.status().as_u16(), 401);
        let text = c.get(format!("{}/metrics", r.url)).bearer_auth(API_KEY).send().await.unwrap().text().await.unwrap();
        for want in [
            "veil_runtime_generated_tokens_total{model=\"smollm2\"}",
            "veil_runtime_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"}",
            "veil_runtime_queue_depth{model=\"smollm2\"} 0",
        ] {
            assert!(text.contains(want), "{want} not in:\n{text}");
        }
    });

    // Revoke the chat model at the broker: within a few re-attestation intervals the
    // runtime stops serving it (503, saying why) and keeps serving the other model.
    revoke(d, &b, &chat_digest);
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (s, body) = post(&c, &chat_url, &question, Some(API_KEY)).await;
            if s == 503 {
                assert!(body.contains("withdrawn"), "{body}");
                break;
            }
            assert_eq!(s, 200, "{body}");
            assert!(Instant::now() < deadline, "the runtime still serves a revoked model");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let (s, body) = post(
            &c,
            &format!("{}/v1/embeddings", r.url),
            &json!({"model": "minilm", "input": "still here"}),
            Some(API_KEY),
        )
        .await;
        assert_eq!(s, 200, "{body}");
    });

    // No plaintext weights were ever written: the runtime created only its certificate
    // (and the simulator's report files under its TMPDIR), none holding model bytes.
    drop(r);
    let gguf_head = &std::fs::read(cached_model("smollm2").join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap()[..4096];
    let st_head = &std::fs::read(cached_model("minilm").join("model.safetensors")).unwrap()[..4096];
    for f in files(d) {
        if before.contains(&f) || f.starts_with(d.join("kbs")) {
            continue;
        }
        let bytes = std::fs::read(&f).unwrap();
        assert!(bytes.len() < 1 << 20, "{} ({} bytes) was written during serving", f.display(), bytes.len());
        let leaked = |head: &[u8]| bytes.windows(64).any(|w| head.windows(64).step_by(64).any(|h| h == w));
        assert!(!leaked(gguf_head) && !leaked(st_head), "{} holds model bytes", f.display());
    }
    assert!(d.join("state/tls.crt").is_file());
}

#[test]
fn boot_stops_with_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let b = start_broker();
    keygen(d, "owner", "SECP256R1", false);
    keygen(d, "other", "SECP256R1", false);
    let digest = seal(d, &b, &cached_model("minilm"), "minilm");
    std::fs::copy(d.join("minilm.veil"), d.join("smollm2.veil")).unwrap();
    let tmp = d.join("tmp");
    std::fs::create_dir(&tmp).unwrap();

    // A wrong signer.
    let (code, err) = start_runtime(&config(d, &b, "other.pub", ""), &tmp).err().expect("booted with a wrong signer");
    assert_ne!(code, 0);
    assert!(err.contains("model smollm2") && err.to_lowercase().contains("signature"), "{err}");

    // A bad configuration.
    let bad = d.join("bad.toml");
    std::fs::write(&bad, "state_dir = \"x\"\n[kbs]\nurl = \"https://x\"\n[tee]\nkind = \"sim\"\n[api]\nallow_unauthenticated = true\n[[model]]\nname = \"m\"\nkind = \"chat\"\nbundle = \"b\"\nsigner = \"s\"\n").unwrap();
    let (code, err) = start_runtime(&bad, &tmp).err().expect("booted with a bad config");
    assert_ne!(code, 0);
    assert!(err.contains("danger_simulated"), "{err}");

    // A tampered bundle: one byte of the encrypted data flipped.
    let mut bytes = std::fs::read(d.join("smollm2.veil")).unwrap();
    bytes[4096] ^= 1;
    std::fs::write(d.join("smollm2.veil"), &bytes).unwrap();
    let cfg = config(d, &b, "owner.pub", "");
    let (code, err) = start_runtime(&cfg, &tmp).err().expect("booted with a tampered bundle");
    assert_ne!(code, 0);
    assert!(err.contains("model smollm2"), "{err}");

    // A refused key release: the model is revoked before boot.
    std::fs::copy(d.join("minilm.veil"), d.join("smollm2.veil")).unwrap();
    revoke(d, &b, &digest);
    let (code, err) = start_runtime(&cfg, &tmp).err().expect("booted with a revoked model");
    assert_ne!(code, 0);
    assert!(err.contains("key release") && err.contains("PolicyDeny"), "{err}");
}

/// A simulated TD with a swtpm beside it: the runtime measures its binary, its
/// configuration and the model (manifest, signer, card) into RTMR3 and PCR 23 before
/// asking for the key; the broker releases it to evidence whose event log replays to
/// both registers; and `veil verify-runtime` checks the RA-TLS certificate and fresh
/// evidence against a client policy before anything is sent.
#[test]
fn tdx_runtime_with_a_tpm_measures_its_boot_and_proves_it_over_attested_tls() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let b = start_broker();
    keygen(d, "owner", "SECP256R1", false);
    let digest = seal(d, &b, &cached_model("minilm"), "minilm");
    let key_hash = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, API_KEY.as_bytes()));
    let cfg = d.join("serve-tdx.toml");
    // Each boot of the simulated TD gets a fresh TPM too (a reboot resets both).
    let write_config = |sw: &veil_enclave::swtpm::Swtpm| {
        std::fs::write(
            &cfg,
            format!(
                r#"state_dir = "{state}"
[kbs]
url = "{url}"
ca_cert = "{ca}"
[tee]
kind = "sim"
sim_provider = "tdx"
tpm = "{tcti}"
danger_simulated = true
init_data = "{d}/initdata.toml"
[api]
key_hashes = ["sha256:{key_hash}"]
[[model]]
name = "minilm"
kind = "embedding"
bundle = "{d}/minilm.veil"
signer = "{d}/owner.pub"
"#,
                state = d.join("state").display(),
                url = b.url,
                ca = b.ca_path.display(),
                tcti = sw.tcti(),
                d = d.display(),
            ),
        )
        .unwrap()
    };
    let tmp = d.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let sha256 = |b: &[u8]| hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b));
    let signer = {
        let pem = std::fs::read_to_string(d.join("owner.pub")).unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>())
            .unwrap();
        format!("sha256:{}", sha256(&der))
    };
    // Init-data: the launch identity the (simulated) host binds as MRCONFIGID.
    let init_data = |manifest: &str| {
        let config_digest = format!("sha256:{}", sha256(&std::fs::read(&cfg).unwrap()));
        format!(
            "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"veil.toml\" = '''\nconfig = [\"{config_digest}\"]\n[[model]]\nmanifest = \"{manifest}\"\nsigner = \"{signer}\"\n'''\n"
        )
    };
    // A model the CVM was not launched to run stops the boot before any key is asked for.
    let sw = veil_enclave::swtpm::Swtpm::start().unwrap();
    write_config(&sw);
    std::fs::write(d.join("initdata.toml"), init_data(&format!("sha256:{}", "1".repeat(64)))).unwrap();
    let (code, err) = start_runtime(&cfg, &tmp).err().expect("booted a model outside its launch identity");
    assert_ne!(code, 0);
    assert!(err.contains("launch identity") && err.contains("not one this CVM was launched to run"), "{err}");
    drop(sw);
    let sw = veil_enclave::swtpm::Swtpm::start().unwrap();
    write_config(&sw);
    let config_digest = format!("sha256:{}", sha256(&std::fs::read(&cfg).unwrap()));
    std::fs::write(d.join("initdata.toml"), init_data(&digest)).unwrap();
    let r = start_runtime(&cfg, &tmp).unwrap_or_else(|(c, e)| panic!("runtime exited {c}: {e}"));

    let verify = |extra: &[&str]| {
        let mut args = vec!["verify-runtime", r.url.as_str()];
        args.extend_from_slice(extra);
        veil(&args, d)
    };
    let o = verify(&["--danger-trust-simulator", "--model", &digest, "--signer", &signer, "--save-cert", "pinned.pem"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("SIMULATED"), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    for which in ["certificate_evidence", "fresh_evidence"] {
        let ev = &v[which]["runtime_events"];
        assert_eq!(ev["bound_by"], "registers", "{which}: {v}");
        let types: Vec<&str> = ev["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
        for ty in ["veil.binary", "veil.config", "veil.model-manifest", "veil.model-signer", "veil.model-card"] {
            // Once per register: RTMR3 and PCR 23.
            assert_eq!(types.iter().filter(|t| **t == ty).count(), 2, "{which} {ty}: {types:?}");
        }
        assert!(v[which]["tpm"]["pcrs"]["23"].is_string(), "{which}: {v}");
    }
    assert_eq!(v["models"][0]["manifest_digest"], digest.as_str());
    assert_eq!(v["launch_identity"]["model"][0]["manifest"], digest.as_str(), "{v}");
    assert_eq!(v["launch_identity"]["config"][0], config_digest.as_str(), "{v}");
    assert!(v["ear_token"].as_str().is_some_and(|t| t.split('.').count() == 3), "{v}");

    // The pinned certificate is the one served: a plain client can use it.
    let pinned = client(&d.join("pinned.pem"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (s, body) = rt.block_on(post(
        &pinned,
        &format!("{}/v1/embeddings", r.url),
        &json!({"model": "minilm", "input": "hello"}),
        Some(API_KEY),
    ));
    assert_eq!(s, 200, "{body}");

    // A client policy the runtime does not meet fails the handshake, with the reason.
    let o = verify(&[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("simulat"), "{}", stderr(&o));
    let o = verify(&["--danger-trust-simulator", "--model", &format!("sha256:{}", "0".repeat(64))]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not in the runtime's event log"), "{}", stderr(&o));
    let o = verify(&["--danger-trust-simulator", "--measurement", &"0".repeat(96)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("measurement: ") && stderr(&o).contains("is not one of the allowed"), "{}", stderr(&o));
    let other = format!("sha256:{}", sha256(b"someone else"));
    let o = verify(&["--danger-trust-simulator", "--signer", &other]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not an allowed signer"), "{}", stderr(&o));

    // Memory is locked into RAM (mlockall): as root (CI) it must be; an unprivileged
    // run only warns, which `require_locked_memory` turns into a refusal to start.
    let pid = r._p.0.id().to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let locked_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:").map(|v| v.split_whitespace().nth(1).unwrap_or("").to_owned()))
        .unwrap();
    if uid == "0" {
        assert!(locked_kb > 0, "the runtime's memory is not locked: {status}");
    }

    // SIGTERM: a clean exit, with every audit record under a signed checkpoint.
    let mut r = r;
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = r._p.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the runtime did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    let o = veil(&["audit", "verify", d.join("state/audit.log").to_str().unwrap()], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["unsigned_tail"], 0, "{summary}");
}

/// A host that cuts the runtime off from the broker cannot keep a model serving: once
/// the broker's last token (here 4 s) has run out on the runtime's monotonic clock
/// without a successful re-attestation, the model is withdrawn with the reason.
#[test]
fn a_model_stops_serving_when_the_brokers_token_runs_out_unrenewed() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut b = start_broker();
    b.restart(|dir| {
        let p = dir.join("kbs.toml");
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("token_lifetime_secs = 4\n");
        std::fs::write(p, text).unwrap();
    });
    keygen(d, "owner", "SECP256R1", false);
    seal(d, &b, &cached_model("minilm"), "minilm");
    let key_hash = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, API_KEY.as_bytes()));
    let cfg = d.join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{state}\"\nreattest_secs = 1\n[kbs]\nurl = \"{url}\"\nca_cert = \"{ca}\"\n[tee]\nkind = \"sim\"\n\
             danger_simulated = true\n[api]\nkey_hashes = [\"sha256:{key_hash}\"]\n[[model]]\nname = \"minilm\"\n\
             kind = \"embedding\"\nbundle = \"{d}/minilm.veil\"\nsigner = \"{d}/owner.pub\"\n",
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
    let c = client(&r.cert);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = format!("{}/v1/embeddings", r.url);
    let body = json!({"model": "minilm", "input": "x"});
    let embed = || post(&c, &url, &body, Some(API_KEY));
    let (s, body) = rt.block_on(embed());
    assert_eq!(s, 200, "{body}");
    // Re-attestation keeps it served while the broker answers.
    std::thread::sleep(Duration::from_secs(6));
    let (s, body) = rt.block_on(embed());
    assert_eq!(s, 200, "renewed tokens must keep the model: {body}");
    // The broker goes away: within the token's lifetime plus an interval or two, the
    // model is withdrawn, and the 503 says why.
    b.stop();
    let started = Instant::now();
    loop {
        let (s, body) = rt.block_on(embed());
        if s == 503 {
            assert!(body.contains("expired"), "{body}");
            assert!(started.elapsed() >= Duration::from_secs(2), "withdrawn before the token ran out: {body}");
            break;
        }
        assert_eq!(s, 200, "{body}");
        assert!(started.elapsed() < Duration::from_secs(20), "still serving 20 s after the broker went away");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A client certificate (PEM: certificate then PKCS#8 key) for `reqwest`.
fn identity(cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> reqwest::Identity {
    reqwest::Identity::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes()).unwrap()
}

fn client_with(cert: &Path, id: Option<reqwest::Identity>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(cert).unwrap()).unwrap());
    if let Some(id) = id {
        b = b.identity(id);
    }
    b.build().unwrap()
}

/// Callers authenticate with an API key (from `key_hashes` or a named `[[api.keys]]`
/// entry with its own quota) or a client certificate issued by `client_ca`; each caller
/// has its own token bucket, and an empty one answers 429 with Retry-After. With
/// `require_client_cert`, a connection without a certificate from the CA is refused in
/// the TLS handshake and the API key becomes a second factor. The audit log names the
/// caller, never its key.
#[test]
fn callers_authenticate_by_key_or_client_certificate_and_are_rate_limited() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let b = start_broker();
    keygen(d, "owner", "SECP256R1", false);
    seal(d, &b, &cached_model("minilm"), "minilm");

    // A client CA, a certificate it issued, and a self-signed certificate it did not.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "veil test client CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    std::fs::write(d.join("client-ca.pem"), ca_cert.pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_params = |cn: &str| {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        p
    };
    let good_key = rcgen::KeyPair::generate().unwrap();
    let good = leaf_params("client-1").signed_by(&good_key, &issuer).unwrap();
    let rogue_key = rcgen::KeyPair::generate().unwrap();
    let rogue = leaf_params("client-1").self_signed(&rogue_key).unwrap();

    const TIGHT_KEY: &str = "tight-key";
    let hash = |k: &str| hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, k.as_bytes()));
    let write_cfg = |require: bool| {
        let p = d.join("serve.toml");
        std::fs::write(
            &p,
            format!(
                "state_dir = \"{state}\"\n[kbs]\nurl = \"{url}\"\nca_cert = \"{ca}\"\n[tee]\nkind = \"sim\"\n\
                 danger_simulated = true\n[api]\nkey_hashes = [\"sha256:{main}\"]\nclient_ca = \"{d}/client-ca.pem\"\n\
                 require_client_cert = {require}\n[api.rate_limit]\nrequests_per_sec = 100\nburst = 100\n\
                 [[api.keys]]\nhash = \"sha256:{tight}\"\nname = \"tight\"\nrequests_per_sec = 0.05\nburst = 2\n\
                 [[model]]\nname = \"minilm\"\nkind = \"embedding\"\nbundle = \"{d}/minilm.veil\"\nsigner = \"{d}/owner.pub\"\n",
                state = d.join("state").display(),
                url = b.url,
                ca = b.ca_path.display(),
                d = d.display(),
                main = hash(API_KEY),
                tight = hash(TIGHT_KEY),
            ),
        )
        .unwrap();
        p
    };
    let tmp = d.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body = json!({"model": "minilm", "input": "x"});
    // (status, Retry-After, body); Err for a request that failed below HTTP (the handshake).
    let embed = |c: &reqwest::Client, url: &str, key: Option<&str>| {
        rt.block_on(async {
            let mut r = c.post(format!("{url}/v1/embeddings")).json(&body);
            if let Some(k) = key {
                r = r.bearer_auth(k);
            }
            let resp = r.send().await?;
            let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            Ok::<_, reqwest::Error>((resp.status().as_u16(), retry, resp.text().await?))
        })
    };

    // Certificates optional.
    let r = start_runtime(&write_cfg(false), &tmp).unwrap_or_else(|(c, e)| panic!("runtime exited {c}: {e}"));
    let anon = client_with(&r.cert, None);
    let with_cert = client_with(&r.cert, Some(identity(&good, &good_key)));
    let (s, _, text) = embed(&anon, &r.url, None).unwrap();
    assert_eq!(s, 401, "no key and no certificate: {text}");
    assert!(text.contains("authentication_error"), "{text}");
    let (s, _, text) = embed(&anon, &r.url, Some("not-a-key")).unwrap();
    assert_eq!(s, 401, "{text}");
    let (s, _, text) = embed(&anon, &r.url, Some(API_KEY)).unwrap();
    assert_eq!(s, 200, "a configured key: {text}");
    let (s, _, text) = embed(&with_cert, &r.url, None).unwrap();
    assert_eq!(s, 200, "a certificate from client_ca, no key: {text}");
    let rogue_client = client_with(&r.cert, Some(identity(&rogue, &rogue_key)));
    assert!(
        embed(&rogue_client, &r.url, Some(API_KEY)).is_err(),
        "a certificate from another CA must fail the handshake"
    );

    // The tight key: its burst of 2, then 429 with Retry-After, while other callers
    // keep their own buckets.
    for i in 0..2 {
        let (s, _, text) = embed(&anon, &r.url, Some(TIGHT_KEY)).unwrap();
        assert_eq!(s, 200, "request {i} within the burst: {text}");
    }
    let (s, retry, text) = embed(&anon, &r.url, Some(TIGHT_KEY)).unwrap();
    assert_eq!(s, 429, "{text}");
    assert!(text.contains("rate_limit_error"), "{text}");
    let retry: u64 = retry.expect("a 429 carries Retry-After").parse().unwrap();
    assert!((1..=21).contains(&retry), "Retry-After {retry} s for 0.05 requests/s");
    let (s, _, text) = embed(&anon, &r.url, Some(API_KEY)).unwrap();
    assert_eq!(s, 200, "another key is not limited by the tight one: {text}");
    let (s, _, text) = embed(&with_cert, &r.url, None).unwrap();
    assert_eq!(s, 200, "{text}");
    drop(r);

    // The audit log knows callers by name or certificate fingerprint, never by key.
    let log = std::fs::read_to_string(d.join("state/audit.log")).unwrap();
    let callers: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("caller").and_then(Value::as_str).map(str::to_owned))
        .collect();
    assert!(callers.iter().filter(|c| *c == "key:tight").count() == 2, "{callers:?}");
    assert!(callers.iter().any(|c| c.starts_with("cert:")), "{callers:?}");
    assert!(callers.iter().any(|c| *c == format!("key:{}", &hash(API_KEY)[..12])), "{callers:?}");
    assert!(!log.contains(API_KEY) && !log.contains(TIGHT_KEY), "an API key in the audit log");

    // Certificates required: no certificate fails the handshake; with one, the key is
    // a second factor.
    let r = start_runtime(&write_cfg(true), &tmp).unwrap_or_else(|(c, e)| panic!("runtime exited {c}: {e}"));
    let anon = client_with(&r.cert, None);
    let with_cert = client_with(&r.cert, Some(identity(&good, &good_key)));
    assert!(embed(&anon, &r.url, Some(API_KEY)).is_err(), "no client certificate must fail the handshake");
    let (s, _, text) = embed(&with_cert, &r.url, None).unwrap();
    assert_eq!(s, 401, "certificate without the key: {text}");
    let (s, _, text) = embed(&with_cert, &r.url, Some(API_KEY)).unwrap();
    assert_eq!(s, 200, "certificate and key: {text}");
}
