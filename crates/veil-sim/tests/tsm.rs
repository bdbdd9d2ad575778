//! configfs-tsm simulator: the test acts as the attester, following the protocol in
//! `veil_sim::tsm`'s documentation (works against a real, synchronous configfs too).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use veil_sim::tsm::{Provider, TsmSim};

fn generation(dir: &Path) -> u64 {
    fs::read_to_string(dir.join("generation")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// One report request the way an attester does it; returns (outblob, auxblob).
fn request(dir: &Path, inblob: &[u8], privlevel: Option<u32>) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    if !dir.exists() {
        fs::create_dir(dir)?;
    }
    let g0 = generation(dir);
    if let Some(level) = privlevel {
        fs::write(dir.join("privlevel"), format!("{level}\n"))?;
    }
    fs::write(dir.join("inblob"), inblob)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let g = generation(dir);
        if g > g0 {
            let out = fs::read(dir.join("outblob")).unwrap_or_default();
            if !out.is_empty() {
                let aux = fs::read(dir.join("auxblob")).ok();
                if generation(dir) == g {
                    return Ok((out, aux));
                }
            }
        }
        if Instant::now() > deadline {
            bail!("no report within the bounded wait");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn sev_guest_round_trip() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("tsm/report");
    let sim = TsmSim::start(&root, Provider::SevGuest)?;
    let dir = root.join("req0");

    let (out, aux) = request(&dir, b"nonce-1", Some(2))?;
    assert_eq!(fs::read_to_string(dir.join("provider"))?.trim(), "sev_guest");
    assert_eq!(out.len(), 1184);
    let mut expect = [0u8; 64];
    expect[..7].copy_from_slice(b"nonce-1");
    assert_eq!(&out[0x50..0x90], &expect);
    assert_eq!(u32::from_le_bytes(out[0x30..0x34].try_into()?), 2, "VMPL = privlevel");
    let aux = aux.context("auxblob")?;
    assert_eq!(&aux[..16], &veil_sim::snp::guid::VCEK);
    assert_eq!(generation(&dir), 1);

    // A second request in the same directory gets a fresh report and generation 2.
    let (out2, _) = request(&dir, b"nonce-2", None)?;
    assert_eq!(&out2[0x50..0x57], b"nonce-2");
    assert_eq!(generation(&dir), 2);

    // Same bytes written again still count as a new request.
    let (out3, _) = request(&dir, b"nonce-2", None)?;
    assert_eq!(&out3[0x50..0x57], b"nonce-2");
    assert_eq!(generation(&dir), 3);

    // Too long an inblob gets no answer (the kernel would fail the write).
    let bad = root.join("req-bad");
    fs::create_dir(&bad)?;
    fs::write(bad.join("inblob"), [7u8; 65])?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sim.errors().iter().any(|e| e.contains("inblob")) {
        assert!(Instant::now() < deadline, "oversized inblob not reported");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!bad.join("outblob").exists());
    assert_eq!(generation(&bad), 0);
    Ok(())
}

#[test]
fn tdx_guest_round_trip_and_stop_on_drop() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().to_path_buf();
    let dir = root.join("q");
    {
        let _sim = TsmSim::start(&root, Provider::TdxGuest)?;
        let (out, aux) = request(&dir, &[0xAB; 64], None)?;
        assert_eq!(fs::read_to_string(dir.join("provider"))?.trim(), "tdx_guest");
        assert!(aux.is_none(), "TDX has no auxblob");
        assert_eq!(u16::from_le_bytes([out[0], out[1]]), 4);
        assert_eq!(&out[48 + 520..48 + 584], &[0xAB; 64]);
        fs::remove_dir_all(&dir)?;
    }
    // Dropped: nothing answers any more.
    fs::create_dir(&dir)?;
    fs::write(dir.join("inblob"), b"late")?;
    std::thread::sleep(Duration::from_millis(50));
    assert!(!dir.join("outblob").exists());
    Ok(())
}
