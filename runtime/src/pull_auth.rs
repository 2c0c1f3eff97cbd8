//! Registry credentials for a pull: what the kubelet takes from a pod's `imagePullSecrets`
//! (`kubernetes.io/dockerconfigjson` and `kubernetes.io/dockercfg` secrets) and hands the
//! runtime with each `PullImage`.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredential {
    /// The user name.
    pub username: String,
    /// The password (or token).
    pub password: String,
}

impl std::fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The credentials a pull may use, keyed as a docker config's `auths` are (`registry.io`,
/// `https://index.docker.io/v1/`, `registry.io/team`); empty means anonymous.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullAuth {
    entries: Vec<(String, RegistryCredential)>,
}

/// Why a pull secret's content was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PullSecretError(String);

#[derive(Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, DockerConfigEntry>,
}

#[derive(Deserialize)]
struct DockerConfigEntry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

impl PullAuth {
    /// No credentials: every registry is asked anonymously.
    pub fn anonymous() -> PullAuth {
        PullAuth::default()
    }

    /// Adds one credential for registry key `key`.
    pub fn insert(&mut self, key: impl Into<String>, credential: RegistryCredential) {
        self.entries.push((key.into(), credential));
    }

    /// Whether there are no credentials.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds the credentials of a `kubernetes.io/dockerconfigjson` secret's `.dockerconfigjson`
    /// (`{"auths": {registry: {username, password} or {auth: base64("user:pass")}}}`).
    pub fn add_docker_config_json(&mut self, data: &[u8]) -> Result<(), PullSecretError> {
        let config: DockerConfigJson = serde_json::from_slice(data)
            .map_err(|e| PullSecretError(format!(".dockerconfigjson does not parse: {e}")))?;
        self.add_entries(config.auths)
    }

    /// Adds the credentials of a legacy `kubernetes.io/dockercfg` secret's `.dockercfg`
    /// (the `auths` map without its wrapper).
    pub fn add_docker_cfg(&mut self, data: &[u8]) -> Result<(), PullSecretError> {
        let auths: BTreeMap<String, DockerConfigEntry> = serde_json::from_slice(data)
            .map_err(|e| PullSecretError(format!(".dockercfg does not parse: {e}")))?;
        self.add_entries(auths)
    }

    fn add_entries(
        &mut self,
        auths: BTreeMap<String, DockerConfigEntry>,
    ) -> Result<(), PullSecretError> {
        for (key, entry) in auths {
            let (username, password) = match (entry.username, entry.password, entry.auth) {
                (Some(u), Some(p), _) if !u.is_empty() => (u, p),
                (_, _, Some(auth)) if !auth.is_empty() => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|e| {
                            PullSecretError(format!("auth of {key:?} is not base64: {e}"))
                        })?;
                    let decoded = String::from_utf8(decoded).map_err(|_| {
                        PullSecretError(format!("auth of {key:?} is not UTF-8 user:password"))
                    })?;
                    let (u, p) = decoded.split_once(':').ok_or_else(|| {
                        PullSecretError(format!("auth of {key:?} is not user:password"))
                    })?;
                    (u.to_string(), p.to_string())
                }
                // An entry with neither (an identity token only) gives nothing to log in
                // with; the kubelet skips such entries too.
                _ => continue,
            };
            self.insert(key, RegistryCredential { username, password });
        }
        Ok(())
    }

    /// The credential for a pull of `reference` (a normalized reference,
    /// `registry/repository[:tag][@digest]`): the entry whose key matches the registry and
    /// the longest prefix of the repository, as the kubelet's keyring picks. Docker Hub
    /// answers to `docker.io`, `index.docker.io` and `registry-1.docker.io` alike.
    pub fn for_reference(&self, reference: &str) -> Option<&RegistryCredential> {
        let (host, path) = split_reference(reference);
        let host = canonical_host(host);
        self.entries
            .iter()
            .filter_map(|(key, credential)| {
                let (key_host, key_path) = split_key(key);
                let matches = canonical_host(key_host) == host
                    && (key_path.is_empty()
                        || path == key_path
                        || path.starts_with(&format!("{key_path}/")));
                matches.then_some((key_path.len(), credential))
            })
            .max_by_key(|(specificity, _)| *specificity)
            .map(|(_, credential)| credential)
    }
}

/// The registry host and repository path of a normalized reference.
fn split_reference(reference: &str) -> (&str, &str) {
    let name = reference.split('@').next().unwrap_or(reference);
    let (host, repo) = name.split_once('/').unwrap_or(("docker.io", name));
    let repo = match repo.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => repo,
    };
    (host, repo)
}

/// The host and path of an `auths` key, which may be a URL (`https://host/v1/`).
fn split_key(key: &str) -> (&str, &str) {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (host, path) = key.split_once('/').unwrap_or((key, ""));
    let path = path.trim_end_matches('/');
    // Docker's own config names Docker Hub by its v1 API URL; the path is no repository.
    let path = if path == "v1" || path == "v2" {
        ""
    } else {
        path
    };
    (host, path)
}

fn canonical_host(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(u: &str) -> RegistryCredential {
        RegistryCredential {
            username: u.into(),
            password: "p".into(),
        }
    }

    #[test]
    fn docker_config_json_reads_username_password_and_auth() {
        let mut auth = PullAuth::anonymous();
        auth.add_docker_config_json(
            br#"{"auths": {
                "registry.example:5000": {"username": "alice", "password": "pw"},
                "https://index.docker.io/v1/": {"auth": "Ym9iOnNlY3JldA=="}
            }}"#,
        )
        .expect("parses");
        let got = auth
            .for_reference("registry.example:5000/team/app:1")
            .expect("registry entry");
        assert_eq!(
            (got.username.as_str(), got.password.as_str()),
            ("alice", "pw")
        );
        let hub = auth
            .for_reference("docker.io/library/busybox:latest")
            .expect("docker hub entry");
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("bob", "secret")
        );
        assert!(auth.for_reference("quay.io/x/y:1").is_none());
    }

    #[test]
    fn the_longest_matching_path_wins() {
        let mut auth = PullAuth::anonymous();
        auth.insert("reg.io", credential("any"));
        auth.insert("reg.io/team", credential("team"));
        assert_eq!(
            auth.for_reference("reg.io/team/app:1")
                .map(|c| c.username.as_str()),
            Some("team")
        );
        assert_eq!(
            auth.for_reference("reg.io/teams/app:1")
                .map(|c| c.username.as_str()),
            Some("any")
        );
    }

    #[test]
    fn bad_secrets_are_refused_with_the_reason() {
        let mut auth = PullAuth::anonymous();
        let err = auth
            .add_docker_config_json(br#"{"auths": {"r.io": {"auth": "%%%"}}}"#)
            .expect_err("not base64");
        assert!(err.to_string().contains("r.io"), "{err}");
        assert!(auth.add_docker_config_json(b"not json").is_err());
    }
}
