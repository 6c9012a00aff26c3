//! A snapshot of a [`Validator`]'s counters.

use std::collections::BTreeMap;

#[cfg(doc)]
use super::{Rejection, Validator};

/// A snapshot of a validator's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationStats {
    /// Records checked.
    pub checked: u64,
    /// Records that passed every rule.
    pub passed: u64,
    /// Records rejected (each counted once, under the first rule it broke).
    pub rejected: u64,
    /// Rejections by rule label ([`Rejection::rule`]); rules with none are left out.
    pub by_rule: BTreeMap<&'static str, u64>,
    /// Rejections by field path, then rule; only non-zero counts.
    pub by_field: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// Rejections by custom rule name; only non-zero counts.
    pub by_custom: BTreeMap<String, u64>,
}

impl ValidationStats {
    /// Rejections under rule label `rule` (0 if none).
    pub fn rule(&self, rule: &str) -> u64 {
        self.by_rule.get(rule).copied().unwrap_or(0)
    }

    /// Rejections of field `field` under rule `rule` (0 if none).
    pub fn field_rule(&self, field: &str, rule: &str) -> u64 {
        self.by_field
            .get(field)
            .and_then(|m| m.get(rule))
            .copied()
            .unwrap_or(0)
    }
}
