//! The simulated platform's fixed identity: TCB levels, identifiers and names.
//!
//! Shared by the library and `examples/generate_fixtures.rs` (via `#[path]`), so the
//! certificates generated once and the evidence generated at run time agree. Changing a
//! value here that is baked into a certificate (TCB, chip id, FMSPC, names) requires
//! re-running `fixtures/generate.sh`.

/// Marker written into every fixture file and the subject of every certificate.
pub const MARKER: &str = "SIMULATED - NOT A SECRET, NOT A REAL ROOT";

/// Validity of every simulated certificate (UTC, seconds since the Unix epoch):
/// 2024-01-01T00:00:00Z ..= 2049-12-31T23:59:59Z.
pub const CERT_NOT_BEFORE: i64 = 1_704_067_200;
/// See [`CERT_NOT_BEFORE`].
pub const CERT_NOT_AFTER: i64 = 2_524_607_999;

/// SEV-SNP: the simulated platform's TCB (Milan TCB_VERSION layout).
pub mod snp {
    /// Boot loader SPL.
    pub const BL_SPL: u8 = 4;
    /// TEE (PSP OS) SPL.
    pub const TEE_SPL: u8 = 0;
    /// SNP firmware SPL.
    pub const SNP_SPL: u8 = 24;
    /// Microcode SPL (>= 0x80, so the certificate INTEGER takes two bytes, as on real
    /// Milan VCEKs today).
    pub const UCODE_SPL: u8 = 217;

    /// The TCB_VERSION u64 (bytes: bl, tee, 0, 0, 0, 0, snp, ucode; little-endian).
    pub const fn tcb_version() -> u64 {
        u64::from_le_bytes([BL_SPL, TEE_SPL, 0, 0, 0, 0, SNP_SPL, UCODE_SPL])
    }

    /// The simulated chip id (VCEK hwID extension and report CHIP_ID): the ASCII text
    /// "VEIL-SIMULATED-CHIP-ID " repeated, cut to 64 bytes.
    pub const fn chip_id() -> [u8; 64] {
        let pattern = *b"VEIL-SIMULATED-CHIP-ID ";
        let mut out = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            out[i] = pattern[i % pattern.len()];
            i += 1;
        }
        out
    }

    /// VCEK productName extension (IA5String), as on real Milan VCEKs.
    pub const VCEK_PRODUCT_NAME: &str = "Milan-B0";
    /// VLEK productName extension (IA5String), as on real Milan VLEKs.
    pub const VLEK_PRODUCT_NAME: &str = "Milan";
    /// VLEK CSP_ID extension (IA5String).
    pub const VLEK_CSP_ID: &str = "CN=veil-sim.invalid";

    /// CPUID family / model / stepping reported by v3+ reports (Milan B1).
    pub const CPUID_FAM: u8 = 0x19;
    /// See [`CPUID_FAM`].
    pub const CPUID_MOD: u8 = 0x01;
    /// See [`CPUID_FAM`].
    pub const CPUID_STEP: u8 = 0x01;
    /// Firmware version reported in CURRENT/COMMITTED (build, minor, major).
    pub const FW_VERSION: [u8; 3] = [29, 55, 1];

    /// Subject common names.
    pub const ARK_CN: &str = "Veil Simulated ARK-Milan";
    /// ASK: AMD calls it "SEV-Milan".
    pub const ASK_CN: &str = "Veil Simulated SEV-Milan";
    /// ASVK: AMD calls it "SEV-VLEK-Milan".
    pub const ASVK_CN: &str = "Veil Simulated SEV-VLEK-Milan";
    /// VCEK leaf.
    pub const VCEK_CN: &str = "Veil Simulated SEV-VCEK";
    /// VLEK leaf.
    pub const VLEK_CN: &str = "Veil Simulated SEV-VLEK";
    /// Organisation of every simulated AMD certificate.
    pub const ORG: &str = "Veil Simulated AMD - NOT A REAL ROOT";
}

/// Intel TDX / DCAP: the simulated platform.
pub mod tdx {
    /// FMSPC of the simulated platform (PCK certificate and TCB info).
    pub const FMSPC: [u8; 6] = [0x50, 0x80, 0x6F, 0x00, 0x5E, 0x11];
    /// PCE-ID.
    pub const PCE_ID: [u8; 2] = [0x00, 0x00];
    /// The 16 SGX TCB component SVNs (= CPUSVN) in the PCK certificate.
    pub const SGX_COMPONENTS: [u8; 16] = [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0];
    /// PCESVN in the PCK certificate.
    pub const PCE_SVN: u16 = 13;
    /// TEE_TCB_SVN reported by the simulated TDX module: ISVSVN 6, module major version 1
    /// (so TDX_01 identity applies), TDX late microcode SVN 3.
    pub const TEE_TCB_SVN: [u8; 16] = [6, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    /// PPID in the PCK certificate.
    pub const PPID: [u8; 16] = *b"veil-sim-ppid-01";
    /// Platform instance id in the PCK certificate.
    pub const PLATFORM_INSTANCE_ID: [u8; 16] = *b"veil-sim-pinst01";
    /// QE id placed in the quote header's user data (first 16 of 20 bytes).
    pub const QE_ID: [u8; 16] = *b"veil-sim-qe-id01";
    /// Intel QE vendor id (the quote header constant for an Intel QE).
    pub const QE_VENDOR_ID: [u8; 16] =
        [0x93, 0x9A, 0x72, 0x33, 0xF7, 0x9C, 0x4C, 0xA9, 0x94, 0x0A, 0x0D, 0xB3, 0x95, 0x7F, 0x06, 0x07];
    /// Simulated TD QE MRSIGNER (not Intel's): ASCII, 32 bytes.
    pub const QE_MRSIGNER: [u8; 32] = *b"VEIL-SIMULATED-TD-QE-MRSIGNER-01";
    /// Simulated TD QE MRENCLAVE: ASCII, 32 bytes.
    pub const QE_MRENCLAVE: [u8; 32] = *b"VEIL-SIMULATED-TD-QE-MRENCLAVE01";
    /// TD QE ISVPRODID (Intel's TD QE uses 2).
    pub const QE_ISV_PROD_ID: u16 = 2;
    /// TD QE ISVSVN.
    pub const QE_ISV_SVN: u16 = 4;
    /// QE report ATTRIBUTES (INIT | MODE64BIT | PROVISIONKEY; XFRM 0xE7), like Intel's QE.
    pub const QE_ATTRIBUTES: [u8; 16] = [0x15, 0, 0, 0, 0, 0, 0, 0, 0xE7, 0, 0, 0, 0, 0, 0, 0];
    /// QE authentication data (32 bytes, as Intel's QE emits: 0x00..=0x1F).
    pub const fn qe_auth_data() -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            out[i] = i as u8;
            i += 1;
        }
        out
    }

    /// Subject common names.
    pub const ROOT_CN: &str = "Veil Simulated Intel SGX Root CA";
    /// PCK Platform CA ("Platform" in the name is what DCAP verifiers key on).
    pub const PLATFORM_CA_CN: &str = "Veil Simulated Intel SGX PCK Platform CA";
    /// TCB signing certificate.
    pub const TCB_SIGNING_CN: &str = "Veil Simulated Intel SGX TCB Signing";
    /// PCK leaf.
    pub const PCK_CN: &str = "Veil Simulated Intel SGX PCK Certificate";
    /// Organisation of every simulated Intel certificate.
    pub const ORG: &str = "Veil Simulated Intel - NOT A REAL ROOT";
}
