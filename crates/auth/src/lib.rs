//! Who may do what in Custos.
//!
//! # Layout
//! - [`policy`]: roles, scopes, identities and the authorization decision
//!   for every action: pure functions.
//! - [`tokens`]: bearer tokens, shown once and stored as SHA-256 hashes in
//!   `DATA/auth/tokens.json`.
//! - [`oidc`]: OIDC JWTs checked against an issuer's JWKS, mapped to roles.
//! - [`der`]: just enough DER to read the subject of a client certificate.
//!
//! # Invariants
//! - A token's secret is never stored or logged; only its hash is kept.
//! - Authorization is decided here, from the identity and the action only;
//!   the server asks, it does not decide.

pub mod der;
pub mod oidc;
pub mod policy;
pub mod tokens;

pub use policy::{Action, Decision, Identity, Role, Scope, decide};
pub use tokens::{TokenRecord, TokenStore};
