//! For tests that compare with Python (Salt's own functions, the `cryptography` package):
//! a script run to its end.

use std::path::Path;
use std::process::Command;

/// What `python -c script args...` printed on stdout (trailing whitespace trimmed); panics
/// with its stderr when it fails.
pub(crate) fn output(python: &Path, script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}
