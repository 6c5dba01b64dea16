//! Compressed streams for tarballs: reading recognises gzip, xz and zstd by
//! their magic bytes (anything else is read as a plain tar, as GNU tar
//! does); writing compresses as the file name asks ([`Compression`]).

use crate::state::tarball_layout::Compression;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

/// The decompressed contents of `path`.
pub fn reader(path: &Path) -> Result<Box<dyn Read>> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = BufReader::new(f);
    let head = r.fill_buf().with_context(|| format!("reading {}", path.display()))?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r).with_context(|| format!("reading {}", path.display()))?)
    } else if head.starts_with(b"BZh") {
        bail!(
            "{} is compressed with bzip2, which modsync does not read; recompress it with gzip, xz or zstd",
            path.display()
        )
    } else {
        Box::new(r)
    })
}

/// Writes `file` through the compressor `c`: `fill` writes the
/// uncompressed contents, then the stream is finished and synced.
pub fn write(
    file: File,
    c: Compression,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let file = match c {
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            fill(&mut e)?;
            e.finish()?
        }
        Compression::Xz => {
            let mut e = liblzma::write::XzEncoder::new(file, 6);
            fill(&mut e)?;
            e.finish()?
        }
        Compression::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(file, 0)?;
            fill(&mut e)?;
            e.finish()?
        }
        Compression::None => {
            let mut f = file;
            fill(&mut f)?;
            f
        }
    };
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compression_reads_back() {
        let d = tempfile::tempdir().unwrap();
        for c in [Compression::Gzip, Compression::Xz, Compression::Zstd, Compression::None] {
            let p = d.path().join(format!("{c:?}"));
            write(File::create(&p).unwrap(), c, |w| w.write_all(b"hello tar")).unwrap();
            let mut s = String::new();
            reader(&p).unwrap().read_to_string(&mut s).unwrap();
            assert_eq!(s, "hello tar", "{c:?}");
        }
        let bz = d.path().join("x.tar.bz2");
        std::fs::write(&bz, b"BZh91AY").unwrap();
        assert!(format!("{:#}", reader(&bz).err().unwrap()).contains("bzip2"));
    }
}
