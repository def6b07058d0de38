//! The conversation as a model sees it. Messages form a tree (each names its parent): an edit is
//! a sibling of the message it replaces, a regenerated answer a sibling of the answer. The
//! history of a turn is the path from the root to the message being answered, and of that path
//! the newest part that fits the model's context once the system prompt, the sources and room
//! for the answer are counted.

use std::collections::HashMap;

use crate::ids::MessageId;

/// A message as the tree knows it.
pub trait InTree {
    fn id(&self) -> MessageId;
    fn parent_id(&self) -> Option<MessageId>;
}

/// The path from the root to `leaf`, root first. `None` when `leaf` is not among `messages`, or
/// its ancestry leaves them or loops (which the store's constraints rule out; a broken tree is
/// refused rather than half-read).
#[must_use]
pub fn path_to<M: InTree>(messages: &[M], leaf: MessageId) -> Option<Vec<&M>> {
    let by_id: HashMap<MessageId, &M> = messages.iter().map(|m| (m.id(), m)).collect();
    let mut path = Vec::new();
    let mut at = Some(leaf);
    while let Some(id) = at {
        let message = by_id.get(&id)?;
        if path.len() == messages.len() {
            return None;
        }
        path.push(*message);
        at = message.parent_id();
    }
    path.reverse();
    Some(path)
}

/// The branch a conversation shows: the path to its newest leaf (`messages` in the order they
/// were created). The newest message is not always a leaf: a run that used tools writes its
/// tool messages after the answer it then moves under them.
#[must_use]
pub fn current_branch<M: InTree>(messages: &[M]) -> Vec<&M> {
    let parents: std::collections::HashSet<MessageId> =
        messages.iter().filter_map(InTree::parent_id).collect();
    messages
        .iter()
        .rev()
        .find(|m| !parents.contains(&m.id()))
        .and_then(|leaf| path_to(messages, leaf.id()))
        .unwrap_or_default()
}

/// What a turn's prompt may spend, in the model's tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The model's context window.
    pub context: usize,
    /// Kept for the retrieved sources.
    pub sources: usize,
    /// Kept for the answer (the agent's `max_tokens`).
    pub answer: usize,
}

/// The history split by the budget: what goes into the prompt, oldest first, and what does not.
#[derive(Debug, PartialEq)]
pub struct Fitted<'a, M> {
    pub kept: Vec<&'a M>,
    pub dropped: Vec<&'a M>,
}

/// Keeps the newest messages of `history` (oldest first) whose tokens fit beside the system
/// prompt, the question and the budget's reserves. The system prompt is always sent, so it is
/// always counted. What is kept is a contiguous newest part: once a message does not fit, no
/// older one is sent either, so the model never sees a conversation with a hole in it.
pub fn fit<'a, M>(
    history: &'a [M],
    tokens: impl Fn(&M) -> usize,
    system: usize,
    question: usize,
    budget: Budget,
) -> Fitted<'a, M> {
    let mut left = budget
        .context
        .saturating_sub(system)
        .saturating_sub(question)
        .saturating_sub(budget.sources)
        .saturating_sub(budget.answer);
    let mut split = history.len();
    for (index, message) in history.iter().enumerate().rev() {
        let cost = tokens(message);
        if cost > left {
            break;
        }
        left -= cost;
        split = index;
    }
    Fitted {
        kept: history[split..].iter().collect(),
        dropped: history[..split].iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct M {
        id: MessageId,
        parent: Option<MessageId>,
        tokens: usize,
    }

    impl InTree for M {
        fn id(&self) -> MessageId {
            self.id
        }
        fn parent_id(&self) -> Option<MessageId> {
            self.parent
        }
    }

    fn child(parent: Option<&M>, tokens: usize) -> M {
        M {
            id: MessageId::new(),
            parent: parent.map(|p| p.id),
            tokens,
        }
    }

    fn ids(path: &[&M]) -> Vec<MessageId> {
        path.iter().map(|m| m.id).collect()
    }

    #[test]
    fn an_edit_and_a_regeneration_start_branches_and_the_newest_shows() {
        // question 1 → answer 1 → question 2 → answer 2a; answer 2b regenerates 2a;
        // question 2' edits question 2 and gets answer 3.
        let q1 = child(None, 1);
        let a1 = child(Some(&q1), 1);
        let q2 = child(Some(&a1), 1);
        let a2a = child(Some(&q2), 1);
        let a2b = child(Some(&q2), 1);
        let q2_edit = child(Some(&a1), 1);
        let a3 = child(Some(&q2_edit), 1);
        let (q1_id, a1_id, q2_id, a2b_id, q2e_id, a3_id) =
            (q1.id, a1.id, q2.id, a2b.id, q2_edit.id, a3.id);
        let mut messages = vec![q1, a1, q2, a2a, a2b];
        assert_eq!(
            ids(&current_branch(&messages)),
            [q1_id, a1_id, q2_id, a2b_id]
        );
        messages.push(q2_edit);
        messages.push(a3);
        assert_eq!(
            ids(&current_branch(&messages)),
            [q1_id, a1_id, q2e_id, a3_id]
        );
        // The history of a regeneration of answer 2b is the path to its question.
        assert_eq!(
            ids(&path_to(&messages, q2_id).unwrap()),
            [q1_id, a1_id, q2_id]
        );
    }

    #[test]
    fn a_broken_or_looping_tree_is_refused() {
        let a = child(None, 1);
        let b = child(Some(&a), 1);
        assert!(path_to(&[b], MessageId::new()).is_none());
        let orphan = child(Some(&a), 1);
        assert!(path_to(std::slice::from_ref(&orphan), orphan.id).is_none());
        let x = MessageId::new();
        let y = MessageId::new();
        let looping = [
            M {
                id: x,
                parent: Some(y),
                tokens: 1,
            },
            M {
                id: y,
                parent: Some(x),
                tokens: 1,
            },
        ];
        assert!(path_to(&looping, x).is_none());
        assert!(current_branch::<M>(&[]).is_empty());
    }

    #[test]
    fn the_newest_messages_that_fit_are_kept_and_none_older_than_a_gap() {
        let history: Vec<M> = [5, 1, 30, 4, 3].iter().map(|t| child(None, *t)).collect();
        let budget = Budget {
            context: 100,
            sources: 40,
            answer: 20,
        };
        // 100 − 10 (system) − 20 (question) − 40 − 20 leaves 10: the 3 and the 4 fit, the 30
        // does not, so the 1 and the 5 before it go too.
        let fitted = fit(&history, |m| m.tokens, 10, 20, budget);
        assert_eq!(
            fitted.kept.iter().map(|m| m.tokens).collect::<Vec<_>>(),
            [4, 3]
        );
        assert_eq!(
            fitted.dropped.iter().map(|m| m.tokens).collect::<Vec<_>>(),
            [5, 1, 30]
        );
        // Everything fits in a larger window; nothing does when the fixed parts fill it.
        let wide = Budget {
            context: 1_000,
            ..budget
        };
        assert_eq!(fit(&history, |m| m.tokens, 10, 20, wide).dropped.len(), 0);
        let full = fit(&history, |m| m.tokens, 60, 50, budget);
        assert!(full.kept.is_empty());
        assert_eq!(full.dropped.len(), 5);
    }
}
