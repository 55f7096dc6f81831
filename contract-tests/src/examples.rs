//! The example PKI of `certs-example/` (EXAMPLE KEYS, public, never for production), built into
//! the binary so that the sandboxes and the demo run wherever the binary is, not only beside
//! the checkout it was built in.
//!
//! # Invariants
//! - **One place.** [`certs_example`] is the only way the sandboxes, the demo and the bench
//!   find the example keys; no other code names the source tree's folder.
//! - **Every file, as committed.** [`FILES`] holds every file of `certs-example/` except its
//!   scripts and README, byte for byte (`include_bytes!`: a regenerated key is rebuilt in); a
//!   test compares the list with the folder both ways.
//! - **The binary's own copy.** [`certs_example`] answers a folder holding exactly the embedded
//!   files: the checkout's folder when it is still there and equal to them (a developer's tree,
//!   the tests), otherwise a copy written once under the temporary directory, named by the
//!   files' digest, private to the user (0700), written whole then renamed into place, so that
//!   concurrent processes never read a half-written copy.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

macro_rules! embed {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../certs-example/",
                $name
            ))
            .as_slice(),
        )
    };
}

/// The embedded files: (path under `certs-example/`, contents).
pub const FILES: &[(&str, &[u8])] = &[
    embed!("chain.pem"),
    embed!("client.key"),
    embed!("client.pem"),
    embed!("intermediate-ca.crl.pem"),
    embed!("intermediate-ca.key"),
    embed!("intermediate-ca.pem"),
    embed!("other-root-ca.pem"),
    embed!("root-ca.crl.pem"),
    embed!("root-ca.key"),
    embed!("root-ca.pem"),
    embed!("server.key"),
    embed!("server.pem"),
    embed!("sign-ec.key"),
    embed!("sign-ec.p12"),
    embed!("sign-ec.pem"),
    embed!("sign-expired.key"),
    embed!("sign-expired.pem"),
    embed!("sign-revoked.key"),
    embed!("sign-revoked.pem"),
    embed!("sign-rsa.key"),
    embed!("sign-rsa.p12"),
    embed!("sign-rsa.pem"),
    embed!("tsa.cnf"),
    embed!("tsa.key"),
    embed!("tsa.pem"),
    embed!("officials/official-ec.key"),
    embed!("officials/official-ec.pem"),
    embed!("officials/official-ec384.key"),
    embed!("officials/official-ec384.pem"),
    embed!("officials/official-expired.key"),
    embed!("officials/official-expired.pem"),
    embed!("officials/official-nousage.key"),
    embed!("officials/official-nousage.pem"),
    embed!("officials/official-other.key"),
    embed!("officials/official-other.pem"),
    embed!("officials/official-rsa.key"),
    embed!("officials/official-rsa.pem"),
];

/// Files of the folder that are not embedded: how to make the others, not what they are.
pub const NOT_EMBEDDED: &[&str] = &["README.md", "generate.sh", "officials.sh"];

/// The folder of the checkout this binary was built from (it may be gone, or changed since).
pub fn source_tree() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs-example")
}

/// A folder holding the embedded example files (see the module's invariants). Panics only
/// when neither the checkout's folder matches nor a copy can be written to the temporary
/// directory, naming the directory.
pub fn certs_example() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tree = source_tree();
        if holds_embedded(&tree) {
            return tree;
        }
        let dir = std::env::temp_dir().join(format!("gateway-certs-example-{}", digest()));
        if holds_embedded(&dir) {
            return dir;
        }
        write_copy(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot write the example keys to {}: {e} (set TMPDIR to a writable folder)",
                dir.display()
            )
        })
    })
    .clone()
}

/// Does `dir` hold every embedded file with the embedded contents?
pub fn holds_embedded(dir: &Path) -> bool {
    FILES
        .iter()
        .all(|(name, bytes)| std::fs::read(dir.join(name)).is_ok_and(|b| b == *bytes))
}

/// The embedded files' SHA-256 (names and contents), hex: names the temporary copy.
fn digest() -> String {
    let mut h = openssl::sha::Sha256::new();
    for (name, bytes) in FILES {
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(&(bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    h.finish()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Write the embedded files to `dir`: into a fresh sibling first, renamed into place; a copy
/// another process renamed there first is as good.
pub fn write_copy(dir: &Path) -> std::io::Result<PathBuf> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let base = dir.file_name().and_then(|n| n.to_str()).unwrap_or("certs");
    let staging = parent.join(format!(
        ".{base}.{}.{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    private_dir(&staging)?;
    let written = (|| {
        for (name, bytes) in FILES {
            let path = staging.join(name);
            if let Some(p) = path.parent() {
                private_dir(p)?;
            }
            std::fs::write(&path, bytes)?;
        }
        Ok::<(), std::io::Error>(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    match std::fs::rename(&staging, dir) {
        Ok(()) => Ok(dir.to_path_buf()),
        Err(_) if holds_embedded(dir) => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(dir.to_path_buf())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

fn private_dir(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(p) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_files(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            if e.file_type().unwrap().is_dir() {
                tree_files(&e.path(), &format!("{name}/"), out);
            } else {
                out.push(name);
            }
        }
    }

    #[test]
    fn every_file_of_the_folder_is_embedded_as_committed() {
        let mut on_disk = vec![];
        tree_files(&source_tree(), "", &mut on_disk);
        on_disk.retain(|f| !NOT_EMBEDDED.contains(&f.as_str()));
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk, "certs-example/ and FILES differ");
        assert!(
            holds_embedded(&source_tree()),
            "a file differs from the tree's"
        );
        assert_eq!(
            certs_example(),
            source_tree(),
            "the checkout's folder is used"
        );
    }

    #[test]
    fn a_copy_is_written_whole_and_found_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        assert!(!holds_embedded(&dir));
        assert_eq!(write_copy(&dir).unwrap(), dir);
        assert!(holds_embedded(&dir));
        // The keys' folder is the user's alone.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("officials"))
            .unwrap()
            .permissions();
        assert_eq!(mode.mode() & 0o077, 0, "officials/ is private");
        // A second writer (another process that lost the race) finds it complete.
        assert_eq!(write_copy(&dir).unwrap(), dir);
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no staging folder is left behind");
        // A changed file is not the embedded copy.
        std::fs::write(dir.join("sign-ec.key"), b"changed").unwrap();
        assert!(!holds_embedded(&dir));
    }

    #[test]
    fn the_copy_is_named_by_the_files_digest() {
        assert_eq!(digest().len(), 16);
        assert_eq!(digest(), digest());
    }
}
