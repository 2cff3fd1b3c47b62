//! C2SP signed-note with Ed25519 keys.
//!
//! A note is UTF-8 text ending in a newline, a blank line, then one line per
//! signature: `— <key name> <base64(key ID || signature)>`. The key ID is the
//! first four bytes of `SHA-256(name || "\n" || 0x01 || public key)`.
//! Verifier keys are written `<name>+<hex key ID>+<base64(0x01 || public key)>`
//! and signer keys `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signature algorithm byte for Ed25519.
const ALG_ED25519: u8 = 0x01;
/// Notes with more signature lines than this are rejected outright.
pub const MAX_SIGNATURES: usize = 100;
/// Notes larger than this are rejected before parsing, as the reference
/// implementations do, so a hostile note cannot make us hash megabytes.
pub const MAX_NOTE_SIZE_BYTES: usize = 1_000_000;

/// Why a key or note was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum NoteError {
    /// A key string is malformed.
    #[error("malformed key: {0}")]
    BadKey(&'static str),
    /// A key name is empty or contains `+` or whitespace.
    #[error("invalid key name {0:?}: must be non-empty with no '+' or whitespace")]
    BadName(String),
    /// The note text is empty, lacks a final newline or is not valid text.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// No signature from a known key verified.
    #[error("no valid signature by key {0}")]
    NoValidSignature(String),
    /// A signature by the known key name and ID failed to verify.
    #[error("invalid signature by key {0}")]
    InvalidSignature(String),
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::BadName(name.to_string()));
    }
    Ok(())
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn hex4(id: &[u8; 4]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex4(s: &str) -> Option<[u8; 4]> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let v = u32::from_str_radix(s, 16).ok()?;
    Some(v.to_be_bytes())
}

/// A key that signs notes.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    id: [u8; 4],
    key: SigningKey,
}

impl NoteSigner {
    /// A signer from a 32-byte Ed25519 seed. The caller supplies the
    /// randomness; this crate does no I/O.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<NoteSigner, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(NoteSigner { name: name.to_string(), id, key })
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
    pub fn parse(s: &str) -> Result<NoteSigner, NoteError> {
        let rest = s.trim_end().strip_prefix("PRIVATE+KEY+").ok_or(NoteError::BadKey("missing PRIVATE+KEY+ prefix"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(b64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("want PRIVATE+KEY+name+id+key"));
        };
        let id = parse_hex4(id).ok_or(NoteError::BadKey("key ID is not 8 hex digits"))?;
        let raw = B64.decode(b64).map_err(|_| NoteError::BadKey("key is not base64"))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(NoteError::BadKey("key is not 0x01 followed by a 32-byte Ed25519 seed"));
        }
        let signer = NoteSigner::from_seed(name, raw[1..].try_into().expect("32 bytes"))?;
        if signer.id != id {
            return Err(NoteError::BadKey("key ID does not match the key"));
        }
        Ok(signer)
    }

    /// The signer key string, a secret.
    pub fn to_key_string(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("PRIVATE+KEY+{}+{}+{}", self.name, hex4(&self.id), B64.encode(raw))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), id: self.id, key: self.key.verifying_key() }
    }

    /// Signs `text`, which must be non-empty and end in a newline, and
    /// returns the whole signed note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let sig = self.key.sign(text.as_bytes());
        let mut raw = self.id.to_vec();
        raw.extend_from_slice(&sig.to_bytes());
        Ok(format!("{text}\n\u{2014} {} {}\n", self.name, B64.encode(raw)))
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(NoteError::Malformed("text must be non-empty and end in a newline"));
    }
    if text.len() > MAX_NOTE_SIZE_BYTES {
        return Err(NoteError::Malformed("note is over the size limit"));
    }
    if text.chars().any(|c| c.is_ascii_control() && c != '\n') {
        return Err(NoteError::Malformed("text contains a control character"));
    }
    Ok(())
}

/// A public key that verifies notes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses `<name>+<hex id>+<base64(0x01 || public key)>`.
    pub fn parse(s: &str) -> Result<NoteVerifier, NoteError> {
        let mut parts = s.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(b64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("want name+id+key"));
        };
        check_name(name)?;
        let id = parse_hex4(id).ok_or(NoteError::BadKey("key ID is not 8 hex digits"))?;
        let raw = B64.decode(b64).map_err(|_| NoteError::BadKey("key is not base64"))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(NoteError::BadKey("key is not 0x01 followed by a 32-byte Ed25519 public key"));
        }
        let public: [u8; 32] = raw[1..].try_into().expect("32 bytes");
        let key = VerifyingKey::from_bytes(&public).map_err(|_| NoteError::BadKey("not a valid Ed25519 point"))?;
        if key_id(name, &public) != id {
            return Err(NoteError::BadKey("key ID does not match the key"));
        }
        Ok(NoteVerifier { name: name.to_string(), id, key })
    }

    /// The verifier key string.
    pub fn to_key_string(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex4(&self.id), B64.encode(raw))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks that `note` carries a valid signature by this key and returns
    /// its text. Signatures by other keys are ignored, as the spec allows.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let text = &note[..split + 1];
        check_text(text)?;
        let sigs = &note[split + 2..];
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed("signature block does not end in a newline"));
        }
        let mut count = 0;
        for line in sigs[..sigs.len() - 1].split('\n') {
            count += 1;
            if count > MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or(NoteError::Malformed("signature line does not start with an em dash"))?;
            let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed("signature line lacks a key name"))?;
            let raw = B64.decode(b64).map_err(|_| NoteError::Malformed("signature is not base64"))?;
            if raw.len() < 4 {
                return Err(NoteError::Malformed("signature is shorter than a key ID"));
            }
            if name != self.name || raw[..4] != self.id {
                continue;
            }
            let sig =
                Signature::from_slice(&raw[4..]).map_err(|_| NoteError::InvalidSignature(self.to_key_string()))?;
            return match self.key.verify(text.as_bytes(), &sig) {
                Ok(()) => Ok(text),
                Err(_) => Err(NoteError::InvalidSignature(self.to_key_string())),
            };
        }
        Err(NoteError::NoValidSignature(self.to_key_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("example.com/log", [7u8; 32]).unwrap()
    }

    #[test]
    fn keys_round_trip() {
        // Seed 7's public key encodes with '+' in its base64, which must not
        // be taken for a field separator.
        for seed in 0..32u8 {
            let s = NoteSigner::from_seed("n", [seed; 32]).unwrap();
            assert_eq!(NoteSigner::parse(&s.to_key_string()).unwrap().verifier(), s.verifier());
            assert_eq!(NoteVerifier::parse(&s.verifier().to_key_string()).unwrap(), s.verifier());
        }
        let s = signer();
        let s2 = NoteSigner::parse(&s.to_key_string()).unwrap();
        assert_eq!(s2.verifier(), s.verifier());
        let v = NoteVerifier::parse(&s.verifier().to_key_string()).unwrap();
        assert_eq!(v, s.verifier());
        assert!(s.verifier().to_key_string().starts_with("example.com/log+"));
    }

    #[test]
    fn bad_keys_are_rejected_with_reason() {
        assert!(NoteVerifier::parse("a+b").is_err());
        assert!(NoteVerifier::parse("bad name+00000000+AQ==").is_err());
        let v = signer().verifier().to_key_string();
        let wrong_id = v.replacen('+', "+0", 1);
        assert!(NoteVerifier::parse(&wrong_id).is_err());
        assert_eq!(NoteSigner::from_seed("a+b", [0; 32]).err(), Some(NoteError::BadName("a+b".into())));
    }

    #[test]
    fn sign_then_open_and_detect_tampering() {
        let s = signer();
        let note = s.sign("hello\nworld\n").unwrap();
        assert_eq!(s.verifier().open(&note), Ok("hello\nworld\n"));
        let tampered = note.replace("world", "w0rld");
        assert!(matches!(s.verifier().open(&tampered), Err(NoteError::InvalidSignature(_))));
        let other = NoteSigner::from_seed("example.com/log", [8u8; 32]).unwrap();
        assert!(matches!(other.verifier().open(&note), Err(NoteError::NoValidSignature(_))));
        assert!(s.sign("no newline").is_err());
    }
}
