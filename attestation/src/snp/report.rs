//! The SEV-SNP `ATTESTATION_REPORT` structure (AMD SEV-SNP ABI specification,
//! "ATTESTATION_REPORT Structure" table; report versions 2, 3 and 5).
//!
//! The report is a fixed 1184-byte little-endian structure. It is read through a
//! `#[repr(C)]` zerocopy struct whose size and field offsets are asserted at compile
//! time, then validated: known version, signature algorithm, signing key, and every
//! reserved range that the specification requires to be zero *for that version*.
//!
//! ```text
//! 0x000 version .. 0x050 report_data .. 0x090 measurement .. 0x180 reported_tcb
//! 0x188 cpuid (v3+) .. 0x1A0 chip_id .. 0x1F0 launch_tcb .. 0x1F8 mit vectors (v5)
//! 0x2A0 signature { r[72] LE, s[72] LE, reserved[368] }            0x4A0 = 1184
//! └──────────────── signed region 0x000..0x2A0 ────────────────┘
//! ```

use serde::Serialize;
use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{ParseError, Result};

/// Size of an attestation report in bytes.
pub const REPORT_SIZE: usize = 0x4A0;
/// The signed region is `report[0..SIGNED_LEN]`.
pub const SIGNED_LEN: usize = 0x2A0;
/// `SIGNATURE_ALGO` value for ECDSA P-384 with SHA-384 (the only one defined).
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

const STRUCTURE: &str = "SNP attestation report";

/// The wire layout, field for field (offsets in comments are asserted below).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RawReport {
    pub(crate) version: U32,                  // 0x000
    pub(crate) guest_svn: U32,                // 0x004
    pub(crate) policy: U64,                   // 0x008
    pub(crate) family_id: [u8; 16],           // 0x010
    pub(crate) image_id: [u8; 16],            // 0x020
    pub(crate) vmpl: U32,                     // 0x030
    pub(crate) signature_algo: U32,           // 0x034
    pub(crate) current_tcb: U64,              // 0x038
    pub(crate) platform_info: U64,            // 0x040
    pub(crate) key_info: U32,                 // 0x048
    pub(crate) reserved_04c: [u8; 4],         // 0x04C
    pub(crate) report_data: [u8; 64],         // 0x050
    pub(crate) measurement: [u8; 48],         // 0x090
    pub(crate) host_data: [u8; 32],           // 0x0C0
    pub(crate) id_key_digest: [u8; 48],       // 0x0E0
    pub(crate) author_key_digest: [u8; 48],   // 0x110
    pub(crate) report_id: [u8; 32],           // 0x140
    pub(crate) report_id_ma: [u8; 32],        // 0x160
    pub(crate) reported_tcb: U64,             // 0x180
    pub(crate) cpuid_fam_id: u8,              // 0x188 (v3+; reserved in v2)
    pub(crate) cpuid_mod_id: u8,              // 0x189 (v3+)
    pub(crate) cpuid_step: u8,                // 0x18A (v3+)
    pub(crate) reserved_18b: [u8; 21],        // 0x18B
    pub(crate) chip_id: [u8; 64],             // 0x1A0
    pub(crate) committed_tcb: U64,            // 0x1E0
    pub(crate) current_build: u8,             // 0x1E8
    pub(crate) current_minor: u8,             // 0x1E9
    pub(crate) current_major: u8,             // 0x1EA
    pub(crate) reserved_1eb: u8,              // 0x1EB
    pub(crate) committed_build: u8,           // 0x1EC
    pub(crate) committed_minor: u8,           // 0x1ED
    pub(crate) committed_major: u8,           // 0x1EE
    pub(crate) reserved_1ef: u8,              // 0x1EF
    pub(crate) launch_tcb: U64,               // 0x1F0
    pub(crate) launch_mit_vector: U64,        // 0x1F8 (v5; reserved before)
    pub(crate) current_mit_vector: U64,       // 0x200 (v5; reserved before)
    pub(crate) reserved_208: [u8; 152],       // 0x208
    pub(crate) signature_r: [u8; 72],         // 0x2A0
    pub(crate) signature_s: [u8; 72],         // 0x2E8
    pub(crate) signature_reserved: [u8; 368], // 0x330
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<RawReport>() == REPORT_SIZE);
    assert!(offset_of!(RawReport, report_data) == 0x050);
    assert!(offset_of!(RawReport, measurement) == 0x090);
    assert!(offset_of!(RawReport, reported_tcb) == 0x180);
    assert!(offset_of!(RawReport, chip_id) == 0x1A0);
    assert!(offset_of!(RawReport, committed_tcb) == 0x1E0);
    assert!(offset_of!(RawReport, launch_tcb) == 0x1F0);
    assert!(offset_of!(RawReport, reserved_208) == 0x208);
    assert!(offset_of!(RawReport, signature_r) == SIGNED_LEN);
    assert!(offset_of!(RawReport, signature_reserved) == 0x330);
};

/// Which key signed the report (`KEY_INFO.SIGNING_KEY`, bits 4:2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key (chip-unique, `0`).
    Vcek,
    /// Versioned Loaded Endorsement Key (cloud-provider wide, `1`).
    Vlek,
    /// No key: the report is unsigned (`7`).
    None,
}

impl SigningKey {
    /// `"vcek"`, `"vlek"` or `"none"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningKey::Vcek => "vcek",
            SigningKey::Vlek => "vlek",
            SigningKey::None => "none",
        }
    }
}

/// `KEY_INFO` (offset 0x48).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyInfo {
    /// The raw 32-bit value.
    pub raw: u32,
    /// AUTHOR_KEY_EN (bit 0): the ID block was certified by an author key.
    pub author_key_en: bool,
    /// MASK_CHIP_KEY (bit 1): the host masked the chip key (the signature is zero).
    pub mask_chip_key: bool,
    /// SIGNING_KEY (bits 4:2).
    pub signing_key: SigningKey,
}

/// Layout of a `TCB_VERSION` value, which differs by processor generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TcbLayout {
    /// Milan and Genoa: `[bootloader, tee, rsvd×4, snp, microcode]`.
    Legacy,
    /// Turin and later: `[fmc, bootloader, tee, snp, rsvd×3, microcode]`.
    Turin,
}

/// The components of a `TCB_VERSION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TcbParts {
    /// FMC SPL (Turin and later only).
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

/// A raw `TCB_VERSION` (u64, little-endian in the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcbVersion(pub u64);

impl TcbVersion {
    /// Decode under `layout`.
    pub fn parts(self, layout: TcbLayout) -> TcbParts {
        let [b0, b1, b2, b3, _, _, b6, b7] = self.0.to_le_bytes();
        match layout {
            TcbLayout::Legacy => TcbParts { fmc: None, bootloader: b0, tee: b1, snp: b6, microcode: b7 },
            TcbLayout::Turin => TcbParts { fmc: Some(b0), bootloader: b1, tee: b2, snp: b3, microcode: b7 },
        }
    }

    /// Encode `parts` under `layout` (reserved bytes zero; `fmc` is ignored for
    /// the legacy layout and taken as 0 when absent for Turin).
    pub fn from_parts(parts: TcbParts, layout: TcbLayout) -> Self {
        let p = parts;
        let bytes = match layout {
            TcbLayout::Legacy => [p.bootloader, p.tee, 0, 0, 0, 0, p.snp, p.microcode],
            TcbLayout::Turin => [p.fmc.unwrap_or(0), p.bootloader, p.tee, p.snp, 0, 0, 0, p.microcode],
        };
        TcbVersion(u64::from_le_bytes(bytes))
    }

    /// `0x` followed by 16 hex digits, as AMD tools print it.
    pub fn hex(self) -> String {
        format!("{:#018x}", self.0)
    }
}

/// CPUID family/model/stepping of the chip (report version 3 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cpuid {
    /// Combined extended family + family (0x19 Milan/Genoa, 0x1A Turin).
    pub family: u8,
    /// Combined extended model + model.
    pub model: u8,
    /// Stepping.
    pub stepping: u8,
}

impl Cpuid {
    /// The TCB layout of this processor generation: Turin (family 0x1A) and later
    /// use the Turin layout.
    pub fn tcb_layout(self) -> TcbLayout {
        if self.family >= 0x1A { TcbLayout::Turin } else { TcbLayout::Legacy }
    }
}

/// A firmware version `major.minor.build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FwVersion {
    /// Major.
    pub major: u8,
    /// Minor.
    pub minor: u8,
    /// Build.
    pub build: u8,
}

impl std::fmt::Display for FwVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// A parsed and structurally validated attestation report (not yet verified: see
/// [`super::SnpVerifier`]). Byte fields are copied out of the received report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationReport {
    /// VERSION (2, 3 or 5).
    pub version: u32,
    /// GUEST_SVN.
    pub guest_svn: u32,
    /// POLICY (the guest policy, raw).
    pub policy: u64,
    /// FAMILY_ID.
    pub family_id: [u8; 16],
    /// IMAGE_ID.
    pub image_id: [u8; 16],
    /// VMPL the report was requested at.
    pub vmpl: u32,
    /// SIGNATURE_ALGO (always 1 here).
    pub signature_algo: u32,
    /// CURRENT_TCB.
    pub current_tcb: TcbVersion,
    /// PLATFORM_INFO (raw).
    pub platform_info: u64,
    /// KEY_INFO.
    pub key_info: KeyInfo,
    /// REPORT_DATA (guest-chosen).
    pub report_data: [u8; 64],
    /// MEASUREMENT (launch digest).
    pub measurement: [u8; 48],
    /// HOST_DATA (set by the host at launch).
    pub host_data: [u8; 32],
    /// ID_KEY_DIGEST.
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST.
    pub author_key_digest: [u8; 48],
    /// REPORT_ID.
    pub report_id: [u8; 32],
    /// REPORT_ID_MA.
    pub report_id_ma: [u8; 32],
    /// REPORTED_TCB (the TCB the VCEK was derived for).
    pub reported_tcb: TcbVersion,
    /// CPUID_FAM_ID / CPUID_MOD_ID / CPUID_STEP (version 3 and later).
    pub cpuid: Option<Cpuid>,
    /// CHIP_ID (zero if the host masks it).
    pub chip_id: [u8; 64],
    /// COMMITTED_TCB.
    pub committed_tcb: TcbVersion,
    /// CURRENT_MAJOR/MINOR/BUILD.
    pub current_version: FwVersion,
    /// COMMITTED_MAJOR/MINOR/BUILD.
    pub committed_version: FwVersion,
    /// LAUNCH_TCB.
    pub launch_tcb: TcbVersion,
    /// LAUNCH_MIT_VECTOR (version 5 and later).
    pub launch_mit_vector: Option<u64>,
    /// CURRENT_MIT_VECTOR (version 5 and later).
    pub current_mit_vector: Option<u64>,
    /// SIGNATURE.R as in the report (72 bytes, little-endian, top 24 bytes zero).
    pub signature_r: [u8; 72],
    /// SIGNATURE.S as in the report (72 bytes, little-endian, top 24 bytes zero).
    pub signature_s: [u8; 72],
}

impl AttestationReport {
    /// The TCB layout implied by the report itself: the CPUID family for version 3
    /// and later; for version 2 (no CPUID), a chip ID whose last 56 bytes are zero
    /// (Turin's 8-byte chip ID) means Turin, as in virtee/sev. A verifier uses the
    /// product of the certificate chain instead (see [`super::Product`]).
    pub fn tcb_layout_hint(&self) -> TcbLayout {
        match self.cpuid {
            Some(c) => c.tcb_layout(),
            None => {
                let (head, tail) = self.chip_id.split_at(8);
                if tail.iter().all(|&b| b == 0) && head.iter().any(|&b| b != 0) {
                    TcbLayout::Turin
                } else {
                    TcbLayout::Legacy
                }
            }
        }
    }

    /// The signature as ring's fixed-width P-384 form: `r ‖ s`, each 48 bytes
    /// big-endian (the report stores them little-endian in 72-byte fields).
    pub fn signature_p1363(&self) -> [u8; 96] {
        let mut out = [0u8; 96];
        let (r_out, s_out) = out.split_at_mut(48);
        for (dst, src) in r_out.iter_mut().zip(self.signature_r.iter().take(48).rev()) {
            *dst = *src;
        }
        for (dst, src) in s_out.iter_mut().zip(self.signature_s.iter().take(48).rev()) {
            *dst = *src;
        }
        out
    }
}

fn err(field: &'static str, detail: impl Into<String>) -> ParseError {
    ParseError::new(STRUCTURE, field, detail)
}

fn mbz(bytes: &[u8], field: &'static str) -> Result<(), ParseError> {
    if bytes.iter().any(|&b| b != 0) {
        return Err(err(field, format!("reserved, must be zero; found {}", hex::encode(bytes))));
    }
    Ok(())
}

/// Parse the report at the start of `bytes`. Exactly [`REPORT_SIZE`] bytes are
/// read; anything after them is ignored here (a verifier reports it). Rejects
/// versions other than 2, 3 and 5, a signature algorithm other than ECDSA
/// P-384/SHA-384, reserved signing-key values, and non-zero reserved fields.
pub fn parse_report(bytes: &[u8]) -> Result<AttestationReport> {
    Ok(parse_report_inner(bytes)?)
}

pub(crate) fn raw_report(bytes: &[u8]) -> Result<RawReport, ParseError> {
    match RawReport::read_from_prefix(bytes) {
        Ok((raw, _rest)) => Ok(raw),
        Err(_) => {
            Err(err("length", format!("truncated: an attestation report is {REPORT_SIZE} bytes, got {}", bytes.len())))
        }
    }
}

fn parse_report_inner(bytes: &[u8]) -> Result<AttestationReport, ParseError> {
    let r = raw_report(bytes)?;
    let version = r.version.get();
    // Only the layouts of versions 2, 3 and 5 are known here; 1 and 4 are refused.
    if !matches!(version, 2 | 3 | 5) {
        return Err(err("version", format!("unsupported report version {version}; supported: 2, 3, 5")));
    }
    let signature_algo = r.signature_algo.get();
    if signature_algo != SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(err(
            "signature_algo",
            format!("expected {SIG_ALGO_ECDSA_P384_SHA384} (ECDSA P-384 SHA-384), found {signature_algo}"),
        ));
    }
    let ki = r.key_info.get();
    if ki >> 5 != 0 {
        return Err(err("key_info", format!("bits 31:5 are reserved and must be zero; found {ki:#x}")));
    }
    let signing_key = match (ki >> 2) & 7 {
        0 => SigningKey::Vcek,
        1 => SigningKey::Vlek,
        7 => SigningKey::None,
        other => return Err(err("key_info.signing_key", format!("reserved value {other}"))),
    };
    let key_info = KeyInfo { raw: ki, author_key_en: ki & 1 != 0, mask_chip_key: ki & 2 != 0, signing_key };
    mbz(&r.reserved_04c, "reserved (0x04C)")?;

    let cpuid = if version >= 3 {
        mbz(&r.reserved_18b, "reserved (0x18B..0x1A0)")?;
        Some(Cpuid { family: r.cpuid_fam_id, model: r.cpuid_mod_id, stepping: r.cpuid_step })
    } else {
        mbz(&[r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step], "reserved (0x188..0x1A0)")?;
        mbz(&r.reserved_18b, "reserved (0x188..0x1A0)")?;
        None
    };
    mbz(&[r.reserved_1eb], "reserved (0x1EB)")?;
    mbz(&[r.reserved_1ef], "reserved (0x1EF)")?;
    let (launch_mit_vector, current_mit_vector) = if version >= 5 {
        (Some(r.launch_mit_vector.get()), Some(r.current_mit_vector.get()))
    } else {
        mbz(r.launch_mit_vector.as_bytes(), "reserved (0x1F8..0x2A0)")?;
        mbz(r.current_mit_vector.as_bytes(), "reserved (0x1F8..0x2A0)")?;
        (None, None)
    };
    mbz(&r.reserved_208, "reserved (0x208..0x2A0)")?;
    // ECDSA P-384: r and s are 48-byte integers in 72-byte little-endian fields.
    mbz(r.signature_r.get(48..).unwrap_or(&[]), "signature.r (bytes 48..72)")?;
    mbz(r.signature_s.get(48..).unwrap_or(&[]), "signature.s (bytes 48..72)")?;
    mbz(&r.signature_reserved, "signature reserved (0x330..0x4A0)")?;

    Ok(AttestationReport {
        version,
        guest_svn: r.guest_svn.get(),
        policy: r.policy.get(),
        family_id: r.family_id,
        image_id: r.image_id,
        vmpl: r.vmpl.get(),
        signature_algo,
        current_tcb: TcbVersion(r.current_tcb.get()),
        platform_info: r.platform_info.get(),
        key_info,
        report_data: r.report_data,
        measurement: r.measurement,
        host_data: r.host_data,
        id_key_digest: r.id_key_digest,
        author_key_digest: r.author_key_digest,
        report_id: r.report_id,
        report_id_ma: r.report_id_ma,
        reported_tcb: TcbVersion(r.reported_tcb.get()),
        cpuid,
        chip_id: r.chip_id,
        committed_tcb: TcbVersion(r.committed_tcb.get()),
        current_version: FwVersion { major: r.current_major, minor: r.current_minor, build: r.current_build },
        committed_version: FwVersion { major: r.committed_major, minor: r.committed_minor, build: r.committed_build },
        launch_tcb: TcbVersion(r.launch_tcb.get()),
        launch_mit_vector,
        current_mit_vector,
        signature_r: r.signature_r,
        signature_s: r.signature_s,
    })
}

impl AttestationReport {
    /// Encode back to the 1184-byte wire form (reserved fields zero). Used only to
    /// build bytes from Trustee's JSON form; verification always uses the bytes
    /// received.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        use zerocopy::FromZeros;
        let mut r = RawReport::new_zeroed();
        r.version = U32::new(self.version);
        r.guest_svn = U32::new(self.guest_svn);
        r.policy = U64::new(self.policy);
        r.family_id = self.family_id;
        r.image_id = self.image_id;
        r.vmpl = U32::new(self.vmpl);
        r.signature_algo = U32::new(self.signature_algo);
        r.current_tcb = U64::new(self.current_tcb.0);
        r.platform_info = U64::new(self.platform_info);
        r.key_info = U32::new(self.key_info.raw);
        r.report_data = self.report_data;
        r.measurement = self.measurement;
        r.host_data = self.host_data;
        r.id_key_digest = self.id_key_digest;
        r.author_key_digest = self.author_key_digest;
        r.report_id = self.report_id;
        r.report_id_ma = self.report_id_ma;
        r.reported_tcb = U64::new(self.reported_tcb.0);
        if let Some(c) = self.cpuid {
            r.cpuid_fam_id = c.family;
            r.cpuid_mod_id = c.model;
            r.cpuid_step = c.stepping;
        }
        r.chip_id = self.chip_id;
        r.committed_tcb = U64::new(self.committed_tcb.0);
        r.current_major = self.current_version.major;
        r.current_minor = self.current_version.minor;
        r.current_build = self.current_version.build;
        r.committed_major = self.committed_version.major;
        r.committed_minor = self.committed_version.minor;
        r.committed_build = self.committed_version.build;
        r.launch_tcb = U64::new(self.launch_tcb.0);
        r.launch_mit_vector = U64::new(self.launch_mit_vector.unwrap_or(0));
        r.current_mit_vector = U64::new(self.current_mit_vector.unwrap_or(0));
        r.signature_r = self.signature_r;
        r.signature_s = self.signature_s;
        r.as_bytes().to_vec()
    }
}
