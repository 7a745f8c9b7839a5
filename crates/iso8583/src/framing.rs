//! The transport framing: every message is preceded by its length as a 2-byte unsigned big-endian number. A
//! length of 0 is a keep-alive. Splitting frames is separate from I/O: give it what has been read so far.

/// Bytes of the length prefix.
pub const PREFIX_BYTES: usize = 2;

/// What the start of a buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Not enough bytes yet for a whole frame: read more. This is a normal outcome, not an error.
    Incomplete,
    /// A zero-length keep-alive; drop `consumed` bytes.
    KeepAlive { consumed: usize },
    /// A whole message; drop `consumed` bytes after handling it.
    Message { body: &'a [u8], consumed: usize },
    /// The prefix announces more than `max` bytes: close the connection.
    TooLarge { length: usize },
}

/// The first frame of `buffer`, for messages of at most `max` bytes.
pub fn next_frame(buffer: &[u8], max: usize) -> Frame<'_> {
    let Some(prefix) = buffer.get(..PREFIX_BYTES) else { return Frame::Incomplete };
    let length = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    if length == 0 {
        return Frame::KeepAlive { consumed: PREFIX_BYTES };
    }
    if length > max {
        return Frame::TooLarge { length };
    }
    match buffer.get(PREFIX_BYTES..PREFIX_BYTES + length) {
        Some(body) => Frame::Message { body, consumed: PREFIX_BYTES + length },
        None => Frame::Incomplete,
    }
}

/// `body` with its length prefix, or `None` if it is longer than 65,535 bytes.
pub fn frame(body: &[u8]) -> Option<Vec<u8>> {
    let length = u16::try_from(body.len()).ok()?;
    let mut out = Vec::with_capacity(PREFIX_BYTES + body.len());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_keep_alives_and_partial_reads() {
        let mut buffer = frame(b"0800").expect("small");
        buffer.extend_from_slice(&[0, 0]);
        buffer.extend_from_slice(&frame(b"08").expect("small")[..3]);
        assert_eq!(next_frame(&buffer, 4096), Frame::Message { body: b"0800", consumed: 6 });
        assert_eq!(next_frame(&buffer[6..], 4096), Frame::KeepAlive { consumed: 2 });
        assert_eq!(next_frame(&buffer[8..], 4096), Frame::Incomplete);
        assert_eq!(next_frame(&[0], 4096), Frame::Incomplete);
        assert_eq!(next_frame(&[0x10, 0x01], 4096), Frame::TooLarge { length: 4097 });
        assert_eq!(next_frame(&[0x10, 0x00], 4096), Frame::Incomplete, "exactly the limit is allowed");
    }
}
