//! Simulated AMD SEV-SNP: ATTESTATION_REPORT (SEV-SNP ABI specification, Table 23 in
//! revision 1.57/1.58) signed by the simulated VCEK or VLEK, plus the certificates a
//! guest obtains from the host (GHCB extended-report certificate table).
//!
//! ```text
//!  report_data, SnpOptions ─► 1184-byte report ─► ECDSA P-384/SHA-384 over 0x000..0x2A0
//!     (VCEK: chain ARK → ASK → VCEK; VLEK: ARK → ASVK → VLEK; RSA-PSS SHA-384 chains)
//! ```
//!
//! The layout is Milan's (product "Milan"): TCB_VERSION = bl, tee, 4 reserved, snp,
//! ucode. Version 3 adds CPUID family/model/stepping at 0x188; version 5 adds the
//! launch/current mitigation vectors at 0x1F8/0x200.

use ring::signature;

use crate::error::{Error, Result};
use crate::keys::{self, Key};
use crate::{der, params};

/// Size of an ATTESTATION_REPORT.
pub const REPORT_LEN: usize = 0x4A0;
/// The signed region is bytes `0..SIGNED_LEN`.
pub const SIGNED_LEN: usize = 0x2A0;
/// Offset of the signature's R component (72 bytes, little-endian, zero-extended).
pub const SIG_R_OFFSET: usize = 0x2A0;
/// Offset of the signature's S component (72 bytes, little-endian, zero-extended).
pub const SIG_S_OFFSET: usize = 0x2E8;

/// GUIDs of the GHCB certificate table: the verifier's definitions, so writer and
/// reader cannot disagree.
pub use veil_attestation::snp::cert_table::guid;

/// What the simulated guest and platform report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpOptions {
    /// Report version: 2, 3 or 5 (Milan layout).
    pub version: u32,
    /// MEASUREMENT (launch digest).
    pub measurement: [u8; 48],
    /// HOST_DATA.
    pub host_data: [u8; 32],
    /// Guest POLICY (not validated, so tests can produce e.g. debug-enabled reports).
    pub policy: u64,
    /// VMPL of the requesting guest (0..=3).
    pub vmpl: u32,
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// Sign with the VLEK (KEY_INFO.SIGNING_KEY = 1, CHIP_ID zeroed) instead of the VCEK.
    pub use_vlek: bool,
    /// FAMILY_ID.
    pub family_id: [u8; 16],
    /// IMAGE_ID.
    pub image_id: [u8; 16],
    /// ID_KEY_DIGEST.
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST (KEY_INFO.AUTHOR_KEY_EN is set when this is non-zero).
    pub author_key_digest: [u8; 48],
    /// REPORT_ID.
    pub report_id: [u8; 32],
    /// REPORT_ID_MA (all 0xFF: no migration agent).
    pub report_id_ma: [u8; 32],
    /// PLATFORM_INFO (bit 0 SMT enabled, bit 1 TSME enabled, ...).
    pub platform_info: u64,
    /// LAUNCH_MIT_VECTOR (version 5 only).
    pub launch_mit_vector: u64,
    /// CURRENT_MIT_VECTOR (version 5 only).
    pub current_mit_vector: u64,
}

impl Default for SnpOptions {
    fn default() -> Self {
        Self {
            version: 3,
            measurement: sha384(b"veil-sim default SNP launch measurement"),
            host_data: [0; 32],
            // Bit 17 is reserved-must-be-one; bit 16 allows SMT; debug (bit 19) off.
            policy: 0x3_0000,
            vmpl: 0,
            guest_svn: 0,
            use_vlek: false,
            family_id: [0; 16],
            image_id: [0; 16],
            id_key_digest: [0; 48],
            author_key_digest: [0; 48],
            report_id: sha256(b"veil-sim report id"),
            report_id_ma: [0xFF; 32],
            platform_info: 0x1,
            launch_mit_vector: 0,
            current_mit_vector: 0,
        }
    }
}

/// A simulated report and the certificates that verify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpEvidence {
    /// The 1184-byte ATTESTATION_REPORT.
    pub report: Vec<u8>,
    /// The VCEK (or VLEK) certificate, DER.
    pub cert: Vec<u8>,
    /// PEM chain: ASK + ARK (VCEK) or ASK + ARK + ASVK (VLEK); pick by subject.
    pub chain_pem: Vec<u8>,
    /// GHCB certificate table as returned with an extended report and as configfs-tsm
    /// exposes it in `auxblob`: the VCEK, ASK and ARK (VCEK mode) or the VLEK and ARK
    /// (VLEK mode).
    pub cert_table: Vec<u8>,
}

fn sha384(data: &[u8]) -> [u8; 48] {
    use sha2::Digest as _;
    sha2::Sha384::digest(data).into()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

fn put(buf: &mut [u8], offset: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(offset..offset + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// The reported/current/committed/launch TCB_VERSION of the simulated platform; the
/// VCEK and VLEK certify exactly these SPLs.
pub fn tcb_version() -> u64 {
    params::snp::tcb_version()
}

/// The simulated CHIP_ID (= the VCEK's hwID extension).
pub fn chip_id() -> [u8; 64] {
    params::snp::chip_id()
}

/// Produce a signed report with `report_data`.
pub fn report(report_data: &[u8; 64], opts: &SnpOptions) -> Result<SnpEvidence> {
    if !matches!(opts.version, 2 | 3 | 5) {
        return Err(Error::invalid("version", format!("{} (supported: 2, 3, 5)", opts.version)));
    }
    if opts.vmpl > 3 {
        return Err(Error::invalid("vmpl", format!("{} (must be 0..=3)", opts.vmpl)));
    }
    let certs = keys::certs()?;
    let tcb = tcb_version().to_le_bytes();

    let mut r = vec![0u8; REPORT_LEN];
    put(&mut r, 0x000, &opts.version.to_le_bytes());
    put(&mut r, 0x004, &opts.guest_svn.to_le_bytes());
    put(&mut r, 0x008, &opts.policy.to_le_bytes());
    put(&mut r, 0x010, &opts.family_id);
    put(&mut r, 0x020, &opts.image_id);
    put(&mut r, 0x030, &opts.vmpl.to_le_bytes());
    put(&mut r, 0x034, &1u32.to_le_bytes()); // SIGNATURE_ALGO: ECDSA P-384 with SHA-384
    put(&mut r, 0x038, &tcb); // CURRENT_TCB
    put(&mut r, 0x040, &opts.platform_info.to_le_bytes());
    let author_key_en = u32::from(opts.author_key_digest != [0; 48]);
    let signing_key: u32 = if opts.use_vlek { 1 } else { 0 };
    put(&mut r, 0x048, &(author_key_en | (signing_key << 2)).to_le_bytes()); // KEY_INFO
    put(&mut r, 0x050, report_data);
    put(&mut r, 0x090, &opts.measurement);
    put(&mut r, 0x0C0, &opts.host_data);
    put(&mut r, 0x0E0, &opts.id_key_digest);
    put(&mut r, 0x110, &opts.author_key_digest);
    put(&mut r, 0x140, &opts.report_id);
    put(&mut r, 0x160, &opts.report_id_ma);
    put(&mut r, 0x180, &tcb); // REPORTED_TCB
    if opts.version >= 3 {
        put(&mut r, 0x188, &[params::snp::CPUID_FAM, params::snp::CPUID_MOD, params::snp::CPUID_STEP]);
    }
    if !opts.use_vlek {
        put(&mut r, 0x1A0, &chip_id());
    }
    put(&mut r, 0x1E0, &tcb); // COMMITTED_TCB
    put(&mut r, 0x1E8, &params::snp::FW_VERSION); // CURRENT_BUILD/MINOR/MAJOR
    put(&mut r, 0x1EC, &params::snp::FW_VERSION); // COMMITTED_BUILD/MINOR/MAJOR
    put(&mut r, 0x1F0, &tcb); // LAUNCH_TCB
    if opts.version >= 5 {
        put(&mut r, 0x1F8, &opts.launch_mit_vector.to_le_bytes());
        put(&mut r, 0x200, &opts.current_mit_vector.to_le_bytes());
    }

    let (key, what) = if opts.use_vlek { (Key::Vlek, "VLEK") } else { (Key::Vcek, "VCEK") };
    let signed = r.get(..SIGNED_LEN).ok_or(Error::Signing(what))?;
    let sig = keys::sign(key, &signature::ECDSA_P384_SHA384_FIXED_SIGNING, what, signed)?;
    let (sig_r, sig_s) = sig.split_at_checked(48).ok_or(Error::Signing(what))?;
    let mut le_r = sig_r.to_vec();
    le_r.reverse();
    let mut le_s = sig_s.to_vec();
    le_s.reverse();
    put(&mut r, SIG_R_OFFSET, &le_r);
    put(&mut r, SIG_S_OFFSET, &le_s);

    let (cert, chain_pem, cert_table) = if opts.use_vlek {
        let chain = [
            der::pem("CERTIFICATE", &certs.ask),
            der::pem("CERTIFICATE", &certs.ark),
            der::pem("CERTIFICATE", &certs.asvk),
        ]
        .concat();
        let table = cert_table(&[(guid::VLEK, &certs.vlek), (guid::ARK, &certs.ark)])?;
        (certs.vlek.clone(), chain, table)
    } else {
        let chain = [der::pem("CERTIFICATE", &certs.ask), der::pem("CERTIFICATE", &certs.ark)].concat();
        let table = cert_table(&[(guid::VCEK, &certs.vcek), (guid::ASK, &certs.ask), (guid::ARK, &certs.ark)])?;
        (certs.vcek.clone(), chain, table)
    };
    Ok(SnpEvidence { report: r, cert, chain_pem: chain_pem.into_bytes(), cert_table })
}

/// Build a GHCB certificate table: entries of GUID (16) ‖ offset (u32 LE) ‖ length
/// (u32 LE), terminated by an all-zero entry, followed by the DER certificates. Offsets
/// count from the start of the table.
pub fn cert_table(entries: &[([u8; 16], &[u8])]) -> Result<Vec<u8>> {
    let too_big = || Error::invalid("cert_table", "exceeds 4 GiB");
    let header_len = entries.len().checked_add(1).and_then(|n| n.checked_mul(24)).ok_or_else(too_big)?;
    let mut header = Vec::with_capacity(header_len);
    let mut body = Vec::new();
    for (guid, der) in entries {
        let offset = header_len.checked_add(body.len()).ok_or_else(too_big)?;
        header.extend_from_slice(guid);
        header.extend_from_slice(&u32::try_from(offset).map_err(|_| too_big())?.to_le_bytes());
        header.extend_from_slice(&u32::try_from(der.len()).map_err(|_| too_big())?.to_le_bytes());
        body.extend_from_slice(der);
    }
    header.extend_from_slice(&[0u8; 24]);
    header.extend_from_slice(&body);
    Ok(header)
}

/// The simulated ARK-Milan certificate (DER).
pub fn ark_der() -> &'static [u8] {
    keys::cert_or_empty(|c| &c.ark)
}

/// The simulated ASK (SEV-Milan) certificate (DER).
pub fn ask_der() -> &'static [u8] {
    keys::cert_or_empty(|c| &c.ask)
}

/// The simulated ASVK (SEV-VLEK-Milan) certificate (DER).
pub fn asvk_der() -> &'static [u8] {
    keys::cert_or_empty(|c| &c.asvk)
}

/// The simulated VCEK certificate (DER).
pub fn vcek_der() -> &'static [u8] {
    keys::cert_or_empty(|c| &c.vcek)
}

/// The simulated VLEK certificate (DER).
pub fn vlek_der() -> &'static [u8] {
    keys::cert_or_empty(|c| &c.vlek)
}
