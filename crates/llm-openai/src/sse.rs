//! A server-sent events decoder for answers we do not trust: bytes go in as they arrive, the
//! `data` of complete events comes out. Lines are bounded, so a server that never sends a line
//! break cannot make us buffer without end.
//!
//! Of the format (<https://html.spec.whatwg.org/multipage/server-sent-events.html>) it keeps
//! what OpenAI-compatible APIs use: `data` fields, joined by `\n` within one event; an empty
//! line ends an event. Comments (`:` lines) and other fields (`event`, `id`, `retry`) are
//! ignored. Lines end with `\n` or `\r\n` (a lone `\r` is not a line break here).

/// Why the bytes are not an event stream we accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SseError {
    /// A line, or the data of one event, is longer than the limit.
    #[error("an event-stream line or event is longer than {limit} bytes")]
    TooLong { limit: usize },
    /// A line is not UTF-8.
    #[error("an event-stream line is not valid UTF-8")]
    NotUtf8,
}

/// Splits a byte stream into events.
pub(crate) struct SseDecoder {
    /// Bytes received and not yet consumed; `buffer[start..]` is still to be read.
    buffer: Vec<u8>,
    start: usize,
    /// How far past `start` the buffer is known to hold no line break.
    scanned: usize,
    /// The data of the event being assembled, if it has a `data` field yet.
    data: Option<String>,
    /// Longest line, and longest data of one event, in bytes.
    limit: usize,
    /// No bytes will follow.
    ended: bool,
}

impl SseDecoder {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            buffer: Vec::new(),
            start: 0,
            scanned: 0,
            data: None,
            limit,
            ended: false,
        }
    }

    /// Appends bytes received.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Says that the stream has ended: an unfinished last line is dropped (it was cut), and an
    /// event whose closing empty line never came is still returned.
    pub(crate) fn end(&mut self) {
        self.ended = true;
    }

    /// The data of the next complete event, or `None` until more bytes arrive (or, after
    /// [`Self::end`], when there is nothing left).
    pub(crate) fn next_event(&mut self) -> Result<Option<String>, SseError> {
        loop {
            let unread = &self.buffer[self.start..];
            let Some(offset) = unread[self.scanned..]
                .iter()
                .position(|&byte| byte == b'\n')
            else {
                if unread.len() > self.limit {
                    return Err(SseError::TooLong { limit: self.limit });
                }
                self.scanned = unread.len();
                return Ok(if self.ended { self.data.take() } else { None });
            };
            let end = self.scanned + offset;
            let line = &unread[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > self.limit {
                return Err(SseError::TooLong { limit: self.limit });
            }
            let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
            let event = take_line(&mut self.data, self.limit, line)?;
            self.start += end + 1;
            self.scanned = 0;
            if event.is_some() {
                return Ok(event);
            }
        }
    }
}

/// Applies one line to the event being assembled (`data`); returns the event it completes, if
/// any.
fn take_line(
    data: &mut Option<String>,
    limit: usize,
    line: &str,
) -> Result<Option<String>, SseError> {
    if line.is_empty() {
        return Ok(data.take());
    }
    let (field, value) = line.split_once(':').unwrap_or((line, ""));
    if field != "data" {
        // A comment (empty field name) or a field we do not use.
        return Ok(None);
    }
    let value = value.strip_prefix(' ').unwrap_or(value);
    let mut joined = match data.take() {
        Some(mut joined) => {
            joined.push('\n');
            joined
        }
        None => String::new(),
    };
    if joined.len() + value.len() > limit {
        return Err(SseError::TooLong { limit });
    }
    joined.push_str(value);
    *data = Some(joined);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(decoder: &mut SseDecoder) -> Result<Vec<String>, SseError> {
        let mut events = Vec::new();
        while let Some(event) = decoder.next_event()? {
            events.push(event);
        }
        Ok(events)
    }

    #[test]
    fn events_are_split_on_empty_lines_whatever_the_chunking() {
        let stream =
            b"data: one\n\n: keep-alive\n\nevent: message\ndata: two\r\n\r\ndata:three\n\n";
        for chunk_size in 1..stream.len() {
            let mut decoder = SseDecoder::new(64);
            let mut seen = Vec::new();
            for chunk in stream.chunks(chunk_size) {
                decoder.push(chunk);
                seen.extend(events(&mut decoder).unwrap());
            }
            assert_eq!(seen, ["one", "two", "three"], "chunks of {chunk_size}");
        }
    }

    #[test]
    fn data_lines_of_one_event_are_joined() {
        let mut decoder = SseDecoder::new(64);
        decoder.push(b"data: a\ndata: b\nid: 7\n\n");
        assert_eq!(events(&mut decoder).unwrap(), ["a\nb"]);
    }

    #[test]
    fn at_the_end_a_cut_line_is_dropped_and_an_unclosed_event_kept() {
        let mut decoder = SseDecoder::new(64);
        decoder.push(b"data: whole\ndata: cu");
        assert_eq!(events(&mut decoder).unwrap(), Vec::<String>::new());
        decoder.end();
        assert_eq!(events(&mut decoder).unwrap(), ["whole"]);
        assert_eq!(decoder.next_event().unwrap(), None);
    }

    #[test]
    fn long_lines_and_events_are_refused() {
        let mut decoder = SseDecoder::new(8);
        decoder.push(b"data: 0123456789");
        assert_eq!(decoder.next_event(), Err(SseError::TooLong { limit: 8 }));

        let mut decoder = SseDecoder::new(8);
        decoder.push(b"data: 0123456789\n\n");
        assert_eq!(decoder.next_event(), Err(SseError::TooLong { limit: 8 }));

        let mut decoder = SseDecoder::new(8);
        decoder.push(b"data:12345\ndata:12345\n\n");
        assert_eq!(decoder.next_event(), Err(SseError::TooLong { limit: 8 }));
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let mut decoder = SseDecoder::new(64);
        decoder.push(b"data: \xff\n\n");
        assert_eq!(decoder.next_event(), Err(SseError::NotUtf8));
    }
}
