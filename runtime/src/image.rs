//! Images, as CRI's `ImageService` reports them.

/// An image the runtime holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    /// The image id (`sha256:…`).
    pub id: String,
    /// Tags it is known by (`docker.io/library/nginx:1.27`).
    pub repo_tags: Vec<String>,
    /// Digests it is known by (`docker.io/library/nginx@sha256:…`).
    pub repo_digests: Vec<String>,
    /// Size on disk, in bytes.
    pub size_bytes: u64,
    /// The numeric user its config names, if it names one by number (CRI `uid`).
    pub uid: Option<i64>,
    /// The user name its config names, if it names one by name (CRI `username`).
    pub username: Option<String>,
}

impl Image {
    /// The reference a pod status reports as `imageID`: the first digest, else the id.
    pub fn reference(&self) -> &str {
        self.repo_digests
            .first()
            .map(String::as_str)
            .unwrap_or(&self.id)
    }

    /// Whether this image answers to `name` (a tag, a digest or the id).
    pub fn answers_to(&self, name: &str) -> bool {
        self.id == name
            || self
                .repo_tags
                .iter()
                .any(|t| t == name || t == &normalize_reference(name))
            || self.repo_digests.iter().any(|d| d == name)
    }
}

/// Expands a short image reference as container runtimes do: `nginx` becomes
/// `docker.io/library/nginx:latest`, `me/app:1` becomes `docker.io/me/app:1`.
///
/// ```
/// use kybernetes_runtime::image::normalize_reference;
/// assert_eq!(normalize_reference("nginx"), "docker.io/library/nginx:latest");
/// assert_eq!(normalize_reference("me/app:1"), "docker.io/me/app:1");
/// assert_eq!(normalize_reference("registry.local:5000/app"), "registry.local:5000/app:latest");
/// ```
pub fn normalize_reference(name: &str) -> String {
    let (repo, rest) = match name.find('@') {
        Some(at) => (&name[..at], &name[at..]),
        None => (name, ""),
    };
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let tagged = last.contains(':');
    let first = repo.split('/').next().unwrap_or("");
    let has_registry =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut out = String::new();
    if !has_registry {
        out.push_str("docker.io/");
        if !repo.contains('/') {
            out.push_str("library/");
        }
    }
    out.push_str(repo);
    if !tagged && rest.is_empty() {
        out.push_str(":latest");
    }
    out.push_str(rest);
    out
}

/// An image record for `name` with an id derived from the name, for runtimes that hold no
/// image content (the fake, and local processes).
pub(crate) fn synthetic_image(name: &str) -> Image {
    use std::hash::{Hash, Hasher};
    let reference = normalize_reference(name);
    let mut digest = String::with_capacity(64);
    for seed in 0..4u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (seed, &reference).hash(&mut h);
        digest.push_str(&format!("{:016x}", h.finish()));
    }
    let repo = reference
        .rsplit_once(':')
        .map(|(r, _)| r)
        .unwrap_or(&reference)
        .to_string();
    Image {
        id: format!("sha256:{digest}"),
        repo_tags: vec![reference.clone()],
        repo_digests: vec![format!("{repo}@sha256:{digest}")],
        size_bytes: 1024 * 1024,
        uid: None,
        username: None,
    }
}
