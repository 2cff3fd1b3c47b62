//! Outside input of authentication: client certificates (DER) and bearer
//! JWTs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = custos_auth::der::subject_common_name(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let cfg = custos_auth::oidc::OidcConfig {
            issuer: "https://idp".into(),
            audience: None,
            jwks: custos_auth::oidc::Jwks(vec![(None, custos_auth::oidc::Key::P256(vec![4; 65]))]),
            user_claim: "sub".into(),
            roles_claim: "groups".into(),
            mappings: vec![],
            leeway_secs: 0,
        };
        let _ = custos_auth::oidc::validate(&cfg, s, 0);
        let _ = custos_auth::oidc::parse_jwks(s);
    }
});
