//! The structured fields of the profile: field 48's `TT LL value` subelements, field 90 (original data
//! elements) and field 95 (replacement amounts).

/// Field 48 tag of the CVV2 in a request.
pub const TAG_CVV2: &str = "92";
/// Field 48 tag of the CVV2 result in a response.
pub const TAG_CVV2_RESULT: &str = "87";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("field 48 is not a list of subelements: 2-digit tag, 2-digit length, value")]
pub struct SubelementError;

/// Parses `TT LL value` subelements, in order.
pub fn parse_tags(value: &str) -> Result<Vec<(&str, &str)>, SubelementError> {
    let mut rest = value;
    let mut tags = Vec::new();
    while !rest.is_empty() {
        let (tag, length) = (rest.get(..2).ok_or(SubelementError)?, rest.get(2..4).ok_or(SubelementError)?);
        if !tag.bytes().all(|byte| byte.is_ascii_digit()) || !length.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(SubelementError);
        }
        let length: usize = length.parse().map_err(|_| SubelementError)?;
        let content = rest.get(4..4 + length).ok_or(SubelementError)?;
        tags.push((tag, content));
        rest = &rest[4 + length..];
    }
    Ok(tags)
}

/// The value of the first subelement with `tag`, if the field parses and has it.
pub fn find_tag<'a>(value: &'a str, tag: &str) -> Option<&'a str> {
    parse_tags(value).ok()?.into_iter().find(|(candidate, _)| *candidate == tag).map(|(_, content)| content)
}

/// Builds subelements; `None` if a value is longer than 99 characters or a tag is not 2 digits.
pub fn build_tags(tags: &[(&str, &str)]) -> Option<String> {
    let mut out = String::new();
    for (tag, content) in tags {
        if tag.len() != 2 || !tag.bytes().all(|byte| byte.is_ascii_digit()) || content.len() > 99 {
            return None;
        }
        out.push_str(&format!("{tag}{:02}{content}", content.len()));
    }
    Some(out)
}

/// Field 48 with the values of `hidden` tags replaced by `*`; an unparsable field is hidden whole.
pub fn mask_tags(value: &str, hidden: &[&str]) -> String {
    match parse_tags(value) {
        Ok(tags) => tags
            .iter()
            .map(|(tag, content)| {
                let shown = if hidden.contains(tag) { "*".repeat(content.len()) } else { (*content).to_owned() };
                format!("{tag}{:02}{shown}", content.len())
            })
            .collect(),
        Err(_) => "*".repeat(value.len()),
    }
}

/// Field 90: original MTI (4) + STAN (6) + transmission date and time (10) + acquirer id (11, right-justified,
/// zero-filled) + forwarding institution id (11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalData {
    pub mti: String,
    pub stan: String,
    pub transmission: String,
    /// As carried: 11 digits, zero-filled.
    pub acquirer: String,
    pub forwarding: String,
}

impl OriginalData {
    pub fn parse(value: &str) -> Option<OriginalData> {
        if value.len() != 42 || !value.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        Some(OriginalData {
            mti: value[..4].to_owned(),
            stan: value[4..10].to_owned(),
            transmission: value[10..20].to_owned(),
            acquirer: value[20..31].to_owned(),
            forwarding: value[31..42].to_owned(),
        })
    }

    /// Field 90 for an original message; `acquirer_id` is field 32 as sent (up to 11 digits).
    pub fn build(mti: &str, stan: &str, transmission: &str, acquirer_id: &str) -> String {
        format!("{mti}{stan}{transmission}{acquirer_id:0>11}{}", "0".repeat(11))
    }

    /// The acquirer id without its zero fill, comparable to a field 32.
    pub fn acquirer_id(&self) -> &str {
        let trimmed = self.acquirer.trim_start_matches('0');
        if trimmed.is_empty() { "0" } else { trimmed }
    }
}

/// Field 95's actual amount after a partial reversal (its first 12 digits).
pub fn replacement_amount(value: &str) -> Option<i64> {
    let amount = value.get(..12)?;
    if value.len() != 42 || !amount.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    amount.parse().ok()
}

/// Field 95 carrying `amount` as the actual amount.
pub fn build_replacement_amount(amount: i64) -> String {
    format!("{amount:012}{}", "0".repeat(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_48_subelements_parse_build_and_mask() {
        let field = build_tags(&[("92", "123"), ("10", "ABCDE")]).expect("valid");
        assert_eq!(field, "92031231005ABCDE");
        assert_eq!(parse_tags(&field), Ok(vec![("92", "123"), ("10", "ABCDE")]));
        assert_eq!(find_tag(&field, TAG_CVV2), Some("123"));
        assert_eq!(mask_tags(&field, &[TAG_CVV2]), "9203***1005ABCDE");
        assert_eq!(parse_tags("9205123"), Err(SubelementError));
        assert_eq!(mask_tags("92x", &[TAG_CVV2]), "***");
        assert_eq!(parse_tags(""), Ok(vec![]));
    }

    #[test]
    fn original_data_and_replacement_amounts() {
        let field = OriginalData::build("0100", "000123", "1126120000", "123456");
        assert_eq!(field.len(), 42);
        let original = OriginalData::parse(&field).expect("valid");
        assert_eq!(
            (original.mti.as_str(), original.stan.as_str(), original.acquirer_id()),
            ("0100", "000123", "123456")
        );
        assert_eq!(OriginalData::parse(&field[1..]), None);
        assert_eq!(replacement_amount(&build_replacement_amount(2_500)), Some(2_500));
        assert_eq!(replacement_amount("12"), None);
    }
}
