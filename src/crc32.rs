//! CRC-32/IEEE (Go's `crc32.ChecksumIEEE`), the checksum memberlist puts on its packets. They are
//! few and small, so a 16-entry table (two look-ups per byte, 64 bytes) does instead of the
//! 16-24 KiB slice-by-16 tables of a general-purpose crate; the static router binaries stay small.

const POLY: u32 = 0xedb8_8320; // the IEEE polynomial, bit-reversed

/// The CRC of every 4-bit value, computed at compile time.
const TABLE: [u32; 16] = {
    let mut table = [0u32; 16];
    let mut i = 0;
    while i < 16 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 4 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The CRC-32/IEEE of `data`.
pub fn hash(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        crc = (crc >> 4) ^ TABLE[(crc & 0xf) as usize];
        crc = (crc >> 4) ^ TABLE[(crc & 0xf) as usize];
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::hash;

    // Check values of CRC-32/ISO-HDLC (the IEEE CRC) from the CRC catalogue, and one from Go's
    // hash/crc32 test table.
    #[test]
    fn known_values() {
        assert_eq!(hash(b""), 0);
        assert_eq!(hash(b"a"), 0xe8b7_be43);
        assert_eq!(hash(b"123456789"), 0xcbf4_3926);
        assert_eq!(
            hash(b"The quick brown fox jumps over the lazy dog"),
            0x414f_a339
        );
        let zeros = [0u8; 32];
        assert_eq!(hash(&zeros), 0x190a_55ad);
    }

    // Bitwise CRC, the definition itself, against the table on every length up to 300.
    #[test]
    fn matches_the_bitwise_definition() {
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in 0..data.len() {
            let mut crc = !0u32;
            for &b in &data[..len] {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ super::POLY
                    } else {
                        crc >> 1
                    };
                }
            }
            assert_eq!(hash(&data[..len]), !crc, "length {len}");
        }
    }
}
