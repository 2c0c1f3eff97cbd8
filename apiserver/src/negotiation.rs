//! Content negotiation of responses (upstream's `negotiation` package, for the forms we
//! serve): the `Accept` header picks the object itself, its `PartialObjectMetadata`, or a
//! `meta.k8s.io` `Table`, as in
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json`.
//!
//! Clauses are tried by `q` (then in order). A clause asking for a conversion (`as=`) must be
//! `application/json` with `g=meta.k8s.io` and `v=v1` or `v1beta1`; a clause without one
//! accepts JSON. When no clause fits and one asked for a conversion, the answer is 406;
//! otherwise (a client offering only protobuf, say) it is plain JSON.
//!
//! Discovery (`/api`, `/apis`) has its own choice ([`negotiate_discovery`]): the aggregated
//! `apidiscovery.k8s.io` `APIGroupDiscoveryList`, v2 or v2beta1, or the legacy documents.

use kybernetes_core::ApiError;

/// The `meta.k8s.io` version a converted response is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaVersion {
    /// `meta.k8s.io/v1`.
    V1,
    /// `meta.k8s.io/v1beta1`.
    V1beta1,
}

impl MetaVersion {
    /// `v1` or `v1beta1`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetaVersion::V1 => "v1",
            MetaVersion::V1beta1 => "v1beta1",
        }
    }

    /// The `apiVersion` of objects in this version: `meta.k8s.io/v1`.
    pub fn api_version(self) -> &'static str {
        match self {
            MetaVersion::V1 => "meta.k8s.io/v1",
            MetaVersion::V1beta1 => "meta.k8s.io/v1beta1",
        }
    }
}

/// The form of the response a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The object (or list) itself, as JSON.
    Object,
    /// `PartialObjectMetadata` (or `PartialObjectMetadataList` for a list).
    PartialObjectMetadata(MetaVersion),
    /// A `Table`.
    Table(MetaVersion),
}

impl Output {
    /// The `Content-Type` of a response in this form.
    pub fn content_type(self) -> &'static str {
        match self {
            Output::Table(MetaVersion::V1) => "application/json;as=Table;v=v1;g=meta.k8s.io",
            Output::Table(MetaVersion::V1beta1) => {
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io"
            }
            Output::Object | Output::PartialObjectMetadata(_) => "application/json",
        }
    }
}

/// One clause of an `Accept` header.
struct Clause<'a> {
    media_type: &'a str,
    q: f32,
    as_: Option<&'a str>,
    group: Option<&'a str>,
    version: Option<&'a str>,
}

fn parse_clause(raw: &str) -> Option<Clause<'_>> {
    let mut parts = raw.split(';').map(str::trim);
    let media_type = parts.next().filter(|m| !m.is_empty())?;
    let mut clause = Clause {
        media_type,
        q: 1.0,
        as_: None,
        group: None,
        version: None,
    };
    for param in parts {
        let Some((k, v)) = param.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"');
        match k.trim() {
            "q" => clause.q = v.parse().unwrap_or(0.0),
            "as" => clause.as_ = Some(v),
            "g" => clause.group = Some(v),
            "v" => clause.version = Some(v),
            _ => {}
        }
    }
    Some(clause)
}

/// The media ranges of an `Accept` header, most preferred first (by `q`, then in the
/// client's order), without those the client refuses (`q=0`). Documents that are not API
/// objects (`/openapi/v2`) pick their form from these.
pub(crate) fn media_ranges(accept: &str) -> Vec<(&str, f32)> {
    let mut ranges: Vec<(&str, f32)> = accept
        .split(',')
        .filter_map(parse_clause)
        .filter(|c| c.q > 0.0)
        .map(|c| (c.media_type, c.q))
        .collect();
    // The sort is stable, so equal ones keep the client's order.
    ranges.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranges
}

/// What one clause asks for, if we can serve it.
fn acceptable(c: &Clause<'_>) -> Option<Output> {
    let json = c.media_type.eq_ignore_ascii_case("application/json");
    if c.as_.is_none() && c.group.is_none() && c.version.is_none() {
        let any = matches!(c.media_type, "*/*" | "application/*");
        return (json || any).then_some(Output::Object);
    }
    if !json || c.group != Some("meta.k8s.io") {
        return None;
    }
    let version = match c.version? {
        "v1" => MetaVersion::V1,
        "v1beta1" => MetaVersion::V1beta1,
        _ => return None,
    };
    match c.as_? {
        "Table" => Some(Output::Table(version)),
        "PartialObjectMetadata" | "PartialObjectMetadataList" => {
            Some(Output::PartialObjectMetadata(version))
        }
        _ => None,
    }
}

/// The response form an `Accept` header asks for.
///
/// ```
/// use kybernetes_apiserver::negotiation::{negotiate, MetaVersion, Output};
/// let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
/// assert_eq!(negotiate(kubectl)?, Output::Table(MetaVersion::V1));
/// assert_eq!(negotiate("application/json;as=Table;v=v1beta1;g=meta.k8s.io")?, Output::Table(MetaVersion::V1beta1));
/// assert_eq!(negotiate("")?, Output::Object);
/// assert_eq!(negotiate("application/vnd.kubernetes.protobuf")?, Output::Object);
/// assert_eq!(negotiate("application/json;as=Table;v=v2;g=meta.k8s.io").unwrap_err().code, 406);
/// # Ok::<(), kybernetes_core::ApiError>(())
/// ```
pub fn negotiate(accept: &str) -> Result<Output, ApiError> {
    let mut clauses: Vec<Clause<'_>> = accept.split(',').filter_map(parse_clause).collect();
    if clauses.is_empty() {
        return Ok(Output::Object);
    }
    // Highest q first; the sort is stable, so equal ones keep the client's order.
    clauses.sort_by(|a, b| b.q.total_cmp(&a.q));
    if let Some(out) = clauses.iter().filter(|c| c.q > 0.0).find_map(acceptable) {
        return Ok(out);
    }
    if clauses.iter().any(|c| c.as_.is_some()) {
        return Err(ApiError::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io, application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io, application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
        ));
    }
    Ok(Output::Object)
}

/// The `apidiscovery.k8s.io` version of an aggregated discovery document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscoveryVersion {
    /// `apidiscovery.k8s.io/v2`.
    V2,
    /// `apidiscovery.k8s.io/v2beta1`, which kubectl 1.32 still offers second.
    V2beta1,
}

impl DiscoveryVersion {
    /// `v2` or `v2beta1`.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscoveryVersion::V2 => "v2",
            DiscoveryVersion::V2beta1 => "v2beta1",
        }
    }

    /// The `Content-Type` of the document, the `Accept` clause it answers.
    pub fn content_type(self) -> &'static str {
        match self {
            DiscoveryVersion::V2 => {
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            }
            DiscoveryVersion::V2beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
        }
    }
}

/// The form of `/api` and `/apis` a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscoveryOutput {
    /// The legacy `APIVersions` / `APIGroupList` (and per-version `APIResourceList`s).
    Legacy,
    /// One `APIGroupDiscoveryList` with every resource of every version.
    Aggregated(DiscoveryVersion),
}

fn discovery_clause(c: &Clause<'_>) -> Option<DiscoveryOutput> {
    if c.as_.is_none() && c.group.is_none() && c.version.is_none() {
        let json = c.media_type.eq_ignore_ascii_case("application/json");
        let any = matches!(c.media_type, "*/*" | "application/*");
        return (json || any).then_some(DiscoveryOutput::Legacy);
    }
    // JSON only: a protobuf clause falls through to the client's next choice.
    let wanted = c.media_type.eq_ignore_ascii_case("application/json")
        && c.group == Some("apidiscovery.k8s.io")
        && c.as_ == Some("APIGroupDiscoveryList");
    if !wanted {
        return None;
    }
    match c.version? {
        "v2" => Some(DiscoveryOutput::Aggregated(DiscoveryVersion::V2)),
        "v2beta1" => Some(DiscoveryOutput::Aggregated(DiscoveryVersion::V2beta1)),
        _ => None,
    }
}

/// The discovery form an `Accept` header asks for: the best clause we serve, by `q` then
/// order; legacy when none fits (upstream serves legacy discovery to any other `Accept`).
///
/// ```
/// use kybernetes_apiserver::negotiation::{negotiate_discovery, DiscoveryOutput, DiscoveryVersion};
/// let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
/// assert_eq!(negotiate_discovery(kubectl), DiscoveryOutput::Aggregated(DiscoveryVersion::V2));
/// assert_eq!(negotiate_discovery("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"), DiscoveryOutput::Aggregated(DiscoveryVersion::V2beta1));
/// assert_eq!(negotiate_discovery("application/json, */*"), DiscoveryOutput::Legacy);
/// assert_eq!(negotiate_discovery(""), DiscoveryOutput::Legacy);
/// ```
pub fn negotiate_discovery(accept: &str) -> DiscoveryOutput {
    let mut clauses: Vec<Clause<'_>> = accept.split(',').filter_map(parse_clause).collect();
    clauses.sort_by(|a, b| b.q.total_cmp(&a.q));
    clauses
        .iter()
        .filter(|c| c.q > 0.0)
        .find_map(discovery_clause)
        .unwrap_or(DiscoveryOutput::Legacy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_acceptable_clause_wins() {
        assert_eq!(
            negotiate("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1").ok(),
            Some(Output::PartialObjectMetadata(MetaVersion::V1))
        );
        assert_eq!(
            negotiate("application/json;q=0.5, application/json;as=Table;v=v1;g=meta.k8s.io").ok(),
            Some(Output::Table(MetaVersion::V1))
        );
        assert_eq!(
            negotiate("application/json;as=Table;v=v1;g=example.com, application/json").ok(),
            Some(Output::Object)
        );
        assert_eq!(negotiate("*/*").ok(), Some(Output::Object));
        assert_eq!(
            negotiate("application/yaml;as=Table;v=v1;g=meta.k8s.io")
                .err()
                .map(|e| e.reason),
            Some("NotAcceptable".to_string())
        );
    }
}
