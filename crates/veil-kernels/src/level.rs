//! Which kernels this CPU can run.

use std::sync::OnceLock;

/// A kernel tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Portable Rust; the reference the other tiers are tested against.
    Scalar,
    /// AVX2 + FMA + F16C (every x86-64-v3 CPU).
    Avx2,
    /// AVX2 + FMA + F16C + AVX-512 F/BW/VL + AVX-512 VNNI, on 256-bit registers.
    Avx512Vnni,
}

impl Level {
    /// Every tier, lowest first.
    pub const ALL: [Level; 3] = [Level::Scalar, Level::Avx2, Level::Avx512Vnni];

    /// Whether this CPU has what the tier needs.
    pub fn is_available(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Vnni => {
                Level::Avx2.is_available()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The best tier this CPU has.
    pub fn best() -> Level {
        Level::ALL.into_iter().rev().find(|l| l.is_available()).unwrap_or(Level::Scalar)
    }

    /// The name `VEIL_KERNELS` takes.
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512Vnni => "avx512",
        }
    }

    /// Parses a `VEIL_KERNELS` value.
    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.name() == s.trim())
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A tier this CPU is known to support: the only way to run a SIMD kernel, so no code
/// path can run an instruction the CPU lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    level: Level,
}

impl Kernels {
    /// `level`, if this CPU supports it.
    pub fn new(level: Level) -> Option<Kernels> {
        level.is_available().then_some(Kernels { level })
    }

    /// The portable tier (always available).
    pub fn scalar() -> Kernels {
        Kernels { level: Level::Scalar }
    }

    /// The best tier, or the one `VEIL_KERNELS` names when this CPU has it (a tier it
    /// lacks, or an unknown name, gives the best tier; [`Kernels::requested`] tells).
    pub fn detect() -> Kernels {
        let best = Kernels { level: Level::best() };
        match std::env::var("VEIL_KERNELS").ok().as_deref().and_then(Level::parse) {
            Some(l) if l <= best.level => Kernels { level: l },
            _ => best,
        }
    }

    /// What `VEIL_KERNELS` asked for, when it is set: `Err` with the value when it names
    /// no tier or one this CPU lacks (callers log it; [`Kernels::detect`] ignored it).
    pub fn requested() -> Option<Result<Level, String>> {
        let v = std::env::var("VEIL_KERNELS").ok()?;
        Some(match Level::parse(&v) {
            Some(l) if l.is_available() => Ok(l),
            _ => Err(v),
        })
    }

    /// [`Kernels::detect`], once per process.
    pub fn global() -> Kernels {
        static K: OnceLock<Kernels> = OnceLock::new();
        *K.get_or_init(Kernels::detect)
    }

    /// The tier.
    pub fn level(self) -> Level {
        self.level
    }
}
