//! Layer compression: the layer media types, the one [`Compression`] enum, magic
//! sniffing, decoders and encoders.
//!
//! These are *the* layer media types of the workspace: `strata-image`'s `media_types`
//! re-exports them next to the manifest, index and config types.
//!
//! ```
//! use strata_diff::compression::{self as c, Compression};
//! assert_eq!(Compression::from_media_type(c::OCI_LAYER_ZSTD).unwrap(), Compression::Zstd);
//! assert_eq!(Compression::Gzip.media_type(), c::OCI_LAYER_GZIP);
//! assert_eq!("none".parse::<Compression>().unwrap(), Compression::None);
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use strata_content::{Error, Result};

/// OCI uncompressed layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable uncompressed layer (deprecated, still read).
pub const OCI_LAYER_NONDISTRIBUTABLE: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// OCI non-distributable gzip layer (deprecated, still read).
pub const OCI_LAYER_NONDISTRIBUTABLE_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// OCI non-distributable zstd layer (deprecated, still read).
pub const OCI_LAYER_NONDISTRIBUTABLE_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
/// Docker uncompressed layer (as `docker save` lists them, and some registries serve).
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker zstd layer (containerd extension).
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
/// Docker foreign (non-distributable) gzip layer.
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker foreign (non-distributable) uncompressed layer.
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";

/// How a layer stream is compressed; the default is gzip, as containerd writes layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (possibly several members).
    #[default]
    Gzip,
    /// zstd (possibly several frames).
    Zstd,
    /// Unknown from the media type (Docker `…rootfs.diff.tar`): sniff the magic bytes.
    Detect,
}

impl Compression {
    /// The compression of a layer media type: OCI `…layer.v1.tar[+gzip|+zstd]` and their
    /// non-distributable variants, Docker `…rootfs.diff.tar[.gzip|.zstd]` and foreign layers.
    ///
    /// # Errors
    /// `NotImplemented` for anything else (encrypted layers, EROFS, configs …).
    pub fn from_media_type(media_type: &str) -> Result<Self> {
        match media_type.split(';').next().unwrap_or_default().trim() {
            OCI_LAYER | OCI_LAYER_NONDISTRIBUTABLE => Ok(Compression::None),
            OCI_LAYER_GZIP
            | OCI_LAYER_NONDISTRIBUTABLE_GZIP
            | DOCKER_LAYER_GZIP
            | DOCKER_LAYER_FOREIGN_GZIP => Ok(Compression::Gzip),
            OCI_LAYER_ZSTD | OCI_LAYER_NONDISTRIBUTABLE_ZSTD | DOCKER_LAYER_ZSTD => {
                Ok(Compression::Zstd)
            }
            DOCKER_LAYER | DOCKER_LAYER_FOREIGN => Ok(Compression::Detect),
            _ => Err(Error::not_implemented(format!(
                "unsupported layer media type {media_type}"
            ))),
        }
    }

    /// The OCI layer media type for this compression (`Detect` maps to plain tar).
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
            Compression::None | Compression::Detect => OCI_LAYER,
        }
    }

    /// The lowercase name: `none`, `gzip`, `zstd` or `detect`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Detect => "detect",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Compression {
    type Err = Error;

    /// `gzip`, `zstd`, `none` (or `uncompressed`), `detect`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "none" | "uncompressed" => Ok(Compression::None),
            "detect" => Ok(Compression::Detect),
            _ => Err(Error::invalid_argument(format!(
                "unknown compression {s:?} (gzip, zstd or none)"
            ))),
        }
    }
}

/// Sniffs the compression of a buffered stream from its first bytes without consuming them.
///
/// # Errors
/// The I/O error of the underlying read.
pub fn detect<R: BufRead>(r: &mut R) -> io::Result<Compression> {
    let buf = r.fill_buf()?;
    Ok(if buf.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if buf.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

/// Wraps `reader` in the decoder for `compression`: every gzip member and every zstd
/// frame is decoded.
///
/// # Errors
/// I/O errors while sniffing or setting up the zstd decoder.
pub fn decoder<'a, R: Read + Send + 'a>(
    reader: R,
    compression: Compression,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let compression = match compression {
        Compression::Detect => detect(&mut buffered)?,
        c => c,
    };
    Ok(match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(buffered)?;
            d.window_log_max(31)?;
            Box::new(d)
        }
        Compression::None | Compression::Detect => Box::new(buffered),
    })
}

/// Compression settings for writing a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// The algorithm.
    pub compression: Compression,
    /// The level; `None` is the default (gzip 1 like containerd, zstd 3).
    pub level: Option<i32>,
    /// zstd worker threads (0 = single-threaded).
    pub threads: u32,
}

impl Default for Encoding {
    fn default() -> Self {
        Encoding {
            compression: Compression::Gzip,
            level: None,
            threads: 0,
        }
    }
}

/// Wraps `w` in the encoder for `enc`; call [`Encoder::finish`] at the end.
///
/// # Errors
/// I/O errors from setting up the zstd encoder.
pub fn encoder<'a, W: Write + Send + 'a>(w: W, enc: Encoding) -> io::Result<Encoder<'a, W>> {
    Ok(match enc.compression {
        Compression::Gzip => {
            let level = enc.level.unwrap_or(1).clamp(0, 9) as u32;
            Encoder::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::new(level),
            ))
        }
        Compression::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(w, enc.level.unwrap_or(3))?;
            if enc.threads > 0 {
                e.multithread(enc.threads)?;
            }
            Encoder::Zstd(e)
        }
        Compression::None | Compression::Detect => Encoder::None(w),
    })
}

/// A layer encoder returned by [`encoder`].
pub enum Encoder<'a, W: Write> {
    /// Pass-through.
    None(W),
    /// gzip.
    Gzip(flate2::write::GzEncoder<W>),
    /// zstd.
    Zstd(zstd::stream::write::Encoder<'a, W>),
}

impl<W: Write> Encoder<'_, W> {
    /// Flushes the trailer and returns the inner writer.
    ///
    /// # Errors
    /// The I/O error of the final write.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layer_media_type() {
        use Compression::*;
        let cases = [
            (OCI_LAYER, None),
            (OCI_LAYER_GZIP, Gzip),
            (OCI_LAYER_ZSTD, Zstd),
            (OCI_LAYER_NONDISTRIBUTABLE, None),
            (OCI_LAYER_NONDISTRIBUTABLE_GZIP, Gzip),
            (OCI_LAYER_NONDISTRIBUTABLE_ZSTD, Zstd),
            (DOCKER_LAYER, Detect),
            (DOCKER_LAYER_GZIP, Gzip),
            (DOCKER_LAYER_ZSTD, Zstd),
            (DOCKER_LAYER_FOREIGN, Detect),
            (DOCKER_LAYER_FOREIGN_GZIP, Gzip),
        ];
        for (mt, c) in cases {
            assert_eq!(Compression::from_media_type(mt).unwrap(), c, "{mt}");
        }
        for bad in [
            "application/vnd.oci.image.layer.v1.tar+lz4",
            "application/vnd.oci.image.config.v1+json",
        ] {
            assert!(
                Compression::from_media_type(bad)
                    .unwrap_err()
                    .is_not_implemented()
            );
        }
        for c in [None, Gzip, Zstd, Detect] {
            assert_eq!(c.as_str().parse::<Compression>().unwrap(), c);
        }
        assert!(
            "lz4"
                .parse::<Compression>()
                .unwrap_err()
                .is_invalid_argument()
        );
    }

    #[test]
    fn media_types() {
        assert_eq!(
            Compression::from_media_type(OCI_LAYER_GZIP).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip")
                .unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar").unwrap(),
            Compression::Detect
        );
        let e = Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+encrypted")
            .unwrap_err();
        assert_eq!(e.kind(), strata_content::ErrorKind::NotImplemented);
    }

    #[test]
    fn multi_member_gzip_and_zstd_roundtrip() {
        for c in [Compression::Gzip, Compression::Zstd] {
            let mut all = Vec::new();
            for part in [b"hello ".as_slice(), b"world".as_slice()] {
                let mut e = encoder(
                    Vec::new(),
                    Encoding {
                        compression: c,
                        level: None,
                        threads: 0,
                    },
                )
                .unwrap();
                e.write_all(part).unwrap();
                all.extend(e.finish().unwrap());
            }
            for mode in [c, Compression::Detect] {
                let mut out = String::new();
                decoder(&all[..], mode)
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                assert_eq!(out, "hello world", "{c:?} {mode:?}");
            }
        }
    }
}
