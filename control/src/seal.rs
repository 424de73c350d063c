//! Sealing secrets at rest (certificate private keys, ACME account credentials): XChaCha20-
//! Poly1305 under one 32-byte key from configuration (`--secret-key` / `SLING_SECRET_KEY`, base64
//! or hex) or, without one, from `<data-dir>/secret-key`, created once with mode 0600.
//!
//! A sealed value is `base64(nonce ‖ ciphertext)`. The 24-byte nonce is random: with XChaCha's
//! nonce size, random nonces never collide in practice, so no counter has to be kept. Every
//! control-plane replica must use the same key, or it cannot open what another sealed.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// The sealing key. `Debug` never shows it.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("sealed value is not valid base64")]
    Encoding,
    #[error("sealed value is too short")]
    Truncated,
    /// Either the value was altered or it was sealed under another key.
    #[error(
        "sealed value does not open with this key (wrong --secret-key / SLING_SECRET_KEY, or the value was altered)"
    )]
    WrongKeyOrTampered,
}

impl Sealer {
    pub fn new(key: [u8; KEY_LEN]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// Parses a configured key: 32 bytes as base64 (standard or URL-safe, padded or not) or hex.
    pub fn from_config(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            decode_hex(text)
        } else {
            decode_base64(text)
        }
        .context("the secret key must be 32 bytes, base64 or hex")?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
            anyhow::anyhow!("the secret key must be 32 bytes, got {}", b.len())
        })?;
        Ok(Self::new(key))
    }

    /// The key in `path` (base64), creating it with mode 0600 first if there is none.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(s) if !s.trim().is_empty() => {
                Self::from_config(&s).with_context(|| format!("reading {}", path.display()))
            }
            Ok(_) => anyhow::bail!(
                "{} is empty: restore the key (sealed data cannot be opened without it) or \
                 delete the file together with the sealed data",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; KEY_LEN] = rand::random();
                crate::secrets::write_private(path, &STANDARD.encode(key))?;
                Ok(Self::new(key))
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// `base64(nonce ‖ ciphertext)` of `plain`.
    pub fn seal(&self, plain: &[u8]) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption fails only for inputs beyond ~256 GiB; nothing sealed here comes close.
        let ciphertext = self.cipher.encrypt(&nonce, plain).unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        STANDARD.encode(out)
    }

    /// The plain bytes of a value made by [`Sealer::seal`] under the same key.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, OpenError> {
        let raw = STANDARD
            .decode(sealed.trim())
            .map_err(|_| OpenError::Encoding)?;
        if raw.len() < NONCE_LEN + 16 {
            return Err(OpenError::Truncated);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| OpenError::WrongKeyOrTampered)
    }

    /// [`Sealer::open`] for values that were UTF-8 text (PEM, JSON).
    pub fn open_string(&self, sealed: &str) -> Result<String, OpenError> {
        String::from_utf8(self.open(sealed)?).map_err(|_| OpenError::WrongKeyOrTampered)
    }
}

fn decode_base64(text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        if let Ok(b) = engine.decode(text) {
            return Ok(b);
        }
    }
    anyhow::bail!("not base64")
}

fn decode_hex(text: &str) -> anyhow::Result<Vec<u8>> {
    let digit = |b: u8| -> anyhow::Result<u8> {
        char::from(b)
            .to_digit(16)
            .map(|d| d as u8)
            .context("not hex")
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Ok(digit(*hi)? << 4 | digit(*lo)?),
            _ => anyhow::bail!("odd number of hex digits"),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = Sealer::new([7; 32]);
        let sealed = s.seal(b"-----BEGIN PRIVATE KEY-----");
        assert_eq!(s.open(&sealed).unwrap(), b"-----BEGIN PRIVATE KEY-----");
        // A fresh nonce each time: the same plaintext never seals to the same text.
        assert_ne!(sealed, s.seal(b"-----BEGIN PRIVATE KEY-----"));
        assert_eq!(s.open(&s.seal(b"")).unwrap(), b"");
    }

    #[test]
    fn tampering_is_detected() {
        let s = Sealer::new([7; 32]);
        let mut raw = STANDARD.decode(s.seal(b"secret")).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(matches!(
            s.open(&STANDARD.encode(&raw)),
            Err(OpenError::WrongKeyOrTampered)
        ));
        raw[last] ^= 1;
        raw[0] ^= 1; // the nonce is authenticated too
        assert!(s.open(&STANDARD.encode(&raw)).is_err());
        assert!(matches!(s.open("!!!"), Err(OpenError::Encoding)));
        assert!(matches!(
            s.open(&STANDARD.encode([0u8; 10])),
            Err(OpenError::Truncated)
        ));
    }

    #[test]
    fn wrong_key_is_a_clear_error() {
        let sealed = Sealer::new([7; 32]).seal(b"secret");
        let err = Sealer::new([8; 32]).open(&sealed).unwrap_err();
        assert!(matches!(err, OpenError::WrongKeyOrTampered));
        assert!(err.to_string().contains("--secret-key"), "{err}");
    }

    #[test]
    fn configured_keys_parse_as_base64_or_hex() {
        let key = [0xabu8; 32];
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let b64 = STANDARD.encode(key);
        let sealed = Sealer::new(key).seal(b"x");
        for text in [hex.as_str(), b64.as_str(), b64.trim_end_matches('=')] {
            let s = Sealer::from_config(text).unwrap();
            assert_eq!(s.open(&sealed).unwrap(), b"x", "{text}");
        }
        assert!(Sealer::from_config("c2hvcnQ=").is_err());
        assert!(Sealer::from_config("not a key at all").is_err());
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret-key");
        let a = Sealer::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = Sealer::load_or_create(&path).unwrap();
        assert_eq!(b.open(&a.seal(b"kept")).unwrap(), b"kept");
    }
}
