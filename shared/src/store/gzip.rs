//! The gzip members (RFC 1952) that records, audit `details` and result objects hold
//! (docs/architecture.md §4.6), written and read with libdeflate (crate `libdeflater`):
//! whole buffers in one call, which is what a stored text is, and faster than a streaming
//! deflate on the 1 KB results that most executions store (BENCHMARKS.md, "At the wire's
//! floor"). The members are standard gzip: any gzip reader reads them, and they read every
//! member written before (by flate2's `GzEncoder`).

use std::cell::Cell;

use libdeflater::{CompressionLvl, Compressor, DecompressionError, Decompressor};

use super::MAX_RESULT_BYTES;

/// libdeflate's level 1: its fastest that compresses (0 stores), and on the results
/// measured no larger than flate2's fastest level (BENCHMARKS.md, "At the wire's floor").
const LEVEL: CompressionLvl = match CompressionLvl::new(1) {
    Ok(level) => level,
    Err(_) => panic!("libdeflate has a level 1"),
};

thread_local! {
    /// Each thread's compressor: allocated once per thread rather than once per text (a
    /// new one costs about 3 µs more per 1 KB text; level 1 clears its 128 KiB hash table
    /// for each text either way). A decompressor is made per text: that costs nothing
    /// measurable.
    static COMPRESSOR: Cell<Option<Compressor>> = const { Cell::new(None) };
}

/// `text` as one gzip member at libdeflate's level 1 (header: no name, no time, "fastest",
/// unknown OS), if that takes fewer than `text.len()` bytes; `None` otherwise (random
/// text, or text shorter than gzip's 18 bytes of header and trailer).
pub(crate) fn compress_smaller(text: &[u8]) -> Option<Vec<u8>> {
    // Room for one byte less than the text: libdeflate stops, and says so, as soon as the
    // member would not be smaller.
    let mut out = vec![0; text.len().checked_sub(1)?];
    let mut compressor = COMPRESSOR.take().unwrap_or_else(|| Compressor::new(LEVEL));
    let written = compressor.gzip_compress(text, &mut out);
    COMPRESSOR.set(Some(compressor));
    let written = written.ok()?;
    out.truncate(written);
    // Keep no more than the member: a result may be megabytes of repeated text.
    out.shrink_to_fit();
    Some(out)
}

/// The text of a gzip member, which must be UTF-8 and at most [`MAX_RESULT_BYTES`] long;
/// the error says what is wrong with the member. Memory is bounded: the trailer's size
/// (ISIZE) sizes the output, and is refused above [`MAX_RESULT_BYTES`] before anything is
/// allocated; a member that inflates to more than its trailer says, or whose size or
/// CRC-32 does not match its trailer, is refused without reading further.
///
/// ISIZE is the size modulo 2^32 and untrusted. Every text this may return is shorter than
/// 2^32 bytes, so a true trailer gives its exact size; a false one either claims more than
/// [`MAX_RESULT_BYTES`] (refused) or does not match what the deflate data inflate to
/// (libdeflate checks both the size and the CRC-32 against the trailer).
pub(crate) fn decompress(member: &[u8]) -> Result<String, String> {
    let Some(trailer) = member.last_chunk::<4>() else {
        return Err(format!("{} bytes are no gzip member", member.len()));
    };
    let size = u32::from_le_bytes(*trailer) as usize;
    if size > MAX_RESULT_BYTES {
        return Err(format!(
            "its trailer gives {size} bytes, more than a result's {MAX_RESULT_BYTES}"
        ));
    }
    let mut out = vec![0; size];
    let read = Decompressor::new()
        .gzip_decompress(member, &mut out)
        .map_err(|e| match e {
            DecompressionError::BadData => {
                "it is not a valid gzip member (header, deflate data, CRC-32 or size)".to_owned()
            }
            DecompressionError::InsufficientSpace => {
                format!("it inflates to more than the {size} bytes its trailer gives")
            }
        })?;
    // Equal unless bytes follow the member (which no writer adds): then its own trailer,
    // checked by libdeflate, is not the last 4 bytes.
    out.truncate(read);
    String::from_utf8(out).map_err(|e| format!("its text is not UTF-8: {e}"))
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::{compress_smaller, decompress};
    use crate::store::MAX_RESULT_BYTES;

    /// The store's test texts, and one with characters beyond ASCII.
    fn texts() -> Vec<String> {
        let mut texts = crate::store::tests::texts();
        texts.push(format!("{}é€😀", "z".repeat(700)));
        texts
    }

    /// The 1,024 random hex characters of the write-unit tests' result
    /// (`shared/tests/conformance/write_units.rs`) in JSON, as the probe returns them.
    fn random_hex() -> String {
        let hex: String = (0..32)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        serde_json::json!({"value": "v", "secret": null, "call": 1, "attempt": 1, "padding": hex})
            .to_string()
    }

    fn flate2_gzip(text: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(text).expect("writes");
        encoder.finish().expect("finishes")
    }

    fn flate2_gunzip(member: &[u8]) -> String {
        let mut read = String::new();
        flate2::read::GzDecoder::new(member)
            .read_to_string(&mut read)
            .expect("a gzip member");
        read
    }

    /// Each member is one standard gzip member with the header records have always had
    /// (what flate2's `GzEncoder` wrote at its fastest level) that flate2 reads back, and
    /// that this module reads back, whatever the thread compressed before.
    #[test]
    fn members_are_gzip_that_flate2_reads() {
        let texts = texts();
        for round in 0..2 {
            for text in &texts {
                let member = compress_smaller(text.as_bytes()).expect("smaller");
                assert!(member.len() < text.len());
                assert_eq!(
                    member[..10],
                    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255],
                    "round {round}"
                );
                assert_eq!(
                    member[member.len() - 4..],
                    (text.len() as u32).to_le_bytes()
                );
                assert_eq!(&flate2_gunzip(&member), text, "round {round}");
                assert_eq!(&decompress(&member).expect("decompresses"), text);
            }
        }
    }

    /// Members written before (by flate2's `GzEncoder`, as every record before libdeflate
    /// held) read back the same.
    #[test]
    fn members_flate2_wrote_read_back() {
        for text in texts().iter().chain([&String::new(), &random_hex()]) {
            let member = flate2_gzip(text.as_bytes());
            assert_eq!(&decompress(&member).expect("decompresses"), text);
        }
    }

    /// The write-unit tests' 1 KB of random hex shrinks at least as much as with flate2's
    /// fastest level (BENCHMARKS.md, "DynamoDB write units per execution": the record must
    /// fit in one KB), and so does typical JSON.
    #[test]
    fn no_larger_than_flate2_fastest() {
        for text in (0..20).map(|_| random_hex()).chain(texts()) {
            let flate2 = flate2_gzip(text.as_bytes()).len();
            let ours = compress_smaller(text.as_bytes()).map_or(text.len(), |m| m.len());
            assert!(
                ours <= flate2.min(text.len()),
                "{ours} bytes, flate2 {flate2}, for {} bytes",
                text.len()
            );
        }
    }

    /// Text too short to shrink, or that does not shrink (random bytes), is not
    /// compressed.
    #[test]
    fn no_member_unless_smaller() {
        assert_eq!(compress_smaller(b""), None);
        assert_eq!(compress_smaller(b"{}"), None);
        let noise: Vec<u8> = (0..40)
            .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
            .collect();
        assert_eq!(compress_smaller(&noise), None);
    }

    /// Damaged members, false trailers and bytes that are no member are errors, never a
    /// panic nor an allocation of what a trailer claims.
    #[test]
    fn corrupt_members_are_refused() {
        let text = texts()[1].clone();
        let member = compress_smaller(text.as_bytes()).expect("compresses");
        for bad in [
            Vec::new(),
            vec![0x1f, 0x8b, 8],
            member[..member.len() - 1].to_vec(),
            member[..10].to_vec(),
            text.as_bytes().to_vec(),
        ] {
            assert!(decompress(&bad).is_err(), "{} bytes", bad.len());
        }
        // Every single bit flipped: refused (header, deflate data or checksums), or, in
        // the header's time, flags for extra fields and OS byte, read as the same text.
        for byte in 0..member.len() {
            for bit in 0..8 {
                let mut bad = member.clone();
                bad[byte] ^= 1 << bit;
                if let Ok(read) = decompress(&bad) {
                    assert_eq!(read, text, "byte {byte}, bit {bit}");
                }
            }
        }
        let with_size = |size: u32| {
            let mut bad = member.clone();
            let at = bad.len() - 4;
            bad[at..].copy_from_slice(&size.to_le_bytes());
            decompress(&bad)
        };
        // A trailer claiming 4 GiB: refused before any allocation.
        let error = with_size(u32::MAX).expect_err("refused");
        assert!(error.contains("more than a result's"), "{error}");
        // Claiming less than the data inflate to: refused when the output is full.
        let error = with_size(100).expect_err("refused");
        assert!(error.contains("inflates to more than"), "{error}");
        // Claiming more (within the limit): the sizes do not match.
        assert!(with_size(text.len() as u32 + 1).is_err());
        assert!(with_size(MAX_RESULT_BYTES as u32).is_err());
        // Bytes after the member: its own trailer is read, not the last 4 bytes.
        let mut trailing = member.clone();
        trailing.extend_from_slice(&(text.len() as u32 + 8).to_le_bytes());
        trailing.extend_from_slice(&(text.len() as u32 + 8).to_le_bytes());
        assert_eq!(decompress(&trailing).expect("the first member"), text);
    }

    /// A member that inflates beyond [`MAX_RESULT_BYTES`] is an error, whatever its
    /// trailer says: a true trailer is above the limit, and a false one is too small.
    #[test]
    fn more_than_a_result_is_refused() {
        let text = "x".repeat(MAX_RESULT_BYTES + 1);
        let member = flate2_gzip(text.as_bytes());
        assert!(decompress(&member).is_err());
        let mut lying = member.clone();
        let at = lying.len() - 4;
        lying[at..].copy_from_slice(&(MAX_RESULT_BYTES as u32).to_le_bytes());
        assert!(decompress(&lying).is_err());
        let exactly = "x".repeat(MAX_RESULT_BYTES);
        let member = compress_smaller(exactly.as_bytes()).expect("compresses");
        assert_eq!(decompress(&member).expect("decompresses"), exactly);
    }

    /// Text that is not UTF-8 is refused.
    #[test]
    fn text_must_be_utf8() {
        let member = flate2_gzip(&[0xff; 600]);
        assert!(decompress(&member).expect_err("refused").contains("UTF-8"));
    }
}
