//! On a syndic host, the master of masters' road key, trusted on first use and pinned across
//! restarts: its fingerprint (what `salt-raet-master --finger` prints on the top) is written
//! to `<pki_dir>/syndic_master.raet` when the top is first accepted, as Salt's syndic keeps
//! the top's RSA key in `syndic_master.pub`. A top offering other keys is refused until the
//! operator removes the file.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use salt_raet::identity::offered_fingerprint;

/// The pin file's name in the pki directory.
pub(crate) const PIN_FILE: &str = "syndic_master.raet";

/// The pinned fingerprint, if any, and where it is kept.
#[derive(Debug)]
pub(crate) struct UpstreamPin {
    path: PathBuf,
    finger: Option<String>,
}

/// What to do with the keys a master of masters offers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The pinned keys (or the first ones, now pinned: `first_use`).
    Accept { first_use: bool },
    /// Not the pinned keys (or unusable ones): why, for the log.
    Refuse(String),
}

impl UpstreamPin {
    /// Reads the pin of `pki_dir` (none yet: trust on first use).
    pub(crate) fn load(pki_dir: &Path) -> io::Result<Self> {
        let mut pin = Self {
            path: pki_dir.join(PIN_FILE),
            finger: None,
        };
        pin.reload()?;
        Ok(pin)
    }

    /// Reads the pin file again (SIGHUP); on an error the pin read before stays.
    pub(crate) fn reload(&mut self) -> io::Result<()> {
        self.finger = match std::fs::read_to_string(&self.path) {
            Ok(text) => Some(text.trim().to_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(())
    }

    /// The file the fingerprint is kept in.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Decides on the keys a master of masters offers; the first usable ones are pinned
    /// (written and synced before they are accepted: an error leaves them unaccepted).
    pub(crate) fn check(&mut self, verhex: &str, pubhex: &str) -> io::Result<Verdict> {
        let offered = match offered_fingerprint(verhex, pubhex) {
            Ok(finger) => finger,
            Err(e) => return Ok(Verdict::Refuse(format!("its keys are unusable: {e}"))),
        };
        match &self.finger {
            Some(pinned) if *pinned == offered => Ok(Verdict::Accept { first_use: false }),
            Some(pinned) => Ok(Verdict::Refuse(format!(
                "its key's fingerprint {offered} is not {pinned}, pinned in {}",
                self.path.display()
            ))),
            None => {
                self.write(&offered)?;
                self.finger = Some(offered);
                Ok(Verdict::Accept { first_use: true })
            }
        }
    }

    /// Writes `finger` to the pin file: a temporary file beside it, synced, renamed over it,
    /// the directory synced.
    fn write(&self, finger: &str) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        writeln!(file, "{finger}")?;
        file.as_file().sync_all()?;
        file.persist(&self.path).map_err(|e| e.error)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use salt_raet::identity::Identity;

    #[test]
    fn the_first_keys_are_pinned_across_loads_and_others_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (top, other) = (
            Identity::generate(&mut rand_core::OsRng),
            Identity::generate(&mut rand_core::OsRng),
        );
        let (verhex, pubhex) = top.offered_hexes();
        let mut pin = UpstreamPin::load(dir.path()).expect("load");
        assert_eq!(
            pin.check(&verhex, &pubhex).expect("check"),
            Verdict::Accept { first_use: true }
        );
        // a restarted daemon reads the pin: the same keys are taken, others refused
        let mut pin = UpstreamPin::load(dir.path()).expect("reload");
        assert_eq!(
            pin.check(&verhex, &pubhex).expect("check"),
            Verdict::Accept { first_use: false }
        );
        let (verhex2, pubhex2) = other.offered_hexes();
        let Verdict::Refuse(why) = pin.check(&verhex2, &pubhex2).expect("check") else {
            panic!("another top's keys were accepted");
        };
        assert!(why.contains(PIN_FILE), "{why}");
        // the pin is the fingerprint the top prints
        let written = std::fs::read_to_string(pin.path()).expect("pin file");
        assert_eq!(
            written.trim(),
            offered_fingerprint(&verhex, &pubhex).expect("finger")
        );
    }

    #[test]
    fn a_reload_takes_a_corrected_or_removed_pin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (verhex, pubhex) = Identity::generate(&mut rand_core::OsRng).offered_hexes();
        let finger = offered_fingerprint(&verhex, &pubhex).expect("finger");
        std::fs::write(dir.path().join(PIN_FILE), "00:11\n").expect("write");
        let mut pin = UpstreamPin::load(dir.path()).expect("load");
        assert!(matches!(
            pin.check(&verhex, &pubhex),
            Ok(Verdict::Refuse(_))
        ));
        std::fs::write(pin.path(), format!("{finger}\n")).expect("correct");
        pin.reload().expect("reload");
        assert_eq!(
            pin.check(&verhex, &pubhex).expect("check"),
            Verdict::Accept { first_use: false }
        );
        std::fs::remove_file(pin.path()).expect("remove");
        pin.reload().expect("reload");
        assert_eq!(
            pin.check(&verhex, &pubhex).expect("check"),
            Verdict::Accept { first_use: true }
        );
    }

    #[test]
    fn unusable_keys_are_refused_and_pin_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut pin = UpstreamPin::load(dir.path()).expect("load");
        let verdict = pin.check("zz", "00").expect("check");
        assert!(matches!(verdict, Verdict::Refuse(_)), "{verdict:?}");
        assert!(!dir.path().join(PIN_FILE).exists());
    }

    #[test]
    fn an_unwritable_pin_accepts_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut pin = UpstreamPin::load(&dir.path().join("missing")).expect("load");
        let (verhex, pubhex) = Identity::generate(&mut rand_core::OsRng).offered_hexes();
        assert!(pin.check(&verhex, &pubhex).is_err());
    }
}
