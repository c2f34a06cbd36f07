//! Authentication: who is calling, from a verified client certificate or a static bearer token.
//!
//! Behaviour checked against kubernetes
//! `staging/src/k8s.io/apiserver/pkg/authentication/token/tokenfile/tokenfile.go` (CSV
//! `token,user,uid[,"group1,group2"]`, at least three columns, blank tokens skipped),
//! `.../authentication/request/x509/x509.go` (CN = user, O = groups) and
//! `.../authentication/request/bearertoken/bearertoken.go` (`Authorization: Bearer <token>`).
//! Like the apiserver's union authenticator, a verified client certificate wins over a token;
//! every authenticated user also gets the group `system:authenticated`.
//! Anonymous requests are rejected (the lab runs with `--anonymous-auth=false` semantics), so a
//! request without credentials gets the 401 `Unauthorized` Status.
use std::collections::HashMap;
use std::path::Path;

/// The group every authenticated user belongs to.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// An authenticated user (`user.Info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn new(name: impl Into<String>, uid: impl Into<String>, groups: Vec<String>) -> Self {
        let mut groups = groups;
        if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            groups.push(AUTHENTICATED_GROUP.to_string());
        }
        UserInfo {
            name: name.into(),
            uid: uid.into(),
            groups,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("reading token file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("token file line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// The static tokens of `--token-auth-file`.
#[derive(Debug, Clone, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses the CSV text. Later duplicates of a token win, as in upstream.
    pub fn parse(text: &str) -> Result<Self, TokenFileError> {
        let mut tokens = HashMap::new();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let fields = split_csv_record(raw).map_err(|reason| TokenFileError::Line {
                line,
                reason: reason.to_string(),
            })?;
            if fields.len() < 3 {
                return Err(TokenFileError::Line {
                    line,
                    reason: format!(
                        "must have at least 3 columns (token, user name, user uid), found {}",
                        fields.len()
                    ),
                });
            }
            let token = fields[0].trim();
            if token.is_empty() {
                tracing::warn!(line, "skipping token file entry with an empty token");
                continue;
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            tokens.insert(
                token.to_string(),
                UserInfo::new(fields[1].trim(), fields[2].trim(), groups),
            );
        }
        Ok(TokenFile { tokens })
    }

    pub fn lookup(&self, token: &str) -> Option<&UserInfo> {
        self.tokens.get(token)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Splits one CSV record (RFC 4180 quoting, `""` as an escaped quote).
fn split_csv_record(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut in_quotes = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => in_quotes = false,
            ('"', false) if field.trim().is_empty() && !was_quoted => {
                field.clear();
                in_quotes = true;
                was_quoted = true;
            }
            ('"', false) => return Err("bare \" in non-quoted field"),
            (',', false) => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (c, _) => field.push(c),
        }
    }
    if in_quotes {
        return Err("unterminated quoted field");
    }
    fields.push(field);
    Ok(fields)
}

/// The credentials a request carries.
#[derive(Debug, Clone, Default)]
pub struct Credentials<'a> {
    /// Identity from a client certificate the TLS layer already verified against `--client-ca`.
    pub client_cert: Option<&'a UserInfo>,
    /// The `Authorization` header value, if any.
    pub authorization: Option<&'a str>,
}

/// Authenticates requests; `None` means 401.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    tokens: TokenFile,
}

impl Authenticator {
    pub fn new(tokens: TokenFile) -> Self {
        Authenticator { tokens }
    }

    pub fn authenticate(&self, creds: &Credentials<'_>) -> Option<UserInfo> {
        if let Some(user) = creds.client_cert {
            return Some(user.clone());
        }
        let token = bearer_token(creds.authorization?)?;
        self.tokens.lookup(token).cloned()
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(header: &str) -> Option<&str> {
    let header = header.trim();
    let (scheme, token) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}
