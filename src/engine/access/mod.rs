//! Who may do what: identities, permissions, tokens of every kind, members, teams, roles,
//! and the ways to log in (API tokens, OIDC browser login, JWT bearers, token exchange).

pub mod authorize;
pub mod http;
pub mod identity;
pub mod jwt;
pub mod login;
pub mod people;
pub mod tokens;
pub mod views;
