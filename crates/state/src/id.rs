//! Container id rules.

use crate::StateError;

/// Longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 1024;

/// Check that `id` is safe to use as a directory name under the runtime root.
///
/// Accepted: 1..=1024 bytes of `[A-Za-z0-9_+.-]`, not `.` and without `..` anywhere.
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let reason = if id.is_empty() {
        "an id must not be empty (allowed: 1 to 1024 bytes of ASCII letters, digits, _ + . -)"
    } else if id.len() > MAX_ID_LEN {
        "an id must not be longer than 1024 bytes"
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'.' | b'-'))
    {
        "only ASCII letters, digits and the characters _ + . - are allowed"
    } else if id == "." || id.contains("..") {
        "an id must not be \".\" or contain \"..\""
    } else {
        return Ok(());
    };
    Err(StateError::InvalidId {
        id: id.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for id in [
            "a",
            "abc-123",
            "A_b+c.d-e",
            ".hidden",
            "x.y",
            &"a".repeat(1024),
        ] {
            validate_id(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        }
    }

    #[test]
    fn rejects_bad_ids() {
        let long = "a".repeat(1025);
        for id in [
            "", ".", "..", "a/b", "a..b", "../x", "a b", "é", "a\0b", &long,
        ] {
            let err = validate_id(id).expect_err(id);
            assert!(matches!(err, StateError::InvalidId { .. }), "{id}: {err}");
        }
    }

    #[test]
    fn message_says_what_is_allowed() {
        let msg = validate_id("a/b").unwrap_err().to_string();
        assert!(msg.contains("\"a/b\""), "{msg}");
        assert!(msg.contains("letters, digits"), "{msg}");
        let msg = validate_id("").unwrap_err().to_string();
        assert!(msg.contains("empty"), "{msg}");
    }
}
