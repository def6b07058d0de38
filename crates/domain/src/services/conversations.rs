//! Conversations and what can be done with their messages short of answering them (reading the
//! tree, rating an answer). Who sees a conversation: its owner, and the tenant's admins (users of
//! role admin, API keys with the admin scope); for everyone else it does not exist (404).

use std::sync::Arc;

use crate::entities::{
    Agent, AuditAction, Conversation, ConversationFilter, Feedback, Message, MessageRole,
    NewConversation, Owner, Rating,
};
use crate::error::{Error, Resource, Validator};
use crate::ids::{AgentId, ConversationId, MessageId, TenantId};
use crate::page::{Page, PageRequest};
use crate::ports::{Clock, Store, TenantTx};
use crate::principal::{Actor, Principal, Scope};
use crate::services::history;
use crate::services::lifecycle::{self, plainly_soft_deletable};
use crate::values;

const MAX_TITLE: usize = 200;
const MAX_COMMENT: usize = 2_000;

/// Which messages of a conversation to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MessageView {
    /// The path to the newest leaf, oldest first.
    #[default]
    Branch,
    /// Every message, oldest first, each with its parent.
    Tree,
}

/// The owner a caller's new conversations and runs get.
///
/// # Errors
/// `Forbidden` for platform operators, who own nothing in a tenant.
pub fn owner_of(who: &Principal) -> Result<Owner, Error> {
    match who.actor() {
        Actor::User(id) => Ok(Owner::User(id)),
        Actor::ApiKey(id) => Ok(Owner::ApiKey(id)),
        Actor::Platform(_) | Actor::System => Err(Error::Forbidden(
            "conversations belong to users and API keys of a tenant",
        )),
    }
}

/// Whose conversations `who` sees: `None` for all of the tenant's.
///
/// # Errors
/// `Forbidden` for platform operators.
pub fn visible_owner(who: &Principal) -> Result<Option<Owner>, Error> {
    let owner = owner_of(who)?;
    Ok((!who.scopes().contains(Scope::Admin)).then_some(owner))
}

/// The conversation if `who` may see it.
pub(crate) async fn visible(
    tx: &mut dyn TenantTx,
    who: &Principal,
    id: ConversationId,
    include_deleted: bool,
) -> Result<Conversation, Error> {
    let owner = visible_owner(who)?;
    tx.conversations()
        .get(id, include_deleted)
        .await?
        .filter(|c| owner.is_none_or(|o| c.owner == o))
        .ok_or(Error::NotFound(Resource::Conversation))
}

/// The conversation if `who` may see it, with its agent (`NotFound(Agent)` once that is
/// deleted) and the tenant's quota: what a new turn starts from.
pub(crate) async fn visible_for_turn(
    tx: &mut dyn TenantTx,
    who: &Principal,
    id: ConversationId,
) -> Result<(Conversation, Agent, Option<u64>), Error> {
    let owner = visible_owner(who)?;
    let start = tx
        .conversations()
        .get_for_turn(id)
        .await?
        .filter(|s| owner.is_none_or(|o| s.conversation.owner == o))
        .ok_or(Error::NotFound(Resource::Conversation))?;
    let agent = start.agent.ok_or(Error::NotFound(Resource::Agent))?;
    Ok((start.conversation, agent, start.daily_token_quota))
}

/// A message of a conversation `who` may see, with that conversation.
pub(crate) async fn visible_message(
    tx: &mut dyn TenantTx,
    who: &Principal,
    id: MessageId,
) -> Result<(Message, Conversation), Error> {
    let message = tx
        .messages()
        .get(id)
        .await?
        .ok_or(Error::NotFound(Resource::Message))?;
    let conversation = visible(tx, who, message.conversation_id, false)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(Resource::Message),
            other => other,
        })?;
    Ok((message, conversation))
}

pub struct ConversationService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl ConversationService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Starts a conversation with a live agent, owned by the caller.
    ///
    /// # Errors
    /// `Forbidden` without the write scope; `NotFound` for the agent; validation of the title.
    pub async fn create(
        &self,
        who: &Principal,
        agent_id: AgentId,
        title: Option<String>,
    ) -> Result<Conversation, Error> {
        let tenant = who.tenant_with(Scope::Write)?;
        let owner = owner_of(who)?;
        let title = validate_title(title.as_deref().unwrap_or(""))?;
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        tx.agents()
            .get(agent_id, false)
            .await?
            .ok_or(Error::NotFound(Resource::Agent))?;
        let new = NewConversation {
            id: ConversationId::new(),
            agent_id,
            title,
            owner,
        };
        let conversation = tx.conversations().insert(&new, now).await?;
        tx.audit()
            .record(now, who.actor(), AuditAction::Created, conversation.id)
            .await?;
        tx.commit().await?;
        Ok(conversation)
    }

    /// # Errors
    /// `NotFound` when absent, deleted, another tenant's or not the caller's to see.
    pub async fn get(&self, who: &Principal, id: ConversationId) -> Result<Conversation, Error> {
        let tenant = who.tenant_with(Scope::Read)?;
        let mut tx = self.store.begin(tenant).await?;
        let conversation = visible(tx.as_mut(), who, id, false).await?;
        tx.commit().await?;
        Ok(conversation)
    }

    /// The conversations the caller may see, newest first.
    ///
    /// # Errors
    /// `Forbidden` when a non-admin asks for deleted rows.
    pub async fn list(
        &self,
        who: &Principal,
        agent_id: Option<AgentId>,
        include_deleted: bool,
        page: PageRequest,
    ) -> Result<Page<Conversation>, Error> {
        let tenant = who.tenant_listing(include_deleted)?;
        let filter = ConversationFilter {
            agent_id,
            owner: visible_owner(who)?,
            include_deleted,
        };
        let mut tx = self.store.begin(tenant).await?;
        let conversations = tx.conversations().list(&filter, page).await?;
        tx.commit().await?;
        Ok(conversations)
    }

    /// # Errors
    /// Validation of the title; `NotFound`.
    pub async fn rename(
        &self,
        who: &Principal,
        id: ConversationId,
        title: &str,
    ) -> Result<Conversation, Error> {
        let tenant = who.tenant_with(Scope::Write)?;
        let title = validate_title(title)?;
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        visible(tx.as_mut(), who, id, false).await?;
        let conversation = tx
            .conversations()
            .set_title(id, &title, now)
            .await?
            .ok_or(Error::NotFound(Resource::Conversation))?;
        tx.audit()
            .record_with(
                now,
                who.actor(),
                AuditAction::Updated,
                id,
                serde_json::json!({"fields": ["title"]}),
            )
            .await?;
        tx.commit().await?;
        Ok(conversation)
    }

    /// Soft-deletes a conversation the caller may see.
    ///
    /// # Errors
    /// `Forbidden` without the write scope, `NotFound`.
    pub async fn delete(&self, who: &Principal, id: ConversationId) -> Result<(), Error> {
        self.check_visible(who, id, false).await?;
        lifecycle::delete::<Conversations>(self.store.as_ref(), self.clock.as_ref(), who, id).await
    }

    /// Restores a deleted conversation the caller may see; a live one is answered as it is.
    ///
    /// # Errors
    /// `Forbidden` without the write scope, `NotFound`.
    pub async fn restore(
        &self,
        who: &Principal,
        id: ConversationId,
    ) -> Result<Conversation, Error> {
        self.check_visible(who, id, true).await?;
        lifecycle::restore::<Conversations>(self.store.as_ref(), self.clock.as_ref(), who, id).await
    }

    /// Removes a conversation with its messages, runs and ratings (admins only).
    ///
    /// # Errors
    /// `Forbidden` without the admin scope, `NotFound`.
    pub async fn purge(&self, who: &Principal, id: ConversationId) -> Result<(), Error> {
        lifecycle::purge::<Conversations>(self.store.as_ref(), self.clock.as_ref(), who, id).await
    }

    async fn check_visible(
        &self,
        who: &Principal,
        id: ConversationId,
        include_deleted: bool,
    ) -> Result<TenantId, Error> {
        let tenant = who.tenant_with(Scope::Read)?;
        let mut tx = self.store.begin(tenant).await?;
        visible(tx.as_mut(), who, id, include_deleted).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    /// The conversation's messages: the current branch, or the whole tree. One query.
    ///
    /// # Errors
    /// `NotFound` for the conversation.
    pub async fn messages(
        &self,
        who: &Principal,
        id: ConversationId,
        view: MessageView,
    ) -> Result<Vec<Message>, Error> {
        let tenant = who.tenant_with(Scope::Read)?;
        let mut tx = self.store.begin(tenant).await?;
        visible(tx.as_mut(), who, id, false).await?;
        let messages = tx.messages().list(id).await?;
        tx.commit().await?;
        Ok(match view {
            MessageView::Tree => messages,
            MessageView::Branch => history::current_branch(&messages)
                .into_iter()
                .cloned()
                .collect(),
        })
    }

    /// Sets the caller's rating of an answer, replacing an earlier one.
    ///
    /// # Errors
    /// `Forbidden` without the write scope; `NotFound` for the message; validation (only
    /// assistant messages are rated; the comment's length).
    pub async fn rate(
        &self,
        who: &Principal,
        message_id: MessageId,
        rating: Rating,
        comment: Option<String>,
    ) -> Result<Feedback, Error> {
        let tenant = who.tenant_with(Scope::Write)?;
        let owner = owner_of(who)?;
        let comment = comment
            .map(|c| values::bounded_text(c.trim(), MAX_COMMENT))
            .transpose()
            .map_err(|message| Error::invalid("comment", message))?
            .filter(|c| !c.is_empty());
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        let (message, _) = visible_message(tx.as_mut(), who, message_id).await?;
        if message.role != MessageRole::Assistant {
            return Err(Error::invalid(
                "message",
                "only an assistant's answer can be rated",
            ));
        }
        let feedback = tx
            .messages()
            .put_feedback(message_id, owner, rating, comment, now)
            .await?;
        tx.commit().await?;
        Ok(feedback)
    }
}

plainly_soft_deletable!(Conversations: conversations, ConversationId, Conversation, Conversation);

fn validate_title(title: &str) -> Result<String, Error> {
    let mut v = Validator::new();
    let title = v.check("title", values::bounded_text(title.trim(), MAX_TITLE));
    v.finish()?;
    title.ok_or_else(|| Error::internal("validator passed with a missing field"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::testing::{FakeTx, admin, fixed_clock, member_key_read, store_with};

    fn conversation(owner: Owner) -> Conversation {
        let now = chrono::Utc::now();
        Conversation {
            id: ConversationId::new(),
            tenant_id: TenantId::new(),
            agent_id: AgentId::new(),
            title: String::new(),
            owner,
            last_active_at: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            deleted_by: None,
        }
    }

    #[tokio::test]
    async fn a_member_key_does_not_see_another_owners_conversation() {
        let who = member_key_read();
        let tenant = who.tenant_with(Scope::Read).unwrap();
        let mut tx = FakeTx::new(tenant);
        let someone_else = conversation(Owner::ApiKey(crate::ApiKeyId::new()));
        tx.conversations
            .expect_get()
            .returning(move |_, _| Ok(Some(someone_else.clone())));
        tx.messages.expect_list().never();
        let (store, _) = store_with(tx);
        let service = ConversationService::new(store, fixed_clock());
        let err = service
            .messages(&who, ConversationId::new(), MessageView::Branch)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound(Resource::Conversation)));
    }

    #[tokio::test]
    async fn an_admin_sees_every_conversation_of_the_tenant() {
        let who = admin();
        assert_eq!(visible_owner(&who).unwrap(), None);
        let tenant = who.tenant_with(Scope::Read).unwrap();
        let mut tx = FakeTx::new(tenant);
        let someone_else = conversation(Owner::User(crate::UserId::new()));
        tx.conversations
            .expect_get()
            .returning(move |_, _| Ok(Some(someone_else.clone())));
        let (store, _) = store_with(tx);
        let service = ConversationService::new(store, fixed_clock());
        service.get(&who, ConversationId::new()).await.unwrap();
    }

    #[tokio::test]
    async fn titles_are_bounded() {
        let (store, _) = store_with(FakeTx::new(TenantId::new()));
        let service = ConversationService::new(store, fixed_clock());
        let err = service
            .create(&admin(), AgentId::new(), Some("x".repeat(201)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Validation(_)));
    }
}
