//! A small Go `encoding/gob` codec, by the spec (pkg.go.dev/encoding/gob), for one value per
//! stream as memberlist metadata carries.
//!
//! Reading: any type definitions (struct, slice, array, map, GobEncoder / BinaryMarshaler /
//! TextMarshaler), under whatever ids >= 64 the sender's process handed out, in any order, then
//! one struct value, decoded generically. Struct fields are named by the definitions, so the
//! caller picks them by name; numbers, arrays, maps and interfaces are read, checked and dropped,
//! as Go's decoder drops fields it has no destination for. Every count and length is checked
//! against the bytes left and nesting is limited, so hostile input costs time and memory linear
//! in its size.
//!
//! Writing: the primitives and the type definitions wesher's metadata needs.

use std::fmt;

/// Malformed gob input; the message names the byte offset or the part at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GobError(pub String);

impl fmt::Display for GobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, GobError> {
    Err(GobError(msg.into()))
}

// Predefined type ids.
pub const T_BOOL: i64 = 1;
pub const T_INT: i64 = 2;
pub const T_UINT: i64 = 3;
pub const T_FLOAT: i64 = 4;
pub const T_BYTES: i64 = 5;
pub const T_STRING: i64 = 6;
pub const T_COMPLEX: i64 = 7;
pub const T_INTERFACE: i64 = 8;
/// Ids below this are Go's own; a stream may define only ids from here on.
pub const FIRST_USER_ID: i64 = 64;

// Field numbers of gob's own `wireType` struct.
const WT_ARRAY: u64 = 0;
const WT_SLICE: u64 = 1;
const WT_STRUCT: u64 = 2;
const WT_MAP: u64 = 3;
const WT_GOB_ENCODER: u64 = 4;
const WT_BINARY_MARSHALER: u64 = 5;
const WT_TEXT_MARSHALER: u64 = 6;

/// Nesting limit for values: wesher's are 3 deep; this stops self-referencing types.
const MAX_DEPTH: usize = 32;
/// Type definitions accepted in one stream; lookups scan them, so this bounds the work per value.
const MAX_TYPES: usize = 128;

// ---- writing ---------------------------------------------------------------------------------

pub fn put_uint(out: &mut Vec<u8>, n: u64) {
    if n < 128 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = (n.leading_zeros() / 8) as usize;
        out.push((256 - (8 - skip)) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

pub fn put_int(out: &mut Vec<u8>, i: i64) {
    let u = if i < 0 {
        (!(i as u64) << 1) | 1
    } else {
        (i as u64) << 1
    };
    put_uint(out, u);
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// One gob message: length prefix then body.
pub fn put_message(out: &mut Vec<u8>, body: &[u8]) {
    put_uint(out, body.len() as u64);
    out.extend_from_slice(body);
}

/// The start of a type definition message body: `-id`, the wireType field, its `CommonType`.
fn type_def_head(wire_field: u64, id: i64, name: &str) -> Vec<u8> {
    let mut b = Vec::new();
    put_int(&mut b, -id);
    put_uint(&mut b, wire_field + 1);
    put_uint(&mut b, 1);
    put_uint(&mut b, 1);
    put_bytes(&mut b, name.as_bytes());
    put_uint(&mut b, 1);
    put_int(&mut b, id);
    b.push(0);
    b
}

pub fn struct_type_def(id: i64, name: &str, fields: &[(&str, i64)]) -> Vec<u8> {
    let mut b = type_def_head(WT_STRUCT, id, name);
    put_uint(&mut b, 1);
    put_uint(&mut b, fields.len() as u64);
    for (field, field_id) in fields {
        put_uint(&mut b, 1);
        put_bytes(&mut b, field.as_bytes());
        put_uint(&mut b, 1);
        put_int(&mut b, *field_id);
        b.push(0);
    }
    b.extend_from_slice(&[0, 0]);
    b
}

pub fn binary_marshaler_type_def(id: i64, name: &str) -> Vec<u8> {
    let mut b = type_def_head(WT_BINARY_MARSHALER, id, name);
    b.extend_from_slice(&[0, 0]);
    b
}

pub fn slice_type_def(id: i64, name: &str, elem: i64) -> Vec<u8> {
    let mut b = type_def_head(WT_SLICE, id, name);
    put_uint(&mut b, 1);
    put_int(&mut b, elem);
    b.extend_from_slice(&[0, 0]);
    b
}

// ---- reading ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum WireType {
    Struct(Vec<(String, i64)>),
    Slice(i64),
    Array(i64, u64),
    Map(i64, i64),
    /// GobEncoder, BinaryMarshaler or TextMarshaler: opaque bytes; the Go type name.
    Marshaled(Vec<u8>),
}

/// The type definitions a stream has made so far.
pub struct Types(Vec<(i64, WireType)>);

impl Types {
    fn get(&self, id: i64) -> Option<&WireType> {
        self.0.iter().find(|(i, _)| *i == id).map(|(_, t)| t)
    }

    /// The Go type name of a GobEncoder / BinaryMarshaler / TextMarshaler type (netip.Addr's is
    /// "Addr"); None for any other type.
    pub fn marshaled_name(&self, id: i64) -> Option<&[u8]> {
        match self.get(id) {
            Some(WireType::Marshaled(name)) => Some(name),
            _ => None,
        }
    }
}

/// A decoded value; what no caller can use is read, checked and dropped.
#[derive(Debug)]
pub enum Value {
    /// Numbers, arrays, maps and interfaces.
    Dropped,
    Bytes(Vec<u8>),
    /// Go strings are bytes, not necessarily UTF-8.
    Str(Vec<u8>),
    /// A GobEncoder / BinaryMarshaler / TextMarshaler value: its type id and bytes.
    Marshaled(i64, Vec<u8>),
    /// Fields present in the stream (gob omits zero values), in field order.
    Struct(Vec<(String, Value)>),
    /// Element type id and elements.
    Slice(i64, Vec<Value>),
}

/// Reads a stream one message at a time: reads stop at the end of the current message.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// End of the current message.
    end: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// Moves on to the next message, once the current one is used up.
    fn next_message(&mut self) -> Result<(), GobError> {
        self.end = self.buf.len();
        if self.pos == self.end {
            return self.fail("the stream ends before its value");
        }
        let len = self.uint()?;
        if len > self.remaining() as u64 {
            return self.fail(&format!("message of {len} bytes runs past the end"));
        }
        self.end = self.pos + len as usize;
        Ok(())
    }

    fn fail<T>(&self, what: &str) -> Result<T, GobError> {
        err(format!("{what} at byte {}", self.pos))
    }

    fn byte(&mut self) -> Result<u8, GobError> {
        let Some(&b) = self.buf[..self.end].get(self.pos) else {
            return self.fail("truncated");
        };
        self.pos += 1;
        Ok(b)
    }

    pub fn uint(&mut self) -> Result<u64, GobError> {
        let first = self.byte()?;
        if first < 128 {
            return Ok(u64::from(first));
        }
        let n = 256 - usize::from(first);
        if n > 8 {
            return self.fail(&format!("invalid integer length {n}"));
        }
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 8) | u64::from(self.byte()?);
        }
        Ok(v)
    }

    pub fn int(&mut self) -> Result<i64, GobError> {
        let u = self.uint()?;
        Ok(if u & 1 == 1 {
            !(u >> 1) as i64
        } else {
            (u >> 1) as i64
        })
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], GobError> {
        if n > self.remaining() as u64 {
            return self.fail(&format!("length {n} runs past the end"));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn bytes(&mut self) -> Result<Vec<u8>, GobError> {
        let n = self.uint()?;
        Ok(self.take(n)?.to_vec())
    }

    /// An element count; every element takes at least one byte, which bounds allocation.
    fn count(&mut self) -> Result<u64, GobError> {
        let n = self.uint()?;
        if n > self.remaining() as u64 {
            return self.fail(&format!("count {n} exceeds the remaining data"));
        }
        Ok(n)
    }

    /// Walks the fields of a struct value: calls `f` with each field number until the 0 end
    /// mark. Field numbers are delta-coded from -1.
    fn fields(
        &mut self,
        mut f: impl FnMut(&mut Self, u64) -> Result<(), GobError>,
    ) -> Result<(), GobError> {
        let mut field: u64 = 0;
        loop {
            let delta = self.uint()?;
            if delta == 0 {
                return Ok(());
            }
            field = match field.checked_add(delta) {
                Some(n) if n <= 1 << 16 => n,
                _ => return self.fail("field number overflow"),
            };
            f(self, field - 1)?;
        }
    }

    /// `CommonType{Name string, Id int}`: returns the name (the id repeats the message's).
    fn common_type(&mut self) -> Result<Vec<u8>, GobError> {
        let mut name = Vec::new();
        self.fields(|r, field| match field {
            0 => r.bytes().map(|b| name = b),
            1 => r.int().map(drop),
            _ => err(format!("unknown CommonType field {field}")),
        })?;
        Ok(name)
    }

    fn wire_type(&mut self) -> Result<WireType, GobError> {
        let mut found = None;
        self.fields(|r, field| {
            let t = match field {
                WT_ARRAY | WT_SLICE => {
                    let (mut elem, mut len) = (0, 0);
                    r.fields(|r, f| match f {
                        0 => r.common_type().map(drop),
                        1 => r.int().map(|id| elem = id),
                        2 if field == WT_ARRAY => r.int().map(|n| len = n),
                        _ => err(format!("unknown array/slice type field {f}")),
                    })?;
                    match (field, u64::try_from(len)) {
                        (WT_SLICE, _) => WireType::Slice(elem),
                        (_, Ok(len)) => WireType::Array(elem, len),
                        _ => return err(format!("array type of length {len}")),
                    }
                }
                WT_STRUCT => {
                    let mut fields = Vec::new();
                    r.fields(|r, f| match f {
                        0 => r.common_type().map(drop),
                        1 => {
                            for _ in 0..r.count()? {
                                let (mut name, mut id) = (Vec::new(), 0);
                                r.fields(|r, f| match f {
                                    0 => r.bytes().map(|b| name = b),
                                    1 => r.int().map(|v| id = v),
                                    _ => err(format!("unknown fieldType field {f}")),
                                })?;
                                let name = String::from_utf8(name)
                                    .map_err(|_| GobError("field name is not UTF-8".into()))?;
                                fields.push((name, id));
                            }
                            Ok(())
                        }
                        _ => err(format!("unknown structType field {f}")),
                    })?;
                    WireType::Struct(fields)
                }
                WT_MAP => {
                    let (mut key, mut elem) = (0, 0);
                    r.fields(|r, f| match f {
                        0 => r.common_type().map(drop),
                        1 => r.int().map(|id| key = id),
                        2 => r.int().map(|id| elem = id),
                        _ => err(format!("unknown mapType field {f}")),
                    })?;
                    WireType::Map(key, elem)
                }
                WT_GOB_ENCODER | WT_BINARY_MARSHALER | WT_TEXT_MARSHALER => {
                    let mut name = Vec::new();
                    r.fields(|r, f| match f {
                        0 => r.common_type().map(|n| name = n),
                        _ => err(format!("unknown gobEncoderType field {f}")),
                    })?;
                    WireType::Marshaled(name)
                }
                _ => return err(format!("unknown wireType field {field}")),
            };
            found = Some(t);
            Ok(())
        })?;
        found.ok_or_else(|| GobError("empty type definition".into()))
    }

    /// A type id, then the definition of that type when the id is negative (the message
    /// header, and the type sequence before an interface's value).
    fn type_id_or_def(&mut self, types: &mut Types) -> Result<Option<i64>, GobError> {
        let id = self.int()?;
        if id >= 0 {
            return Ok(Some(id));
        }
        let id = id.checked_neg().unwrap_or(i64::MAX);
        if id < FIRST_USER_ID || types.get(id).is_some() {
            return self.fail(&format!("type id {id} defined twice or reserved"));
        }
        if types.0.len() >= MAX_TYPES {
            return self.fail("too many type definitions");
        }
        let t = self.wire_type()?;
        types.0.push((id, t));
        Ok(None)
    }

    fn value(&mut self, types: &mut Types, id: i64, depth: usize) -> Result<Value, GobError> {
        if depth > MAX_DEPTH {
            return self.fail("values nested too deeply");
        }
        match id {
            T_BOOL | T_INT | T_UINT | T_FLOAT => self.uint().map(|_| Value::Dropped),
            T_COMPLEX => self
                .uint()
                .and_then(|_| self.uint())
                .map(|_| Value::Dropped),
            T_BYTES => self.bytes().map(Value::Bytes),
            T_STRING => self.bytes().map(Value::Str),
            T_INTERFACE => self.interface(types),
            _ => {
                let Some(idx) = types.0.iter().position(|(i, _)| *i == id) else {
                    return self.fail(&format!("undefined type id {id}"));
                };
                // Copied out, since interfaces inside may add types (only ever appended, so
                // `idx` stays valid).
                let (elem, key, len) = match &types.0[idx].1 {
                    WireType::Marshaled(_) => return self.bytes().map(|b| Value::Marshaled(id, b)),
                    WireType::Struct(_) => return self.struct_value(types, idx, depth),
                    WireType::Slice(elem) => (*elem, None, None),
                    WireType::Array(elem, len) => (*elem, None, Some(*len)),
                    WireType::Map(key, elem) => (*elem, Some(*key), None),
                };
                let n = self.count()?;
                if let Some(len) = len.filter(|len| *len != n) {
                    return self.fail(&format!("array of {n} elements, its type says {len}"));
                }
                let mut items = Vec::new();
                for _ in 0..n {
                    if let Some(key) = key {
                        self.value(types, key, depth + 1)?;
                    }
                    items.push(self.value(types, elem, depth + 1)?);
                }
                // Only slices are of use; arrays and maps are checked and dropped.
                Ok(match (key, len) {
                    (None, None) => Value::Slice(elem, items),
                    _ => Value::Dropped,
                })
            }
        }
    }

    fn struct_value(
        &mut self,
        types: &mut Types,
        idx: usize,
        depth: usize,
    ) -> Result<Value, GobError> {
        let mut out = Vec::new();
        self.fields(|r, f| {
            let field = match &types.0[idx].1 {
                WireType::Struct(fields) => fields.get(f as usize).cloned(),
                _ => None,
            };
            let Some((name, field_id)) = field else {
                return r.fail(&format!("field number {f} beyond the struct's fields"));
            };
            out.push((name, r.value(types, field_id, depth + 1)?));
            Ok(())
        })?;
        Ok(Value::Struct(out))
    }

    /// An interface value, dropped as Go drops one it has no destination for: the concrete
    /// type's name (empty for nil), the type sequence, then the value as a counted run of bytes.
    /// In the type sequence, a type Go had not sent before is defined inline: Go ends the
    /// message after the definition and goes on in the next one, or (in an interface nested in
    /// an interface) a count follows it, which is skipped.
    fn interface(&mut self, types: &mut Types) -> Result<Value, GobError> {
        let name = self.count()?;
        if name == 0 {
            return Ok(Value::Dropped);
        }
        self.take(name)?;
        loop {
            if self.remaining() == 0 {
                self.next_message()?;
            }
            if self.type_id_or_def(types)?.is_some() {
                break;
            }
            if self.remaining() > 0 {
                self.uint()?;
            }
        }
        let len = self.uint()?;
        self.take(len)?;
        Ok(Value::Dropped)
    }
}

/// Reads the type definition messages up to the first value message and decodes that value,
/// which must be a struct. Bytes after the value are not read.
pub fn decode_struct(bytes: &[u8]) -> Result<(Value, Types), GobError> {
    let mut r = Reader::new(bytes);
    r.end = 0;
    let mut types = Types(Vec::new());
    loop {
        r.next_message()?;
        if let Some(id) = r.type_id_or_def(&mut types)? {
            if !matches!(types.get(id), Some(WireType::Struct(_))) {
                return r.fail(&format!("value of type id {id} is not a defined struct"));
            }
            let value = r.value(&mut types, id, 0)?;
            if r.remaining() != 0 {
                return r.fail(&format!(
                    "{} unexpected bytes after the value",
                    r.remaining()
                ));
            }
            return Ok((value, types));
        }
        if r.remaining() != 0 {
            return r.fail("unexpected bytes after a type definition");
        }
    }
}

#[cfg(test)]
pub fn map_type_def(id: i64, key: i64, elem: i64) -> Vec<u8> {
    let mut b = type_def_head(WT_MAP, id, "map");
    for t in [key, elem] {
        put_uint(&mut b, 1);
        put_int(&mut b, t);
    }
    b.extend_from_slice(&[0, 0]);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uint_and_int_encoding() {
        let mut out = Vec::new();
        for n in [0u64, 127, 128, 256, u64::MAX] {
            put_uint(&mut out, n);
        }
        assert_eq!(
            out,
            [
                0, 0x7f, 0xff, 0x80, 0xfe, 1, 0, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff
            ]
        );
        let mut r = Reader::new(&out);
        for n in [0u64, 127, 128, 256, u64::MAX] {
            assert_eq!(r.uint().unwrap(), n);
        }
        let mut out = Vec::new();
        for i in [-65i64, 65, 0, -1, -64, i64::MIN, i64::MAX] {
            put_int(&mut out, i);
        }
        let mut r = Reader::new(&out);
        for i in [-65i64, 65, 0, -1, -64, i64::MIN, i64::MAX] {
            assert_eq!(r.int().unwrap(), i);
        }
        assert_eq!(out[..4], [0xff, 0x81, 0xff, 0x82]);
        // Nine length bytes cannot be.
        assert!(Reader::new(&[0xf7, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .uint()
            .is_err());
    }

    /// A stream: the given definitions, then a value of type `id` with body `value`.
    fn stream(defs: &[Vec<u8>], id: i64, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for d in defs {
            put_message(&mut out, d);
        }
        let mut v = Vec::new();
        put_int(&mut v, id);
        v.extend_from_slice(value);
        put_message(&mut out, &v);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Vec<(String, Value)>, String> {
        match decode_struct(bytes) {
            Ok((Value::Struct(fields), _)) => Ok(fields),
            Ok((v, _)) => Err(format!("not a struct: {v:?}")),
            Err(e) => Err(e.0),
        }
    }

    #[test]
    fn any_user_ids_in_any_order_reserved_ones_refused() {
        // Field types defined after the struct, ids far apart and above 127 (two-byte ints).
        for (s, a) in [(64, 65), (200, 64), (1000, 70_000)] {
            let defs = [
                struct_type_def(s, "T", &[("A", a), ("S", T_STRING)]),
                binary_marshaler_type_def(a, "Addr"),
            ];
            let fields = decode(&stream(&defs, s, &[1, 1, 9, 1, 1, b'x', 0])).unwrap();
            assert!(
                matches!(&fields[..], [(a, Value::Marshaled(_, b)), (s, Value::Str(x))]
                if a == "A" && s == "S" && b == &[9] && x == b"x")
            );
        }
        for id in [63, 1, 8] {
            let e = decode(&stream(&[struct_type_def(id, "T", &[])], id, &[0])).unwrap_err();
            assert!(
                e.contains(&format!("type id {id} defined twice or reserved")),
                "{e}"
            );
        }
        let def = struct_type_def(70, "T", &[]);
        let e = decode(&stream(&[def.clone(), def], 70, &[0])).unwrap_err();
        assert!(e.contains("type id 70 defined twice"), "{e}");
    }

    #[test]
    fn arrays_maps_interfaces_are_checked_and_dropped() {
        let mut array = type_def_head(WT_ARRAY, 66, "[2]int");
        array.extend_from_slice(&[1, 4, 1, 4, 0, 0]); // Elem int, Len 2
        let defs = [
            struct_type_def(
                65,
                "T",
                &[
                    ("M", 67),
                    ("A", 66),
                    ("I", T_INTERFACE),
                    ("N", T_INTERFACE),
                    ("S", T_STRING),
                ],
            ),
            array,
            map_type_def(67, T_STRING, T_INT),
        ];
        // Interface I holds a struct type defined inline (its definition, a count to skip, then
        // its id), then the value as counted bytes; N is a nil interface.
        let mut value = vec![1, 1, 1, b'k', 2, 1, 2, 6, 8, 1];
        let inline = struct_type_def(90, "X", &[("V", T_INT)]);
        value.extend_from_slice(&[3, b'X', b'y', b'z']);
        value.extend_from_slice(&inline);
        value.extend_from_slice(&[4, 0xff, 0xb4, 3, 1, 6, 0]);
        value.extend_from_slice(&[1, 0, 1, 1, b's', 0]);
        let fields = decode(&stream(&defs, 65, &value)).unwrap();
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["M", "A", "I", "N", "S"]);
        // An array whose count differs from its type's length.
        let mut bad = value.clone();
        bad[6] = 3;
        let e = decode(&stream(&defs, 65, &bad)).unwrap_err();
        assert!(e.contains("array of 3 elements, its type says 2"), "{e}");
    }

    #[test]
    fn interface_type_defined_inline_continues_in_the_next_message() {
        // What Go sends for an interface holding a type not sent before: the value message
        // ends after the definition, and the value goes on in the next message.
        let def = struct_type_def(65, "T", &[("I", T_INTERFACE), ("S", T_STRING)]);
        let mut first = vec![0xff, 0x82, 1, 1, b'X'];
        first.extend_from_slice(&type_def_head(WT_TEXT_MARSHALER, 90, "X"));
        first.extend_from_slice(&[0, 0]);
        let second = [0xff, 0xb4, 2, 1, b'x', 1, 1, b's', 0];
        let mut out = Vec::new();
        for m in [&def[..], &first, &second] {
            put_message(&mut out, m);
        }
        let fields = decode(&out).unwrap();
        assert!(
            matches!(&fields[..], [(_, Value::Dropped), (s, Value::Str(v))] if s == "S" && v == b"s")
        );
        // Cut before the second message: an error, not a read past the end.
        let e = decode(&out[..out.len() - second.len() - 1]).unwrap_err();
        assert!(e.contains("the stream ends before its value"), "{e}");
    }

    #[test]
    fn self_referencing_type_hits_the_depth_limit() {
        // type 65 struct {Next []T65 (id 66)}, type 66 = []65; value nests 40 levels.
        let defs = [
            struct_type_def(65, "T", &[("Next", 66)]),
            slice_type_def(66, "[]T", 65),
        ];
        let mut v = [1, 1].repeat(40);
        // The innermost struct's end mark, then one per enclosing struct.
        v.extend_from_slice(&[0; 41]);
        let e = decode(&stream(&defs, 65, &v)).unwrap_err();
        assert!(e.contains("nested too deeply"), "{e}");
    }

    #[test]
    fn malformed_streams_are_errors_with_a_reason() {
        let def = struct_type_def(65, "T", &[("S", T_STRING)]);
        let mut trailing = Vec::new();
        put_message(&mut trailing, &[def.as_slice(), &[0]].concat());
        let cases: [(Vec<u8>, &str); 6] = [
            (vec![], "ends before its value"),
            (stream(&[], 65, &[0]), "not a defined struct"),
            (trailing, "unexpected bytes after a type definition"),
            (
                stream(std::slice::from_ref(&def), 65, &[2, 1, b'x', 0]),
                "beyond the struct's fields",
            ),
            (
                stream(std::slice::from_ref(&def), 65, &[1, 9, b'x', 0]),
                "runs past the end",
            ),
            (
                stream(&[struct_type_def(65, "T", &[("U", 99)])], 65, &[1, 0, 0]),
                "undefined type id 99",
            ),
        ];
        for (bytes, want) in cases {
            let e = decode(&bytes).unwrap_err();
            assert!(e.contains(want), "{e} (wanted {want})");
        }
    }
}
