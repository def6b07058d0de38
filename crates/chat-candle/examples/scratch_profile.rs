// Temporary: one short greedy answer, for callgrind.
use chat_candle::{LocalChatModel, LocalChatOptions};
use domain::ports::{ChatDelta, ChatMessage, ChatModel, ChatRequest, ChatRole};
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let path = std::env::args().nth(1).unwrap();
    let n: u32 = std::env::args().nth(2).unwrap().parse().unwrap();
    let model = LocalChatModel::load(path.as_ref(), LocalChatOptions::default()).unwrap();
    let t = std::time::Instant::now();
    let request = ChatRequest {
        messages: vec![ChatMessage::new(
            ChatRole::User,
            "Write a short story about a lighthouse keeper who finds a message in a bottle.",
        )],
        temperature: 0.0,
        max_tokens: n,
        tools: vec![],
    };
    let mut s = model.stream(request).await.unwrap();
    let mut first = None;
    while let Some(d) = s.next().await {
        if first.is_none() {
            first = Some(t.elapsed());
        }
        if let Ok(ChatDelta::Usage(u)) = d {
            eprintln!("{u:?} first {:?} total {:?}", first, t.elapsed());
        }
    }
}
