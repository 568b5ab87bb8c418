//! Derived paths: Salt's `prepend_root_dir` and telling a `log_file` URI from a path.

use std::path::{Path, PathBuf};

/// Salt's `prepend_root_dir` (with `salt.syspaths.ROOT_DIR` = `/`): a path already under
/// `root_dir` is kept; any other path, absolute or relative, is put under `root_dir`.
pub fn prepend_root_dir(root_dir: &Path, path: &str) -> PathBuf {
    let root = root_dir.to_string_lossy();
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        // root_dir is `/`: absolute paths stay, relative ones go under `/`.
        return Path::new("/").join(path);
    }
    if path == root || path.starts_with(&format!("{root}/")) {
        return PathBuf::from(path);
    }
    Path::new(root).join(path.trim_start_matches('/'))
}

/// Whether a `log_file` value is a URI (`udp://`, `file:///`...) rather than a path, as Salt's
/// `urlparse(...).scheme != ""`.
pub(super) fn is_uri(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}
