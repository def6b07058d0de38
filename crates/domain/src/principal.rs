//! The one type every authenticated caller becomes.

use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::ids::{ApiKeyId, PlatformKeyId, TenantId, TokenFamilyId, TokenId, UserId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// # Errors
    /// When the text names no role.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            _ => Err("must be \"admin\" or \"member\"".into()),
        }
    }

    /// What a user of this role may do; API keys are granted scopes explicitly instead.
    #[must_use]
    pub const fn scopes(self) -> Scopes {
        match self {
            Self::Admin => Scopes::ALL,
            Self::Member => Scopes::READ_WRITE,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub const ALL: [Self; 3] = [Self::Read, Self::Write, Self::Admin];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }

    /// # Errors
    /// When the text names no scope.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "admin" => Ok(Self::Admin),
            _ => Err(format!(
                "unknown scope {text:?}; expected read, write or admin"
            )),
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Self::Read => 1,
            Self::Write => 2,
            Self::Admin => 4,
        }
    }
}

/// A set of [`Scope`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub const NONE: Self = Self(0);
    pub const READ_WRITE: Self = Self(1 | 2);
    pub const ALL: Self = Self(1 | 2 | 4);

    #[must_use]
    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    #[must_use]
    pub const fn with(self, scope: Scope) -> Self {
        Self(self.0 | scope.bit())
    }

    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// # Errors
    /// The first unknown scope's message, or a message when the list is empty.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut scopes = Self::NONE;
        for name in names {
            scopes = scopes.with(Scope::parse(name)?);
        }
        if scopes.is_empty() {
            return Err("must name at least one scope".into());
        }
        Ok(scopes)
    }
}

/// Who is acting, as written to the audit log and to `deleted_by`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    ApiKey(ApiKeyId),
    Platform(PlatformKeyId),
    /// The operator at the command line (`agentic tenant create`), trusted by having the database.
    System,
}

impl Actor {
    #[must_use]
    pub const fn kind(self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::ApiKey(_) => "api_key",
            Self::Platform(_) => "platform_key",
            Self::System => "system",
        }
    }

    #[must_use]
    pub const fn id(self) -> uuid::Uuid {
        match self {
            Self::User(id) => id.as_uuid(),
            Self::ApiKey(id) => id.as_uuid(),
            Self::Platform(id) => id.as_uuid(),
            Self::System => uuid::Uuid::nil(),
        }
    }
}

/// The access token a user authenticated with, kept so logout can revoke exactly it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionToken {
    pub jti: TokenId,
    pub family: TokenFamilyId,
    pub expires_at: DateTime<Utc>,
}

/// An authenticated caller: a user (from an access JWT), a tenant API key, or a platform operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    User {
        tenant: TenantId,
        user: UserId,
        role: Role,
        session: SessionToken,
    },
    ApiKey {
        tenant: TenantId,
        key: ApiKeyId,
        scopes: Scopes,
    },
    Platform {
        key: PlatformKeyId,
    },
}

impl Principal {
    #[must_use]
    pub const fn actor(&self) -> Actor {
        match self {
            Self::User { user, .. } => Actor::User(*user),
            Self::ApiKey { key, .. } => Actor::ApiKey(*key),
            Self::Platform { key } => Actor::Platform(*key),
        }
    }

    #[must_use]
    pub const fn scopes(&self) -> Scopes {
        match self {
            Self::User { role, .. } => role.scopes(),
            Self::ApiKey { scopes, .. } => *scopes,
            Self::Platform { .. } => Scopes::NONE,
        }
    }

    /// The tenant this caller belongs to, whatever its scopes (to say who it is, for example).
    ///
    /// # Errors
    /// [`Error::Forbidden`] for platform operators, who hold no tenant.
    pub fn tenant(&self) -> Result<TenantId, Error> {
        match self {
            Self::User { tenant, .. } | Self::ApiKey { tenant, .. } => Ok(*tenant),
            Self::Platform { .. } => {
                Err(Error::Forbidden("platform keys cannot act within a tenant"))
            }
        }
    }

    /// The tenant, for a list: reading it needs the read scope, and deleted rows the admin one.
    ///
    /// # Errors
    /// [`Error::Forbidden`] without that scope, or for platform operators.
    pub fn tenant_listing(&self, include_deleted: bool) -> Result<TenantId, Error> {
        self.tenant_with(if include_deleted {
            Scope::Admin
        } else {
            Scope::Read
        })
    }

    /// The tenant this caller acts within, provided it holds `scope` there.
    ///
    /// # Errors
    /// [`Error::Forbidden`] for platform operators (they hold no tenant) and for missing scopes.
    pub fn tenant_with(&self, scope: Scope) -> Result<TenantId, Error> {
        let tenant = self.tenant()?;
        if !self.scopes().contains(scope) {
            return Err(Error::Forbidden(match scope {
                Scope::Read => "the read scope is required",
                Scope::Write => "the write scope is required",
                Scope::Admin => "the admin role or scope is required",
            }));
        }
        Ok(tenant)
    }

    /// # Errors
    /// [`Error::Forbidden`] unless the caller is a platform operator.
    pub fn require_platform(&self) -> Result<PlatformKeyId, Error> {
        match self {
            Self::Platform { key } => Ok(*key),
            Self::User { .. } | Self::ApiKey { .. } => {
                Err(Error::Forbidden("a platform key is required"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_cannot_administer() {
        let member = Principal::ApiKey {
            tenant: TenantId::new(),
            key: ApiKeyId::new(),
            scopes: Scopes::parse(["read"]).unwrap(),
        };
        assert!(member.tenant_with(Scope::Read).is_ok());
        assert!(matches!(
            member.tenant_with(Scope::Write),
            Err(Error::Forbidden(_))
        ));
        assert!(member.require_platform().is_err());
    }

    #[test]
    fn platform_holds_no_tenant() {
        let op = Principal::Platform {
            key: PlatformKeyId::new(),
        };
        assert!(op.tenant_with(Scope::Read).is_err());
        assert!(op.require_platform().is_ok());
    }

    #[test]
    fn scopes_parse() {
        assert!(Scopes::parse([]).is_err());
        assert!(Scopes::parse(["read", "nope"]).is_err());
        let s = Scopes::parse(["write", "admin"]).unwrap();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![Scope::Write, Scope::Admin]
        );
    }
}
