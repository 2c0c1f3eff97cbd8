//! Static bearer tokens (upstream's `--token-auth-file`): a CSV file of
//! `token,user,uid,"group1,group2"`, one line per token; the groups column is optional.

use std::collections::HashMap;
use std::path::Path;

use kybernetes_core::ApiError;

use crate::authentication::{Authenticator, UserInfo, bearer_token};

/// Why a token file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("reading the token file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("token file line {line}: {message}")]
    Line {
        /// One-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// The tokens of a token file, each naming a user.
#[derive(Clone, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tokens are secrets: show only how many there are.
        write!(f, "TokenFile({} tokens)", self.tokens.len())
    }
}

impl TokenFile {
    /// Reads a token file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TokenFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses the CSV text of a token file. Blank lines are skipped; a token may appear once.
    pub fn parse(text: &str) -> Result<Self, TokenFileError> {
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let bad = |message: &str| TokenFileError::Line {
                line: i + 1,
                message: message.into(),
            };
            if line.trim().is_empty() {
                continue;
            }
            let fields = split_csv(line).map_err(|m| bad(&m))?;
            if fields.len() < 3 {
                return Err(bad("want at least token,user,uid"));
            }
            let token = fields[0].clone();
            if token.is_empty() || fields[1].is_empty() {
                return Err(bad("the token and the user must not be empty"));
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let user = UserInfo {
                name: fields[1].clone(),
                uid: fields[2].clone(),
                groups,
                ..Default::default()
            };
            if tokens.insert(token, user).is_some() {
                return Err(bad("duplicate token"));
            }
        }
        Ok(TokenFile { tokens })
    }

    /// How many tokens the file holds.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True if the file holds no token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Splits one CSV record: fields separated by commas, optionally double-quoted (a quoted field
/// may hold commas, and `""` inside it is a quote).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, '"') if field.is_empty() => quoted = true,
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (_, c) => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    fields.push(field);
    Ok(fields)
}

#[async_trait::async_trait]
impl Authenticator for TokenFile {
    async fn authenticate(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Option<UserInfo>, ApiError> {
        // No bearer token: another authenticator's business.
        let Some(token) = bearer_token(parts) else {
            return Ok(None);
        };
        match self.tokens.get(token) {
            Some(user) => Ok(Some(user.clone())),
            None => Err(ApiError::new(401, "Unauthorized", "Unauthorized")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: &str) -> http::request::Parts {
        let (parts, ()) = http::Request::builder()
            .header("authorization", auth)
            .body(())
            .expect("request")
            .into_parts();
        parts
    }

    #[tokio::test]
    async fn token_file_lines_name_user_uid_and_groups() {
        let file =
            TokenFile::parse("s3cret,alice,1001,\"dev,ops\"\n\nt2,bob,1002\n").expect("parse");
        assert_eq!(file.len(), 2);
        let alice = file
            .authenticate(&request("Bearer s3cret"))
            .await
            .expect("ok")
            .expect("known");
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.uid, "1001");
        assert_eq!(alice.groups, vec!["dev", "ops"]);
        let bob = file
            .authenticate(&request("Bearer t2"))
            .await
            .expect("ok")
            .expect("known");
        assert!(bob.groups.is_empty());
    }

    #[tokio::test]
    async fn an_unknown_bearer_token_is_refused() {
        let file = TokenFile::parse("s3cret,alice,1001\n").expect("parse");
        let err = file
            .authenticate(&request("Bearer nope"))
            .await
            .expect_err("refused");
        assert_eq!(err.code, 401);
        assert!(
            file.authenticate(&request("Basic abc"))
                .await
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn a_short_line_is_reported_with_its_number() {
        let err = TokenFile::parse("a,b,c\nonly-token\n").expect_err("bad");
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
