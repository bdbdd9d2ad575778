//! RTMR extend/read against a temporary directory standing in for
//! `/sys/devices/virtual/misc/tdx_guest/measurements`.

use std::fs;

use veil_enclave::AttestError;
use veil_enclave::rtmr::{self, VEIL_RTMR};

#[test]
fn extend_writes_exactly_48_bytes_at_offset_0() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rtmr3:sha384");
    // Longer than a register, so an offset other than 0, a longer write or a
    // truncation would all show.
    fs::write(&file, [0xaa; 100]).unwrap();
    let digest = [0x5c; 48];
    rtmr::extend(dir.path(), VEIL_RTMR, &digest).unwrap();
    let after = fs::read(&file).unwrap();
    assert_eq!(after.len(), 100, "not truncated, nothing appended");
    assert_eq!(&after[..48], &digest, "the digest at offset 0");
    assert!(after[48..].iter().all(|&b| b == 0xaa), "exactly 48 bytes written");
}

#[test]
fn extend_targets_the_sha384_file_of_each_index() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..=3u8 {
        fs::write(dir.path().join(format!("rtmr{i}:sha384")), [0u8; 48]).unwrap();
        rtmr::extend(dir.path(), i, &[i + 1; 48]).unwrap();
        assert_eq!(rtmr::read(dir.path(), i).unwrap(), [i + 1; 48]);
    }
    assert!(rtmr::path(dir.path(), 2).unwrap().ends_with("rtmr2:sha384"));
}

#[test]
fn index_4_is_refused_and_nothing_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let err = rtmr::extend(dir.path(), 4, &[0; 48]).unwrap_err();
    assert!(matches!(err, AttestError::InvalidArgument { what: "RTMR index", .. }), "{err}");
    assert!(matches!(rtmr::read(dir.path(), 4), Err(AttestError::InvalidArgument { .. })));
    assert!(matches!(rtmr::path(dir.path(), 255), Err(AttestError::InvalidArgument { .. })));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn missing_register_file_is_never_created() {
    let dir = tempfile::tempdir().unwrap();
    let err = rtmr::extend(dir.path(), 3, &[1; 48]).unwrap_err();
    let AttestError::Io { op, path, source } = &err else { panic!("{err}") };
    assert_eq!(*op, "open");
    assert!(path.ends_with("rtmr3:sha384"));
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("rtmr3:sha384") && err.to_string().contains("os error 2"), "{err}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn read_requires_exactly_48_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rtmr3:sha384");
    for bad in [0usize, 47, 49, 96] {
        fs::write(&file, vec![7u8; bad]).unwrap();
        let err = rtmr::read(dir.path(), 3).unwrap_err();
        assert!(matches!(&err, AttestError::Malformed { path, .. } if path.ends_with("rtmr3:sha384")), "{bad}: {err}");
    }
    fs::write(&file, [9u8; 48]).unwrap();
    assert_eq!(rtmr::read(dir.path(), 3).unwrap(), [9u8; 48]);
}
