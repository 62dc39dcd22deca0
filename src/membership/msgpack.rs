//! The msgpack subset memberlist uses, written exactly as Go's go-msgpack emits it (legacy raw
//! strings and byte slices, smallest unsigned encodings) and read leniently (any int width, str8
//! and bin, unknown keys skipped). The reader never allocates: it hands out slices of its input.

use super::wire::WireError;

/// Appends msgpack values to a buffer.
pub(crate) struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { out }
    }

    /// Map header; memberlist's structs have at most 8 fields, so fixmap covers them.
    pub(crate) fn map(&mut self, len: u8) {
        debug_assert!(len < 16);
        self.out.push(0x80 | (len & 0x0f));
    }

    /// A string or byte slice as legacy raw (what go-msgpack writes for both).
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        if n < 32 {
            self.out.push(0xa0 | n as u8);
        } else if let Ok(n) = u16::try_from(n) {
            self.out.push(0xda);
            self.out.extend_from_slice(&n.to_be_bytes());
        } else {
            // Our own messages are bounded far below 4 GiB (meta <= 512 bytes, names short).
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            self.out.push(0xdb);
            self.out.extend_from_slice(&n.to_be_bytes());
        }
        self.out.extend_from_slice(bytes);
    }

    /// A map key or field: `raw` under its Go field name.
    pub(crate) fn key(&mut self, name: &str) {
        self.raw(name.as_bytes());
    }

    /// A Go unsigned integer (uint8..uint64).
    pub(crate) fn uint(&mut self, v: u64) {
        if v < 0x80 {
            self.out.push(v as u8);
        } else if let Ok(v) = u8::try_from(v) {
            self.out.extend_from_slice(&[0xcc, v]);
        } else if let Ok(v) = u16::try_from(v) {
            self.out.push(0xcd);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else if let Ok(v) = u32::try_from(v) {
            self.out.push(0xce);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else {
            self.out.push(0xcf);
            self.out.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// A non-negative Go `int`: go-msgpack writes values above 127 as the signed types d1/d2/d3.
    pub(crate) fn int(&mut self, v: u64) {
        if v < 0x80 {
            self.out.push(v as u8);
        } else if let Ok(v) = i16::try_from(v) {
            self.out.push(0xd1);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else if let Ok(v) = i32::try_from(v) {
            self.out.push(0xd2);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else {
            self.out.push(0xd3);
            self.out
                .extend_from_slice(&i64::try_from(v).unwrap_or(i64::MAX).to_be_bytes());
        }
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.out.push(if v { 0xc3 } else { 0xc2 });
    }

    pub(crate) fn nil(&mut self) {
        self.out.push(0xc0);
    }

    /// A Go `[]byte` that is nil when empty (how memberlist's Meta and Payload fields look).
    pub(crate) fn bytes_or_nil(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            self.nil();
        } else {
            self.raw(bytes);
        }
    }
}

/// Reads msgpack values from a slice; every length is checked against the remaining input.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn err(what: &str) -> WireError {
    WireError::Msgpack(what.to_string())
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The input not yet consumed.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn peek(&self) -> Result<u8, WireError> {
        self.buf.get(self.pos).copied().ok_or(WireError::Truncated)
    }

    fn be(&mut self, n: usize) -> Result<u64, WireError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// A length that must fit in what is left of the input (each element takes >= 1 byte).
    fn len_checked(&self, n: u64, per_item: u64) -> Result<usize, WireError> {
        let remaining = (self.buf.len() - self.pos.min(self.buf.len())) as u64;
        match n.checked_mul(per_item) {
            Some(need) if need <= remaining => Ok(n as usize),
            _ => Err(WireError::Truncated),
        }
    }

    /// A map header; its entry count is bounded by the remaining input.
    pub(crate) fn map(&mut self) -> Result<usize, WireError> {
        let n = match self.byte()? {
            t @ 0x80..=0x8f => u64::from(t & 0x0f),
            0xde => self.be(2)?,
            0xdf => self.be(4)?,
            t => {
                return Err(WireError::Msgpack(format!(
                    "expected a map, found 0x{t:02x}"
                )))
            }
        };
        self.len_checked(n, 2)
    }

    /// A string, raw, or bin value; nil reads as `None`.
    pub(crate) fn bytes_or_nil(&mut self) -> Result<Option<&'a [u8]>, WireError> {
        let n = match self.byte()? {
            0xc0 => return Ok(None),
            t @ 0xa0..=0xbf => u64::from(t & 0x1f),
            0xd9 | 0xc4 => self.be(1)?,
            0xda | 0xc5 => self.be(2)?,
            0xdb | 0xc6 => self.be(4)?,
            t => {
                return Err(WireError::Msgpack(format!(
                    "expected a string or bytes, found 0x{t:02x}"
                )))
            }
        };
        let n = self.len_checked(n, 1)?;
        self.take(n).map(Some)
    }

    /// Bytes where nil means empty (Go decodes nil into an empty slice).
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        Ok(self.bytes_or_nil()?.unwrap_or(&[]))
    }

    /// A UTF-8 string (Go strings are raw bytes; ours must be valid UTF-8).
    pub(crate) fn string(&mut self) -> Result<String, WireError> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| err("string is not valid UTF-8"))
    }

    /// Any integer encoding; negative values are errors (every field we read is unsigned).
    pub(crate) fn uint(&mut self) -> Result<u64, WireError> {
        let t = self.byte()?;
        let v: i128 = match t {
            0x00..=0x7f => i128::from(t),
            0xe0..=0xff => i128::from(t as i8),
            0xc0 => 0,
            0xcc => i128::from(self.be(1)?),
            0xcd => i128::from(self.be(2)?),
            0xce => i128::from(self.be(4)?),
            0xcf => i128::from(self.be(8)?),
            0xd0 => i128::from(self.be(1)? as u8 as i8),
            0xd1 => i128::from(self.be(2)? as u16 as i16),
            0xd2 => i128::from(self.be(4)? as u32 as i32),
            0xd3 => i128::from(self.be(8)? as i64),
            t => {
                return Err(WireError::Msgpack(format!(
                    "expected an integer, found 0x{t:02x}"
                )))
            }
        };
        u64::try_from(v).map_err(|_| err("negative integer"))
    }

    /// An unsigned integer that must fit the Go field's width.
    pub(crate) fn uint_max(&mut self, max: u64) -> Result<u64, WireError> {
        let v = self.uint()?;
        if v > max {
            return Err(WireError::Msgpack(format!(
                "integer {v} overflows its field"
            )));
        }
        Ok(v)
    }

    pub(crate) fn bool(&mut self) -> Result<bool, WireError> {
        match self.byte()? {
            0xc2 | 0xc0 => Ok(false),
            0xc3 => Ok(true),
            t => Err(WireError::Msgpack(format!(
                "expected a bool, found 0x{t:02x}"
            ))),
        }
    }

    /// Skips one complete value of any type, iteratively (no recursion to exhaust the stack).
    pub(crate) fn skip(&mut self) -> Result<(), WireError> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let t = self.peek()?;
            let (len, items) = match t {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
                0x80..=0x8f => (0, u64::from(t & 0x0f) * 2),
                0x90..=0x9f => (0, u64::from(t & 0x0f)),
                0xa0..=0xbf => (u64::from(t & 0x1f), 0),
                0xcc | 0xd0 => (1, 0),
                0xcd | 0xd1 | 0xd4 => (2, 0),
                0xd5 => (3, 0),
                0xce | 0xd2 | 0xca => (4, 0),
                0xd6 => (5, 0),
                0xcf | 0xd3 | 0xcb => (8, 0),
                0xd7 => (9, 0),
                0xd8 => (17, 0),
                _ => {
                    // Types with a length prefix: read it after the type byte.
                    self.pos += 1;
                    let (len, items) = match t {
                        0xc4 | 0xd9 => (self.be(1)?, 0),
                        0xc5 | 0xda => (self.be(2)?, 0),
                        0xc6 | 0xdb => (self.be(4)?, 0),
                        0xc7 => (self.be(1)? + 1, 0),
                        0xc8 => (self.be(2)? + 1, 0),
                        0xc9 => (self.be(4)? + 1, 0),
                        0xdc => (0, self.be(2)?),
                        0xdd => (0, self.be(4)?),
                        0xde => (0, self.be(2)? * 2),
                        0xdf => (0, self.be(4)? * 2),
                        t => return Err(WireError::Msgpack(format!("invalid type 0x{t:02x}"))),
                    };
                    let len = self.len_checked(len, 1)?;
                    self.len_checked(items, 1)?;
                    self.take(len)?;
                    pending += items;
                    continue;
                }
            };
            self.pos += 1;
            let len = self.len_checked(len, 1)?;
            self.len_checked(items, 1)?;
            self.take(len)?;
            pending += items;
        }
        Ok(())
    }
}

/// Writes a Go struct's fields in go-msgpack's order (alphabetical by field name), leaving out
/// `omitempty` fields that are empty.
pub(crate) struct Fields<'a> {
    w: Writer<'a>,
}

impl<'a> Fields<'a> {
    pub(crate) fn start(out: &'a mut Vec<u8>, count: usize) -> Self {
        let mut w = Writer::new(out);
        w.map(count as u8);
        Fields { w }
    }
    pub(crate) fn raw(&mut self, name: &str, v: &[u8]) -> &mut Self {
        self.w.key(name);
        self.w.raw(v);
        self
    }
    pub(crate) fn bytes_or_nil(&mut self, name: &str, v: &[u8]) -> &mut Self {
        self.w.key(name);
        self.w.bytes_or_nil(v);
        self
    }
    pub(crate) fn uint(&mut self, name: &str, v: u64) -> &mut Self {
        self.w.key(name);
        self.w.uint(v);
        self
    }
    pub(crate) fn int(&mut self, name: &str, v: u64) -> &mut Self {
        self.w.key(name);
        self.w.int(v);
        self
    }
    pub(crate) fn bool(&mut self, name: &str, v: bool) -> &mut Self {
        self.w.key(name);
        self.w.bool(v);
        self
    }
}

/// Calls `field(name, reader)` for each map entry; entries it does not take (returns false)
/// are skipped, as Go skips unknown fields.
pub(crate) fn read_fields<'a>(
    r: &mut Reader<'a>,
    mut field: impl FnMut(&[u8], &mut Reader<'a>) -> Result<bool, WireError>,
) -> Result<(), WireError> {
    for _ in 0..r.map()? {
        let name = r.bytes()?;
        if !field(name, r)? {
            r.skip()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut Writer::new(&mut out));
        out
    }

    #[test]
    fn uint_uses_the_smallest_unsigned_encoding() {
        assert_eq!(written(|w| w.uint(5)), [0x05]);
        assert_eq!(written(|w| w.uint(200)), [0xcc, 200]);
        assert_eq!(written(|w| w.uint(7946)), [0xcd, 0x1f, 0x0a]);
        assert_eq!(written(|w| w.uint(70000)), [0xce, 0, 1, 0x11, 0x70]);
        assert_eq!(written(|w| w.uint(1 << 40)), [0xcf, 0, 0, 1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn go_int_above_127_is_signed() {
        assert_eq!(written(|w| w.int(2)), [0x02]);
        assert_eq!(written(|w| w.int(300)), [0xd1, 0x01, 0x2c]);
        assert_eq!(written(|w| w.int(40000)), [0xd2, 0, 0, 0x9c, 0x40]);
    }

    #[test]
    fn raw_lengths() {
        assert_eq!(written(|w| w.raw(b"abc")), b"\xa3abc");
        let long = vec![7u8; 124];
        let out = written(|w| w.raw(&long));
        assert_eq!(&out[..3], [0xda, 0x00, 124]);
        assert_eq!(out.len(), 127);
        assert_eq!(written(|w| w.bytes_or_nil(&[])), [0xc0]);
    }

    #[test]
    fn reader_accepts_every_int_width_and_str8_bin() {
        for enc in [
            &[0x2a][..],
            &[0xcc, 42],
            &[0xcd, 0, 42],
            &[0xce, 0, 0, 0, 42],
            &[0xcf, 0, 0, 0, 0, 0, 0, 0, 42],
            &[0xd0, 42],
            &[0xd1, 0, 42],
            &[0xd2, 0, 0, 0, 42],
            &[0xd3, 0, 0, 0, 0, 0, 0, 0, 42],
        ] {
            assert_eq!(Reader::new(enc).uint().ok(), Some(42), "{enc:02x?}");
        }
        assert_eq!(
            Reader::new(&[0xff]).uint().map_err(|e| e.kind()),
            Err("msgpack")
        );
        for enc in [
            &b"\xd9\x02hi"[..],
            b"\xc4\x02hi",
            b"\xc5\x00\x02hi",
            b"\xa2hi",
        ] {
            assert_eq!(Reader::new(enc).bytes().ok(), Some(&b"hi"[..]));
        }
    }

    #[test]
    fn reader_bounds_lengths_by_the_input() {
        let huge = [0xdb, 0xff, 0xff, 0xff, 0xff, 0x00];
        assert_eq!(
            Reader::new(&huge).bytes().map_err(|e| e.kind()),
            Err("truncated")
        );
        let map = [0xdf, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            Reader::new(&map).map().map_err(|e| e.kind()),
            Err("truncated")
        );
        let arr = [0xdd, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(
            Reader::new(&arr).skip().map_err(|e| e.kind()),
            Err("truncated")
        );
    }

    #[test]
    fn skip_walks_nested_values() {
        // {"a": [1, {"b": "xyz"}, 1.5f64], "c": nil} followed by a marker byte.
        let v = b"\x82\xa1a\x93\x01\x81\xa1b\xa3xyz\xcb\x3f\xf8\0\0\0\0\0\0\xa1c\xc0\x7f";
        let mut r = Reader::new(v);
        r.skip().expect("valid value");
        assert_eq!(r.rest(), [0x7f]);
    }
}
