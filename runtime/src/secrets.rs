//! Secrets that Wasit generates for itself, once, into the data directory.
//!
//! A file is created with mode 0600 by an exclusive create, so two processes starting at once
//! agree on one value: the loser of the race reads the winner's file.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use secrecy::SecretString;

use crate::error::{Error, Result};

/// 32 random bytes, hex-encoded.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    hex::encode(buf)
}

/// Reads the secret stored at `path`, creating it with a fresh random value first if absent.
pub fn load_or_create(path: &Path) -> Result<SecretString> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            let value = random_hex(32);
            file.write_all(value.as_bytes())?;
            file.sync_all()?;
            Ok(SecretString::from(value))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            // The creator may still be writing; a short wait covers that window.
            for _ in 0..50 {
                let value = std::fs::read_to_string(path)?;
                if !value.trim().is_empty() {
                    return Ok(SecretString::from(value.trim().to_owned()));
                }
                #[expect(
                    clippy::disallowed_methods,
                    reason = "start-up code, called before or outside async work"
                )]
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(Error::Config(format!(
                "{} is empty; delete it to regenerate",
                path.display()
            )))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn created_once_then_reused_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/jwt_secret");
        let first = load_or_create(&path).unwrap();
        let second = load_or_create(&path).unwrap();
        assert_eq!(first.expose_secret(), second.expose_secret());
        assert_eq!(first.expose_secret().len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
