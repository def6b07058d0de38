//! Messages to a ChatML prompt, SmolLM2's chat template:
//! `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then `<|im_start|>assistant\n`.
//!
//! Like the template shipped in the GGUF header, a conversation that does not open with a
//! system message gets SmolLM2's default one. The local model takes no tools: a tool result
//! is a user message that says so, and the tool calls of assistant messages are left out.

use domain::ports::{ChatMessage, ChatRole};

use crate::tokenizer::GgufTokenizer;

/// The system message of SmolLM2's own chat template, for conversations without one.
const DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// What precedes a tool result, which the model sees as a user message.
const TOOL_RESULT: &str = "Result of a tool call:\n";

/// A piece of a ChatML prompt.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    /// `<|im_start|>`
    Start,
    /// `<|im_end|>`
    End,
    /// Text, encoded as text (marker text in it is not a marker).
    Text(String),
}

/// The prompt for `messages`, in order, ready for the assistant's answer.
fn pieces(messages: &[ChatMessage]) -> Vec<Piece> {
    let mut pieces = Vec::with_capacity(3 * messages.len() + 5);
    let mut turn = |role: &str, content: &str| {
        pieces.push(Piece::Start);
        pieces.push(Piece::Text(format!("{role}\n{content}")));
        pieces.push(Piece::End);
        pieces.push(Piece::Text("\n".to_owned()));
    };
    if messages.first().is_none_or(|m| m.role != ChatRole::System) {
        turn("system", DEFAULT_SYSTEM);
    }
    for message in messages {
        match message.role {
            ChatRole::System => turn("system", &message.content),
            ChatRole::User => turn("user", &message.content),
            ChatRole::Assistant => turn("assistant", &message.content),
            ChatRole::Tool => turn("user", &format!("{TOOL_RESULT}{}", message.content)),
        }
    }
    pieces.push(Piece::Start);
    pieces.push(Piece::Text("assistant\n".to_owned()));
    pieces
}

/// The prompt's tokens.
pub(crate) fn prompt_tokens(
    tokenizer: &GgufTokenizer,
    messages: &[ChatMessage],
) -> Result<Vec<u32>, tokenizers::Error> {
    let mut ids = Vec::new();
    for piece in pieces(messages) {
        match piece {
            Piece::Start => ids.push(tokenizer.im_start()),
            Piece::End => ids.push(tokenizer.im_end()),
            Piece::Text(text) => ids.extend(tokenizer.encode(&text)?),
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use domain::ports::ToolCall;

    use super::*;

    fn chatml(messages: &[ChatMessage]) -> String {
        pieces(messages)
            .into_iter()
            .map(|piece| match piece {
                Piece::Start => "<|im_start|>".to_owned(),
                Piece::End => "<|im_end|>".to_owned(),
                Piece::Text(text) => text,
            })
            .collect()
    }

    #[test]
    fn messages_become_chatml_turns_then_the_assistant_s_opening() {
        let messages = [
            ChatMessage::new(ChatRole::System, "Be brief."),
            ChatMessage::new(ChatRole::User, "Hi"),
            ChatMessage::new(ChatRole::Assistant, "Hello!"),
            ChatMessage::new(ChatRole::User, "Bye"),
        ];
        assert_eq!(
            chatml(&messages),
            "<|im_start|>system\nBe brief.<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\nHello!<|im_end|>\n\
             <|im_start|>user\nBye<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn a_conversation_without_a_system_message_gets_the_default_one() {
        let messages = [ChatMessage::new(ChatRole::User, "Hi")];
        assert_eq!(
            chatml(&messages),
            format!(
                "<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n\
                 <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
            )
        );
        assert!(chatml(&[]).starts_with("<|im_start|>system\n"));
    }

    #[test]
    fn tool_results_are_user_messages_and_tool_calls_are_left_out() {
        let mut call = ChatMessage::new(ChatRole::Assistant, "Looking it up.");
        call.tool_calls.push(ToolCall {
            id: "call_1".into(),
            name: "search".into(),
            arguments: "{}".into(),
        });
        let mut result = ChatMessage::new(ChatRole::Tool, "Paris");
        result.tool_call_id = Some("call_1".into());
        let messages = [ChatMessage::new(ChatRole::System, "S"), call, result];
        assert_eq!(
            chatml(&messages),
            "<|im_start|>system\nS<|im_end|>\n\
             <|im_start|>assistant\nLooking it up.<|im_end|>\n\
             <|im_start|>user\nResult of a tool call:\nParis<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn the_prompt_s_markers_are_single_tokens_and_typed_markers_are_text() {
        let tokenizer = crate::test_model::tokenizer();
        let messages = [
            ChatMessage::new(ChatRole::System, "S"),
            ChatMessage::new(ChatRole::User, "<|im_end|>"),
        ];
        let ids = prompt_tokens(&tokenizer, &messages).expect("encodes");
        let starts = ids.iter().filter(|&&id| id == tokenizer.im_start()).count();
        let ends = ids.iter().filter(|&&id| id == tokenizer.im_end()).count();
        assert_eq!((starts, ends), (3, 2));
    }
}
