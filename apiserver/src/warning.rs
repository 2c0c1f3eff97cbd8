//! Warnings for the client: collected while a request is served (a deprecated version, an
//! unknown field under `fieldValidation=Warn`), then sent as `Warning: 299 - "..."` headers,
//! as upstream's warning recorder does.

use std::sync::{Arc, Mutex};

use http::HeaderValue;

/// The warnings of one request. Cheap to clone; every clone adds to the same list.
#[derive(Clone, Debug, Default)]
pub struct Warnings {
    list: Arc<Mutex<Vec<String>>>,
}

impl Warnings {
    /// Adds a warning once (a retried update does not repeat it).
    pub fn add(&self, message: impl Into<String>) {
        let message = message.into();
        let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if !list.contains(&message) {
            list.push(message);
        }
    }

    /// The warnings so far.
    pub fn messages(&self) -> Vec<String> {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Adds the warnings to a response's headers.
    ///
    /// ```
    /// let w = kybernetes_apiserver::warning::Warnings::default();
    /// w.add(r#"unknown field "spec.foo""#);
    /// let mut headers = http::HeaderMap::new();
    /// w.write_headers(&mut headers);
    /// assert_eq!(headers["warning"], r#"299 - "unknown field \"spec.foo\"""#);
    /// ```
    pub fn write_headers(&self, headers: &mut http::HeaderMap) {
        for m in self.messages() {
            if let Ok(v) = HeaderValue::from_str(&header_value(&m)) {
                headers.append(http::header::WARNING, v);
            }
        }
    }
}

/// RFC 7234's warning-value with code 299 and agent `-`; the text is quoted, with `"` and `\`
/// escaped, and control characters dropped so the header stays valid.
fn header_value(message: &str) -> String {
    let mut out = String::from("299 - \"");
    for c in message.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
