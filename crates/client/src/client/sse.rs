//! Server-sent events: frames separated by a blank line, each carrying
//! `data:` lines (job events and OpenAI chat chunks alike).

/// Bytes of an event stream not yet split into frames.
#[derive(Debug, Default)]
pub(crate) struct SseBuffer {
    buf: String,
}

impl SseBuffer {
    /// Appends a chunk as it came off the wire.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        self.buf.push_str(&String::from_utf8_lossy(chunk));
    }

    /// The data of the next complete frame (its `data:` lines joined by
    /// newlines, leading blanks trimmed), or `None` until one is complete.
    /// A frame without data (a keep-alive comment) yields an empty string.
    pub(crate) fn next_data(&mut self) -> Option<String> {
        let end = self.buf.find("\n\n")?;
        let frame: String = self.buf.drain(..end + 2).collect();
        Some(
            frame
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_at_blank_lines_across_chunks() {
        let mut b = SseBuffer::default();
        b.push(b"data: {\"a\":1}\n\n: keep-alive\n\ndata: [DO");
        assert_eq!(b.next_data().as_deref(), Some("{\"a\":1}"));
        assert_eq!(b.next_data().as_deref(), Some(""));
        assert_eq!(b.next_data(), None);
        b.push(b"NE]\n\n");
        assert_eq!(b.next_data().as_deref(), Some("[DONE]"));
        assert_eq!(b.next_data(), None);
    }
}
