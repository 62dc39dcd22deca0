//! memberlist's wire format: messages (encoded by `codec`, re-exported here), UDP packet framing
//! (label, encryption, CRC, compression, compound) and encrypted TCP stream frames.
//!
//! Encoding is byte-identical to Go memberlist 0.5.x; decoding accepts anything Go would send and
//! rejects the rest with a [`WireError`], allocating no more than the input (or a fixed cap for
//! decompression) justifies.

use std::fmt;

use weezl::{decode::Decoder, encode::Encoder, BitOrder, LzwStatus};

use super::codec::missing;
use super::message::{kind, Message};
use super::msgpack::{read_fields, Fields, Reader};

pub use super::codec::{decode_message, encode_message};

pub use super::keyring::{
    decrypt, encrypt, Key, Keyring, KeyringError, Nonces, ENCRYPTION_OVERHEAD,
};

/// Bytes a CRC header adds (`0c` + CRC32).
pub const CRC_OVERHEAD: usize = 5;
/// Fixed bytes of a compound message (`07` + part count).
pub const COMPOUND_HEADER_OVERHEAD: usize = 2;
/// Bytes each compound part adds (its u16 length).
pub const COMPOUND_ENTRY_OVERHEAD: usize = 2;
/// Most parts one compound message can carry.
pub const MAX_COMPOUND_PARTS: usize = 255;
/// Largest encrypted stream frame (and decompressed stream message) accepted: memberlist's
/// maxPushStateBytes.
pub const MAX_PUSH_STATE_BYTES: usize = 20 * 1024 * 1024;
/// Largest stream frame accepted (its declared length, checked as soon as the 5-byte header is
/// in, before anything is buffered). Go allows 20 MiB, but a legitimate push-pull is far smaller:
/// an entry is at most ~900 bytes before compression (a name of up to 255 bytes, metadata of up
/// to 512, ~100 of fields), and wesher meshes are small (every node is a WireGuard peer of every
/// other), so 1024 members fit in 1 MiB even uncompressed, and Go and we always compress. An
/// unauthenticated stranger may make us hold this much per stream, not 20 MiB.
pub const MAX_STREAM_FRAME: usize = 1024 * 1024;
/// Most bytes decompression may produce for one UDP packet, all nesting levels together.
/// Go only compresses what fits its 1400-byte UDP buffer, so 64 KiB is generous.
pub const MAX_PACKET_DECOMPRESSED: usize = 64 * 1024;
/// Header bytes of a stream frame before the encrypted payload (`0a` + u32 length).
pub const STREAM_HEADER: usize = 5;

/// Deepest compound/compress nesting accepted in one packet.
const MAX_NESTING: usize = 8;

/// Why bytes from the network were rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The input ended early, or a declared length exceeds the remaining input.
    Truncated,
    /// A declared or decompressed size exceeds its cap.
    TooLarge { size: usize, limit: usize },
    /// Malformed msgpack, or a field with an impossible value.
    Msgpack(String),
    /// A message type byte we do not know (or framing where a message belongs).
    UnknownType(u8),
    /// No installed key authenticated the payload.
    Decrypt,
    /// Encryption version other than 0 or 1.
    EncryptionVersion(u8),
    /// Bad PKCS#7 padding in a version-0 payload.
    Padding,
    /// A stream that does not start with an encrypted frame (plaintext is refused).
    Unencrypted(u8),
    /// CRC mismatch.
    Crc { expected: u32, actual: u32 },
    /// Unknown compression algorithm or corrupt LZW data.
    Lzw(String),
    /// A label header: we configure no label, so (as Go) labelled input is refused.
    Label,
    /// Compound/compress nested deeper than we follow.
    Nesting,
}

impl WireError {
    /// A short stable name for counters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::TooLarge { .. } => "too_large",
            WireError::Msgpack(_) => "msgpack",
            WireError::UnknownType(_) => "unknown_type",
            WireError::Decrypt | WireError::EncryptionVersion(_) | WireError::Padding => "decrypt",
            WireError::Unencrypted(_) => "unencrypted",
            WireError::Crc { .. } => "crc",
            WireError::Lzw(_) => "lzw",
            WireError::Label => "label",
            WireError::Nesting => "nesting",
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("message truncated"),
            WireError::TooLarge { size, limit } => {
                write!(f, "size {size} exceeds the limit of {limit} bytes")
            }
            WireError::Msgpack(what) => write!(f, "bad msgpack: {what}"),
            WireError::UnknownType(t) => write!(f, "unknown message type {t}"),
            WireError::Decrypt => f.write_str("no installed keys could decrypt the message"),
            WireError::EncryptionVersion(v) => write!(f, "unsupported encryption version {v}"),
            WireError::Padding => f.write_str("bad PKCS#7 padding"),
            WireError::Unencrypted(t) => {
                write!(f, "stream is not encrypted (starts with type {t})")
            }
            WireError::Crc { expected, actual } => {
                write!(
                    f,
                    "CRC mismatch: header {expected:08x}, payload {actual:08x}"
                )
            }
            WireError::Lzw(what) => write!(f, "decompression failed: {what}"),
            WireError::Label => f.write_str("labelled, but no label is configured"),
            WireError::Nesting => write!(f, "framing nested deeper than {MAX_NESTING} levels"),
        }
    }
}

impl std::error::Error for WireError {}

/// Go compress/lzw with LSB bit order and 8-bit literals.
pub fn lzw_compress(data: &[u8]) -> Vec<u8> {
    Encoder::new(BitOrder::Lsb, 8)
        .encode(data)
        // Only codes >= 2^size are invalid input, and with size 8 every byte is a valid code.
        .expect("8-bit LZW accepts every byte")
}

/// Inverse of [`lzw_compress`]; fails when the output would exceed `limit` or the data has no
/// end code.
pub fn lzw_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, WireError> {
    let mut decoder = Decoder::new(BitOrder::Lsb, 8);
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut input = data;
    loop {
        let res = decoder.decode_bytes(input, &mut chunk);
        input = input.get(res.consumed_in..).unwrap_or(&[]);
        let size = out.len() + res.consumed_out;
        if size > limit {
            return Err(WireError::TooLarge { size, limit });
        }
        out.extend_from_slice(&chunk[..res.consumed_out]);
        match res.status {
            Ok(LzwStatus::Done) => return Ok(out),
            Ok(LzwStatus::Ok) if res.consumed_in > 0 || res.consumed_out > 0 => {}
            Ok(_) => return Err(WireError::Lzw("missing end code".into())),
            Err(e) => return Err(WireError::Lzw(e.to_string())),
        }
    }
}

/// Wraps a payload in a compress message: `09 {Algo: 0, Buf: LZW(payload)}`.
pub fn compress(payload: &[u8]) -> Vec<u8> {
    let buf = lzw_compress(payload);
    let mut out = Vec::with_capacity(buf.len() + 16);
    out.push(kind::COMPRESS);
    Fields::start(&mut out, 2).uint("Algo", 0).raw("Buf", &buf);
    out
}

/// Unwraps a compress message body (after its type byte).
fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, WireError> {
    let (mut algo, mut buf) = (0, None);
    read_fields(&mut Reader::new(body), |name, r| {
        match name {
            b"Algo" => algo = r.uint()?,
            b"Buf" => buf = Some(r.bytes()?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if algo != 0 {
        return Err(WireError::Lzw(format!(
            "unknown compression algorithm {algo}"
        )));
    }
    lzw_decompress(buf.ok_or_else(|| missing("Buf"))?, limit)
}

/// Builds a compound message: `07 | n | n x u16 BE length | parts`. More than 255 parts are
/// split into compounds nested in a compound (receivers recurse). Each part must be shorter
/// than 64 KiB, which UDP packets are.
pub fn compound(msgs: &[Vec<u8>]) -> Vec<u8> {
    if msgs.len() > MAX_COMPOUND_PARTS {
        let chunks: Vec<Vec<u8>> = msgs.chunks(MAX_COMPOUND_PARTS).map(compound).collect();
        return compound(&chunks);
    }
    let body: usize = msgs.iter().map(Vec::len).sum();
    let mut out =
        Vec::with_capacity(COMPOUND_HEADER_OVERHEAD + COMPOUND_ENTRY_OVERHEAD * msgs.len() + body);
    out.push(kind::COMPOUND);
    out.push(msgs.len() as u8);
    for m in msgs {
        debug_assert!(m.len() <= usize::from(u16::MAX));
        out.extend_from_slice(&(m.len() as u16).to_be_bytes());
    }
    for m in msgs {
        out.extend_from_slice(m);
    }
    out
}

/// Splits a compound body (after its type byte) into its parts, as Go's
/// decodeCompoundMessage: a short length table fails the compound; parts whose declared
/// length runs past the data are counted as truncated and the ones before them kept.
fn compound_parts(body: &[u8]) -> Result<(Vec<&[u8]>, usize), WireError> {
    let (&n, rest) = body.split_first().ok_or(WireError::Truncated)?;
    let n = usize::from(n);
    let lens = rest.get(..2 * n).ok_or(WireError::Truncated)?;
    let mut data = &rest[2 * n..];
    let mut parts = Vec::with_capacity(n);
    for len in lens.chunks_exact(2) {
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let Some(part) = data.get(..len) else {
            let truncated = n - parts.len();
            return Ok((parts, truncated));
        };
        parts.push(part);
        data = &data[len..];
    }
    Ok((parts, 0))
}

/// Prefixes a payload with a CRC header: `0c | CRC32-IEEE BE | payload`.
pub fn with_crc(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CRC_OVERHEAD + payload.len());
    out.push(kind::HAS_CRC);
    out.extend_from_slice(&crate::crc32::hash(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks and strips a CRC header if there is one (Go only looks at the outermost layer).
fn strip_crc(buf: &[u8]) -> Result<&[u8], WireError> {
    if buf.first() != Some(&kind::HAS_CRC) {
        return Ok(buf);
    }
    let header = buf.get(1..CRC_OVERHEAD).ok_or(WireError::Truncated)?;
    let expected = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let payload = &buf[CRC_OVERHEAD..];
    let actual = crate::crc32::hash(payload);
    if expected != actual {
        return Err(WireError::Crc { expected, actual });
    }
    Ok(payload)
}

/// Refuses a label header (`f4 | len | label`): wesher configures no label, and Go memberlist
/// without a label drops labelled packets and streams (an empty label is an error there too).
fn refuse_label(buf: &[u8]) -> Result<(), WireError> {
    match buf.first() {
        Some(&kind::HAS_LABEL) => Err(WireError::Label),
        _ => Ok(()),
    }
}

/// How [`seal_packet`] frames a datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketOpts {
    /// Add a CRC header (the target's protocol max is >= 5).
    pub crc: bool,
    /// LZW-compress when that makes the packet smaller.
    pub compress: bool,
}

/// Frames encoded messages into one encrypted UDP datagram: a single message as is, several
/// as a compound; compressed if that is smaller; CRC if asked; encrypted with the primary key.
pub fn seal_packet(
    msgs: &[Vec<u8>],
    opts: PacketOpts,
    keyring: &Keyring,
    nonces: &mut Nonces,
) -> Vec<u8> {
    let mut payload = match msgs {
        [one] => one.clone(),
        _ => compound(msgs),
    };
    if opts.compress {
        let packed = compress(&payload);
        if packed.len() < payload.len() {
            payload = packed;
        }
    }
    if opts.crc {
        payload = with_crc(&payload);
    }
    encrypt(keyring.primary(), nonces.next_nonce(), &payload, &[])
}

/// Opens a UDP datagram: no label, decryption (any installed key; plaintext is refused), CRC,
/// then compress and compound layers, nested. Like Go, each compound part stands on its own:
/// returns the messages that decoded, in order, and the error of every part that did not. An
/// `Err` means the whole datagram was refused (label, decryption, CRC).
pub fn open_packet_parts(
    bytes: &[u8],
    keyring: &Keyring,
) -> Result<(Vec<Message>, Vec<WireError>), WireError> {
    refuse_label(bytes)?;
    let plain = decrypt(keyring, bytes, &[])?;
    let mut out = Vec::new();
    let mut budget = MAX_PACKET_DECOMPRESSED;
    unframe(strip_crc(&plain)?, 0, &mut budget, &mut out);
    let (mut msgs, mut bad) = (Vec::new(), Vec::new());
    for part in out {
        match part {
            Ok(m) => msgs.push(m),
            Err(e) => bad.push(e),
        }
    }
    Ok((msgs, bad))
}

/// [`open_packet_parts`] for callers that want every part: the first bad part is the error.
pub fn open_packet(bytes: &[u8], keyring: &Keyring) -> Result<Vec<Message>, WireError> {
    let (msgs, bad) = open_packet_parts(bytes, keyring)?;
    match bad.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(msgs),
    }
}

/// Unwraps compound and compress layers down to messages; a part that fails (bad framing,
/// decompression, or message) is one error in `out` and costs nothing else.
fn unframe(
    buf: &[u8],
    depth: usize,
    budget: &mut usize,
    out: &mut Vec<Result<Message, WireError>>,
) {
    if depth > MAX_NESTING {
        out.push(Err(WireError::Nesting));
        return;
    }
    match buf.split_first() {
        Some((&kind::COMPOUND, body)) => match compound_parts(body) {
            Ok((parts, truncated)) => {
                for part in parts {
                    unframe(part, depth + 1, budget, out);
                }
                out.extend((0..truncated).map(|_| Err(WireError::Truncated)));
            }
            Err(e) => out.push(Err(e)),
        },
        Some((&kind::COMPRESS, body)) => match decompress(body, *budget) {
            Ok(inner) => {
                *budget -= inner.len();
                unframe(&inner, depth + 1, budget, out);
            }
            Err(WireError::TooLarge { size, .. }) => out.push(Err(WireError::TooLarge {
                size,
                limit: MAX_PACKET_DECOMPRESSED,
            })),
            Err(e) => out.push(Err(e)),
        },
        _ => out.push(decode_message(buf)),
    }
}

/// Frames one encoded message for a TCP stream: LZW-compressed (always, as Go does), then
/// `0a | u32 BE length | encrypted payload` with the first five bytes as AAD. Receivers refuse
/// frames above [`MAX_PUSH_STATE_BYTES`], so callers keep messages below that.
pub fn seal_stream(msg: &[u8], keyring: &Keyring, nonces: &mut Nonces) -> Vec<u8> {
    let plain = compress(msg);
    debug_assert!(ENCRYPTION_OVERHEAD + plain.len() <= MAX_PUSH_STATE_BYTES);
    let len = (ENCRYPTION_OVERHEAD + plain.len()) as u32;
    let mut header = [0u8; STREAM_HEADER];
    header[0] = kind::ENCRYPT;
    header[1..].copy_from_slice(&len.to_be_bytes());
    let sealed = encrypt(keyring.primary(), nonces.next_nonce(), &plain, &header);
    let mut out = Vec::with_capacity(STREAM_HEADER + sealed.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&sealed);
    out
}

/// Parses one message from the start of a TCP stream buffer. `Ok(None)`: more bytes are
/// needed; `Ok(Some((msg, n)))`: `n` bytes were consumed. Labelled streams, frames above
/// [`MAX_STREAM_FRAME`] and unencrypted streams are refused.
pub fn open_stream(buf: &[u8], keyring: &Keyring) -> Result<Option<(Message, usize)>, WireError> {
    refuse_label(buf)?;
    match buf.first() {
        None => return Ok(None),
        Some(&kind::ENCRYPT) => {}
        Some(&t) => return Err(WireError::Unencrypted(t)),
    }
    let Some(header) = buf.get(..STREAM_HEADER) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_STREAM_FRAME {
        return Err(WireError::TooLarge {
            size: len,
            limit: MAX_STREAM_FRAME,
        });
    }
    let Some(payload) = buf.get(STREAM_HEADER..STREAM_HEADER + len) else {
        return Ok(None);
    };
    let plain = decrypt(keyring, payload, header)?;
    let msg = match plain.split_first() {
        Some((&kind::COMPRESS, body)) => decode_message(&decompress(body, MAX_PUSH_STATE_BYTES)?)?,
        _ => decode_message(&plain)?,
    };
    Ok(Some((msg, STREAM_HEADER + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::codec::tests::every_message;
    use crate::membership::message::NackResp;

    fn ring() -> Keyring {
        Keyring::new([0x11; 32].into())
    }

    #[test]
    fn lzw_round_trip_and_limits() {
        let data: Vec<u8> = (0..20000u32)
            .map(|i| (i % 251) as u8 ^ (i / 97) as u8)
            .collect();
        let packed = lzw_compress(&data);
        assert_eq!(lzw_decompress(&packed, data.len()), Ok(data.clone()));
        assert_eq!(
            lzw_decompress(&packed, data.len() - 1).map_err(|e| e.kind()),
            Err("too_large")
        );
        assert_eq!(
            lzw_decompress(&packed[..packed.len() / 2], usize::MAX).map_err(|e| e.kind()),
            Err("lzw")
        );
        assert_eq!(lzw_decompress(&lzw_compress(b""), 0), Ok(vec![]));
    }

    #[test]
    fn packet_round_trip_through_every_layer() {
        let msgs: Vec<Vec<u8>> = every_message()[..10].iter().map(encode_message).collect();
        let mut nonces = Nonces::new(1);
        for opts in [
            PacketOpts::default(),
            PacketOpts {
                crc: true,
                compress: true,
            },
        ] {
            let packet = seal_packet(&msgs, opts, &ring(), &mut nonces);
            assert_eq!(
                open_packet(&packet, &ring()),
                Ok(every_message()[..10].to_vec())
            );
            let single = seal_packet(&msgs[..1], opts, &ring(), &mut nonces);
            assert_eq!(
                open_packet(&single, &ring()),
                Ok(every_message()[..1].to_vec())
            );
        }
    }

    #[test]
    fn compression_only_when_smaller() {
        let msgs = vec![encode_message(&every_message()[3])];
        let opts = PacketOpts {
            crc: false,
            compress: true,
        };
        let packet = seal_packet(&msgs, opts, &ring(), &mut Nonces::new(1));
        assert_eq!(packet.len(), ENCRYPTION_OVERHEAD + msgs[0].len());
    }

    #[test]
    fn more_than_255_parts_nest() {
        let msgs: Vec<Vec<u8>> = (0..600)
            .map(|i| encode_message(&Message::Nack(NackResp { seq_no: i })))
            .collect();
        let packet = seal_packet(&msgs, PacketOpts::default(), &ring(), &mut Nonces::new(3));
        let opened = open_packet(&packet, &ring()).expect("valid packet");
        assert_eq!(opened.len(), 600);
        assert_eq!(opened[599], Message::Nack(NackResp { seq_no: 599 }));
    }

    fn sealed(plain: &[u8]) -> Vec<u8> {
        encrypt(ring().primary(), [9; 12], plain, b"")
    }

    #[test]
    fn packet_framing_errors_have_kinds() {
        let kind_of = |plain: &[u8]| open_packet(&sealed(plain), &ring()).map_err(|e| e.kind());
        let ack = encode_message(&every_message()[3]);
        let mut bad_crc = with_crc(&ack);
        bad_crc[1] ^= 1;
        assert_eq!(kind_of(&bad_crc), Err("crc"));
        assert_eq!(kind_of(&with_crc(&ack)[..4]), Err("truncated"));
        assert_eq!(kind_of(b"\x07\x02\x00\x01"), Err("truncated"));
        assert_eq!(kind_of(b"\x07\x01\x00\x05\x0b\x80"), Err("truncated"));
        assert_eq!(kind_of(b"\x09\x82\xa4Algo\x01\xa3Buf\xa0"), Err("lzw"));
        assert_eq!(
            kind_of(b"\x09\x82\xa4Algo\x00\xa3Buf\xa2\x00\x01"),
            Err("lzw")
        );
        assert_eq!(open_packet(&sealed(b"\x07\x00"), &ring()), Ok(vec![]));
        let mut nested = encode_message(&every_message()[3]);
        for _ in 0..=MAX_NESTING {
            nested = compound(&[nested]);
        }
        assert_eq!(kind_of(&nested), Err("nesting"));
        let bomb = compress(&vec![0u8; MAX_PACKET_DECOMPRESSED + 1]);
        assert!(bomb.len() < 1400);
        assert_eq!(kind_of(&bomb), Err("too_large"));
        let mut labelled = vec![kind::HAS_LABEL, 0];
        labelled.extend_from_slice(&sealed(&ack));
        assert_eq!(
            open_packet(&labelled, &ring()).map_err(|e| e.kind()),
            Err("label")
        );
    }

    #[test]
    fn labelled_packets_and_streams_are_refused_as_go_does_without_a_label() {
        let ack = encode_message(&every_message()[3]);
        let mut packet = vec![kind::HAS_LABEL, 3];
        packet.extend_from_slice(b"lab");
        packet.extend_from_slice(&encrypt(ring().primary(), [2; 12], &ack, b"lab"));
        assert_eq!(open_packet_parts(&packet, &ring()), Err(WireError::Label));
        let frame = seal_stream(&ack, &ring(), &mut Nonces::new(2));
        let mut stream = vec![kind::HAS_LABEL, 3];
        stream.extend_from_slice(b"lab");
        stream.extend_from_slice(&frame);
        assert_eq!(open_stream(&stream, &ring()), Err(WireError::Label));
        assert_eq!(open_stream(&stream[..1], &ring()), Err(WireError::Label));
    }

    #[test]
    fn each_compound_part_stands_on_its_own() {
        let ack = encode_message(&every_message()[3]);
        let nack = encode_message(&Message::Nack(NackResp { seq_no: 7 }));
        let unknown = vec![0x63, 0x80];
        let bad_msgpack = vec![kind::ALIVE, 0xc1];
        let bad_lzw = b"\x09\x82\xa4Algo\x00\xa3Buf\xa2\x00\x01".to_vec();
        let inner = compound(&[bad_lzw, nack.clone()]);
        let mut plain = compound(&[ack.clone(), unknown, bad_msgpack, inner, ack.clone()]);
        // A sixth part declared whose bytes are missing: truncated, the five before it kept.
        plain[1] += 1;
        plain.splice(12..12, [0x10, 0x00]);
        let (msgs, bad) = open_packet_parts(&sealed(&plain), &ring()).expect("opens");
        assert_eq!(
            msgs,
            [
                every_message()[3].clone(),
                Message::Nack(NackResp { seq_no: 7 }),
                every_message()[3].clone()
            ]
        );
        let kinds: Vec<&str> = bad.iter().map(WireError::kind).collect();
        assert_eq!(kinds, ["unknown_type", "msgpack", "lzw", "truncated"]);
    }

    #[test]
    fn stream_round_trip_and_incremental_parsing() {
        let msg = every_message()[10].clone();
        let mut nonces = Nonces::new(5);
        let frame = seal_stream(&encode_message(&msg), &ring(), &mut nonces);
        assert_eq!(frame[0], kind::ENCRYPT);
        for cut in [0, 1, 4, 5, 6, frame.len() - 1] {
            assert_eq!(
                open_stream(&frame[..cut], &ring()),
                Ok(None),
                "cut at {cut}"
            );
        }
        let mut two = frame.clone();
        let ping = every_message()[0].clone();
        two.extend_from_slice(&seal_stream(&encode_message(&ping), &ring(), &mut nonces));
        let (first, used) = open_stream(&two, &ring())
            .expect("valid")
            .expect("complete");
        assert_eq!((first, used), (msg, frame.len()));
        let (second, rest) = open_stream(&two[used..], &ring())
            .expect("valid")
            .expect("complete");
        assert_eq!((second, rest), (ping, two.len() - used));
    }

    #[test]
    fn stream_errors_have_kinds() {
        let kind_of = |b: &[u8]| open_stream(b, &ring()).map_err(|e| e.kind());
        assert_eq!(kind_of(b"\x06\x83"), Err("unencrypted"));
        assert_eq!(kind_of(b"\x0a\x01\x40\x00\x01"), Err("too_large"));
        let mut frame = seal_stream(
            &encode_message(&every_message()[3]),
            &ring(),
            &mut Nonces::new(1),
        );
        let last = frame.len() - 1;
        frame[last] ^= 0x80;
        assert_eq!(kind_of(&frame), Err("decrypt"));
        // The length is authenticated too: a frame re-labelled with another length fails.
        let mut frame = seal_stream(
            &encode_message(&every_message()[3]),
            &ring(),
            &mut Nonces::new(1),
        );
        frame.push(0);
        frame[4] += 1;
        assert_eq!(kind_of(&frame), Err("decrypt"));
    }
}
