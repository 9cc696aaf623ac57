//! A test CA and the certificates it signs (rcgen), written as PEM files.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};

/// A certificate and its key, as PEM files.
pub struct Pem {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA in a directory: `<name>.crt`, and leaf certificates it signs.
pub struct Ca {
    pub dir: PathBuf,
    /// The CA certificate (PEM).
    pub cert: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    /// A new CA named `name`, written to `dir/<name>.crt`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        std::fs::write(&cert, issuer.pem()).unwrap();
        Ca {
            dir: dir.to_path_buf(),
            cert,
            issuer,
        }
    }

    fn leaf(&self, name: &str, sans: Vec<SanType>, eku: ExtendedKeyUsagePurpose) -> Pem {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![eku];
        let key = KeyPair::generate().unwrap();
        let c = p.signed_by(&key, &self.issuer).unwrap();
        let out = Pem {
            cert: self.dir.join(format!("{name}.cert")),
            key: self.dir.join(format!("{name}.key")),
        };
        std::fs::write(&out.cert, c.pem()).unwrap();
        std::fs::write(&out.key, key.serialize_pem()).unwrap();
        out
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self, name: &str) -> Pem {
        let sans = vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::DnsName("localhost".try_into().unwrap()),
        ];
        self.leaf(name, sans, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate.
    pub fn client(&self, name: &str) -> Pem {
        self.leaf(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// A self-signed token-signing certificate (the registry's `rootcertbundle`) and its
/// key, and the certificate's DER for a JWT `x5c` header.
pub struct Signer {
    pub bundle: PathBuf,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
}

impl Signer {
    pub fn new(dir: &Path) -> Signer {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "strata test token signer");
        let key = KeyPair::generate().unwrap();
        let c = p.self_signed(&key).unwrap();
        let bundle = dir.join("token-bundle.pem");
        std::fs::write(&bundle, c.pem()).unwrap();
        Signer {
            bundle,
            key_pem: key.serialize_pem(),
            cert_der: c.der().to_vec(),
        }
    }
}
