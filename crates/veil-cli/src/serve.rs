//! `veil serve --config serve.toml`: the confidential serving runtime.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use veil_attestation::runtime_log::Register;
use veil_enclave::kbs::EvidenceProvider;
use veil_enclave::measure::{KernelRtmr, Measurer, RegisterBackend, TpmPcr};
use veil_enclave::serve::{ServeConfig, harden_process, run};
use veil_enclave::tpm::TpmAttester;
use veil_enclave::tsm::TsmAttester;
use veil_enclave::{Attester, TeeKind};

/// `veil serve`.
#[derive(Args, Debug)]
pub struct ServeCmd {
    /// The runtime configuration (TOML).
    #[arg(long)]
    config: PathBuf,
}

const TSM_DEFAULT: &str = "/sys/kernel/config/tsm/report";

/// RTMR3 of the in-process simulated TD (the kernel's measurement files are the real
/// interface; the simulator takes the extend directly).
struct SimRtmr(Arc<veil_sim::tsm::TsmSim>);

impl RegisterBackend for SimRtmr {
    fn register(&self) -> Register {
        Register::VEIL_RTMR
    }
    fn extend(&self, digest: &[u8]) -> veil_enclave::Result<()> {
        let d: &[u8; 48] = digest.try_into().map_err(|_| veil_enclave::AttestError::InvalidArgument {
            what: "RTMR digest",
            detail: format!("{} bytes, expected 48", digest.len()),
        })?;
        self.0
            .extend_rtmr(veil_enclave::rtmr::VEIL_RTMR, d)
            .map_err(|e| veil_enclave::AttestError::InvalidArgument { what: "simulated RTMR", detail: e.to_string() })
    }
    fn read(&self) -> veil_enclave::Result<Vec<u8>> {
        self.0
            .rtmr(veil_enclave::rtmr::VEIL_RTMR)
            .map(|v| v.to_vec())
            .map_err(|e| veil_enclave::AttestError::InvalidArgument { what: "simulated RTMR", detail: e.to_string() })
    }
}

pub fn run_serve(cmd: ServeCmd) -> anyhow::Result<ExitCode> {
    crate::kbs::init_logging();
    harden_process().context("disabling core dumps")?;
    let text = std::fs::read_to_string(&cmd.config).with_context(|| format!("reading {}", cmd.config.display()))?;
    let cfg = ServeConfig::from_toml(&text)?;
    match veil_enclave::serve::lock_memory() {
        Ok(()) => tracing::info!("memory locked into RAM (no swapping of keys or weights)"),
        Err(e) if cfg.tee.require_locked_memory => {
            bail!("locking memory (require_locked_memory = true): {e}; grant CAP_IPC_LOCK or raise RLIMIT_MEMLOCK")
        }
        Err(e) => tracing::warn!(
            error = %e,
            "could not lock memory into RAM: with swap enabled, keys and weights could reach the swap device; \
             grant CAP_IPC_LOCK, raise RLIMIT_MEMLOCK, or run without swap (set require_locked_memory to insist)"
        ),
    }
    if let Err(e) = veil_enclave::serve::set_transparent_huge_pages(cfg.tee.transparent_huge_pages) {
        tracing::warn!(error = %e, "could not set the transparent huge page policy");
    }
    let init_data = match &cfg.tee.init_data {
        Some(p) => Some(std::fs::read_to_string(p).with_context(|| format!("reading init-data {}", p.display()))?),
        None => None,
    };

    // The simulator (kind = "sim") runs in this process, over a private directory.
    let mut _sim: Option<(tempfile::TempDir, Arc<veil_sim::tsm::TsmSim>)> = None;
    let mut registers: Vec<Box<dyn RegisterBackend>> = Vec::new();
    let attester: Arc<dyn Attester> = match cfg.tee.kind.as_str() {
        "sim" => {
            let provider = match cfg.tee.sim_provider.as_deref().unwrap_or("snp") {
                "snp" => veil_sim::tsm::Provider::SevGuest,
                "tdx" => veil_sim::tsm::Provider::TdxGuest,
                other => bail!("sim_provider {other:?}: snp or tdx"),
            };
            tracing::warn!("SIMULATED TEE: this runtime's evidence proves nothing; for tests and demos only");
            let dir = tempfile::tempdir()?;
            // The simulated host launches the CVM with the init-data's digest as HOSTDATA /
            // MRCONFIGID, as a real host would.
            let mut sim_cfg = veil_sim::tsm::TsmConfig::default();
            if let Some(body) = &init_data {
                let digest = veil_kbs::initdata::parse(body)?.digest;
                for (o, i) in sim_cfg.snp.host_data.iter_mut().zip(&digest) {
                    *o = *i;
                }
                for (o, i) in sim_cfg.tdx.mr_config_id.iter_mut().zip(&digest) {
                    *o = *i;
                }
            }
            let sim = Arc::new(veil_sim::tsm::TsmSim::start_with(dir.path(), provider, sim_cfg)?);
            if provider == veil_sim::tsm::Provider::TdxGuest {
                registers.push(Box::new(SimRtmr(sim.clone())));
            }
            let a = Arc::new(TsmAttester::new(dir.path()));
            _sim = Some((dir, sim));
            a
        }
        kind => {
            let dir = cfg.tee.tsm_dir.clone().unwrap_or_else(|| PathBuf::from(TSM_DEFAULT));
            if !dir.is_dir() {
                bail!(
                    "no TEE found: {} does not exist (not a confidential VM, or configfs-tsm is not mounted); \
                     to run on the simulator, set [tee] kind = \"sim\" and danger_simulated = true",
                    dir.display()
                );
            }
            let a = TsmAttester::new(&dir);
            let found = a.tee().context("reading the configfs-tsm provider")?;
            match (kind, found) {
                ("auto", TeeKind::Snp | TeeKind::Tdx) | ("snp", TeeKind::Snp) | ("tdx", TeeKind::Tdx) => {}
                _ => bail!("[tee] kind = {kind:?}, but configfs-tsm offers {found:?}"),
            }
            if found == TeeKind::Tdx {
                let dir = cfg
                    .tee
                    .measurements_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(veil_enclave::rtmr::DEFAULT_MEASUREMENTS_DIR));
                registers.push(Box::new(KernelRtmr { dir, index: veil_enclave::rtmr::VEIL_RTMR }));
            }
            Arc::new(a)
        }
    };
    let mut evidence = EvidenceProvider::new(attester);
    if cfg.tee.kind == "sim" && cfg.tee.sim_provider.as_deref() == Some("tdx") {
        // The simulated platform's PCS collateral travels with its quotes (a real TD's
        // verifier fetches Intel's), valid from an hour ago for 30 days.
        let issue = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        let c = veil_sim::tdx::collateral_json(issue, issue + time::Duration::days(30))?;
        evidence.tdx_collateral = Some(serde_json::from_slice(&c)?);
    }
    if let Some(tcti) = &cfg.tee.tpm {
        let tpm = Arc::new(TpmAttester::open(tcti).with_context(|| format!("opening the TPM at {tcti}"))?);
        registers.push(Box::new(TpmPcr { tpm: tpm.clone(), index: veil_enclave::tpm::VEIL_PCR }));
        evidence = evidence.with_tpm(tpm);
    }
    std::fs::create_dir_all(&cfg.state_dir).with_context(|| format!("creating {}", cfg.state_dir.display()))?;
    let measurer = Measurer::open(registers, &cfg.state_dir.join("event-log.jsonl")).context("measured boot")?;
    let mut evidence = evidence.with_measurer(Arc::new(measurer));
    if let Some(body) = init_data {
        evidence = evidence.with_init_data(body);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(
        cfg,
        Arc::new(evidence),
        |addr, fp, cert| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "runtime: https://{addr}");
            let _ = writeln!(out, "tls-sha256: {fp}");
            let _ = writeln!(out, "tls-cert: {}", cert.display());
            let _ = out.flush();
        },
        // Ctrl-C or SIGTERM (what a service manager or an orchestrator sends): stop
        // accepting, then the runtime drops the models and signs a final audit checkpoint.
        async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            tracing::info!("stopping on a signal");
        },
    ))?;
    Ok(ExitCode::SUCCESS)
}
