//! `$(VAR)` expansion in `env` values, `command` and `args`, as upstream's
//! `third_party/forked/golang/expansion`: `$(VAR)` is replaced by VAR's value when it is
//! defined and left as written when not; `$$` is an escaped `$`.

/// Expands `$(NAME)` references in `input` with `lookup`.
///
/// With `A=x` and `B` undefined, `$(A)-$(B)-$$(A)` expands to `x-$(B)-$(A)`.
pub(crate) fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let (read, is_var, advance) = read_variable_name(rest);
            if is_var {
                match lookup(read) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push_str("$(");
                        out.push_str(read);
                        out.push(')');
                    }
                }
            } else {
                out.push_str(read);
            }
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint.min(input.len())..]);
    out
}

/// Reads what follows a `$`: returns the text to emit (or the variable name), whether it is a
/// variable, and how many bytes were consumed.
fn read_variable_name(input: &str) -> (&str, bool, usize) {
    let b = input.as_bytes();
    match b[0] {
        b'$' => (&input[..1], false, 1),
        b'(' => {
            for i in 1..b.len() {
                if b[i] == b')' {
                    return (&input[1..i], true, i + 1);
                }
            }
            // An unterminated reference: emit "$(" and go on after the "(".
            ("$(", false, 1)
        }
        // "$x": emit the "$" and go on at "x" (which is not a "$"), so that a multi-byte
        // character after "$" stays whole.
        _ => ("$", false, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn env(k: &str) -> Option<String> {
        match k {
            "VAR_A" => Some("A".into()),
            "VAR_B" => Some("B".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_matches_upstream_cases() {
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_B)", "A-B"),
            ("$(VAR_A)$(EMPTY)", "A"),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$(VAR_A", "$(VAR_A"),
            ("$VAR_A", "$VAR_A"),
            ("f$", "f$"),
            ("$", "$"),
            ("$()", "$()"),
            ("héllo $(VAR_A) wörld", "héllo A wörld"),
            ("$é", "$é"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, env), want, "input {input:?}");
        }
    }
}
