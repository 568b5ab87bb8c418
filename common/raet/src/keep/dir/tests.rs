//! Tests of the directory keep: layout, file format, modes, atomicity, corrupt files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use raet_proto::keep::testutil::{self, key_hex};

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

fn open(dir: &Path) -> DirKeep {
    DirKeep::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()))
}

/// A keep holding one record of each kind.
fn filled(dir: &Path) -> DirKeep {
    let mut keep = open(dir);
    let results = [
        keep.save_local(&testutil::local("alpha")),
        keep.save_remote(&testutil::remote("beta", 2)),
        keep.save_role(&testutil::role("beta", Acceptance::Accepted, 4)),
    ];
    for r in results {
        r.unwrap_or_else(|e| panic!("fill: {e}"));
    }
    keep
}

/// Loads whatever reads `path`, as a restarting stack would.
fn load_for(keep: &DirKeep, path: &Path) -> Result<(), KeepError> {
    if path.starts_with(keep.path().join("remote")) {
        keep.load_remotes().map(drop)
    } else if path.starts_with(keep.path().join("role").join("remote")) {
        keep.load_role("beta")?;
        keep.load_roles().map(drop)
    } else {
        keep.load_local().map(drop)
    }
}

/// The five files of [`filled`].
fn files(keep: &DirKeep) -> Vec<PathBuf> {
    vec![
        keep.local_estate_path(),
        keep.local_role_path(),
        keep.local_road_path(),
        keep.path().join("remote/estate.beta.json"),
        keep.path().join("role/remote/role.beta.json"),
    ]
}

/// Every file below `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                out.push(rel.display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn assert_corrupt_at<T: std::fmt::Debug>(result: Result<T, KeepError>, path: &Path, what: &str) {
    match result {
        Err(e @ KeepError::Corrupt { .. }) => {
            let shown = e.to_string();
            assert!(
                shown.contains(&path.display().to_string()),
                "{what}: {shown}"
            );
            if let KeepError::Corrupt { path: p, .. } = &e {
                assert_eq!(p, path, "{what}");
            }
        }
        other => panic!(
            "{what}: expected Corrupt at {}, got {other:?}",
            path.display()
        ),
    }
}

fn read_value(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write_value(path: &Path, value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn keys_of(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn round_trips_and_survives_reopen() -> Result<(), KeepError> {
    let dir = temp();
    let mut keep = DirKeep::open(dir.path())?;
    testutil::round_trip_suite(&mut keep, || open(dir.path()))
}

#[test]
fn refuses_unsafe_names_and_bad_keys() {
    let dir = temp();
    testutil::unsafe_names_suite(&mut open(dir.path()));
    testutil::bad_keys_suite(&mut open(dir.path()));
    // Nothing at all was written by the refused calls.
    assert!(tree(dir.path()).is_empty(), "{:?}", tree(dir.path()));
}

#[test]
fn fresh_directory_is_an_empty_keep_and_is_created_0700() -> Result<(), KeepError> {
    let dir = temp();
    let base = dir.path().join("new").join("alpha");
    let keep = DirKeep::open(&base)?;
    assert_eq!(keep.load_local()?, None);
    assert!(keep.load_remotes()?.is_empty() && keep.load_roles()?.is_empty());
    for sub in [
        "new",
        "new/alpha",
        "new/alpha/local",
        "new/alpha/remote",
        "new/alpha/role",
    ] {
        let mode = fs::metadata(dir.path().join(sub)).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o700), "{sub}");
    }
    let mode = fs::metadata(base.join("role/remote")).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o700));
    Ok(())
}

#[test]
fn open_on_a_file_is_an_io_error_naming_it() {
    let dir = temp();
    let file = dir.path().join("plain");
    fs::write(&file, b"x").unwrap_or_else(|e| panic!("{e}"));
    match DirKeep::open(&file) {
        Err(e @ KeepError::Io { .. }) => assert!(e.to_string().contains("plain"), "{e}"),
        other => panic!("expected Io error, got {other:?}"),
    }
}

/// The files have the reference's names, field names and order, and its indentation.
#[test]
fn layout_and_fields_are_the_reference_ones() {
    let dir = temp();
    let keep = filled(dir.path());
    assert_eq!(
        tree(dir.path()),
        [
            "local/estate.json",
            "local/road.json",
            "remote/estate.beta.json",
            "role/local/role.json",
            "role/remote/role.beta.json"
        ]
    );
    let [estate, keys, road, remote, role] = [0, 1, 2, 3, 4].map(|i| read_value(&files(&keep)[i]));
    assert_eq!(
        keys_of(&estate),
        ["name", "uid", "ha", "iha", "natted", "fqdn", "dyned", "sid", "puid", "aha", "role"]
    );
    assert_eq!(road, serde_json::json!({"main": true, "kind": 7}));
    assert_eq!(estate["ha"], serde_json::json!(["127.0.0.1", 7531]));
    assert_eq!(estate["aha"], estate["ha"]);
    assert_eq!(
        (&estate["iha"], &estate["natted"], &estate["dyned"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    assert_eq!(
        (&estate["puid"], &estate["sid"]),
        (&serde_json::json!(3), &serde_json::json!(5))
    );

    let local = testutil::local("alpha");
    assert_eq!(keys_of(&keys), ["role", "sighex", "prihex"]);
    assert_eq!(
        keys["sighex"],
        Value::from(hex::encode(&local.sign_seed[..]))
    );
    assert_eq!(
        keys["prihex"],
        Value::from(hex::encode(&local.private_key[..]))
    );
    assert_eq!(keys["role"], Value::from("alpha-role"));

    assert_eq!(
        keys_of(&remote),
        [
            "name", "uid", "fuid", "ha", "iha", "natted", "fqdn", "dyned", "sid", "main", "kind",
            "joined", "role"
        ]
    );
    assert_eq!(keys_of(&role), ["role", "acceptance", "verhex", "pubhex"]);
    assert_eq!(role["acceptance"], Value::from(1));
    assert_eq!(role["verhex"], Value::from(key_hex(4)));

    // json.dump(indent=2): two-space indentation, ", "-free item separators, ": " after keys.
    let text =
        fs::read_to_string(keep.path().join("role/remote/role.beta.json")).unwrap_or_default();
    assert!(
        text.starts_with("{\n  \"role\": \"beta\",\n  \"acceptance\": 1,\n"),
        "{text}"
    );
    assert!(text.ends_with('}'), "{text}");
}

/// A remote whose join negotiated the fast profile keeps it in an extra field, `fast`,
/// written only when true (the reference's layout otherwise).
#[test]
fn the_fast_profile_is_remembered_in_one_extra_field() -> Result<(), KeepError> {
    let dir = temp();
    let mut keep = open(dir.path());
    let fast = RemoteRecord {
        fast: true,
        ..testutil::remote("beta", 2)
    };
    keep.save_remote(&fast)?;
    let value = read_value(&keep.remote_path("beta")?);
    assert_eq!(value["fast"], Value::from(true));
    assert_eq!(open(dir.path()).load_remotes()?, vec![fast]);
    Ok(())
}

/// A keep written by the reference (the spec's example, fields as `json.dump(indent=2)`
/// writes them, no `local/road.json`) is read.
#[test]
fn reads_a_reference_keep() -> Result<(), KeepError> {
    let dir = temp();
    let keep = DirKeep::open(dir.path())?;
    let (sig, pri, ver, publ) = (key_hex(0xf2), key_hex(0x8e), key_hex(0x5c), key_hex(0x10));
    let write = |rel: &str, text: String| {
        fs::write(dir.path().join(rel), text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    };
    write(
        "local/estate.json",
        "{\n  \"name\": \"alpha\",\n  \"uid\": 1,\n  \"ha\": [\n    \"127.0.0.1\",\n    7531\n  ],\n  \
         \"iha\": null,\n  \"natted\": null,\n  \"fqdn\": \"localhost\",\n  \"dyned\": null,\n  \
         \"sid\": 0,\n  \"puid\": 2,\n  \"aha\": [\n    \"0.0.0.0\",\n    7531\n  ],\n  \"role\": \"alpha\"\n}"
            .to_owned(),
    );
    write(
        "role/local/role.json",
        format!(
            "{{\n  \"role\": \"alpha\",\n  \"sighex\": \"{sig}\",\n  \"prihex\": \"{pri}\"\n}}"
        ),
    );
    write(
        "remote/estate.beta.json",
        "{\"name\":\"beta\",\"uid\":2,\"fuid\":2,\"ha\":[\"127.0.0.1\",7532],\"iha\":null,\
         \"natted\":null,\"fqdn\":\"localhost\",\"dyned\":null,\"sid\":2,\"main\":true,\"kind\":0,\
         \"joined\":true,\"role\":\"beta\"}"
            .to_owned(),
    );
    write(
        "role/remote/role.beta.json",
        format!(
            "{{\"role\":\"beta\",\"acceptance\":1,\"verhex\":\"{ver}\",\"pubhex\":\"{publ}\"}}"
        ),
    );
    let local = keep.load_local()?.unwrap_or_else(|| panic!("no local"));
    assert_eq!(
        (local.name.as_str(), local.uid, local.sid, local.puid),
        ("alpha", 1, 0, 2)
    );
    assert_eq!(local.ha, SocketAddr::from(([127, 0, 0, 1], 7531)));
    assert_eq!(
        (local.main, local.kind, local.role.as_str()),
        (false, 0, "alpha")
    );
    assert_eq!(hex::encode(&local.sign_seed[..]), sig);
    assert_eq!(hex::encode(&local.private_key[..]), pri);
    assert_eq!(
        keep.load_remotes()?,
        vec![RemoteRecord {
            name: "beta".into(),
            uid: 2,
            fuid: 2,
            ha: SocketAddr::from(([127, 0, 0, 1], 7532)),
            sid: 2,
            main: true,
            kind: 0,
            joined: Some(true),
            role: "beta".into(),
            fast: false,
        }]
    );
    assert_eq!(
        keep.load_role("beta")?,
        Some(RoleRecord {
            role: "beta".into(),
            acceptance: Acceptance::Accepted,
            verhex: ver,
            pubhex: publ
        })
    );
    Ok(())
}

#[test]
fn every_file_is_mode_0600() {
    let dir = temp();
    let keep = filled(dir.path());
    for path in files(&keep) {
        let mode = fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600), "{}", path.display());
    }
}

#[test]
fn overwriting_leaves_no_temporary_files() -> Result<(), KeepError> {
    let dir = temp();
    let mut keep = filled(dir.path());
    let before = tree(dir.path());
    for i in 0..50 {
        let mut local = testutil::local("alpha");
        local.puid = i;
        keep.save_local(&local)?;
        keep.save_remote(&testutil::remote("beta", i + 2))?;
        keep.save_role(&testutil::role("beta", Acceptance::Pending, i as u8))?;
    }
    assert_eq!(tree(dir.path()), before);
    assert_eq!(keep.load_local()?.map(|l| l.puid), Some(49));
    Ok(())
}

/// A failure after the temporary file is complete (injected just before the rename) leaves the
/// previous file intact and removes the temporary file.
#[test]
fn failed_write_keeps_the_old_file() {
    let dir = temp();
    let keep = filled(dir.path());
    let path = keep.path().join("role/remote/role.beta.json");
    let old = fs::read(&path).unwrap_or_default();
    let mut seen_tmp = None;
    let result = write_atomic(&path, b"{\"new\": 1}", |tmp| {
        assert_eq!(fs::read(tmp).ok().as_deref(), Some(&b"{\"new\": 1}"[..]));
        seen_tmp = Some(tmp.to_owned());
        Err(io::Error::other("injected"))
    });
    match result {
        Err(e @ KeepError::Io { .. }) => {
            assert!(e.to_string().contains(&path.display().to_string()), "{e}")
        }
        other => panic!("expected Io error, got {other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap_or_default(), old);
    let tmp = seen_tmp.unwrap_or_else(|| panic!("hook not called"));
    assert!(
        tmp.starts_with(path.parent().unwrap_or(Path::new("/"))),
        "temp in the same dir"
    );
    assert!(!tmp.exists());
    assert_eq!(tree(dir.path()).len(), 5);
}

/// A real rename failure (a directory is in the way) is an error naming the file and leaves
/// no temporary file behind.
#[test]
fn real_rename_failure_is_reported_and_cleaned_up() {
    let dir = temp();
    let mut keep = filled(dir.path());
    let blocked = keep.path().join("remote/estate.gamma.json");
    fs::create_dir_all(blocked.join("occupied")).unwrap_or_else(|e| panic!("{e}"));
    match keep.save_remote(&testutil::remote("gamma", 3)) {
        Err(e @ KeepError::Io { .. }) => {
            assert!(e.to_string().contains("estate.gamma.json"), "{e}")
        }
        other => panic!("expected Io error, got {other:?}"),
    }
    let names: Vec<_> = fs::read_dir(keep.path().join("remote"))
        .map(|it| it.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// A file already at the temporary name is not ours: the write fails and leaves it alone.
#[test]
fn foreign_file_at_the_temporary_name_is_left_alone() {
    let dir = temp();
    let keep = filled(dir.path());
    let path = keep.path().join("role/remote/role.beta.json");
    let old = fs::read(&path).unwrap_or_default();
    // Other tests draw from the same counter meanwhile: plant a range of names.
    let next = TMP_COUNTER.load(Ordering::Relaxed);
    let planted: Vec<PathBuf> = (next..next + 256)
        .map(|n| path.with_file_name(format!(".role.beta.json.{}.{n}.tmp", std::process::id())))
        .collect();
    for p in &planted {
        fs::write(p, b"not yours").unwrap_or_else(|e| panic!("{e}"));
    }
    let result = write_atomic(&path, b"{}", |_| Ok(()));
    assert!(matches!(result, Err(KeepError::Io { .. })), "{result:?}");
    assert_eq!(fs::read(&path).unwrap_or_default(), old);
    for p in &planted {
        assert_eq!(
            fs::read(p).ok().as_deref(),
            Some(&b"not yours"[..]),
            "{}",
            p.display()
        );
    }
}

/// Restores write access to a directory when dropped (also when an assertion fails).
struct Unlock<'a> {
    dir: &'a Path,
    immutable: bool,
}

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        if self.immutable {
            let _ = Command::new("chattr").arg("-i").arg(self.dir).status();
        }
        let _ = fs::set_permissions(self.dir, Permissions::from_mode(0o700));
    }
}

/// A directory we cannot write to: read-only mode works unless we are root, then the ext4
/// immutable attribute (needs `chattr` and CAP_LINUX_IMMUTABLE). The old file must survive.
#[test]
fn unwritable_directory_keeps_the_old_file() {
    let dir = temp();
    let mut keep = filled(dir.path());
    let role_dir = keep.path().join("role/remote");
    let path = role_dir.join("role.beta.json");
    let old = fs::read(&path).unwrap_or_default();
    let _ = fs::set_permissions(&role_dir, Permissions::from_mode(0o500));
    let mut unlock = Unlock {
        dir: &role_dir,
        immutable: false,
    };
    let probe = role_dir.join("probe");
    if fs::write(&probe, b"").is_ok() {
        // Root ignores the mode: try the immutable attribute.
        let _ = fs::remove_file(&probe);
        let set = Command::new("chattr").arg("+i").arg(&role_dir).status();
        unlock.immutable = set.is_ok_and(|s| s.success());
        if !unlock.immutable || fs::write(&probe, b"").is_ok() {
            eprintln!("cannot make a directory unwritable here: test not meaningful, skipped");
            return;
        }
    }
    let result = keep.save_role(&testutil::role("beta", Acceptance::Rejected, 9));
    assert!(matches!(result, Err(KeepError::Io { .. })), "{result:?}");
    assert_eq!(fs::read(&path).unwrap_or_default(), old);
    drop(unlock);
    assert_eq!(
        keep.load_role("beta").ok().flatten().map(|r| r.acceptance),
        Some(Acceptance::Accepted)
    );
    assert_eq!(tree(dir.path()).len(), 5, "{:?}", tree(dir.path()));
}

/// Every truncation of every keep file is a corrupt-file error naming that file.
#[test]
fn truncated_files_are_errors_naming_the_file() {
    let dir = temp();
    let keep = filled(dir.path());
    for path in files(&keep) {
        let good = fs::read(&path).unwrap_or_default();
        assert!(good.len() > 20);
        for len in 0..good.len() {
            fs::write(&path, &good[..len]).unwrap_or_else(|e| panic!("{e}"));
            assert_corrupt_at(load_for(&keep, &path), &path, &format!("{len} bytes"));
        }
        fs::write(&path, &good).unwrap_or_else(|e| panic!("{e}"));
        assert!(load_for(&keep, &path).is_ok());
    }
}

/// Removing any field the reference requires is an error naming the file; the fields we do
/// not use may be absent.
#[test]
fn missing_fields_are_errors() {
    let dir = temp();
    let keep = filled(dir.path());
    let optional: &[&str] = &["iha", "natted", "fqdn", "dyned", "aha"];
    for path in files(&keep) {
        let good = read_value(&path);
        for key in keys_of(&good) {
            let mut value = good.clone();
            if let Some(map) = value.as_object_mut() {
                map.remove(key);
            }
            write_value(&path, &value);
            let result = load_for(&keep, &path);
            if optional.contains(&key) {
                assert!(result.is_ok(), "{key} of {}: {result:?}", path.display());
            } else {
                assert_corrupt_at(result, &path, key);
            }
        }
        write_value(&path, &good);
    }
}

/// Values that parse as JSON but are wrong: each is an error naming the file.
#[test]
fn bad_values_are_errors() {
    let dir = temp();
    let keep = filled(dir.path());
    let [estate, keys, road, remote, role] = [0, 1, 2, 3, 4].map(|i| files(&keep)[i].clone());
    let cases: &[(&Path, &str, Value)] = &[
        (&keys, "sighex", Value::from("abc")),
        (&keys, "sighex", Value::from("zz".repeat(32))),
        (&keys, "prihex", Value::from(key_hex(1) + "00")),
        (&keys, "role", Value::from("other")),
        (&estate, "ha", serde_json::json!(["localhost", 1])),
        (&estate, "ha", serde_json::json!(["127.0.0.1", 70000])),
        (&estate, "ha", serde_json::json!(["127.0.0.1"])),
        (&estate, "uid", Value::from(-1)),
        (&estate, "uid", Value::from(1u64 << 32)),
        (&estate, "name", Value::from("../x")),
        (&road, "kind", Value::from(256)),
        (&road, "main", Value::from("yes")),
        (&remote, "name", Value::from("gamma")),
        (&remote, "role", Value::from("a/b")),
        (&remote, "joined", Value::from("yes")),
        (&remote, "main", Value::Null),
        (&remote, "sid", Value::from("1")),
        (&role, "acceptance", Value::from(3)),
        (&role, "acceptance", Value::Null),
        (&role, "role", Value::from("gamma")),
        (&role, "verhex", Value::from("")),
        (
            &role,
            "pubhex",
            Value::from(key_hex(1).to_uppercase().replace('1', "G")),
        ),
    ];
    for (path, key, bad) in cases {
        let good = read_value(path);
        let mut value = good.clone();
        value[*key] = bad.clone();
        write_value(path, &value);
        assert_corrupt_at(load_for(&keep, path), path, &format!("{key} = {bad}"));
        write_value(path, &good);
        assert!(load_for(&keep, path).is_ok());
    }
    // Not an object at all, and oversized files.
    for text in ["[]", "null", "1", "\"x\"", "{}"] {
        fs::write(&role, text).unwrap_or_default();
        assert_corrupt_at(load_for(&keep, &role), &role, text);
    }
    let huge = format!(
        "{{\"role\": \"beta\", \"pad\": \"{}\"}}",
        "x".repeat(70_000)
    );
    fs::write(&role, huge).unwrap_or_default();
    assert_corrupt_at(load_for(&keep, &role), &role, "huge");
}

#[test]
fn half_a_local_identity_is_an_error() {
    let dir = temp();
    let keep = filled(dir.path());
    let keys = fs::read(keep.local_role_path()).unwrap_or_default();
    fs::remove_file(keep.local_role_path()).unwrap_or_default();
    assert_corrupt_at(keep.load_local(), &keep.local_role_path(), "keys gone");
    fs::write(keep.local_role_path(), keys).unwrap_or_default();
    fs::remove_file(keep.local_estate_path()).unwrap_or_default();
    assert_corrupt_at(keep.load_local(), &keep.local_estate_path(), "estate gone");
}

#[test]
fn other_files_are_skipped_but_unsafe_record_names_are_errors() -> Result<(), KeepError> {
    let dir = temp();
    let keep = filled(dir.path());
    let remote_dir = keep.path().join("remote");
    for other in [
        ".estate.beta.json.1.2.tmp",
        "README",
        "estate.beta.msgpack",
        "role.x.json",
    ] {
        fs::write(remote_dir.join(other), b"garbage").unwrap_or_default();
    }
    assert_eq!(keep.load_remotes()?.len(), 1);
    assert_eq!(keep.load_roles()?.len(), 1);
    let good = fs::read(remote_dir.join("estate.beta.json")).unwrap_or_default();
    for bad_name in ["estate.a..b.json", "estate. x.json", "estate..json"] {
        let path = remote_dir.join(bad_name);
        fs::write(&path, &good).unwrap_or_default();
        assert_corrupt_at(keep.load_remotes(), &path, bad_name);
        fs::remove_file(&path).unwrap_or_default();
    }
    Ok(())
}

#[test]
fn group_readable_secrets_still_load() -> Result<(), KeepError> {
    // Another tool may have written the keys with a lax mode: we warn but do not refuse.
    let dir = temp();
    let keep = filled(dir.path());
    fs::set_permissions(keep.local_role_path(), Permissions::from_mode(0o644)).unwrap_or_default();
    assert!(keep.load_local()?.is_some());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random bytes in place of any keep file: never a panic, always an error naming the file.
    #[test]
    fn garbage_files_are_errors(which in 0usize..5, bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let dir = temp();
        let keep = filled(dir.path());
        let path = files(&keep)[which].clone();
        fs::write(&path, &bytes).unwrap_or_default();
        assert_corrupt_at(load_for(&keep, &path), &path, "garbage");
    }

    /// Random byte edits of a good file: never a panic; an error always names the file.
    #[test]
    fn mutated_files_never_panic(which in 0usize..5, edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let dir = temp();
        let keep = filled(dir.path());
        let path = files(&keep)[which].clone();
        let mut bytes = fs::read(&path).unwrap_or_default();
        for (pos, byte) in edits {
            let len = bytes.len();
            if let Some(b) = bytes.get_mut(pos % len.max(1)) {
                *b = byte;
            }
        }
        fs::write(&path, &bytes).unwrap_or_default();
        if let Err(e) = load_for(&keep, &path) {
            prop_assert!(matches!(e, KeepError::Corrupt { .. }), "{e:?}");
            prop_assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
    }
}
