//! Typed ids: a `UserId` cannot be passed where an `AgentId` is expected.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered (v7) id.
            #[must_use]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            #[must_use]
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            #[must_use]
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    };
}

typed_id!(
    /// An organisation; every tenant-owned row carries one.
    TenantId
);
typed_id!(UserId);
typed_id!(AgentId);
typed_id!(ApiKeyId);
typed_id!(PlatformKeyId);
typed_id!(AuditEntryId);
typed_id!(
    /// The id of one access or refresh token (`jti`).
    TokenId
);
typed_id!(
    /// A chain of refresh tokens born from one login; reuse of a rotated member revokes all of it.
    TokenFamilyId
);
typed_id!(CollectionId);
typed_id!(
    /// A tenant's own model provider (an OpenAI-compatible server and its key).
    ProviderId
);
typed_id!(
    /// One embedding of a collection's documents in one space; re-embedding makes a new one.
    GenerationId
);
typed_id!(DocumentId);
typed_id!(ChunkId);
typed_id!(JobId);
typed_id!(
    /// A message of a conversation: a node of its tree (`parent_id`).
    MessageId
);
typed_id!(
    /// A conversation between a principal and an agent.
    ConversationId
);
typed_id!(
    /// One generation of an answer, detached from the request that started it.
    RunId
);
