//! The image store: namespaced image records in SQLite, with the semantics of containerd's
//! `images.Store` (`core/metadata/images.go`).
//!
//! Records of every namespace live in one database (the `images` table; the file may be
//! shared with other metadata such as leases). A handle carries its namespace
//! ([`ImageStore::namespace`] switches). Writes run in `BEGIN IMMEDIATE` transactions on
//! a blocking thread; the connection waits on a locked database instead of failing.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> strata_content::Result<()> {
//! use strata_image::{image::Image, store::ImageStore};
//! use strata_content::{Descriptor, digest::sha256};
//! let dir = tempfile::tempdir().unwrap();
//! let images = ImageStore::open(dir.path().join("metadata.db"))?;
//! let target = Descriptor::new(
//!     "application/vnd.oci.image.manifest.v1+json".into(), 2, sha256(b"{}"));
//! images.create(Image::new("example.com/app:1", target)).await?;
//! assert_eq!(images.list(&["name~=^example"]).await?.len(), 1);
//! assert!(images.namespace("other").get("example.com/app:1").await.unwrap_err().is_not_found());
//! images.delete("example.com/app:1", None).await?;
//! # Ok(()) }
//! ```

use crate::image::Image;
use crate::metadb;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use strata_content::filters::{Adaptor, Filter, label_field};
use strata_content::{Descriptor, Digest, Error, Result};

/// The namespace a freshly opened [`ImageStore`] uses.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Namespaced image records in a SQLite database. Cheap to clone; clones share the
/// connection.
#[derive(Clone)]
pub struct ImageStore {
    conn: Arc<Mutex<Connection>>,
    namespace: Arc<str>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS images (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    target TEXT NOT NULL,
    labels TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
);";

impl ImageStore {
    /// Opens (creating if needed) the database at `path`, with [`strata_content::sqlite`]'s
    /// policy (WAL, busy timeout, retry). The handle uses namespace [`DEFAULT_NAMESPACE`].
    ///
    /// # Errors
    /// `Io` when the parent directory cannot be created; `Internal` when the database
    /// cannot be opened or its schema created.
    pub fn open(path: impl AsRef<Path>) -> Result<ImageStore> {
        let path = path.as_ref();
        let conn = metadb::open(path)?;
        strata_content::sqlite::ensure_schema(&conn, "images", SCHEMA)
            .map_err(|e| Error::db(format!("set up image database {}", path.display()), e))?;
        Ok(ImageStore {
            conn: Arc::new(Mutex::new(conn)),
            namespace: Arc::from(DEFAULT_NAMESPACE),
        })
    }

    /// A handle on the same database for namespace `ns`.
    pub fn namespace(&self, ns: &str) -> ImageStore {
        ImageStore {
            conn: self.conn.clone(),
            namespace: Arc::from(ns),
        }
    }

    /// This handle's namespace.
    pub fn current_namespace(&self) -> &str {
        &self.namespace
    }

    async fn run<T, F>(&self, what: String, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> Result<T> + Send + 'static,
    {
        if self.namespace.is_empty() {
            return Err(Error::invalid_argument(format!(
                "{what}: namespace is empty"
            )));
        }
        let conn = self.conn.clone();
        let ns = self.namespace.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn, &ns)
        })
        .await
        .map_err(|e| Error::internal(format!("{what}: task failed: {e}")))?
    }

    /// The image `name`.
    ///
    /// # Errors
    /// `NotFound` when there is no such image in this namespace.
    pub async fn get(&self, name: &str) -> Result<Image> {
        let name = name.to_string();
        self.run(format!("get image {name:?}"), move |conn, ns| {
            get_in(conn, ns, &name)?.ok_or_else(|| not_found(ns, &name))
        })
        .await
    }

    /// The images matching any of `filters` (fields `name`, `target.digest`,
    /// `target.mediatype`, `labels.<key>`, `annotations.<key>` — the target's annotations),
    /// ordered by name. No filters list everything.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed filter.
    pub async fn list<S: AsRef<str>>(&self, filters: &[S]) -> Result<Vec<Image>> {
        let filter = Filter::parse_all(filters)?;
        self.run("list images".into(), move |conn, ns| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT name, target, labels, created_at, updated_at FROM images \
                     WHERE namespace = ?1 ORDER BY name",
                )
                .map_err(|e| Error::db("list images", e))?;
            let rows = stmt
                .query_map(params![ns], row_to_parts)
                .map_err(|e| Error::db("list images", e))?;
            let mut out = Vec::new();
            for row in rows {
                let img = parts_to_image(row.map_err(|e| Error::db("list images", e))?)?;
                if filter.matches(&ImageAdaptor(&img)) {
                    out.push(img);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Every image of every namespace, as `(namespace, image)`, ordered by namespace then
    /// name (for garbage collection and administration).
    ///
    /// # Errors
    /// `Internal` when the database cannot be read.
    pub async fn all_images(&self) -> Result<Vec<(String, Image)>> {
        self.run("list images of all namespaces".into(), |conn, _| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT namespace, name, target, labels, created_at, updated_at FROM images \
                     ORDER BY namespace, name",
                )
                .map_err(|e| Error::db("list all images", e))?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        (
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                            row.get(5)?,
                        ),
                    ))
                })
                .map_err(|e| Error::db("list all images", e))?;
            let mut out = Vec::new();
            for row in rows {
                let (ns, parts) = row.map_err(|e| Error::db("list all images", e))?;
                out.push((ns, parts_to_image(parts)?));
            }
            Ok(out)
        })
        .await
    }

    /// The namespaces that have at least one image, sorted.
    ///
    /// # Errors
    /// `Internal` when the database cannot be read.
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        self.run("list image namespaces".into(), |conn, _| {
            let mut stmt = conn
                .prepare_cached("SELECT DISTINCT namespace FROM images ORDER BY namespace")
                .map_err(|e| Error::db("list image namespaces", e))?;
            let rows = stmt
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(|e| Error::db("list image namespaces", e))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| Error::db("list image namespaces", e))
        })
        .await
    }

    /// Creates the record `image`; its times are set to now. Empty label values are
    /// dropped. Returns the stored record.
    ///
    /// # Errors
    /// `AlreadyExists` when the name is taken in this namespace; `InvalidArgument` for an
    /// empty name, an invalid label, or a target with size 0 or no media type.
    pub async fn create(&self, mut image: Image) -> Result<Image> {
        clean(&mut image);
        validate(&image)?;
        let now = SystemTime::now();
        image.created_at = now;
        image.updated_at = now;
        self.run(format!("create image {:?}", image.name), move |conn, ns| {
            let tx = metadb::begin(conn, TransactionBehavior::Immediate, "create image")?;
            if get_in(&tx, ns, &image.name)?.is_some() {
                return Err(Error::already_exists(format!(
                    "image {:?} in namespace {ns:?}",
                    image.name
                )));
            }
            put_in(&tx, ns, &image)?;
            tx.commit()
                .map_err(|e| Error::db(format!("commit image {:?}", image.name), e))?;
            Ok(image)
        })
        .await
    }

    /// Updates the record named `image.name`. With no `fieldpaths`, everything but the
    /// creation time is replaced by `image`. Otherwise only the named fields are:
    /// `labels` (all), `labels.<key>` (one; an empty or absent value deletes it),
    /// `target` (as a unit), `annotations` (all of the target's), `annotations.<key>`.
    /// Returns the stored record.
    ///
    /// # Errors
    /// `NotFound` when there is no such image; `InvalidArgument` for any other field path,
    /// an empty name, or a result that fails the checks of [`ImageStore::create`].
    pub async fn update(&self, image: Image, fieldpaths: &[String]) -> Result<Image> {
        if image.name.is_empty() {
            return Err(Error::invalid_argument("image name is required for update"));
        }
        let fieldpaths = fieldpaths.to_vec();
        self.run(format!("update image {:?}", image.name), move |conn, ns| {
            let tx = metadb::begin(conn, TransactionBehavior::Immediate, "update image")?;
            let current =
                get_in(&tx, ns, &image.name)?.ok_or_else(|| not_found(ns, &image.name))?;
            let mut updated = if fieldpaths.is_empty() {
                image.clone()
            } else {
                apply_fieldpaths(current.clone(), &image, &fieldpaths)?
            };
            clean(&mut updated);
            validate(&updated)?;
            updated.created_at = current.created_at;
            updated.updated_at = SystemTime::now();
            put_in(&tx, ns, &updated)?;
            tx.commit()
                .map_err(|e| Error::db(format!("commit image {:?}", image.name), e))?;
            Ok(updated)
        })
        .await
    }

    /// Deletes the image `name`. With `expected_target`, the image is deleted only if its
    /// target has that digest (containerd's `DeleteTarget`).
    ///
    /// # Errors
    /// `NotFound` when there is no such image, or its target differs from
    /// `expected_target`.
    pub async fn delete(&self, name: &str, expected_target: Option<&Digest>) -> Result<()> {
        let name = name.to_string();
        let expected = expected_target.cloned();
        self.run(format!("delete image {name:?}"), move |conn, ns| {
            let tx = metadb::begin(conn, TransactionBehavior::Immediate, "delete image")?;
            let current = get_in(&tx, ns, &name)?.ok_or_else(|| not_found(ns, &name))?;
            if let Some(want) = &expected
                && current.target.digest() != want
            {
                return Err(Error::not_found(format!(
                    "image {name:?} in namespace {ns:?} has target {}, not {want}",
                    current.target.digest()
                )));
            }
            tx.execute(
                "DELETE FROM images WHERE namespace = ?1 AND name = ?2",
                params![ns, name],
            )
            .map_err(|e| Error::db(format!("delete image {name:?}"), e))?;
            tx.commit()
                .map_err(|e| Error::db(format!("commit delete of image {name:?}"), e))
        })
        .await
    }
}

fn not_found(ns: &str, name: &str) -> Error {
    Error::not_found(format!("image {name:?} in namespace {ns:?}"))
}

type Parts = (String, String, String, i64, i64);

fn row_to_parts(row: &rusqlite::Row<'_>) -> rusqlite::Result<Parts> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn parts_to_image((name, target, labels, created, updated): Parts) -> Result<Image> {
    let corrupt = |what: &str, e: serde_json::Error| {
        Error::internal(format!("image {name:?}: corrupt {what} in database: {e}"))
    };
    Ok(Image {
        target: serde_json::from_str(&target).map_err(|e| corrupt("target", e))?,
        labels: serde_json::from_str(&labels).map_err(|e| corrupt("labels", e))?,
        created_at: metadb::from_nanos(created),
        updated_at: metadb::from_nanos(updated),
        name,
    })
}

fn get_in(conn: &Connection, ns: &str, name: &str) -> Result<Option<Image>> {
    conn.prepare_cached(
        "SELECT name, target, labels, created_at, updated_at FROM images \
         WHERE namespace = ?1 AND name = ?2",
    )
    .and_then(|mut s| s.query_row(params![ns, name], row_to_parts).optional())
    .map_err(|e| Error::db(format!("get image {name:?}"), e))?
    .map(parts_to_image)
    .transpose()
}

fn put_in(conn: &Connection, ns: &str, image: &Image) -> Result<()> {
    let target = serde_json::to_string(&image.target)
        .map_err(|e| Error::internal(format!("encode target of image {:?}: {e}", image.name)))?;
    let labels = serde_json::to_string(&image.labels)
        .map_err(|e| Error::internal(format!("encode labels of image {:?}: {e}", image.name)))?;
    conn.execute(
        "INSERT OR REPLACE INTO images (namespace, name, target, labels, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            ns,
            image.name,
            target,
            labels,
            metadb::to_nanos(image.created_at),
            metadb::to_nanos(image.updated_at)
        ],
    )
    .map_err(|e| Error::db(format!("write image {:?}", image.name), e))?;
    Ok(())
}

/// Drops empty label and annotation values (setting a key to "" deletes it).
fn clean(image: &mut Image) {
    image.labels.retain(|_, v| !v.is_empty());
    if let Some(mut a) = image.target.annotations().clone() {
        a.retain(|_, v| !v.is_empty());
        image
            .target
            .set_annotations(if a.is_empty() { None } else { Some(a) });
    }
}

/// containerd's `validateImage`: a name, valid labels, and a target with a size and a
/// media type (its digest is valid by construction).
fn validate(image: &Image) -> Result<()> {
    if image.name.is_empty() {
        return Err(Error::invalid_argument("image name must not be empty"));
    }
    strata_content::labels::validate(&image.labels)
        .map_err(|e| e.context(format!("labels of image {:?}", image.name)))?;
    validate_target(&image.name, &image.target)
}

fn validate_target(name: &str, target: &Descriptor) -> Result<()> {
    if target.size() == 0 {
        return Err(Error::invalid_argument(format!(
            "image {name:?}: target size must be greater than zero"
        )));
    }
    if target.media_type().as_ref().is_empty() {
        return Err(Error::invalid_argument(format!(
            "image {name:?}: target media type must be set"
        )));
    }
    Ok(())
}

fn apply_fieldpaths(mut current: Image, image: &Image, fieldpaths: &[String]) -> Result<Image> {
    for path in fieldpaths {
        if let Some(key) = path.strip_prefix("labels.") {
            match image.labels.get(key) {
                Some(v) => current.labels.insert(key.to_string(), v.clone()),
                None => current.labels.remove(key),
            };
            continue;
        }
        if let Some(key) = path.strip_prefix("annotations.") {
            let mut a = current.target.annotations().clone().unwrap_or_default();
            match image.target.annotations().as_ref().and_then(|m| m.get(key)) {
                Some(v) => a.insert(key.to_string(), v.clone()),
                None => a.remove(key),
            };
            current.target.set_annotations(Some(a));
            continue;
        }
        match path.as_str() {
            "labels" => current.labels = image.labels.clone(),
            "target" => current.target = image.target.clone(),
            "annotations" => {
                current
                    .target
                    .set_annotations(image.target.annotations().clone());
            }
            other => {
                return Err(Error::invalid_argument(format!(
                    "cannot update {other:?} field on image {:?}",
                    image.name
                )));
            }
        }
    }
    Ok(current)
}

struct ImageAdaptor<'a>(&'a Image);

impl Adaptor for ImageAdaptor<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        let img = self.0;
        match path.first()?.as_str() {
            "name" => Some(img.name.clone()).filter(|n| !n.is_empty()),
            "target" => match path.get(1)?.as_str() {
                "digest" => Some(img.target.digest().to_string()),
                "mediatype" => Some(img.target.media_type().to_string()),
                _ => None,
            },
            "labels" => label_field(&img.labels, &path[1..]),
            "annotations" => {
                let a: BTreeMap<String, String> = img
                    .target
                    .annotations()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                label_field(&a, &path[1..])
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
