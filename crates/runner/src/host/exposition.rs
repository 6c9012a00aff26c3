//! Helpers for Prometheus text (format 0.0.4): escaped label values and
//! the `# HELP` / `# TYPE` lines that open a metric family.

use std::fmt::Write as _;

/// `s` as a Prometheus label value: backslash, double quote and newline
/// escaped.
pub(crate) fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends the `# HELP` and `# TYPE` lines of metric family `name` of
/// type `kind` (`counter`, `gauge`) to `out`.
pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}
