//! The cluster's certificates, made the way CockroachDB makes them: one CA per cluster,
//! one certificate per host (used both to serve and to call other members) and one per
//! operator. Every file is written whole (a temporary file renamed into place) with mode
//! 0600, and an existing file is never overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Datelike;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};
use sha2::{Digest, Sha256};

use super::Role;

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const NODE_CERT: &str = "node.crt";
pub const NODE_KEY: &str = "node.key";

/// CockroachDB's lifetimes: the CA outlives the certificates it signs.
const CA_YEARS: i32 = 10;
const LEAF_YEARS: i32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0} already exists; remove it first to make a new one")]
    AlreadyExists(PathBuf),
    #[error("no cluster CA in {0}: run `tritontube cert create-ca --certs-dir {0}` first")]
    MissingCa(PathBuf),
    #[error("{0}")]
    BadName(String),
    #[error("the certificates in {dir} cannot be used: {why}")]
    Unusable { dir: PathBuf, why: String },
    #[error("{path} is missing: make it with `{make}`")]
    Missing { path: PathBuf, make: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("making the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The files one `create-*` command wrote.
#[derive(Debug)]
pub struct Created {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn client_cert_file(name: &str) -> String {
    format!("client.{name}.crt")
}

pub fn client_key_file(name: &str) -> String {
    format!("client.{name}.key")
}

/// Longest `--name` of a CA: the common name must stay within X.509's 64 characters.
const MAX_CA_NAME: usize = 32;

/// Makes the cluster CA: `ca.crt` and `ca.key` in `dir`.
pub fn create_ca(dir: &Path) -> Result<Created, CertError> {
    create_named_ca(dir, None)
}

/// As [`create_ca`], with `label` (the operator's name for the cluster) in the CA's
/// common name. Every CA's common name also ends in an id of its own key, so that a
/// certificate of another cluster's CA is refused as signed by an unknown CA (TLS
/// matches an issuer by name first) rather than as a bad signature, which reads like
/// tampering.
pub fn create_named_ca(dir: &Path, label: Option<&str>) -> Result<Created, CertError> {
    if let Some(label) = label {
        let valid = !label.trim().is_empty()
            && label.len() <= MAX_CA_NAME
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '));
        if !valid {
            return Err(CertError::BadName(format!(
                "CA name {label:?}: use up to {MAX_CA_NAME} letters, digits, spaces, '-', '_' \
                 or '.'"
            )));
        }
    }
    let created = planned(dir, CA_CERT, CA_KEY)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(&ca_common_name(label, &key), Role::Ca);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_YEARS);
    let cert = params.self_signed(&key)?;
    write_pair(&created, &cert.pem(), &key.serialize_pem())?;
    Ok(created)
}

/// Makes `node.crt`/`node.key`, valid for every name and address in `hosts`: the host's
/// certificate for serving (storage node, web node, admin service) and for calling the
/// other members.
pub fn create_node(dir: &Path, hosts: &[String]) -> Result<Created, CertError> {
    if hosts.is_empty() {
        return Err(CertError::BadName(
            "give at least one host name or address the node is reached by".into(),
        ));
    }
    let created = planned(dir, NODE_CERT, NODE_KEY)?;
    let mut params = CertificateParams::new(hosts.to_vec())?;
    params.distinguished_name = name("node", Role::Node);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    sign_and_write(dir, params, &created)?;
    Ok(created)
}

/// Makes `client.NAME.crt`/`client.NAME.key`: an operator's certificate for `tritontube
/// admin` and the console.
pub fn create_client(dir: &Path, user: &str) -> Result<Created, CertError> {
    let valid = !user.is_empty()
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !user.starts_with('.');
    if !valid {
        return Err(CertError::BadName(format!(
            "client name {user:?}: use letters, digits, '-', '_' or '.'"
        )));
    }
    let created = planned(dir, &client_cert_file(user), &client_key_file(user))?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(user, Role::Client);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    sign_and_write(dir, params, &created)?;
    Ok(created)
}

/// `Tritontube CA [LABEL] ID`, ID the first 8 hex digits of the SHA-256 of the CA's public
/// key: distinct for every CA, and the same however often the certificate is read.
fn ca_common_name(label: Option<&str>, key: &KeyPair) -> String {
    let id = hex::encode(&Sha256::digest(key.public_key_raw())[..4]);
    match label {
        Some(label) => format!("Tritontube CA {} {id}", label.trim()),
        None => format!("Tritontube CA {id}"),
    }
}

fn name(common_name: &str, role: Role) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Tritontube");
    name.push(DnType::OrganizationalUnitName, role.unit());
    name.push(DnType::CommonName, common_name);
    name
}

fn set_validity(params: &mut CertificateParams, years: i32) {
    let today = chrono::Utc::now().date_naive();
    // A day's slack before today covers clocks a little behind the issuer's.
    let start = today - chrono::Days::new(1);
    let (month, day) = (start.month() as u8, start.day().min(28) as u8);
    params.not_before = date_time_ymd(start.year(), month, day);
    params.not_after = date_time_ymd(start.year() + years, month, day);
}

fn sign_and_write(
    dir: &Path,
    mut params: CertificateParams,
    created: &Created,
) -> Result<(), CertError> {
    let ca_cert = dir.join(CA_CERT);
    let ca_key = dir.join(CA_KEY);
    if !ca_cert.exists() || !ca_key.exists() {
        return Err(CertError::MissingCa(dir.to_path_buf()));
    }
    let ca_cert_pem = read(&ca_cert)?;
    let ca_key = KeyPair::from_pem(&read(&ca_key)?)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key)?;
    set_validity(&mut params, LEAF_YEARS);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_pair(created, &cert.pem(), &key.serialize_pem())
}

/// The two paths, checked free before anything is made.
fn planned(dir: &Path, cert: &str, key: &str) -> Result<Created, CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let created = Created {
        cert: dir.join(cert),
        key: dir.join(key),
    };
    for path in [&created.cert, &created.key] {
        if path.exists() {
            return Err(CertError::AlreadyExists(path.clone()));
        }
    }
    Ok(created)
}

fn write_pair(created: &Created, cert_pem: &str, key_pem: &str) -> Result<(), CertError> {
    // The key first: a certificate on disk always has its key beside it.
    write_private(&created.key, key_pem)?;
    if let Err(error) = write_private(&created.cert, cert_pem) {
        let _ = std::fs::remove_file(&created.key);
        return Err(error);
    }
    Ok(())
}

/// Writes `text` to `path` whole, mode 0600 (tempfile's default), refusing to replace.
fn write_private(path: &Path, text: &str) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    file.persist_noclobber(path).map_err(|e| io(e.error))?;
    Ok(())
}

pub(super) fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}
