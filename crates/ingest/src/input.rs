//! Opening the input CSV: plain text, or gzip- or zstd-compressed, told
//! apart by the file's first bytes (not its name) and decompressed as a
//! stream, never whole into memory or onto disk. A file that is some other
//! binary format (Parquet, a spreadsheet, another compression) is refused
//! as what it is, instead of being parsed as a CSV with a garbage header.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Result, bail};

/// How the bytes of the input are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "plain text",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Formats recognised by their first bytes that are not a CSV: refused
/// with what to do.
const FOREIGN: [(&[u8], &str, &str); 8] = [
    (b"PAR1", "a Parquet file", "export it as CSV"),
    (b"ARROW1", "an Arrow IPC file", "export it as CSV"),
    (
        b"PK\x03\x04",
        "a zip archive (or an .xlsx/.ods spreadsheet)",
        "export or unpack the CSV",
    ),
    (
        b"BZh",
        "bzip2-compressed",
        "recompress it with gzip or zstd, or decompress it",
    ),
    (
        b"\xFD7zXZ\x00",
        "xz-compressed",
        "recompress it with gzip or zstd, or decompress it",
    ),
    (b"7z\xBC\xAF\x27\x1C", "a 7-zip archive", "unpack the CSV"),
    (
        b"SQLite format 3\x00",
        "an SQLite database",
        "export the table as CSV",
    ),
    (b"%PDF", "a PDF document", "export the table as CSV"),
];

const GZIP: &[u8] = b"\x1F\x8B";
const ZSTD: &[u8] = b"\x28\xB5\x2F\xFD";

/// How many decompressed bytes are looked at for the header line. A NUL
/// byte before its end means binary data: a CSV header is text. (A NUL in
/// a later row is that row's error, reported with its line.)
const SNIFF: usize = 8192;

/// The decompressed bytes of `path` as a stream, and how they were stored.
/// Refuses a binary file that is not a CSV, naming what it looks like.
pub fn open(path: &Path) -> Result<(Box<dyn Read>, Compression)> {
    let shown = path.display();
    let mut file = match File::open(path) {
        Ok(f) => BufReader::with_capacity(1 << 16, f),
        Err(e) => bail!(
            "{shown}: cannot open the input CSV ({e}); check ingest.csv in the pipeline config"
        ),
    };
    // The first bytes, looked at in the buffer without consuming them.
    let head = file
        .fill_buf()
        .map_err(|e| anyhow::anyhow!("{shown}: cannot read the file: {e}"))?;
    if let Some((_, what, remedy)) = FOREIGN.iter().find(|(magic, ..)| head.starts_with(magic)) {
        bail!(
            "{shown}: this is {what}, not a CSV (read by its first bytes); {remedy} and point ingest.csv at it"
        );
    }
    let compression = if head.starts_with(GZIP) {
        Compression::Gzip
    } else if head.starts_with(ZSTD) {
        Compression::Zstd
    } else {
        Compression::None
    };
    let stream: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        // Multi-member: `cat a.gz b.gz` is one gzip file, as gunzip reads it.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(file)
                .map_err(|e| anyhow::anyhow!("{shown}: cannot start reading the zstd data: {e}"))?,
        ),
    };
    refuse_binary(stream, compression, path)
}

/// `stream` unchanged (its first bytes put back in front), unless its first
/// line holds a NUL byte: then the file is binary data, not a CSV.
fn refuse_binary(
    mut stream: Box<dyn Read>,
    compression: Compression,
    path: &Path,
) -> Result<(Box<dyn Read>, Compression)> {
    let mut first = Vec::with_capacity(SNIFF);
    (&mut stream)
        .take(SNIFF as u64)
        .read_to_end(&mut first)
        .map_err(|e| read_error(path, compression, &e))?;
    let header_end = first
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(first.len());
    if let Some(at) = first[..header_end].iter().position(|&b| b == 0) {
        let inside = match compression {
            Compression::None => String::new(),
            other => format!(" (after {} decompression)", other.name()),
        };
        bail!(
            "{}: binary data, not a text CSV: a NUL byte at byte {at}{inside}; point ingest.csv at the CSV itself",
            path.display()
        );
    }
    Ok((
        Box::new(std::io::Cursor::new(first).chain(stream)),
        compression,
    ))
}

/// What a failed read of the (decompressed) input says.
pub fn read_error(path: &Path, compression: Compression, e: &std::io::Error) -> anyhow::Error {
    match compression {
        Compression::None => anyhow::anyhow!("{}: cannot read the file: {e}", path.display()),
        other => anyhow::anyhow!(
            "{}: the {} data is damaged or truncated ({e}); check the file with `{}`",
            path.display(),
            other.name(),
            match other {
                Compression::Gzip => "gzip -t",
                _ => "zstd -t",
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(path: &Path) -> Result<(String, Compression)> {
        let (mut stream, compression) = open(path)?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok((text, compression))
    }

    #[test]
    fn plain_gzip_and_zstd_read_the_same_text() {
        let dir = tempfile::tempdir().unwrap();
        let text = "sentence,label\n".to_string() + &"a fine film,1\n".repeat(5000);
        let plain = dir.path().join("a.csv");
        std::fs::write(&plain, &text).unwrap();
        let gz = dir.path().join("a.csv.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        // Two members, as `cat a.gz b.gz` makes.
        let mut two = enc.finish().unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"one more,0\n").unwrap();
        two.extend(enc.finish().unwrap());
        std::fs::write(&gz, two).unwrap();
        // A compressed file need not be named so: the bytes decide.
        let zst = dir.path().join("a.csv");
        let zst = zst.with_file_name("compressed-but-named.csv");
        std::fs::write(&zst, zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
        assert_eq!(read_all(&plain).unwrap(), (text.clone(), Compression::None));
        assert_eq!(
            read_all(&gz).unwrap(),
            (format!("{text}one more,0\n"), Compression::Gzip)
        );
        assert_eq!(read_all(&zst).unwrap(), (text, Compression::Zstd));
    }

    #[test]
    fn binary_files_are_named_as_what_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[u8], &str); 4] = [
            (b"PAR1\x15\x04\x15\x00", "a Parquet file"),
            (b"PK\x03\x04\x14\x00", "a zip archive"),
            (b"BZh91AY&SY", "bzip2"),
            (b"sent\x00ence,label\nok,1\n", "a NUL byte at byte 4"),
        ];
        for (bytes, expected) in cases {
            let path = dir.path().join("input.csv");
            std::fs::write(&path, bytes).unwrap();
            let msg = format!("{:#}", open(&path).err().unwrap());
            assert!(msg.contains("input.csv") && msg.contains(expected), "{msg}");
        }
        let gz = dir.path().join("truncated.csv.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all("sentence,label\n".repeat(10_000).as_bytes())
            .unwrap();
        let bytes = enc.finish().unwrap();
        std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
        // Found where the stream breaks: while sniffing, or later.
        let msg = match open(&gz) {
            Err(e) => format!("{e:#}"),
            Ok((mut stream, compression)) => {
                let err = stream.read_to_end(&mut Vec::new()).unwrap_err();
                read_error(&gz, compression, &err).to_string()
            }
        };
        assert!(msg.contains("gzip data is damaged or truncated"), "{msg}");
    }
}
