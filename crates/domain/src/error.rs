//! The domain error. Every service returns it; the HTTP edge maps each variant to a status and a stable
//! code without a catch-all arm.

use std::fmt;

/// One invalid input field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a caller could not be authenticated. All of them answer 401; the reason goes to the logs only,
/// so an attacker learns nothing from the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    MissingCredentials,
    MalformedToken,
    BadSignature,
    UnknownKeyId,
    Expired,
    WrongTokenType,
    Revoked,
    UnknownPrincipal,
    BadCredentials,
    RefreshReuse,
}

impl AuthFailure {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing credentials",
            Self::MalformedToken => "malformed or unverifiable token",
            Self::BadSignature => "bad signature",
            Self::UnknownKeyId => "unknown key id",
            Self::Expired => "expired",
            Self::WrongTokenType => "wrong token type",
            Self::Revoked => "revoked",
            Self::UnknownPrincipal => "unknown principal",
            Self::BadCredentials => "bad credentials",
            Self::RefreshReuse => "refresh token reused",
        }
    }
}

/// Which uniqueness or state rule a request ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conflict {
    AgentSlugTaken,
    UserEmailTaken,
    TenantSlugTaken,
    LastAdmin,
    DocumentExists,
    ReembedInProgress,
    AnswerInProgress,
    ProviderNameTaken,
}

impl Conflict {
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::AgentSlugTaken => "agent_slug_taken",
            Self::UserEmailTaken => "user_email_taken",
            Self::TenantSlugTaken => "tenant_slug_taken",
            Self::LastAdmin => "last_admin",
            Self::DocumentExists => "document_exists",
            Self::ReembedInProgress => "reembed_in_progress",
            Self::AnswerInProgress => "answer_in_progress",
            Self::ProviderNameTaken => "provider_name_taken",
        }
    }

    #[must_use]
    pub const fn message(self) -> &'static str {
        match self {
            Self::AgentSlugTaken => "a live agent of this tenant already has this slug",
            Self::UserEmailTaken => "a live user of this tenant already has this email",
            Self::TenantSlugTaken => "a tenant with this slug already exists",
            Self::LastAdmin => "the tenant must keep at least one active admin",
            Self::DocumentExists => {
                "the collection already holds a live document with this content"
            }
            Self::ReembedInProgress => {
                "the collection is already being re-embedded; wait for that job or cancel it"
            }
            Self::AnswerInProgress => {
                "that message is still being answered; wait for its run to end or cancel it"
            }
            Self::ProviderNameTaken => "this tenant already has a provider with this name",
        }
    }
}

/// The kind of resource a [`Error::NotFound`] speaks of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Tenant,
    User,
    Agent,
    ApiKey,
    Collection,
    Document,
    Job,
    Conversation,
    Message,
    Run,
    Space,
    Provider,
}

impl Resource {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::User => "user",
            Self::Agent => "agent",
            Self::ApiKey => "api_key",
            Self::Collection => "collection",
            Self::Document => "document",
            Self::Job => "job",
            Self::Conversation => "conversation",
            Self::Message => "message",
            Self::Run => "run",
            Self::Space => "embedding space",
            Self::Provider => "provider",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid input: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Validation(Vec<FieldError>),
    /// Absent, deleted, or another tenant's: the caller cannot tell which.
    #[error("{} not found", .0.as_str())]
    NotFound(Resource),
    #[error("{}", .0.message())]
    Conflict(Conflict),
    #[error("not authenticated: {}", .0.as_str())]
    Unauthenticated(AuthFailure),
    /// Authenticated, but the principal may not do this (role, scope, or a disabled account).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The caller's tenant is suspended: every credential of it is refused until it is resumed.
    #[error("the tenant is suspended")]
    TenantSuspended,
    /// A document's parser hit a hard limit (memory, CPU time, output) and was killed.
    #[error("reading the document exceeded a limit: {0}")]
    ExtractionLimit(String),
    /// The server is at capacity for this kind of work; retry shortly.
    #[error("the server is busy; retry shortly")]
    Busy,
    /// The document or body is larger than the server accepts.
    #[error("the content exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// A format the server does not read.
    #[error(
        "unsupported media type {0:?}; expected text/plain, text/markdown, text/html or application/pdf"
    )]
    UnsupportedMediaType(String),
    /// A dependency such as an embedding provider is not available for this request.
    #[error("{0}")]
    Unavailable(String),
    /// The model failed to answer (the failed answer is stored); `code` says how: a timeout
    /// (`model_timeout`), a full local queue (`server_busy`), a provider failure.
    #[error("{}", .0.message)]
    ModelFailed(crate::entities::Failure),
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { limit: u32, retry_after_secs: u64 },
    /// A provider cannot be deleted while agents name it (listed: id and slug).
    #[error("agents use this provider: {}", .0.iter().map(|(_, slug)| slug.as_str()).collect::<Vec<_>>().join(", "))]
    ProviderInUse(Vec<(crate::ids::AgentId, String)>),
    /// The tenant's daily token quota is spent; it is renewed at the next UTC midnight.
    #[error("the tenant's daily token quota is spent; it is renewed in {retry_after_secs} s")]
    QuotaExceeded { retry_after_secs: u64 },
    /// A dependency (database, cache) failed; the source is logged, never shown.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(source.into())
    }
}

/// Collects field errors so a request reports all of its problems at once.
#[derive(Debug, Default)]
pub struct Validator(Vec<FieldError>);

impl Validator {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the value when it is valid, records the field error otherwise.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.0.push(FieldError::new(field, message));
                None
            }
        }
    }

    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// # Errors
    /// [`Error::Validation`] with every recorded field when there is at least one.
    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.0))
        }
    }
}
