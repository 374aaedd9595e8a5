//! Splitting a buffer into tagged messages: one tag byte, a 4-byte length
//! that counts itself, then the body. The length is checked against the
//! caller's bound before the body is looked at.

/// A whole message found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub tag: u8,
    pub body: &'a [u8],
    /// The whole message as it stands in the buffer, tag and length
    /// included (what is forwarded or kept as it is).
    pub raw: &'a [u8],
}

impl Frame<'_> {
    /// Bytes the message takes in the buffer (tag included).
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Never true: a message has at least its five header bytes.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message '{}' declares an invalid length {declared}", *tag as char)]
    BadLength { tag: u8, declared: u32 },
    #[error("message '{}' declares {declared} bytes, more than the {max} accepted here", *tag as char)]
    TooLong { tag: u8, declared: u32, max: usize },
}

/// Header size: tag plus length.
pub const HEADER_LEN: usize = 5;

/// Check a header and return the body length it declares.
pub fn body_len(tag: u8, declared: u32, max_body: usize) -> Result<usize, FrameError> {
    if declared < 4 {
        return Err(FrameError::BadLength { tag, declared });
    }
    let body = (declared - 4) as usize;
    if body > max_body {
        return Err(FrameError::TooLong { tag, declared, max: max_body });
    }
    Ok(body)
}

/// The first whole message of `buf`, `Ok(None)` if it is not all there yet.
pub fn split(buf: &[u8], max_body: usize) -> Result<Option<Frame<'_>>, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else { return Ok(None) };
    let tag = header[0];
    let declared = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let body = body_len(tag, declared, max_body)?;
    let len = HEADER_LEN + body;
    Ok(buf.get(..len).map(|raw| Frame { tag, body: &raw[HEADER_LEN..], raw }))
}

/// Reads NUL-terminated strings and big-endian integers out of a body.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        Reader { rest: body }
    }

    pub fn i32(&mut self) -> Option<i32> {
        let (head, rest) = self.rest.split_first_chunk::<4>()?;
        self.rest = rest;
        Some(i32::from_be_bytes(*head))
    }

    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    pub fn cstr(&mut self) -> Option<&'a [u8]> {
        let nul = self.rest.iter().position(|&b| b == 0)?;
        let s = &self.rest[..nul];
        self.rest = &self.rest[nul + 1..];
        Some(s)
    }

    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_bounds() {
        let msg = [b'Z', 0, 0, 0, 5, b'I', b'X'];
        let f = split(&msg, 100).expect("ok").expect("whole");
        assert_eq!((f.tag, f.body, f.len(), f.raw), (b'Z', &b"I"[..], 6, &msg[..6]));
        assert_eq!(split(&msg[..5], 100), Ok(None));
        assert_eq!(split(&[b'Q', 0, 0, 0, 3], 100), Err(FrameError::BadLength { tag: b'Q', declared: 3 }));
        assert!(matches!(split(&[b'Q', 0xff, 0xff, 0xff, 0xff], 100), Err(FrameError::TooLong { .. })));
    }

    #[test]
    fn reader() {
        let mut r = Reader::new(b"ab\0\0\0\0\x07");
        assert_eq!(r.cstr(), Some(&b"ab"[..]));
        assert_eq!(r.i32(), Some(7));
        assert_eq!(r.u8(), None);
    }
}
