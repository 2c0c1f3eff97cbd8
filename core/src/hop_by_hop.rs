//! The headers a proxy must not pass on (RFC 9110 §7.6.1), shared by every proxy in the
//! cluster: the API server's pod, service and node proxy, and the Ingress controller.

use http::header::{self, HeaderMap, HeaderName};

/// The hop-by-hop headers, as Go's reverse proxy lists them, besides those the `Connection`
/// header names.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Drops the hop-by-hop headers and every header `Connection` names. `Upgrade` stays: a
/// proxy that does not pass upgrades on removes it itself.
///
/// ```
/// use http::header::{HeaderMap, HeaderValue};
/// let mut h = HeaderMap::new();
/// h.insert("connection", HeaderValue::from_static("close, x-private"));
/// h.insert("x-private", HeaderValue::from_static("1"));
/// h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
/// h.insert("accept", HeaderValue::from_static("*/*"));
/// kybernetes_core::hop_by_hop::strip_hop_by_hop(&mut h);
/// assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
/// ```
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(name);
    }
}
