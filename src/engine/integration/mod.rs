//! What other systems read about the changes the engine makes: the audit log (and, next to
//! it, webhooks).

pub mod audit;
pub mod delivery;
pub mod webhooks;
