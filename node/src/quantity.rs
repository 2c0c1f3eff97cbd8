//! Just enough of `resource.Quantity` for the node agent: parse `"500m"`, `"2"`, `"1.5Gi"`,
//! `"1e3"` into thousandths of a unit.

/// The quantity in thousandths of its unit (millicores for CPU, millibytes for memory),
/// rounded up; `None` if it does not parse.
pub(crate) fn parse_milli(q: &str) -> Option<i128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let (negative, num) = match num.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let digits: i128 = format!("{int_part}{frac_part}").parse().ok()?;
    let scale = frac_part.len() as u32;
    // value = digits / 10^scale * 2^bin * 10^dec; milli = value * 1000.
    let (bin, dec): (u32, i32) = match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        s if s.starts_with(['e', 'E']) => (0, s[1..].parse().ok()?),
        _ => return None,
    };
    let mut numerator = digits.checked_mul(1i128.checked_shl(bin)?)?;
    let mut denominator: i128 = 10i128.checked_pow(scale)?;
    let exp = dec + 3;
    if exp >= 0 {
        numerator = numerator.checked_mul(10i128.checked_pow(exp as u32)?)?;
    } else {
        denominator = denominator.checked_mul(10i128.checked_pow((-exp) as u32)?)?;
    }
    let milli = (numerator + denominator - 1) / denominator;
    Some(if negative { -milli } else { milli })
}

#[cfg(test)]
mod tests {
    use super::parse_milli;

    #[test]
    fn quantities_parse_to_thousandths() {
        assert_eq!(parse_milli("500m"), Some(500));
        assert_eq!(parse_milli("2"), Some(2000));
        assert_eq!(parse_milli("1.5"), Some(1500));
        assert_eq!(parse_milli("1Ki"), Some(1_024_000));
        assert_eq!(parse_milli("16Gi"), Some(16 * (1i128 << 30) * 1000));
        assert_eq!(parse_milli("1e3"), Some(1_000_000));
        assert_eq!(parse_milli("1M"), Some(1_000_000_000));
        assert_eq!(parse_milli("1n"), Some(1));
        assert_eq!(parse_milli("x"), None);
        assert_eq!(parse_milli(""), None);
    }
}
