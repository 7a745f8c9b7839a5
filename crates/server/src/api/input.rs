//! Text without control characters (NUL, escape, the C1 range …): they have no place in a name, an email, an id or
//! a query, and PostgreSQL cannot store NUL at all. Every path, query string and form body is checked before any
//! handler runs ([`crate::router`]), every JSON string where it is parsed ([`super::parse_json`]), so such input is
//! a clear 400 on both databases and changes nothing.

use serde_json::Value;

use super::ApiError;

/// The error for text with control characters in it; `param` names where, when that is known.
pub fn control_characters(param: Option<String>) -> ApiError {
    let error = ApiError::invalid(
        "invalid_request",
        "the request contains control characters (such as NUL); send text without them",
    );
    ApiError { param, ..error }
}

/// True when `text` has a character of Unicode's control category (C0, DEL, C1).
pub fn has_control_characters(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// The path (`records[0].number`) of the first string or object key in `value` with a control character.
pub fn control_character_in(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> bool {
        match value {
            Value::String(text) => has_control_characters(text),
            Value::Array(items) => items.iter().enumerate().any(|(index, item)| {
                let length = path.len();
                path.push_str(&format!("[{index}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(length);
                }
                found
            }),
            Value::Object(fields) => fields.iter().any(|(key, item)| {
                if has_control_characters(key) {
                    return true;
                }
                let length = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                let found = walk(item, path);
                if !found {
                    path.truncate(length);
                }
                found
            }),
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }
    let mut path = String::new();
    walk(value, &mut path).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn control_characters_are_found_with_their_path() {
        assert_eq!(control_character_in(&json!({"name": "Ada", "email": "a@b.c"})), None);
        assert_eq!(control_character_in(&json!({"name": "A\u{0}da"})).as_deref(), Some("name"));
        assert_eq!(
            control_character_in(&json!({"records": [{"id": "ok"}, {"id": "x\u{1b}[2J"}]})).as_deref(),
            Some("records[1].id")
        );
        assert_eq!(control_character_in(&json!({"a": {"b\u{7f}": 1}})).as_deref(), Some("a"));
        assert_eq!(control_character_in(&json!(["\u{85}"])).as_deref(), Some("[0]"));
        assert_eq!(control_character_in(&json!({"name": "Zoë 🙂"})), None);
    }
}
