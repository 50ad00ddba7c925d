//! Atomic file replacement: write a temporary file beside the target, fsync it, rename it over
//! the target, fsync the directory. Readers see the old file or the new one, never a mix, and a
//! crash (or a full disk) at any point leaves the previous file intact. Temporary files are
//! named `.<name>.tmp-<pid>` so that listings of real files (checkpoints, parts) never match them.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The temporary path that [`write_atomic_with`] writes before renaming.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Temporary files in `dir` left by other processes' interrupted atomic writes (a process
/// killed mid-write cannot remove its own): `.<name>.tmp-<pid>` with a pid other than ours.
/// Only a directory's single writer may remove them.
pub fn stale_temporaries(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let ours = std::process::id().to_string();
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with('.')
                && name.rsplit_once(".tmp-").is_some_and(|(_, pid)| {
                    pid != ours && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
                })
        })
        .map(|e| e.path())
        .collect()
}

/// Replaces `path` with `bytes` atomically (creating parent directories).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |tmp| std::fs::write(tmp, bytes))
}

/// Replaces `path` atomically with whatever `write` puts at the temporary path it is given
/// (for writers that want a path, such as safetensors, or stream through their own buffers).
/// On any error the temporary file is removed and `path` is untouched.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = temp_path(path);
    let result = write(&tmp).and_then(|()| {
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        File::open(dir)?.sync_all()
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ddpm-io-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let d = dir("replace");
        let p = d.join("sub/a.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<String> = std::fs::read_dir(d.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["a.txt".to_string()]);
    }

    #[test]
    fn stale_temporaries_are_other_processes_leftovers_only() {
        let d = dir("stale");
        for name in [".a.tmp-1", ".b.safetensors.tmp-999999", "c.tmp-5", ".d.tmp-x", "e"] {
            std::fs::write(d.join(name), b"").unwrap();
        }
        std::fs::write(temp_path(&d.join("ours")), b"").unwrap();
        let mut stale: Vec<String> = stale_temporaries(&d)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        stale.sort();
        assert_eq!(stale, vec![".a.tmp-1", ".b.safetensors.tmp-999999"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary() {
        let d = dir("fail");
        let p = d.join("a.txt");
        write_atomic(&p, b"good").unwrap();
        let e = write_atomic_with(&p, |tmp| {
            std::fs::write(tmp, b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "disk full");
        assert_eq!(std::fs::read(&p).unwrap(), b"good");
        assert!(!temp_path(&p).exists());
    }
}
