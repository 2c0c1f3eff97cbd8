//! Just enough of `resource.Quantity`: parse `"500m"`, `"2"`, `"1.5Gi"`, `"1e3"` into
//! thousandths of a unit, and write the canonical forms the metrics API uses (CPU in
//! nanocores, memory in bytes).

/// The quantity in thousandths of its unit (millicores for CPU, millibytes for memory),
/// rounded up; `None` if it does not parse.
///
/// ```
/// use kybernetes_core::quantity::parse_milli;
/// assert_eq!(parse_milli("250m"), Some(250));
/// assert_eq!(parse_milli("1Gi"), Some((1i128 << 30) * 1000));
/// ```
pub fn parse_milli(q: &str) -> Option<i128> {
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

/// A CPU rate in nanocores as the canonical decimal quantity: the largest suffix that keeps
/// it exact (`"2"`, `"250m"`, `"1500u"`, `"1234567n"`), as `resource.Quantity` prints
/// metrics-server's `NewScaledQuantity(n, Nano)`.
///
/// ```
/// use kybernetes_core::quantity::format_nanocores;
/// assert_eq!(format_nanocores(2_000_000_000), "2");
/// assert_eq!(format_nanocores(250_000_000), "250m");
/// assert_eq!(format_nanocores(1_234_567), "1234567n");
/// assert_eq!(format_nanocores(0), "0");
/// ```
pub fn format_nanocores(n: u64) -> String {
    if n == 0 {
        return "0".into();
    }
    for (div, suffix) in [(1_000_000_000, ""), (1_000_000, "m"), (1_000, "u")] {
        if n.is_multiple_of(div) {
            return format!("{}{suffix}", n / div);
        }
    }
    format!("{n}n")
}

/// A byte count as the canonical binary quantity: the largest power-of-1024 suffix that keeps
/// it exact (`"64Mi"`, `"1536Ki"`), else plain bytes, as `resource.Quantity` prints a
/// `BinarySI` value.
///
/// ```
/// use kybernetes_core::quantity::format_bytes;
/// assert_eq!(format_bytes(64 << 20), "64Mi");
/// assert_eq!(format_bytes(1536 * 1024), "1536Ki");
/// assert_eq!(format_bytes(1000), "1000");
/// ```
pub fn format_bytes(n: u64) -> String {
    if n == 0 {
        return "0".into();
    }
    for (shift, suffix) in [
        (60, "Ei"),
        (50, "Pi"),
        (40, "Ti"),
        (30, "Gi"),
        (20, "Mi"),
        (10, "Ki"),
    ] {
        if n.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", n >> shift);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::{format_bytes, format_nanocores, parse_milli};

    #[test]
    fn formatted_quantities_parse_back_to_the_same_value() {
        for n in [1u64, 999, 1_000, 1_500_000, 250_000_000, 3_000_000_000] {
            assert_eq!(
                parse_milli(&format_nanocores(n)),
                Some((n as i128 + 999_999) / 1_000_000)
            );
        }
        for b in [1u64, 1023, 4096, 64 << 20, 3 << 30] {
            assert_eq!(parse_milli(&format_bytes(b)), Some(b as i128 * 1000));
        }
    }

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
