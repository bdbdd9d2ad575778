//! Claims of verified SEV-SNP evidence: what the appraisal step reads. Byte fields
//! are kept as arrays and serialised as lower-case hex; TCB values as the raw
//! `0x…` u64 plus their components; bit fields raw plus decoded.

use serde::{Serialize, Serializer};

use super::certs::{Product, VekExtensions};
use super::report::{AttestationReport, SigningKey, TcbLayout, TcbVersion};

fn hex_ser<S: Serializer, T: AsRef<[u8]>>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

fn hex_opt<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(b) => s.serialize_some(&hex::encode(b)),
        None => s.serialize_none(),
    }
}

/// A `TCB_VERSION`: raw value and its components for the product's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TcbClaims {
    /// The raw u64 as `0x` + 16 hex digits.
    #[serde(serialize_with = "ser_tcb_raw")]
    pub raw: TcbVersion,
    /// FMC SPL (Turin and later).
    pub fmc: Option<u8>,
    /// PSP bootloader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
}

fn ser_tcb_raw<S: Serializer>(v: &TcbVersion, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.hex())
}

impl TcbClaims {
    /// Decode `tcb` under `layout`.
    pub fn new(tcb: TcbVersion, layout: TcbLayout) -> Self {
        let p = tcb.parts(layout);
        TcbClaims { raw: tcb, fmc: p.fmc, bootloader: p.bootloader, tee: p.tee, snp: p.snp, microcode: p.microcode }
    }
}

/// The guest policy (SEV-SNP ABI, "GUEST_POLICY"). Claims only: whether debug,
/// SMT or migration are acceptable is the appraisal's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PolicyClaims {
    /// The raw 64-bit policy.
    pub raw: u64,
    /// ABI_MINOR (bits 7:0): minimum firmware ABI minor.
    pub abi_minor: u8,
    /// ABI_MAJOR (bits 15:8): minimum firmware ABI major.
    pub abi_major: u8,
    /// SMT (bit 16): SMT allowed on the host.
    pub smt: bool,
    /// Bit 17, reserved, must be one.
    pub reserved_bit17: bool,
    /// MIGRATE_MA (bit 18): a migration agent may be associated.
    pub migrate_ma: bool,
    /// DEBUG (bit 19): debugging allowed.
    pub debug: bool,
    /// SINGLE_SOCKET (bit 20): guest bound to one socket.
    pub single_socket: bool,
    /// CXL_ALLOW (bit 21).
    pub cxl_allow: bool,
    /// MEM_AES_256_XTS (bit 22).
    pub mem_aes_256_xts: bool,
    /// RAPL_DIS (bit 23).
    pub rapl_dis: bool,
    /// CIPHERTEXT_HIDING (bit 24).
    pub ciphertext_hiding: bool,
    /// PAGE_SWAP_DISABLE (bit 25).
    pub page_swap_disable: bool,
    /// Bits 63:26, reserved (zero in every policy the firmware accepts today).
    pub reserved_high: u64,
}

impl PolicyClaims {
    /// Decode a raw policy.
    pub fn new(raw: u64) -> Self {
        let bit = |n: u32| raw >> n & 1 == 1;
        let [minor, major, ..] = raw.to_le_bytes();
        PolicyClaims {
            raw,
            abi_minor: minor,
            abi_major: major,
            smt: bit(16),
            reserved_bit17: bit(17),
            migrate_ma: bit(18),
            debug: bit(19),
            single_socket: bit(20),
            cxl_allow: bit(21),
            mem_aes_256_xts: bit(22),
            rapl_dis: bit(23),
            ciphertext_hiding: bit(24),
            page_swap_disable: bit(25),
            reserved_high: raw >> 26,
        }
    }
}

/// PLATFORM_INFO (SEV-SNP ABI, "PLATFORM_INFO").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlatformInfoClaims {
    /// The raw 64-bit value.
    pub raw: u64,
    /// SMT_EN (bit 0).
    pub smt_enabled: bool,
    /// TSME_EN (bit 1).
    pub tsme_enabled: bool,
    /// ECC_EN (bit 2).
    pub ecc_enabled: bool,
    /// RAPL_DIS (bit 3).
    pub rapl_disabled: bool,
    /// CIPHERTEXT_HIDING_EN (bit 4).
    pub ciphertext_hiding_enabled: bool,
    /// ALIAS_CHECK_COMPLETE (bit 5).
    pub alias_check_complete: bool,
    /// TIO_EN (bit 7).
    pub tio_enabled: bool,
}

impl PlatformInfoClaims {
    /// Decode a raw PLATFORM_INFO.
    pub fn new(raw: u64) -> Self {
        let bit = |n: u32| raw >> n & 1 == 1;
        PlatformInfoClaims {
            raw,
            smt_enabled: bit(0),
            tsme_enabled: bit(1),
            ecc_enabled: bit(2),
            rapl_disabled: bit(3),
            ciphertext_hiding_enabled: bit(4),
            alias_check_complete: bit(5),
            tio_enabled: bit(7),
        }
    }
}

/// Claims of a verified SNP attestation report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnpClaims {
    /// Report version (2, 3 or 5).
    pub version: u32,
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// Guest policy.
    pub policy: PolicyClaims,
    /// FAMILY_ID.
    #[serde(serialize_with = "hex_ser")]
    pub family_id: [u8; 16],
    /// IMAGE_ID.
    #[serde(serialize_with = "hex_ser")]
    pub image_id: [u8; 16],
    /// VMPL of the request.
    pub vmpl: u32,
    /// SIGNATURE_ALGO (1 = ECDSA P-384 SHA-384).
    pub signature_algo: u32,
    /// CURRENT_TCB.
    pub current_tcb: TcbClaims,
    /// REPORTED_TCB (matches the VCEK/VLEK's SPL extensions).
    pub reported_tcb: TcbClaims,
    /// COMMITTED_TCB.
    pub committed_tcb: TcbClaims,
    /// LAUNCH_TCB.
    pub launch_tcb: TcbClaims,
    /// PLATFORM_INFO.
    pub platform_info: PlatformInfoClaims,
    /// The key that signed the report.
    pub signing_key: SigningKey,
    /// KEY_INFO.AUTHOR_KEY_EN.
    pub author_key_en: bool,
    /// KEY_INFO.MASK_CHIP_KEY.
    pub mask_chip_key: bool,
    /// REPORT_DATA.
    #[serde(serialize_with = "hex_ser")]
    pub report_data: [u8; 64],
    /// MEASUREMENT.
    #[serde(serialize_with = "hex_ser")]
    pub measurement: [u8; 48],
    /// HOST_DATA.
    #[serde(serialize_with = "hex_ser")]
    pub host_data: [u8; 32],
    /// ID_KEY_DIGEST.
    #[serde(serialize_with = "hex_ser")]
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST.
    #[serde(serialize_with = "hex_ser")]
    pub author_key_digest: [u8; 48],
    /// REPORT_ID.
    #[serde(serialize_with = "hex_ser")]
    pub report_id: [u8; 32],
    /// REPORT_ID_MA.
    #[serde(serialize_with = "hex_ser")]
    pub report_id_ma: [u8; 32],
    /// CHIP_ID (zero when masked by the host).
    #[serde(serialize_with = "hex_ser")]
    pub chip_id: [u8; 64],
    /// CPUID family (version 3 and later).
    pub cpuid_fam_id: Option<u8>,
    /// CPUID model (version 3 and later).
    pub cpuid_mod_id: Option<u8>,
    /// CPUID stepping (version 3 and later).
    pub cpuid_step: Option<u8>,
    /// Current firmware version `major.minor.build`.
    pub current_version: String,
    /// Committed firmware version `major.minor.build`.
    pub committed_version: String,
    /// LAUNCH_MIT_VECTOR (version 5 and later).
    pub launch_mit_vector: Option<u64>,
    /// CURRENT_MIT_VECTOR (version 5 and later).
    pub current_mit_vector: Option<u64>,
    /// Product line of the certificate chain.
    pub product: Product,
    /// productName extension of the VCEK/VLEK (e.g. "Milan-B0"), if present.
    pub product_name: Option<String>,
    /// cspID extension of a VLEK (the cloud provider), if present.
    pub csp_id: Option<String>,
}

impl SnpClaims {
    pub(crate) fn new(r: &AttestationReport, product: Product, ext: &VekExtensions) -> Self {
        let layout = product.tcb_layout();
        SnpClaims {
            version: r.version,
            guest_svn: r.guest_svn,
            policy: PolicyClaims::new(r.policy),
            family_id: r.family_id,
            image_id: r.image_id,
            vmpl: r.vmpl,
            signature_algo: r.signature_algo,
            current_tcb: TcbClaims::new(r.current_tcb, layout),
            reported_tcb: TcbClaims::new(r.reported_tcb, layout),
            committed_tcb: TcbClaims::new(r.committed_tcb, layout),
            launch_tcb: TcbClaims::new(r.launch_tcb, layout),
            platform_info: PlatformInfoClaims::new(r.platform_info),
            signing_key: r.key_info.signing_key,
            author_key_en: r.key_info.author_key_en,
            mask_chip_key: r.key_info.mask_chip_key,
            report_data: r.report_data,
            measurement: r.measurement,
            host_data: r.host_data,
            id_key_digest: r.id_key_digest,
            author_key_digest: r.author_key_digest,
            report_id: r.report_id,
            report_id_ma: r.report_id_ma,
            chip_id: r.chip_id,
            cpuid_fam_id: r.cpuid.map(|c| c.family),
            cpuid_mod_id: r.cpuid.map(|c| c.model),
            cpuid_step: r.cpuid.map(|c| c.stepping),
            current_version: r.current_version.to_string(),
            committed_version: r.committed_version.to_string(),
            launch_mit_vector: r.launch_mit_vector,
            current_mit_vector: r.current_mit_vector,
            product,
            product_name: ext.product_name.clone(),
            csp_id: ext.csp_id.clone(),
        }
    }
}

/// Claims of a VCEK/VLEK verified to an AMD root without a report
/// ([`super::SnpVerifier::verify_chain_only`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnpCertClaims {
    /// VCEK or VLEK.
    pub signing_key: SigningKey,
    /// Product line of the chain.
    pub product: Product,
    /// productName extension, if present.
    pub product_name: Option<String>,
    /// The TCB the certificate was issued for (from its SPL extensions).
    pub tcb: TcbClaims,
    /// hwID (the chip ID; VCEK only).
    #[serde(serialize_with = "hex_opt")]
    pub hwid: Option<Vec<u8>>,
    /// cspID (VLEK only).
    pub csp_id: Option<String>,
    /// Start of the certificate's validity (RFC 3339).
    pub not_before: String,
    /// End of the certificate's validity (RFC 3339).
    pub not_after: String,
}
