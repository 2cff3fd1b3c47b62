//! People through single sign-on: OIDC ID/access tokens (JWTs) signed with
//! RS256 or ES256, checked against a configured issuer and JWKS, with a
//! mapping from a claim (groups, roles) to a Custos role and logs.
//! Outside input: every part is checked, nothing panics.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

use crate::policy::{Identity, Role, Scope};

/// A JWT longer than this is refused before any parsing.
pub const MAX_JWT_BYTES: usize = 16 * 1024;

/// A public key from a JWKS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// RSA modulus and exponent, big-endian.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Exponent.
        e: Vec<u8>,
    },
    /// A P-256 point, uncompressed (0x04 || x || y).
    P256(Vec<u8>),
}

/// A key set: `(kid, key)` pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Jwks(pub Vec<(Option<String>, Key)>);

/// Parses a JWKS document (`{"keys": [...]}`), keeping the RSA and P-256
/// signature keys it understands.
pub fn parse_jwks(json: &str) -> Result<Jwks, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let keys = v["keys"].as_array().ok_or("JWKS has no \"keys\" array")?;
    let b64 = |k: &Value, f: &str| -> Result<Vec<u8>, String> {
        B64URL.decode(k[f].as_str().ok_or(format!("JWK lacks {f}"))?).map_err(|_| format!("JWK {f} is not base64url"))
    };
    let mut out = Vec::new();
    for k in keys {
        if k.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
            continue;
        }
        let kid = k.get("kid").and_then(Value::as_str).map(str::to_string);
        match (k["kty"].as_str(), k.get("crv").and_then(Value::as_str)) {
            (Some("RSA"), _) => out.push((kid, Key::Rsa { n: b64(k, "n")?, e: b64(k, "e")? })),
            (Some("EC"), Some("P-256")) => {
                let (x, y) = (b64(k, "x")?, b64(k, "y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err("P-256 JWK coordinates must be 32 bytes".into());
                }
                let mut p = vec![4u8];
                p.extend(x);
                p.extend(y);
                out.push((kid, Key::P256(p)));
            }
            _ => {}
        }
    }
    if out.is_empty() {
        return Err("JWKS holds no RS256 or ES256 signature key".into());
    }
    Ok(Jwks(out))
}

/// One mapping: tokens whose role claim contains `value` get `role` on
/// `scope`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The claim value, such as a group name.
    pub value: String,
    /// The role it grants.
    pub role: Role,
    /// The logs.
    pub scope: Scope,
}

/// Parses `value=role:logs`, such as `custos-auditors=auditor:*` or
/// `db-team=reader:db-prod,db-stage`.
pub fn parse_mapping(s: &str) -> Result<Mapping, String> {
    let (value, rest) = s.split_once('=').ok_or_else(|| format!("mapping {s:?} is not value=role:logs"))?;
    let (role, logs) = rest.split_once(':').unwrap_or((rest, "*"));
    Ok(Mapping { value: value.trim().into(), role: Role::parse(role.trim())?, scope: Scope::parse(logs) })
}

/// How OIDC tokens are checked and mapped.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// The exact `iss` required.
    pub issuer: String,
    /// An `aud` required, if set.
    pub audience: Option<String>,
    /// The issuer's signing keys.
    pub jwks: Jwks,
    /// The claim naming the person (`preferred_username`, `email`, `sub`).
    pub user_claim: String,
    /// The claim listing groups or roles.
    pub roles_claim: String,
    /// Claim values to roles, first match wins.
    pub mappings: Vec<Mapping>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
}

fn part(s: &str, what: &str) -> Result<Value, String> {
    let raw = B64URL.decode(s).map_err(|_| format!("JWT {what} is not base64url"))?;
    serde_json::from_slice(&raw).map_err(|_| format!("JWT {what} is not JSON"))
}

/// Whether a bearer token looks like a JWT rather than a Custos token.
pub fn looks_like_jwt(token: &str) -> bool {
    token.matches('.').count() == 2 && !token.starts_with(crate::tokens::TOKEN_PREFIX)
}

/// Checks a JWT and maps it to an identity.
pub fn validate(cfg: &OidcConfig, token: &str, now_secs: u64) -> Result<Identity, String> {
    if token.len() > MAX_JWT_BYTES {
        return Err("JWT is too long".into());
    }
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err("JWT does not have three parts".into());
    };
    let header = part(h, "header")?;
    let alg = header["alg"].as_str().unwrap_or("");
    let kid = header.get("kid").and_then(Value::as_str);
    let sig = B64URL.decode(s).map_err(|_| "JWT signature is not base64url".to_string())?;
    let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
    let candidates = cfg.jwks.0.iter().filter(|(k, _)| kid.is_none() || k.as_deref() == kid);
    let mut verified = false;
    for (_, key) in candidates {
        let ok = match (alg, key) {
            ("RS256", Key::Rsa { n, e }) => {
                RsaPublicKeyComponents { n, e }.verify(&RSA_PKCS1_2048_8192_SHA256, signed, &sig).is_ok()
            }
            ("ES256", Key::P256(point)) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(signed, &sig).is_ok()
            }
            _ => false,
        };
        if ok {
            verified = true;
            break;
        }
    }
    if !matches!(alg, "RS256" | "ES256") {
        return Err(format!("JWT algorithm {alg:?} is not accepted (RS256 or ES256 only)"));
    }
    if !verified {
        return Err("JWT signature does not verify with any key of the issuer".into());
    }
    let claims = part(p, "payload")?;
    if claims["iss"].as_str() != Some(cfg.issuer.as_str()) {
        return Err(format!("JWT issuer {} is not {:?}", claims["iss"], cfg.issuer));
    }
    if let Some(aud) = &cfg.audience {
        let ok = match &claims["aud"] {
            Value::String(a) => a == aud,
            Value::Array(a) => a.iter().any(|x| x.as_str() == Some(aud)),
            _ => false,
        };
        if !ok {
            return Err(format!("JWT audience does not include {aud:?}"));
        }
    }
    let exp = claims["exp"].as_u64().ok_or("JWT has no exp")?;
    if now_secs >= exp + cfg.leeway_secs {
        return Err("JWT has expired".into());
    }
    if claims.get("nbf").and_then(Value::as_u64).is_some_and(|nbf| nbf > now_secs + cfg.leeway_secs) {
        return Err("JWT is not valid yet".into());
    }
    let user = [cfg.user_claim.as_str(), "preferred_username", "email", "sub"]
        .iter()
        .find_map(|c| claims.get(*c).and_then(Value::as_str))
        .ok_or("JWT names no user")?;
    let values: Vec<&str> = match &claims[&cfg.roles_claim] {
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        Value::String(s) => s.split(' ').collect(),
        _ => Vec::new(),
    };
    let m = cfg
        .mappings
        .iter()
        .find(|m| values.contains(&m.value.as_str()))
        .ok_or_else(|| format!("no {} claim value of {user:?} maps to a role", cfg.roles_claim))?;
    Ok(Identity {
        name: format!("oidc:{user}"),
        role: m.role,
        scope: m.scope.clone(),
        rate_limit_per_sec: None,
        key: format!("oidc:{}:{}", cfg.issuer, claims["sub"].as_str().unwrap_or(user)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    fn setup() -> (EcdsaKeyPair, OidcConfig) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let pt = kp.public_key().as_ref();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
            "x": B64URL.encode(&pt[1..33]), "y": B64URL.encode(&pt[33..])}]});
        let cfg = OidcConfig {
            issuer: "https://idp.example".into(),
            audience: Some("custos".into()),
            jwks: parse_jwks(&jwks.to_string()).unwrap(),
            user_claim: "email".into(),
            roles_claim: "groups".into(),
            mappings: vec![parse_mapping("auditors=auditor:*").unwrap(), parse_mapping("db=reader:db-prod").unwrap()],
            leeway_secs: 0,
        };
        (kp, cfg)
    }

    fn jwt(kp: &EcdsaKeyPair, header: Value, claims: Value) -> String {
        let h = B64URL.encode(header.to_string());
        let p = B64URL.encode(claims.to_string());
        let sig = kp.sign(&SystemRandom::new(), format!("{h}.{p}").as_bytes()).unwrap();
        format!("{h}.{p}.{}", B64URL.encode(sig.as_ref()))
    }

    fn claims() -> Value {
        json!({"iss": "https://idp.example", "aud": ["custos"], "exp": 2000, "sub": "u1",
               "email": "alice@example.com", "groups": ["staff", "db"]})
    }

    #[test]
    fn valid_tokens_map_to_roles() {
        let (kp, cfg) = setup();
        let id = validate(&cfg, &jwt(&kp, json!({"alg": "ES256", "kid": "k1"}), claims()), 1000).unwrap();
        assert_eq!((id.name.as_str(), id.role), ("oidc:alice@example.com", Role::Reader));
        assert_eq!(id.scope, Scope::Logs(vec!["db-prod".into()]));
    }

    #[test]
    fn bad_tokens_are_refused() {
        let (kp, cfg) = setup();
        let h = json!({"alg": "ES256", "kid": "k1"});
        let with = |f: &str, v: Value| {
            let mut c = claims();
            c[f] = v;
            c
        };
        let cases = [
            (jwt(&kp, h.clone(), with("iss", json!("https://evil"))), "issuer"),
            (jwt(&kp, h.clone(), with("aud", json!("other"))), "audience"),
            (jwt(&kp, h.clone(), with("exp", json!(999))), "expired"),
            (jwt(&kp, h.clone(), with("groups", json!(["staff"]))), "maps to a role"),
            (jwt(&kp, json!({"alg": "ES256", "kid": "other"}), claims()), "signature"),
            (jwt(&kp, json!({"alg": "none"}), claims()), "algorithm"),
            (jwt(&kp, json!({"alg": "HS256", "kid": "k1"}), claims()), "algorithm"),
            ("a.b".to_string(), "three parts"),
            ("!!.!!.!!".to_string(), "base64url"),
        ];
        for (t, want) in cases {
            let e = validate(&cfg, &t, 1000).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
        // A payload swapped after signing fails the signature.
        let good = jwt(&kp, h, claims());
        let parts: Vec<&str> = good.split('.').collect();
        let forged =
            format!("{}.{}.{}", parts[0], B64URL.encode(with("groups", json!(["auditors"])).to_string()), parts[2]);
        assert!(validate(&cfg, &forged, 1000).unwrap_err().contains("signature"));
    }
}
