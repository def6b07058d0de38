//! How many times a model may call tools in one run, and the breaker that stops it calling the
//! same tool with the same arguments again (small models loop on tool calls: the second
//! identical call would get the identical result, so it is refused and the model must answer).

use std::collections::HashSet;

/// Tool rounds of one run.
#[derive(Debug)]
pub struct ToolRounds {
    max_rounds: u32,
    rounds: u32,
    seen: HashSet<(String, String)>,
}

/// Whether a tool call may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Run,
    /// The same tool was called with the same arguments earlier in the run.
    Repeated,
}

impl ToolRounds {
    /// The default bound on rounds of tool calls in one run.
    pub const DEFAULT_MAX_ROUNDS: u32 = 4;

    #[must_use]
    pub fn new(max_rounds: u32) -> Self {
        Self {
            max_rounds,
            rounds: 0,
            seen: HashSet::new(),
        }
    }

    /// Counts a model turn that asks for tools; `false` once the run has had its rounds (the
    /// model must then answer without tools).
    pub fn next_round(&mut self) -> bool {
        if self.rounds >= self.max_rounds {
            return false;
        }
        self.rounds += 1;
        true
    }

    /// Rounds still allowed.
    #[must_use]
    pub const fn remaining(&self) -> u32 {
        self.max_rounds.saturating_sub(self.rounds)
    }

    /// Whether `name` may run with `arguments` (JSON text as the model wrote it). Arguments are
    /// compared as JSON values, so key order and spacing do not make a call new.
    pub fn admit(&mut self, name: &str, arguments: &str) -> Admission {
        let canonical = serde_json::from_str::<serde_json::Value>(arguments)
            .map_or_else(|_| arguments.trim().to_owned(), |v| canonical(&v));
        if self.seen.insert((name.to_owned(), canonical)) {
            Admission::Run
        } else {
            Admission::Repeated
        }
    }
}

/// JSON text with object keys sorted at every depth.
fn canonical(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        serde_json::Value::String(k.clone()),
                        canonical(&map[k])
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_are_bounded() {
        let mut rounds = ToolRounds::new(ToolRounds::DEFAULT_MAX_ROUNDS);
        for _ in 0..4 {
            assert!(rounds.next_round());
        }
        assert!(!rounds.next_round());
        assert!(!ToolRounds::new(0).next_round());
    }

    #[test]
    fn an_identical_call_is_refused_however_it_is_written() {
        let mut rounds = ToolRounds::new(4);
        let search = "knowledge_search";
        assert_eq!(
            rounds.admit(search, r#"{"query":"leave","top_k":3}"#),
            Admission::Run
        );
        assert_eq!(
            rounds.admit(search, r#"{ "top_k": 3, "query": "leave" }"#),
            Admission::Repeated
        );
        // Other arguments, or another tool with the same arguments, are new calls.
        assert_eq!(
            rounds.admit(search, r#"{"query":"pay","top_k":3}"#),
            Admission::Run
        );
        assert_eq!(
            rounds.admit("other", r#"{"query":"leave","top_k":3}"#),
            Admission::Run
        );
        // Nested objects are compared by value too; text that is not JSON, as written.
        assert_eq!(
            rounds.admit(search, r#"{"f":{"b":1,"a":[{"y":2,"x":1}]}}"#),
            Admission::Run
        );
        assert_eq!(
            rounds.admit(search, r#"{"f":{"a":[{"x":1,"y":2}],"b":1}}"#),
            Admission::Repeated
        );
        assert_eq!(rounds.admit(search, "not json"), Admission::Run);
        assert_eq!(rounds.admit(search, " not json "), Admission::Repeated);
    }
}
