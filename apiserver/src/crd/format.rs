//! The string `format`s a CRD schema can check, as upstream's validator does for strings
//! (`date-time`, `date`, `byte`, `uuid`, `ipv4`, ...). Numeric formats (`int32`, `int64`,
//! `float`, `double`) and unknown formats check nothing, as upstream.

use base64::Engine;

/// True if `text` is a valid value of `format` (or the format checks nothing).
///
/// ```
/// use kybernetes_apiserver::crd::format::valid;
/// assert!(valid("date-time", "2024-05-01T10:00:00Z"));
/// assert!(!valid("date", "2024-13-01"));
/// assert!(valid("int32", "anything"));
/// ```
pub fn valid(format: &str, text: &str) -> bool {
    match format {
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
        "byte" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .is_ok(),
        "uuid" => uuid_version(text).is_some(),
        "uuid3" => uuid_version(text) == Some(3),
        "uuid4" => uuid_version(text) == Some(4),
        "uuid5" => uuid_version(text) == Some(5),
        "ipv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => text.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => cidr(text),
        "mac" => mac(text),
        "hostname" => hostname(text),
        "email" => email(text),
        "uri" => uri(text),
        "duration" => duration(text),
        "hexcolor" => hexcolor(text),
        "bsonobjectid" => text.len() == 24 && text.chars().all(|c| c.is_ascii_hexdigit()),
        _ => true,
    }
}

fn uuid_version(text: &str) -> Option<usize> {
    if text.len() != 36 {
        return None;
    }
    uuid::Uuid::parse_str(text)
        .ok()
        .map(|u| u.get_version_num())
}

fn cidr(text: &str) -> bool {
    let Some((ip, bits)) = text.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

fn mac(text: &str) -> bool {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    matches!(parts.len(), 6 | 8 | 20)
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn hostname(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn email(text: &str) -> bool {
    match text.rsplit_once('@') {
        Some((local, domain)) => !local.is_empty() && !local.contains(' ') && hostname(domain),
        None => false,
    }
}

fn uri(text: &str) -> bool {
    match text.split_once(':') {
        Some((scheme, _)) => {
            scheme
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !text.contains(' ')
        }
        None => false,
    }
}

/// Go `time.ParseDuration` units, plus the `d` and `w` the validator also takes.
fn duration(text: &str) -> bool {
    let mut rest = text.strip_prefix(['-', '+']).unwrap_or(text);
    if rest == "0" {
        return true;
    }
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h", "d", "w"]
            .iter()
            .find(|u| rest.starts_with(**u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

fn hexcolor(text: &str) -> bool {
    text.strip_prefix('#')
        .is_some_and(|h| (h.len() == 3 || h.len() == 6) && h.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn formats_accept_and_reject_as_upstream() {
        assert!(valid("byte", "aGVsbG8="));
        assert!(!valid("byte", "not base64!"));
        assert!(valid("uuid", "123e4567-e89b-42d3-a456-426614174000"));
        assert!(!valid("uuid", "123"));
        assert!(valid("cidr", "10.0.0.0/8"));
        assert!(!valid("cidr", "10.0.0.0/33"));
        assert!(valid("duration", "1h30m"));
        assert!(!valid("duration", "soon"));
        assert!(valid("ipv6", "::1"));
        assert!(!valid("ipv4", "::1"));
    }
}
