//! Init-data (the Confidential Containers convention, PROTOCOLS.md section 1): a TOML
//! document whose digest, with the algorithm it names, the host sets at launch as SNP
//! HOSTDATA or TDX MRCONFIGID (zero-padded), so the hardware report binds it.
//!
//! ```toml
//! version = "0.1.0"
//! algorithm = "sha384"          # sha256 | sha384 | sha512
//! [data]
//! "veil.toml" = '''
//! config = ["sha256:<digest of serve.toml>"]          # optional: allowed configurations
//! [[model]]
//! manifest = "sha256:<OMS subject digest>"
//! signer = "sha256:<SHA-256 of the signer's SPKI>"
//! '''
//! ```
//!
//! Veil's launch identity is the `data."veil.toml"` entry: the configurations and the
//! (manifest, signer) pairs this CVM was launched to run. The runtime refuses anything
//! else; other `data` entries (a guest's `aa.toml`, `policy.rego`, ...) are left alone.

use serde::Deserialize;

/// The key of Veil's launch identity in `[data]`.
pub const VEIL_ENTRY: &str = "veil.toml";

/// Why init-data was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("init-data: {0}")]
pub struct InitDataError(pub String);

fn bad(m: impl Into<String>) -> InitDataError {
    InitDataError(m.into())
}

/// A parsed init-data document and its digest.
#[derive(Debug, Clone)]
pub struct InitData {
    /// The document as written (what is hashed).
    pub body: String,
    /// `sha256`, `sha384` or `sha512`.
    pub algorithm: String,
    /// The digest of `body` with `algorithm`.
    pub digest: Vec<u8>,
    /// The parsed document (its claims, for a token).
    pub doc: toml::Table,
    /// Veil's launch identity, if the document has one.
    pub identity: Option<LaunchIdentity>,
}

/// What this CVM was launched to run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchIdentity {
    /// Allowed configuration digests (`sha256:<hex>`). Empty: any.
    #[serde(default)]
    pub config: Vec<String>,
    /// Allowed models.
    #[serde(default, rename = "model", skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<AllowedModel>,
}

/// One allowed model.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedModel {
    /// The OMS manifest digest, `sha256:<hex>`.
    pub manifest: String,
    /// The signer, `sha256:<hex>`.
    pub signer: String,
}

impl LaunchIdentity {
    /// Whether a model with this manifest digest and signer may be loaded.
    pub fn allows_model(&self, manifest: &str, signer: &str) -> bool {
        self.models.iter().any(|m| m.manifest.eq_ignore_ascii_case(manifest) && m.signer.eq_ignore_ascii_case(signer))
    }

    /// Whether this configuration digest may be used.
    pub fn allows_config(&self, digest: &str) -> bool {
        self.config.is_empty() || self.config.iter().any(|c| c.eq_ignore_ascii_case(digest))
    }
}

/// Largest init-data accepted.
pub const MAX_INIT_DATA: usize = 64 * 1024;

/// Parses init-data and computes its digest.
pub fn parse(body: &str) -> Result<InitData, InitDataError> {
    if body.len() > MAX_INIT_DATA {
        return Err(bad(format!("{} bytes, more than the {MAX_INIT_DATA} accepted", body.len())));
    }
    let doc: toml::Table = toml::from_str(body).map_err(|e| bad(format!("not TOML: {e}")))?;
    let algorithm = doc.get("algorithm").and_then(|a| a.as_str()).ok_or_else(|| bad("names no algorithm"))?;
    let alg = match algorithm {
        "sha256" => &aws_lc_rs::digest::SHA256,
        "sha384" => &aws_lc_rs::digest::SHA384,
        "sha512" => &aws_lc_rs::digest::SHA512,
        other => return Err(bad(format!("algorithm {other:?} is not supported (sha256, sha384, sha512)"))),
    };
    let identity = match doc.get("data").and_then(|d| d.get(VEIL_ENTRY)) {
        None => None,
        Some(v) => {
            let text = v.as_str().ok_or_else(|| bad(format!("data.{VEIL_ENTRY:?} is not a string")))?;
            Some(toml::from_str(text).map_err(|e| bad(format!("data.{VEIL_ENTRY:?}: {e}")))?)
        }
    };
    Ok(InitData {
        body: body.to_owned(),
        algorithm: algorithm.to_owned(),
        digest: aws_lc_rs::digest::digest(alg, body.as_bytes()).as_ref().to_vec(),
        identity,
        doc,
    })
}

impl InitData {
    /// Checks the digest against a launch field (HOSTDATA, 32 bytes; MRCONFIGID, 48):
    /// the digest, zero-padded to the field's length, must equal it.
    pub fn check_launch_field(&self, field: &[u8]) -> Result<(), InitDataError> {
        if self.digest.len() > field.len() {
            return Err(bad(format!("a {} digest does not fit the {}-byte launch field", self.algorithm, field.len())));
        }
        let mut expected = self.digest.clone();
        expected.resize(field.len(), 0);
        if expected != field {
            return Err(bad(format!(
                "its {} digest {} is not the launch field {} (the host launched this CVM with other init-data)",
                self.algorithm,
                hex::encode(&self.digest),
                hex::encode(field)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"version = "0.1.0"
algorithm = "sha384"
[data]
"aa.toml" = "x"
"veil.toml" = '''
config = ["sha256:aa"]
[[model]]
manifest = "sha256:01"
signer = "sha256:02"
'''
"#;

    #[test]
    fn parses_digests_and_checks() {
        let i = parse(DOC).unwrap();
        assert_eq!(i.digest, aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, DOC.as_bytes()).as_ref());
        let id = i.identity.clone().unwrap();
        assert!(id.allows_model("sha256:01", "SHA256:02"));
        assert!(!id.allows_model("sha256:01", "sha256:03"));
        assert!(id.allows_config("sha256:aa") && !id.allows_config("sha256:bb"));
        let mut field = i.digest.clone();
        field.resize(48, 0);
        i.check_launch_field(&field).unwrap();
        field[0] ^= 1;
        assert!(i.check_launch_field(&field).unwrap_err().0.contains("other init-data"));
        assert!(i.check_launch_field(&[0; 32]).unwrap_err().0.contains("does not fit"));
        assert!(LaunchIdentity::default().allows_config("anything"));
    }

    #[test]
    fn bad_documents_are_refused_with_a_reason() {
        for (doc, want) in [
            ("not = [toml", "not TOML"),
            ("version = \"0.1.0\"", "no algorithm"),
            ("algorithm = \"md5\"", "not supported"),
            ("algorithm = \"sha256\"\n[data]\n\"veil.toml\" = 3", "not a string"),
            ("algorithm = \"sha256\"\n[data]\n\"veil.toml\" = \"bogus = 1\"", "veil.toml"),
        ] {
            let e = parse(doc).unwrap_err();
            assert!(e.0.contains(want), "{doc:?}: {e}");
        }
        assert!(parse(&"#".repeat(MAX_INIT_DATA + 1)).is_err());
        assert!(parse("algorithm = \"sha256\"").unwrap().identity.is_none());
    }
}
