//! Opaque ids: a type prefix and 16 random alphanumerics (`lnk_…`, `team_…`, `key_…`, `dom_…`).
//! About 95 bits of randomness, so ids are unguessable and never collide in practice.

use rand::Rng;
use rand::distr::Alphanumeric;

pub fn new_id(prefix: &str) -> String {
    let rand: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(16)
        .map(char::from)
        .collect();
    format!("{prefix}_{rand}")
}
