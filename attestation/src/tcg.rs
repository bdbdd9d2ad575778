//! TCG PC-Client crypto-agile firmware event log: parsing and replay.
//!
//! Format (TCG PC Client Platform Firmware Profile, rev. 1.05, §10): a first event
//! in the SHA-1 `TCG_PCClientPCREvent` layout whose data is the
//! `TCG_EfiSpecIDEvent` ("Spec ID Event03", listing the digest algorithms and their
//! sizes), then `TCG_PCR_EVENT2` records, each with a `TPML_DIGEST_VALUES`. All
//! integers are little-endian. Every length is checked against the remaining bytes.
//!
//! ```text
//!  bytes ─► parse_event_log ─► EventLog ─► replay(bank) ─► {PCR → value}
//!                                        └► verify_against(quoted PCRs) ─► EventLogSummary
//! ```
//!
//! Replay starts every PCR at zero, except PCR 0 when a `StartupLocality` event
//! (§10.4.5.3) says the TPM was started from locality 3 or 4. `EV_NO_ACTION` events
//! are never extended. (PC-Client TPMs start the DRTM PCRs 17–22 at all ones;
//! firmware logs do not extend them, so they are left as quoted.) An event's content is not trusted because of the replay:
//! the replay only proves the *digests* are those the TPM extended.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, ParseError, Result};
use crate::reader::Reader;
use crate::tpm::{HashAlg, MAX_PCRS, PcrValues};

const LOG: &str = "TCG event log";

/// `EV_NO_ACTION`: informational, never extended.
pub const EV_NO_ACTION: u32 = 0x0000_0003;
/// `EV_SEPARATOR`.
pub const EV_SEPARATOR: u32 = 0x0000_0004;
/// `EV_EFI_ACTION`: an ASCII string whose digest is extended.
pub const EV_EFI_ACTION: u32 = 0x8000_0007;

const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
const STARTUP_LOCALITY_SIGNATURE: &[u8; 16] = b"StartupLocality\0";
/// At most this many digest algorithms in the Spec ID event.
const MAX_ALGORITHMS: u32 = 16;
/// Largest digest size accepted in the Spec ID event.
const MAX_DIGEST_SIZE: u16 = 64;

/// One digest algorithm the log carries, as the Spec ID event lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AlgorithmSize {
    /// `TPM_ALG_ID`.
    pub alg_id: u16,
    /// Digest size in bytes.
    pub digest_size: u16,
}

/// The `TCG_EfiSpecIDEvent` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecIdEvent {
    /// `platformClass` (0 = client, 1 = server).
    pub platform_class: u32,
    /// `specVersionMajor`, `specVersionMinor`, `specErrata`.
    pub spec_version: (u8, u8, u8),
    /// `uintnSize` (1 = 32-bit UINTN, 2 = 64-bit).
    pub uintn_size: u8,
    /// Digest algorithms and sizes of every later event.
    pub algorithms: Vec<AlgorithmSize>,
    /// `vendorInfo`.
    pub vendor_info: Vec<u8>,
}

/// One `TCG_PCR_EVENT2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `pcrIndex`.
    pub pcr_index: u32,
    /// `eventType`.
    pub event_type: u32,
    /// `digests`: (`TPM_ALG_ID`, digest).
    pub digests: Vec<(u16, Vec<u8>)>,
    /// `event` data.
    pub data: Vec<u8>,
}

impl Event {
    /// This event's digest in `bank`, if it carries one.
    pub fn digest(&self, bank: HashAlg) -> Option<&[u8]> {
        self.digests.iter().find(|(id, _)| *id == bank.alg_id()).map(|(_, d)| d.as_slice())
    }

    /// Whether replay extends this event into its PCR.
    pub fn is_extended(&self) -> bool {
        self.event_type != EV_NO_ACTION
    }

    /// The `StartupLocality` this event declares, if it is that event.
    fn startup_locality(&self) -> Option<u8> {
        if self.event_type != EV_NO_ACTION || self.pcr_index != 0 {
            return None;
        }
        match self.data.split_first_chunk::<16>() {
            Some((sig, [loc])) if sig == STARTUP_LOCALITY_SIGNATURE => Some(*loc),
            _ => None,
        }
    }
}

/// A parsed crypto-agile event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    /// The Spec ID header.
    pub spec: SpecIdEvent,
    /// The events after the header, in log order.
    pub events: Vec<Event>,
    /// Bytes of zero (or 0xFF) padding after the last event (ACPI log areas are
    /// larger than the log).
    pub trailing_padding: usize,
}

/// Parse a crypto-agile (`Spec ID Event03`) event log. SHA-1-only logs (TPM 1.2
/// format) are refused.
pub fn parse_event_log(bytes: &[u8]) -> Result<EventLog> {
    let mut r = Reader::new(bytes, LOG);
    let pcr = r.u32_le("header.pcrIndex")?;
    let ty = r.u32_le("header.eventType")?;
    if pcr != 0 || ty != EV_NO_ACTION {
        return Err(r
            .error("header", format!("first event must be EV_NO_ACTION in PCR 0, found type {ty:#x} in PCR {pcr}"))
            .into());
    }
    r.skip(20, "header.digest")?;
    let size = r.u32_le("header.eventSize")?;
    let mut h = r.sub(to_usize(size), "header.event")?;
    let spec = parse_spec_id(&mut h)?;

    let mut events = Vec::new();
    let mut trailing_padding = 0;
    while r.remaining() > 0 {
        let rest = r.rest();
        if rest.iter().all(|&b| b == 0) || rest.iter().all(|&b| b == 0xff) {
            trailing_padding = rest.len();
            break;
        }
        events.push(parse_event2(&mut r, &spec, events.len())?);
    }
    Ok(EventLog { spec, events, trailing_padding })
}

fn to_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn parse_spec_id(h: &mut Reader<'_>) -> Result<SpecIdEvent, ParseError> {
    let sig = h.take(16, "SpecID.signature")?;
    if sig != SPEC_ID_SIGNATURE {
        return Err(h.error(
            "SpecID.signature",
            format!("expected \"Spec ID Event03\" (crypto-agile log), found {:?}", String::from_utf8_lossy(sig)),
        ));
    }
    let platform_class = h.u32_le("SpecID.platformClass")?;
    let minor = h.u8("SpecID.specVersionMinor")?;
    let major = h.u8("SpecID.specVersionMajor")?;
    let errata = h.u8("SpecID.specErrata")?;
    let uintn_size = h.u8("SpecID.uintnSize")?;
    let n = h.u32_le("SpecID.numberOfAlgorithms")?;
    if n == 0 || n > MAX_ALGORITHMS {
        return Err(h.error("SpecID.numberOfAlgorithms", format!("{n} algorithms (1 to {MAX_ALGORITHMS} allowed)")));
    }
    let mut algorithms: Vec<AlgorithmSize> = Vec::new();
    for _ in 0..n {
        let alg_id = h.u16_le("SpecID.digestSizes.algorithmId")?;
        let digest_size = h.u16_le("SpecID.digestSizes.digestSize")?;
        if digest_size == 0 || digest_size > MAX_DIGEST_SIZE {
            return Err(
                h.error("SpecID.digestSizes.digestSize", format!("algorithm {alg_id:#06x}: size {digest_size}"))
            );
        }
        if let Some(known) = HashAlg::from_alg_id(alg_id) {
            if usize::from(digest_size) != known.digest_len() {
                return Err(h.error(
                    "SpecID.digestSizes.digestSize",
                    format!("{known} digests have {} bytes, the log says {digest_size}", known.digest_len()),
                ));
            }
        }
        if algorithms.iter().any(|a| a.alg_id == alg_id) {
            return Err(h.error("SpecID.digestSizes.algorithmId", format!("algorithm {alg_id:#06x} listed twice")));
        }
        algorithms.push(AlgorithmSize { alg_id, digest_size });
    }
    let vendor_size = h.u8("SpecID.vendorInfoSize")?;
    let vendor_info = h.take(usize::from(vendor_size), "SpecID.vendorInfo")?.to_vec();
    h.expect_end("SpecID end")?;
    Ok(SpecIdEvent { platform_class, spec_version: (major, minor, errata), uintn_size, algorithms, vendor_info })
}

fn parse_event2(r: &mut Reader<'_>, spec: &SpecIdEvent, index: usize) -> Result<Event, ParseError> {
    let at = r.position();
    let pcr_index = r.u32_le("event.pcrIndex")?;
    let event_type = r.u32_le("event.eventType")?;
    if event_type != EV_NO_ACTION && pcr_index >= MAX_PCRS {
        return Err(r.error("event.pcrIndex", format!("event #{index} at offset {at}: PCR {pcr_index} out of range")));
    }
    let count = r.u32_le("event.digests.count")?;
    if to_usize(count) > spec.algorithms.len() {
        return Err(r.error(
            "event.digests.count",
            format!(
                "event #{index} at offset {at}: {count} digests, the log declares {} algorithms",
                spec.algorithms.len()
            ),
        ));
    }
    let mut digests: Vec<(u16, Vec<u8>)> = Vec::new();
    for _ in 0..count {
        let alg = r.u16_le("event.digests.hashAlg")?;
        let size = spec.algorithms.iter().find(|a| a.alg_id == alg).map(|a| a.digest_size).ok_or_else(|| {
            r.error(
                "event.digests.hashAlg",
                format!("event #{index} at offset {at}: algorithm {alg:#06x} not in the Spec ID event"),
            )
        })?;
        if digests.iter().any(|(a, _)| *a == alg) {
            return Err(
                r.error("event.digests.hashAlg", format!("event #{index} at offset {at}: algorithm {alg:#06x} twice"))
            );
        }
        let d = r.take(usize::from(size), "event.digests.digest")?;
        digests.push((alg, d.to_vec()));
    }
    let size = r.u32_le("event.eventSize")?;
    let data = r.take(to_usize(size), "event.event")?.to_vec();
    Ok(Event { pcr_index, event_type, digests, data })
}

impl EventLog {
    /// The banks the log carries digests for (supported algorithms only).
    pub fn banks(&self) -> Vec<HashAlg> {
        self.spec.algorithms.iter().filter_map(|a| HashAlg::from_alg_id(a.alg_id)).collect()
    }

    /// The locality the TPM was started from, if a `StartupLocality` event says so.
    pub fn startup_locality(&self) -> Option<u8> {
        self.events.iter().find_map(Event::startup_locality)
    }

    /// Replay the log in `bank`: the value each PCR that has extended events ends
    /// at. PCRs without events are absent.
    pub fn replay(&self, bank: HashAlg) -> Result<BTreeMap<u32, Vec<u8>>> {
        if !self.banks().contains(&bank) {
            return Err(Error::EventLog(format!(
                "the log has no {bank} digests (its banks: {:?})",
                self.banks().iter().map(|b| b.name()).collect::<Vec<_>>()
            )));
        }
        let mut pcrs: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        let mut locality: Option<u8> = None;
        for (i, ev) in self.events.iter().enumerate() {
            if !ev.is_extended() {
                if let Some(l) = ev.startup_locality() {
                    if locality.is_some() || pcrs.contains_key(&0) {
                        return Err(Error::EventLog(format!(
                            "event #{i}: StartupLocality after PCR 0 was extended or a second time"
                        )));
                    }
                    if l > 4 {
                        return Err(Error::EventLog(format!("event #{i}: StartupLocality {l} is not a locality")));
                    }
                    locality = Some(l);
                }
                continue;
            }
            let d = ev.digest(bank).ok_or_else(|| {
                Error::EventLog(format!(
                    "event #{i} ({} in PCR {}) has no {bank} digest",
                    event_type_name(ev.event_type),
                    ev.pcr_index
                ))
            })?;
            let cur = pcrs.entry(ev.pcr_index).or_insert_with(|| {
                let mut init = vec![0u8; bank.digest_len()];
                if ev.pcr_index == 0 {
                    if let (Some(l), Some(last)) = (locality, init.last_mut()) {
                        *last = l;
                    }
                }
                init
            });
            *cur = bank.digest_parts([cur.as_slice(), d]);
        }
        Ok(pcrs)
    }

    /// Replay in `pcrs.bank` and compare with `pcrs` for every PCR that has events
    /// and a supplied value. A mismatch is [`Error::EventLog`] naming the PCR, the
    /// expected (quoted) and the found (replayed) value.
    pub fn check_against(&self, pcrs: &PcrValues) -> Result<()> {
        self.verify_against(pcrs).map(|_| ())
    }

    /// [`EventLog::check_against`], returning a summary of what was checked.
    /// `pcrs` must be values the quote authenticated.
    pub fn verify_against(&self, pcrs: &PcrValues) -> Result<EventLogSummary> {
        let bank = pcrs.bank;
        let replayed = self.replay(bank)?;
        let mut matched_pcrs = Vec::new();
        let mut pcrs_not_quoted = Vec::new();
        for (idx, found) in &replayed {
            match pcrs.values.get(idx) {
                Some(expected) if expected == found => matched_pcrs.push(*idx),
                Some(expected) => {
                    return Err(Error::EventLog(format!(
                        "PCR {idx} ({bank}): the quote has {}, the log replays to {}",
                        hex::encode(expected),
                        hex::encode(found)
                    )));
                }
                None => pcrs_not_quoted.push(*idx),
            }
        }
        let pcrs_without_events = pcrs.values.keys().filter(|k| !replayed.contains_key(k)).copied().collect();

        let mut events_per_pcr: BTreeMap<u32, usize> = BTreeMap::new();
        let mut event_types: BTreeMap<String, usize> = BTreeMap::new();
        let mut efi_actions = Vec::new();
        let mut events: usize = 0;
        for ev in self.events.iter().filter(|e| e.is_extended() && matched_pcrs.contains(&e.pcr_index)) {
            events = events.saturating_add(1);
            let n = events_per_pcr.entry(ev.pcr_index).or_insert(0);
            *n = n.saturating_add(1);
            let t = event_types.entry(event_type_name(ev.event_type)).or_insert(0);
            *t = t.saturating_add(1);
            // An EV_EFI_ACTION string is reported only if its digest is the digest
            // of the string itself (so the replayed value vouches for it).
            if ev.event_type == EV_EFI_ACTION
                && ev.digest(bank) == Some(bank.digest(&ev.data).as_slice())
                && ev.data.iter().all(|c| c.is_ascii_graphic() || *c == b' ')
            {
                efi_actions.push(String::from_utf8_lossy(&ev.data).chars().take(128).collect());
            }
        }
        Ok(EventLogSummary {
            bank,
            events,
            events_per_pcr,
            event_types,
            matched_pcrs,
            pcrs_without_events,
            pcrs_not_quoted,
            efi_actions,
            startup_locality: self.startup_locality(),
        })
    }
}

/// What an event log replay established (only events in PCRs whose replay
/// matched the quote are counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventLogSummary {
    /// The bank replayed.
    pub bank: HashAlg,
    /// Extended events in the matched PCRs.
    pub events: usize,
    /// Events per matched PCR.
    pub events_per_pcr: BTreeMap<u32, usize>,
    /// Events per type name ("EV_SEPARATOR", ...) in the matched PCRs.
    pub event_types: BTreeMap<String, usize>,
    /// PCRs whose replayed value equals the quoted value.
    pub matched_pcrs: Vec<u32>,
    /// Quoted PCRs with no events in the log (left as quoted; e.g. GCE PCR 10, IMA).
    pub pcrs_without_events: Vec<u32>,
    /// PCRs with events but no quoted value: their events are not verified.
    pub pcrs_not_quoted: Vec<u32>,
    /// `EV_EFI_ACTION` strings whose digests match their text.
    pub efi_actions: Vec<String>,
    /// Locality from a `StartupLocality` event, if any.
    pub startup_locality: Option<u8>,
}

/// The name of a TCG PC-Client event type ("EV_SEPARATOR"), or its hex value.
pub fn event_type_name(t: u32) -> String {
    let name = match t {
        0x0000_0000 => "EV_PREBOOT_CERT",
        0x0000_0001 => "EV_POST_CODE",
        0x0000_0002 => "EV_UNUSED",
        0x0000_0003 => "EV_NO_ACTION",
        0x0000_0004 => "EV_SEPARATOR",
        0x0000_0005 => "EV_ACTION",
        0x0000_0006 => "EV_EVENT_TAG",
        0x0000_0007 => "EV_S_CRTM_CONTENTS",
        0x0000_0008 => "EV_S_CRTM_VERSION",
        0x0000_0009 => "EV_CPU_MICROCODE",
        0x0000_000A => "EV_PLATFORM_CONFIG_FLAGS",
        0x0000_000B => "EV_TABLE_OF_DEVICES",
        0x0000_000C => "EV_COMPACT_HASH",
        0x0000_000D => "EV_IPL",
        0x0000_000E => "EV_IPL_PARTITION_DATA",
        0x0000_000F => "EV_NONHOST_CODE",
        0x0000_0010 => "EV_NONHOST_CONFIG",
        0x0000_0011 => "EV_NONHOST_INFO",
        0x0000_0012 => "EV_OMIT_BOOT_DEVICE_EVENTS",
        0x8000_0001 => "EV_EFI_VARIABLE_DRIVER_CONFIG",
        0x8000_0002 => "EV_EFI_VARIABLE_BOOT",
        0x8000_0003 => "EV_EFI_BOOT_SERVICES_APPLICATION",
        0x8000_0004 => "EV_EFI_BOOT_SERVICES_DRIVER",
        0x8000_0005 => "EV_EFI_RUNTIME_SERVICES_DRIVER",
        0x8000_0006 => "EV_EFI_GPT_EVENT",
        0x8000_0007 => "EV_EFI_ACTION",
        0x8000_0008 => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
        0x8000_0009 => "EV_EFI_HANDOFF_TABLES",
        0x8000_000A => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
        0x8000_000B => "EV_EFI_HANDOFF_TABLES2",
        0x8000_000C => "EV_EFI_VARIABLE_BOOT2",
        0x8000_0010 => "EV_EFI_HCRTM_EVENT",
        0x8000_00E0 => "EV_EFI_VARIABLE_AUTHORITY",
        0x8000_00E1 => "EV_EFI_SPDM_FIRMWARE_BLOB",
        0x8000_00E2 => "EV_EFI_SPDM_FIRMWARE_CONFIG",
        _ => return format!("{t:#010x}"),
    };
    name.to_string()
}

/// Fuzz entry: parse a log, replay it in every bank and compare with zero PCRs.
/// Must never panic.
#[doc(hidden)]
pub fn fuzz_event_log(data: &[u8]) {
    if let Ok(log) = parse_event_log(data) {
        for bank in HashAlg::ALL {
            let _ = log.replay(bank);
            let zeros = (0..24).map(|i| (i, vec![0u8; bank.digest_len()])).collect();
            let _ = log.verify_against(&PcrValues { bank, values: zeros });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> std::path::PathBuf {
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors")).to_path_buf()
    }

    fn gce_log() -> Vec<u8> {
        std::fs::read(vectors().join("tpm/gotpmtools-gce-cos85-nonce9009/event_log.bin")).unwrap()
    }

    #[test]
    fn parses_gce_log() {
        let log = parse_event_log(&gce_log()).unwrap();
        assert_eq!(log.events.len(), 44); // after the Spec ID header
        assert_eq!(log.spec.algorithms.len(), 3);
        assert_eq!(log.banks(), vec![HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384]);
        assert_eq!(log.trailing_padding, 0);
        assert!(log.replay(HashAlg::Sha512).is_err());
    }

    #[test]
    fn replay_matches_gce_quotes_except_pcr10() {
        for dir in ["gotpmtools-gce-cos85-nonce9009", "gotpmtools-gce-cos85-no-nonce"] {
            let d = vectors().join("tpm").join(dir);
            let log = parse_event_log(&std::fs::read(d.join("event_log.bin")).unwrap()).unwrap();
            let json = std::fs::read(d.join("quotes.json")).unwrap();
            for bank in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384] {
                let pcrs = PcrValues::from_quotes_json(&json, bank).unwrap();
                let s = log.verify_against(&pcrs).unwrap();
                assert_eq!(s.matched_pcrs, (0..10).collect::<Vec<_>>(), "{dir} {bank}");
                assert_eq!(s.pcrs_without_events, (10..24).collect::<Vec<_>>());
                assert!(s.pcrs_not_quoted.is_empty());
                assert_eq!(s.events, 44); // no EV_NO_ACTION after the header here
                assert_eq!(s.events_per_pcr.get(&8), Some(&15));
                assert_eq!(s.event_types.get("EV_SEPARATOR"), Some(&8));
                assert!(s.efi_actions.contains(&"Exit Boot Services Invocation".to_string()), "{:?}", s.efi_actions);
                // PCR 10 is not in the firmware log: a log that claimed it would mismatch.
                let mut bad = pcrs.clone();
                bad.values.get_mut(&4).unwrap()[0] ^= 1;
                let e = log.check_against(&bad).unwrap_err();
                assert_eq!(e.kind(), crate::ErrorKind::EventLog);
                assert!(e.to_string().contains("PCR 4"), "{e}");
            }
        }
    }

    #[test]
    fn startup_locality_sets_pcr0() {
        // Header with one SHA-256 algorithm, a StartupLocality(3) event, one PCR 0 extend.
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
        b.extend_from_slice(&[0u8; 20]);
        let mut spec = Vec::new();
        spec.extend_from_slice(SPEC_ID_SIGNATURE);
        spec.extend_from_slice(&0u32.to_le_bytes());
        spec.extend_from_slice(&[0, 2, 0, 2]);
        spec.extend_from_slice(&1u32.to_le_bytes());
        spec.extend_from_slice(&0x000bu16.to_le_bytes());
        spec.extend_from_slice(&32u16.to_le_bytes());
        spec.push(0);
        b.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        b.extend_from_slice(&spec);
        let ev = |b: &mut Vec<u8>, pcr: u32, ty: u32, digest: &[u8], data: &[u8]| {
            b.extend_from_slice(&pcr.to_le_bytes());
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend_from_slice(&0x000bu16.to_le_bytes());
            b.extend_from_slice(digest);
            b.extend_from_slice(&(data.len() as u32).to_le_bytes());
            b.extend_from_slice(data);
        };
        let mut loc = STARTUP_LOCALITY_SIGNATURE.to_vec();
        loc.push(3);
        ev(&mut b, 0, EV_NO_ACTION, &[0u8; 32], &loc);
        let d = HashAlg::Sha256.digest(b"x");
        ev(&mut b, 0, 0x8, &d, b"x");
        b.extend_from_slice(&[0u8; 7]); // ACPI padding
        let log = parse_event_log(&b).unwrap();
        assert_eq!(log.startup_locality(), Some(3));
        assert_eq!(log.trailing_padding, 7);
        let mut init = vec![0u8; 32];
        init[31] = 3;
        let want = HashAlg::Sha256.digest_parts([init.as_slice(), d.as_slice()]);
        assert_eq!(log.replay(HashAlg::Sha256).unwrap().get(&0), Some(&want));
    }

    #[test]
    fn truncations_and_flips_never_panic() {
        let log = gce_log();
        let good = parse_event_log(&log).unwrap();
        let pcrs = PcrValues::from_quotes_json(
            &std::fs::read(vectors().join("tpm/gotpmtools-gce-cos85-nonce9009/quotes.json")).unwrap(),
            HashAlg::Sha256,
        )
        .unwrap();
        // Every truncation that cuts into an event is a typed parse error; a cut at
        // an event boundary is a shorter, valid log.
        for n in 0..log.len() {
            match parse_event_log(&log[..n]) {
                Err(e) => assert_eq!(e.kind(), crate::ErrorKind::Parse),
                Ok(l) => assert!(l.events.len() < good.events.len()),
            }
        }
        // A sample of bit flips: error, mismatch or (in unextended/unhashed bytes) a
        // pass. (Debug-build hashing is slow, so only every 11th byte, and the full
        // fuzz entry on every 5th of those.)
        let mut mismatches = 0;
        for (k, i) in (0..log.len()).step_by(11).enumerate() {
            let mut m = log.clone();
            m[i] ^= 1 << (i % 8);
            if k % 5 == 0 {
                fuzz_event_log(&m);
            }
            if let Ok(l) = parse_event_log(&m) {
                if l.check_against(&pcrs).is_err() {
                    mismatches += 1;
                }
            }
        }
        assert!(mismatches > 50, "{mismatches}");
    }
}
