//! Prometheus label values, escaped.

/// `s` as a Prometheus label value: backslash, double quote and newline
/// escaped.
pub(crate) fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
