//! Platforms: parse, format, normalize and match `os/arch[/variant]`, with the semantics
//! of containerd's `platforms` package.
//!
//! [`Platform`] keeps its fields as strings (oci-spec's enum-typed platform loses
//! `os.version`; convert with [`Platform::from_oci`] / [`Platform::to_oci`]).
//! Normalization maps aliases (`aarch64`→`arm64`, `x86_64`→`amd64`, `armhf`→`arm/v7`,
//! `macos`→`darwin` …); matching always compares normalized platforms.
//!
//! ```
//! use strata_image::platforms::{self, Matcher, MatchComparer};
//! let p = platforms::parse("linux/aarch64")?;
//! assert_eq!(platforms::format(&p), "linux/arm64");
//! let m = platforms::only(p);
//! assert!(m.matches(&platforms::parse("linux/arm/v7")?));   // arm64 runs arm/v7
//! assert!(!m.matches(&platforms::parse("linux/amd64")?));
//! let (a, b) = (platforms::parse("linux/arm64")?, platforms::parse("linux/arm/v8")?);
//! assert!(m.less(&a, &b)); // the exact platform sorts first
//! # Ok::<(), strata_content::Error>(())
//! ```

use std::sync::Arc;
use strata_content::{Error, Result};

/// A platform: operating system, CPU architecture and optional variant/OS version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// GOOS-style operating system (`linux`, `windows`, `darwin` …).
    pub os: String,
    /// GOARCH-style architecture (`amd64`, `arm64`, `arm`, `386` …).
    pub architecture: String,
    /// CPU variant (`v7`, `v8`, `v3` …), empty when none.
    pub variant: String,
    /// OS version (Windows builds), empty when none.
    pub os_version: String,
    /// Required OS features.
    pub os_features: Vec<String>,
}

impl Platform {
    /// A platform from its parts (not normalized).
    pub fn new(os: &str, architecture: &str, variant: &str) -> Self {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.into(),
            ..Default::default()
        }
    }

    /// Converts an oci-spec platform.
    pub fn from_oci(p: &oci_spec::image::Platform) -> Self {
        Platform {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone().unwrap_or_default(),
            os_version: p.os_version().clone().unwrap_or_default(),
            os_features: p.os_features().clone().unwrap_or_default(),
        }
    }

    /// Converts to an oci-spec platform (empty optional fields become `None`).
    pub fn to_oci(&self) -> oci_spec::image::Platform {
        let mut p = oci_spec::image::Platform::default();
        p.set_os(self.os.as_str().into());
        p.set_architecture(self.architecture.as_str().into());
        p.set_variant(non_empty(&self.variant));
        p.set_os_version(non_empty(&self.os_version));
        p.set_os_features((!self.os_features.is_empty()).then(|| self.os_features.clone()));
        p
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format(self))
    }
}

impl std::str::FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse(s)
    }
}

/// The platform of a descriptor (`None` when it has none).
pub fn of_descriptor(desc: &strata_content::Descriptor) -> Option<Platform> {
    desc.platform().as_ref().map(Platform::from_oci)
}

const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "ppc64",
    "ppc64le",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

/// Normalizes an OS name: lowercase, `macos` → `darwin`.
pub fn normalize_os(os: &str) -> String {
    let os = os.to_ascii_lowercase();
    if os == "macos" { "darwin".into() } else { os }
}

/// Normalizes an architecture and variant as containerd does: lowercase; `i386` → `386`;
/// `x86_64`/`x86-64` → `amd64` (variant `v1` dropped); `aarch64` → `arm64` (`8`/`v8`/`v8.0`
/// dropped, `9`/`v9.0` → `v9`); `armhf` → `arm/v7`; `armel` → `arm/v6`; `arm` with no
/// variant or `7` → `v7`, `5`/`6`/`8` → `v5`/`v6`/`v8`.
pub fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    match arch.as_str() {
        "i386" => ("386".into(), String::new()),
        "x86_64" | "x86-64" | "amd64" => {
            let v = if variant == "v1" {
                String::new()
            } else {
                variant
            };
            ("amd64".into(), v)
        }
        "aarch64" | "arm64" => {
            let v = match variant.as_str() {
                "8" | "v8" | "v8.0" => String::new(),
                "9" | "9.0" | "v9.0" => "v9".into(),
                _ => variant,
            };
            ("arm64".into(), v)
        }
        "armhf" => ("arm".into(), "v7".into()),
        "armel" => ("arm".into(), "v6".into()),
        "arm" => {
            let v = match variant.as_str() {
                "" | "7" => "v7".into(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            };
            ("arm".into(), v)
        }
        _ => (arch, variant),
    }
}

/// Normalizes a platform's OS, architecture and variant (see [`normalize_arch`]).
pub fn normalize(p: &Platform) -> Platform {
    let (architecture, variant) = normalize_arch(&p.architecture, &p.variant);
    Platform {
        os: normalize_os(&p.os),
        architecture,
        variant,
        os_version: p.os_version.clone(),
        os_features: p.os_features.clone(),
    }
}

fn valid_component(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Parses a platform specifier: `os`, `arch`, `os/arch`, `os/arch/variant`, where the OS
/// may carry a version as `os(10.0.17763)`. A lone OS takes the host's architecture; a
/// lone architecture takes the host's OS. The result is normalized, except that
/// `arm/v7` keeps an empty variant for two-part specifiers and `arm64` gets `v8` for
/// three-part ones, so that [`format()`] gives back a canonical string.
///
/// # Errors
/// `InvalidArgument` for an empty specifier, wildcards, too many parts, characters other
/// than `[A-Za-z0-9_.-]`, or a lone word that is neither a known OS nor a known
/// architecture.
pub fn parse(spec: &str) -> Result<Platform> {
    let bad = |why: &str| Error::invalid_argument(format!("platform specifier {spec:?}: {why}"));
    if spec.contains('*') {
        return Err(bad("wildcards are not supported"));
    }
    let parts: Vec<&str> = spec.split('/').collect();
    if parts.len() > 3 {
        return Err(bad("more than three parts"));
    }
    let (os_part, os_version) = match parts[0].split_once('(') {
        Some((os, rest)) => match rest.strip_suffix(')') {
            Some(ver) if !ver.contains('(') && !ver.contains(')') && !ver.is_empty() => {
                (os, ver.to_string())
            }
            _ => return Err(bad("malformed OS version")),
        },
        None => (parts[0], String::new()),
    };
    for (i, part) in parts.iter().enumerate() {
        let part = if i == 0 { os_part } else { part };
        if !valid_component(part) {
            return Err(bad(&format!("invalid component {part:?}")));
        }
    }
    let mut p = Platform {
        os_version,
        ..Default::default()
    };
    match parts.len() {
        1 => {
            let os = normalize_os(os_part);
            if KNOWN_OS.contains(&os.as_str()) {
                let host = default_spec();
                p.os = os;
                p.architecture = host.architecture;
                if p.architecture == "arm" && host.variant != "v7" {
                    p.variant = host.variant;
                }
                return Ok(p);
            }
            if !p.os_version.is_empty() {
                return Err(bad("an OS version needs an OS"));
            }
            let (arch, variant) = normalize_arch(os_part, "");
            if !KNOWN_ARCH.contains(&arch.as_str()) {
                return Err(bad("unknown operating system or architecture"));
            }
            p.os = default_spec().os;
            p.architecture = arch;
            p.variant = if p.architecture == "arm" && variant == "v7" {
                String::new()
            } else {
                variant
            };
            Ok(p)
        }
        2 => {
            p.os = normalize_os(os_part);
            let (arch, variant) = normalize_arch(parts[1], "");
            p.variant = if arch == "arm" && variant == "v7" {
                String::new()
            } else {
                variant
            };
            p.architecture = arch;
            Ok(p)
        }
        _ => {
            p.os = normalize_os(os_part);
            let (arch, variant) = normalize_arch(parts[1], parts[2]);
            p.variant = if arch == "arm64" && variant.is_empty() {
                "v8".into()
            } else {
                variant
            };
            p.architecture = arch;
            Ok(p)
        }
    }
}

/// Formats `os/arch[/variant]` (empty parts are skipped; the OS version is not shown).
pub fn format(p: &Platform) -> String {
    [p.os.as_str(), p.architecture.as_str(), p.variant.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/")
}

/// Formats like [`format()`], with the OS version as `os(version)` when set.
pub fn format_all(p: &Platform) -> String {
    if p.os_version.is_empty() {
        return format(p);
    }
    let mut q = p.clone();
    q.os = format!("{}({})", p.os, p.os_version);
    format(&q)
}

/// The host's platform (`std::env::consts` mapped to GOOS/GOARCH names; `arm64` hosts get
/// variant `v8`, 32-bit `arm` hosts `v7`).
pub fn default_spec() -> Platform {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let (arch, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", ""),
        "x86" => ("386", ""),
        "aarch64" => ("arm64", "v8"),
        "arm" => ("arm", "v7"),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", ""),
        "powerpc64" => ("ppc64", ""),
        "loongarch64" => ("loong64", ""),
        "mips64" if cfg!(target_endian = "little") => ("mips64le", ""),
        "mips" if cfg!(target_endian = "little") => ("mipsle", ""),
        other => (other, ""),
    };
    Platform::new(os, arch, variant)
}

/// Decides whether a platform is acceptable.
pub trait Matcher: Send + Sync {
    /// Whether `p` matches.
    fn matches(&self, p: &Platform) -> bool;
}

/// A [`Matcher`] that also orders platforms by preference.
pub trait MatchComparer: Matcher {
    /// Whether `a` is preferred over `b`.
    fn less(&self, a: &Platform, b: &Platform) -> bool;
}

/// Matches exactly one (normalized) platform; the OS version must be equal when both
/// sides have one.
#[derive(Debug, Clone)]
pub struct ExactMatcher {
    platform: Platform,
}

/// A matcher for exactly `p` (after normalization), as containerd's `NewMatcher`.
pub fn new_matcher(p: &Platform) -> ExactMatcher {
    ExactMatcher {
        platform: normalize(p),
    }
}

impl Matcher for ExactMatcher {
    fn matches(&self, p: &Platform) -> bool {
        let n = normalize(p);
        let m = &self.platform;
        m.os == n.os
            && m.architecture == n.architecture
            && m.variant == n.variant
            && (m.os_version.is_empty() || n.os_version.is_empty() || m.os_version == n.os_version)
    }
}

/// Matches any of a list of platforms and prefers earlier ones (containerd's `Ordered`).
#[derive(Debug, Clone)]
pub struct OrderedMatcher {
    matchers: Vec<ExactMatcher>,
}

impl OrderedMatcher {
    fn rank(&self, p: &Platform) -> usize {
        self.matchers
            .iter()
            .position(|m| m.matches(p))
            .unwrap_or(self.matchers.len())
    }
}

impl Matcher for OrderedMatcher {
    fn matches(&self, p: &Platform) -> bool {
        self.matchers.iter().any(|m| m.matches(p))
    }
}

impl MatchComparer for OrderedMatcher {
    fn less(&self, a: &Platform, b: &Platform) -> bool {
        self.rank(a) < self.rank(b)
    }
}

/// Matches any of a list of platforms, with no preference between them beyond
/// "matching sorts before not matching" (containerd's `Any`).
#[derive(Debug, Clone)]
pub struct AnyMatcher {
    matchers: Vec<ExactMatcher>,
}

impl Matcher for AnyMatcher {
    fn matches(&self, p: &Platform) -> bool {
        self.matchers.iter().any(|m| m.matches(p))
    }
}

impl MatchComparer for AnyMatcher {
    fn less(&self, a: &Platform, b: &Platform) -> bool {
        self.matches(a) && !self.matches(b)
    }
}

/// Matches every platform and prefers none (containerd's `All`).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllMatcher;

impl Matcher for AllMatcher {
    fn matches(&self, _: &Platform) -> bool {
        true
    }
}

impl MatchComparer for AllMatcher {
    fn less(&self, _: &Platform, _: &Platform) -> bool {
        false
    }
}

/// The platforms `p` can run, most preferred first (containerd's `platformVector`):
/// `amd64/vN` runs `amd64/vN-1 … v1` and `386`; `arm/vN` runs `arm/vN-1 … v5`;
/// `arm64/vX.Y` runs lower `arm64` variants (`v9.Y` down to `v9`, then `v8.(Y+5)` down to
/// `v8`) and `arm/v8 … v5`.
pub fn compatible(p: &Platform) -> Vec<Platform> {
    let p = normalize(p);
    let with = |arch: &str, variant: String| Platform {
        architecture: arch.into(),
        variant,
        ..p.clone()
    };
    let mut out = vec![p.clone()];
    match p.architecture.as_str() {
        "amd64" => {
            if let Ok(n) = p.variant.trim_start_matches('v').parse::<u32>() {
                for v in (1..n).rev() {
                    out.push(with("amd64", format!("v{v}")));
                }
            }
            out.push(with("386", String::new()));
        }
        "arm" => {
            if let Ok(n) = p.variant.trim_start_matches('v').parse::<u32>() {
                for v in (5..n).rev() {
                    out.push(with("arm", format!("v{v}")));
                }
            }
        }
        "arm64" => {
            let variant = if p.variant.is_empty() {
                "v8".to_string()
            } else {
                p.variant.clone()
            };
            let (major_s, minor_s) = match variant.split_once('.') {
                Some((a, b)) => (a, Some(b)),
                None => (variant.as_str(), None),
            };
            if let Ok(mut major) = major_s.trim_start_matches('v').parse::<u32>()
                && major >= 8
            {
                let mut minor = match minor_s {
                    Some(m) if variant.len() == 4 => m.parse::<u32>().unwrap_or(0),
                    _ => 0,
                };
                let name = |maj: u32, min: u32| {
                    if min == 0 {
                        format!("v{maj}")
                    } else {
                        format!("v{maj}.{min}")
                    }
                };
                if major == 9 {
                    for m in (0..minor).rev() {
                        out.push(with("arm64", name(9, m)));
                    }
                    // v9.0 diverged from v8.5: v9.x runs v8.(x+5) and below.
                    minor += 5;
                    major = 8;
                    out.push(with("arm64", format!("v8.{minor}")));
                }
                for m in (0..minor).rev() {
                    out.push(with("arm64", name(major, m)));
                }
            }
            let arm_variant = if variant.starts_with("v8.") || variant.starts_with("v9.") {
                "v8".to_string()
            } else {
                variant
            };
            out.extend(compatible(&with("arm", arm_variant)));
        }
        _ => {}
    }
    out
}

/// Matches `p` and every platform it can run, preferring `p` itself then the most capable
/// compatible one (containerd's `Only`).
pub fn only(p: Platform) -> OrderedMatcher {
    OrderedMatcher {
        matchers: compatible(&p).iter().map(new_matcher).collect(),
    }
}

/// Matches `p` only, without compatible variants (containerd's `OnlyStrict`).
pub fn only_strict(p: Platform) -> OrderedMatcher {
    ordered(vec![p])
}

/// Matches any of `ps`, preferring earlier ones.
pub fn ordered(ps: Vec<Platform>) -> OrderedMatcher {
    OrderedMatcher {
        matchers: ps.iter().map(new_matcher).collect(),
    }
}

/// Matches any of `ps` without preference between them.
pub fn any(ps: Vec<Platform>) -> AnyMatcher {
    AnyMatcher {
        matchers: ps.iter().map(new_matcher).collect(),
    }
}

/// Matches every platform.
pub fn all() -> AllMatcher {
    AllMatcher
}

/// The host's platform and what it can run ([`only`] of [`default_spec`]).
pub fn default_matcher() -> OrderedMatcher {
    only(default_spec())
}

/// [`default_matcher`] behind an `Arc`, ready for the handlers.
pub fn default_arc() -> Arc<dyn MatchComparer> {
    Arc::new(default_matcher())
}

#[cfg(test)]
mod tests;
