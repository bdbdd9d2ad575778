//! A client for the broker's admin API (what `veil kbs admin` and `veil seal --kbs` use):
//! each request carries a fresh ES256 bearer JWT signed with the admin's private key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Which policy to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Evidence claims → trust vector.
    Attestation,
    /// Token claims + resource → allow/deny.
    Resource,
}

/// The admin client.
pub struct AdminClient {
    base: String,
    http: reqwest::Client,
    key: EncodingKey,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client for `base_url`, trusting `ca_pem` (a broker's self-signed certificate)
    /// instead of the web PKI when given, signing with `admin_key_pem` (PKCS#8 P-256).
    pub fn new(base_url: &str, ca_pem: Option<&[u8]>, admin_key_pem: &[u8]) -> anyhow::Result<Self> {
        let mut b = reqwest::Client::builder().use_rustls_tls().https_only(true);
        if let Some(pem) = ca_pem {
            b = b.tls_built_in_root_certs(false).add_root_certificate(reqwest::Certificate::from_pem(pem)?);
        }
        let key = EncodingKey::from_ec_pem(admin_key_pem).map_err(|e| anyhow::anyhow!("admin key: {e}"))?;
        Ok(Self { base: base_url.trim_end_matches('/').to_owned(), http: b.build()?, key })
    }

    fn token(&self) -> anyhow::Result<String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = json!({"iat": now, "exp": now + 120, "role": "admin"});
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.key)?)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = req.bearer_auth(self.token()?).send().await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        anyhow::bail!("the broker refused ({status}): {body}")
    }

    /// Registers (or replaces) a resource.
    pub async fn register(&self, path: &str, value: &[u8]) -> anyhow::Result<()> {
        self.send(self.http.post(format!("{}/kbs/v0/resource/{path}", self.base)).body(value.to_vec())).await?;
        Ok(())
    }

    /// Registers a model's data key as `veil/model-key/<manifest digest hex>`.
    pub async fn register_model_key(&self, manifest_digest: &str, key: &veil_seal::DataKey) -> anyhow::Result<String> {
        let path = veil_kbs::model_key_path(manifest_digest);
        self.register(&path, key.as_bytes()).await?;
        Ok(path)
    }

    /// Revokes a model manifest digest.
    pub async fn revoke(&self, digest: &str) -> anyhow::Result<()> {
        self.send(self.http.post(format!("{}/kbs/v0/revoke", self.base)).json(&json!({"digest": digest}))).await?;
        Ok(())
    }

    /// Replaces the reference values (`data.reference` of the policies).
    pub async fn set_reference_values(&self, values: &Value) -> anyhow::Result<()> {
        self.send(self.http.post(format!("{}/kbs/v0/reference-values", self.base)).json(values)).await?;
        Ok(())
    }

    /// Replaces a policy (Rego).
    pub async fn set_policy(&self, kind: PolicyKind, rego: &str) -> anyhow::Result<()> {
        let (path, body) = match kind {
            PolicyKind::Attestation => (
                "attestation-policy",
                json!({"type": "rego", "policy_id": "default", "policy": URL_SAFE_NO_PAD.encode(rego)}),
            ),
            PolicyKind::Resource => ("resource-policy", json!({"policy": URL_SAFE_NO_PAD.encode(rego)})),
        };
        self.send(self.http.post(format!("{}/kbs/v0/{path}", self.base)).json(&body)).await?;
        Ok(())
    }

    /// The most recent audit entries (decisions and changes).
    pub async fn decisions(&self, limit: usize) -> anyhow::Result<Value> {
        let resp = self.send(self.http.get(format!("{}/kbs/v0/decisions?limit={limit}", self.base))).await?;
        Ok(resp.json().await?)
    }
}
