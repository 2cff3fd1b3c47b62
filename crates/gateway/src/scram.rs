//! SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding, as
//! PostgreSQL speaks it: the server side for people logging in to the
//! gateway, the client side for the gateway logging in upstream.
//!
//! Pure apart from drawing nonces and salts from the OS.

use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac, pbkdf2};

/// PBKDF2 iterations for new verifiers; PostgreSQL's default.
pub const ITERATIONS: u32 = 4096;
/// Verifiers with more iterations than this are refused: a crafted users
/// file must not make every login cost seconds of CPU.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// What the server stores for a password: never the password itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Random salt.
    pub salt: Vec<u8>,
    /// SHA-256(ClientKey).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

fn hmac256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&k, data).as_ref().try_into().expect("HMAC-SHA-256 is 32 bytes")
}

fn sha256(data: &[u8]) -> [u8; 32] {
    digest::digest(&digest::SHA256, data).as_ref().try_into().expect("SHA-256 is 32 bytes")
}

fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    let n = NonZeroU32::new(iterations.max(1)).expect("max(1) is non-zero");
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, n, salt, password.as_bytes(), &mut out);
    out
}

/// Compares secrets in time independent of where they differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source works");
    b
}

impl Verifier {
    /// Derives a verifier for `password` with a fresh salt.
    pub fn new(password: &str) -> Verifier {
        Verifier::with_salt(password, random::<16>().to_vec(), ITERATIONS)
    }

    /// Derives a verifier with a given salt and iteration count.
    pub fn with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> Verifier {
        let salted = salted_password(password, &salt, iterations);
        let client_key = hmac256(&salted, b"Client Key");
        Verifier { iterations, salt, stored_key: sha256(&client_key), server_key: hmac256(&salted, b"Server Key") }
    }

    /// The text form PostgreSQL also uses:
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64.
    pub fn encode(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }

    /// Parses the text form.
    pub fn decode(s: &str) -> Result<Verifier, String> {
        let bad = || "expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>".to_string();
        let rest = s.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iter, salt) = params.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let iterations: u32 = iter.parse().map_err(|_| bad())?;
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(format!("iterations {iterations} outside 1..={MAX_ITERATIONS}"));
        }
        let key = |k: &str| -> Result<[u8; 32], String> {
            B64.decode(k).ok().and_then(|v| v.try_into().ok()).ok_or_else(bad)
        };
        Ok(Verifier {
            iterations,
            salt: B64.decode(salt).map_err(|_| bad())?,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }
}

/// The server side of one exchange, between the client's first and final
/// messages.
pub struct ServerExchange {
    verifier: Verifier,
    /// Whether the verifier is a stand-in for an unknown user, which must
    /// fail at the same step as a wrong password.
    unknown_user: bool,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// Why an exchange failed. `Malformed` is a protocol violation,
/// `Rejected` a wrong password or unknown user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramError {
    /// The message does not follow RFC 5802.
    Malformed(String),
    /// The proof does not match.
    Rejected,
}

fn attr(part: Option<&str>, name: char) -> Result<&str, ScramError> {
    part.and_then(|p| p.strip_prefix(name))
        .and_then(|p| p.strip_prefix('='))
        .ok_or_else(|| ScramError::Malformed(format!("expected attribute '{name}='")))
}

impl ServerExchange {
    /// Starts from the client-first message. `verifier` is `None` for an
    /// unknown user: the exchange then runs on a stand-in and fails at the
    /// end, so that a probe cannot tell unknown users from wrong passwords.
    /// Returns the exchange and the server-first message.
    pub fn start(verifier: Option<&Verifier>, client_first: &[u8]) -> Result<(ServerExchange, String), ScramError> {
        let text = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8".into()))?;
        // gs2-header: "n,," (no channel binding) or "y,," (client could but
        // thinks the server cannot). "p=" would need SCRAM-SHA-256-PLUS.
        let bare = match text.get(..3) {
            Some("n,," | "y,,") => &text[3..],
            _ => return Err(ScramError::Malformed("expected gs2 header \"n,,\" or \"y,,\"".into())),
        };
        let mut parts = bare.split(',');
        let _user = attr(parts.next(), 'n')?; // PostgreSQL uses the startup packet's user.
        let client_nonce = attr(parts.next(), 'r')?;
        if client_nonce.is_empty() || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') {
            return Err(ScramError::Malformed("client nonce is empty or not printable".into()));
        }
        let (verifier, unknown_user) = match verifier {
            Some(v) => (v.clone(), false),
            None => (Verifier::with_salt("", random::<16>().to_vec(), ITERATIONS), true),
        };
        let nonce = format!("{client_nonce}{}", B64.encode(random::<18>()));
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&verifier.salt), verifier.iterations);
        let ex = ServerExchange {
            verifier,
            unknown_user,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((ex, server_first))
    }

    /// Checks the client-final message; on success returns the
    /// server-final message.
    pub fn finish(self, client_final: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8".into()))?;
        let (without_proof, proof) =
            text.rsplit_once(",p=").ok_or_else(|| ScramError::Malformed("expected ',p=' proof".into()))?;
        let mut parts = without_proof.split(',');
        let binding = attr(parts.next(), 'c')?;
        if binding != "biws" && binding != "eSws" {
            return Err(ScramError::Malformed("channel binding must be \"biws\" or \"eSws\"".into()));
        }
        if attr(parts.next(), 'r')? != self.nonce {
            return Err(ScramError::Malformed("nonce does not match".into()));
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed("proof is not base64".into()))?;
        if proof.len() != 32 {
            return Err(ScramError::Malformed("proof is not 32 bytes".into()));
        }
        let auth_message = format!("{},{},{}", self.client_first_bare, self.server_first, without_proof);
        let signature = hmac256(&self.verifier.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        let ok = ct_eq(&sha256(&client_key), &self.verifier.stored_key);
        if !ok || self.unknown_user {
            return Err(ScramError::Rejected);
        }
        let server_signature = hmac256(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// The client side of one exchange.
pub struct ClientExchange {
    password: String,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<[u8; 32]>,
}

impl ClientExchange {
    /// Starts an exchange; returns it and the client-first message.
    pub fn start(password: &str) -> (ClientExchange, String) {
        let nonce = B64.encode(random::<18>());
        let bare = format!("n=,r={nonce}");
        let first = format!("n,,{bare}");
        (ClientExchange { password: password.into(), client_first_bare: bare, nonce, server_signature: None }, first)
    }

    /// Answers the server-first message with the client-final message.
    pub fn respond(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8".into()))?;
        let mut parts = text.split(',');
        let nonce = attr(parts.next(), 'r')?;
        let salt = B64.decode(attr(parts.next(), 's')?).map_err(|_| ScramError::Malformed("salt".into()))?;
        let iterations: u32 =
            attr(parts.next(), 'i')?.parse().map_err(|_| ScramError::Malformed("iterations".into()))?;
        if !nonce.starts_with(&self.nonce) || iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(ScramError::Malformed("server nonce or iterations are invalid".into()));
        }
        let salted = salted_password(&self.password, &salt, iterations);
        let client_key = hmac256(&salted, b"Client Key");
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{},{}", self.client_first_bare, text, without_proof);
        let signature = hmac256(&sha256(&client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature).map(|(k, s)| k ^ s).collect();
        self.server_signature = Some(hmac256(&hmac256(&salted, b"Server Key"), auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final message, which proves the server knew the
    /// verifier.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8".into()))?;
        let v = attr(Some(text), 'v')?;
        let got = B64.decode(v).map_err(|_| ScramError::Malformed("signature".into()))?;
        match self.server_signature {
            Some(want) if ct_eq(&got, &want) => Ok(()),
            _ => Err(ScramError::Rejected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(stored: Option<&Verifier>, password: &str) -> Result<(), ScramError> {
        let (mut client, first) = ClientExchange::start(password);
        let (server, server_first) = ServerExchange::start(stored, first.as_bytes())?;
        let client_final = client.respond(server_first.as_bytes())?;
        let server_final = server.finish(client_final.as_bytes())?;
        client.verify(server_final.as_bytes())
    }

    #[test]
    fn right_password_passes_and_wrong_fails() {
        let v = Verifier::new("correct horse");
        assert_eq!(exchange(Some(&v), "correct horse"), Ok(()));
        assert_eq!(exchange(Some(&v), "wrong"), Err(ScramError::Rejected));
        assert_eq!(exchange(None, ""), Err(ScramError::Rejected));
    }

    #[test]
    fn verifier_text_round_trips() {
        let v = Verifier::new("pw");
        assert_eq!(Verifier::decode(&v.encode()).unwrap(), v);
        assert!(Verifier::decode("md5abc").is_err());
        let huge = v.encode().replacen("4096", "99999999", 1);
        assert!(Verifier::decode(&huge).unwrap_err().contains("iterations"));
    }

    /// RFC 7677 section 3's example, with the server's nonce and salt.
    #[test]
    fn rfc7677_vector() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = Verifier::with_salt("pencil", salt, 4096);
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let ex = ServerExchange {
            verifier: v,
            unknown_user: false,
            client_first_bare: client_first_bare.into(),
            server_first: server_first.into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
        };
        let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(ex.finish(client_final.as_bytes()).unwrap(), "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }
}
