//! [`ImageService::commit`]: a container's active snapshot → a new image.
//!
//! The seed flow of nerdctl and moby, on strata's pieces, under a lease:
//! 1. diff the active snapshot against its parent (overlay: from the upperdir alone;
//!    otherwise a double walk) → a layer blob labelled with its DiffID;
//! 2. a new config from the base image's: `rootfs.diff_ids` + DiffID, a history entry
//!    (created, author, comment, created_by), optional config changes;
//! 3. apply the layer into a snapshot keyed by the new ChainID on the base chain, so the
//!    new image needs no unpack;
//! 4. write the config (label `containerd.io/gc.ref.snapshot.<sn>`) and an OCI manifest
//!    (labels `containerd.io/gc.ref.content.*`);
//! 5. create or update the image record.
//!
//! An empty diff makes an image with a history entry marked `empty_layer` and no new
//! layer, unless [`CommitOptions::refuse_empty`] is set.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value, json};
use strata_content::labels::{GC_REF_SNAPSHOT, UNCOMPRESSED};
use strata_content::{Descriptor, Digest, Error, Labels, MediaType, Result, digest};
use strata_diff::{ChannelReader, Comparer, Compression, DiffOpts, WalkingDiff};

use super::ImageService;
use super::layer::{LayerUnpacker, OpenLayer};
use crate::identity::{chain_id, chain_id_step};
use crate::image::{self as img, Image};
use crate::leases::{LeaseManager, Resource};
use crate::media_types as mt;
use crate::platforms;

/// The label `snapshot prepare --from-image` puts on a container snapshot: the image it
/// was made from, which [`ImageService::commit`] uses as the base.
pub const IMAGE_LABEL: &str = "strata.io/image";

/// DiffID of an empty tar (1024 zero bytes): what an empty diff produces.
pub const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// Changes to the image config (Dockerfile-like `--change` instructions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigChanges {
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `Env` entries `K=V` (replacing an entry with the same key).
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `Labels` to add or replace.
    pub labels: BTreeMap<String, String>,
    /// `ExposedPorts` to add (`80/tcp`).
    pub exposed_ports: Vec<String>,
    /// `User`.
    pub user: Option<String>,
}

impl ConfigChanges {
    /// Parses one Dockerfile-style instruction: `CMD …`, `ENTRYPOINT …` (JSON array or
    /// shell form), `ENV K=V …`, `WORKDIR dir`, `LABEL k=v …`, `EXPOSE 80[/tcp] …`,
    /// `USER u`.
    ///
    /// # Errors
    /// `InvalidArgument` for anything else.
    ///
    /// ```
    /// use strata_image::service::ConfigChanges;
    /// let mut c = ConfigChanges::default();
    /// c.apply_instruction(r#"CMD ["/bin/sh", "-c", "echo hi"]"#).unwrap();
    /// c.apply_instruction("ENV A=1 B=2").unwrap();
    /// assert_eq!(c.cmd.as_deref().unwrap()[0], "/bin/sh");
    /// assert_eq!(c.env, vec!["A=1", "B=2"]);
    /// ```
    pub fn apply_instruction(&mut self, line: &str) -> Result<()> {
        let line = line.trim();
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let bad = || Error::invalid_argument(format!("unsupported change {line:?}"));
        let exec_form = |s: &str| -> Vec<String> {
            serde_json::from_str::<Vec<String>>(s)
                .unwrap_or_else(|_| vec!["/bin/sh".into(), "-c".into(), s.to_string()])
        };
        match word.to_ascii_uppercase().as_str() {
            "CMD" => self.cmd = Some(exec_form(rest)),
            "ENTRYPOINT" => self.entrypoint = Some(exec_form(rest)),
            "ENV" => {
                for kv in rest.split_whitespace() {
                    if !kv.contains('=') {
                        return Err(bad());
                    }
                    self.env.push(kv.to_string());
                }
            }
            "WORKDIR" if !rest.is_empty() => self.working_dir = Some(rest.to_string()),
            "LABEL" => {
                for kv in rest.split_whitespace() {
                    let (k, v) = kv.split_once('=').ok_or_else(bad)?;
                    self.labels
                        .insert(k.to_string(), v.trim_matches('"').to_string());
                }
            }
            "EXPOSE" => {
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    self.exposed_ports.push(p);
                }
            }
            "USER" if !rest.is_empty() => self.user = Some(rest.to_string()),
            _ => return Err(bad()),
        }
        Ok(())
    }

    fn apply(&self, config: &mut Map<String, Value>) {
        let str_array = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
        if let Some(c) = &self.cmd {
            config.insert("Cmd".into(), str_array(c));
        }
        if let Some(e) = &self.entrypoint {
            config.insert("Entrypoint".into(), str_array(e));
        }
        if !self.env.is_empty() {
            let mut env: Vec<String> = config
                .get("Env")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            for kv in &self.env {
                let key = kv.split('=').next().unwrap_or_default();
                env.retain(|e| e.split('=').next() != Some(key));
                env.push(kv.clone());
            }
            config.insert("Env".into(), str_array(&env));
        }
        if let Some(w) = &self.working_dir {
            config.insert("WorkingDir".into(), Value::String(w.clone()));
        }
        if let Some(u) = &self.user {
            config.insert("User".into(), Value::String(u.clone()));
        }
        if !self.labels.is_empty() {
            let labels = config.entry("Labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            for (k, v) in &self.labels {
                labels[k] = Value::String(v.clone());
            }
        }
        if !self.exposed_ports.is_empty() {
            let ports = config.entry("ExposedPorts").or_insert_with(|| json!({}));
            if !ports.is_object() {
                *ports = json!({});
            }
            for p in &self.exposed_ports {
                ports[p] = json!({});
            }
        }
    }
}

/// Options of [`ImageService::commit`].
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// The snapshotter holding the container snapshot; default the service's default.
    pub snapshotter: Option<String>,
    /// The image the container was made from; default the snapshot's
    /// [`IMAGE_LABEL`] label. Without either, the parent chain must be empty (a commit
    /// from scratch).
    pub base_image: Option<String>,
    /// History `author` (also the config's `author`).
    pub author: Option<String>,
    /// History `comment`.
    pub message: Option<String>,
    /// History `created_by`; default `strata commit`.
    pub created_by: Option<String>,
    /// Layer compression (gzip by default).
    pub compression: Compression,
    /// Config changes.
    pub changes: ConfigChanges,
    /// Fail with `FailedPrecondition` when nothing changed, instead of making an image
    /// with an `empty_layer` history entry.
    pub refuse_empty: bool,
    /// Labels of the image record.
    pub image_labels: Labels,
}

/// What [`ImageService::commit`] made.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The image record.
    pub image: Image,
    /// The config blob.
    pub config: Descriptor,
    /// The new layer, `None` for an empty diff.
    pub layer: Option<Descriptor>,
    /// The new layer's DiffID (`None` for an empty diff).
    pub diff_id: Option<Digest>,
    /// The snapshot holding the new image's layers.
    pub chain_id: Option<Digest>,
}

/// The base of a commit: manifest layers and config of the image the container came from.
struct Base {
    layers: Vec<Descriptor>,
    config: Map<String, Value>,
    diff_ids: Vec<Digest>,
}

/// The new layer a commit made (or found empty).
struct NewLayer {
    /// The layer blob.
    layer: Descriptor,
    /// Its DiffID.
    diff_id: Digest,
    /// The diff was empty: no layer goes into the image.
    empty: bool,
    /// The snapshot of the new image's layers (the base's for an empty diff).
    chain: Option<Digest>,
}

impl ImageService {
    /// Commits the active snapshot `container_key` as the image `new_ref` (see the
    /// [module docs](self)).
    ///
    /// # Errors
    /// - `NotFound` for a missing snapshot, base image or snapshotter.
    /// - `FailedPrecondition` when `container_key` is not active, its parent is not the
    ///   base image's top snapshot, or the diff is empty and `refuse_empty` is set.
    /// - diff, apply and content errors.
    pub async fn commit(
        &self,
        container_key: &str,
        new_ref: &str,
        opts: CommitOptions,
    ) -> Result<Committed> {
        let lease = self
            .flow_lease(std::time::Duration::from_secs(3600))
            .await?;
        let handle = lease.as_ref().map(|l| l.handle());
        let res = self
            .commit_leased(container_key, new_ref, &opts, handle)
            .await;
        if let Some(l) = lease {
            l.release().await;
        }
        res.map_err(|e| e.context(format!("commit {container_key:?} as {new_ref}")))
    }

    async fn commit_leased(
        &self,
        key: &str,
        new_ref: &str,
        opts: &CommitOptions,
        lease: Option<(Arc<LeaseManager>, String)>,
    ) -> Result<Committed> {
        let (sn_name, sn) = self.snapshotter(opts.snapshotter.as_deref())?;
        let u = LayerUnpacker {
            content: self.content.clone(),
            sn,
            sn_name,
            locks: self.blob_locks.clone(),
            lease,
            sync_fs: false,
        };
        let (parent, base) = self.container(&u, key, opts).await?;
        let new = self.diff_and_apply(&u, key, &parent, &base, opts).await?;
        if new.empty && opts.refuse_empty {
            return Err(Error::failed_precondition(format!(
                "snapshot {key:?} has no changes"
            )));
        }
        let config = new_config(base.config, &base.diff_ids, &new, opts);
        let mut layers: Vec<Descriptor> = base.layers.iter().map(to_oci_layer).collect();
        if !new.empty {
            layers.push(new.layer.clone());
        }
        let mut config_labels = Labels::new();
        if let Some(c) = &new.chain {
            config_labels.insert(format!("{GC_REF_SNAPSHOT}{}", u.sn_name), c.to_string());
        }
        let lease = u.lease.as_ref();
        let (config, manifest) = crate::build::write_image_blobs(
            self.content.as_ref(),
            &config,
            config_labels,
            &layers,
            lease,
        )
        .await?;
        let mut image = Image::new(crate::reference::normalize(new_ref), manifest);
        image.labels = opts.image_labels.clone();
        let image = self.put_image(image).await?;
        Ok(Committed {
            image,
            config,
            layer: (!new.empty).then_some(new.layer),
            diff_id: (!new.empty).then_some(new.diff_id),
            chain_id: new.chain,
        })
    }

    /// The container snapshot `key` (it must be active) and its base image (the one
    /// named in the options or by its [`IMAGE_LABEL`]); returns its parent's key.
    async fn container(
        &self,
        u: &LayerUnpacker,
        key: &str,
        opts: &CommitOptions,
    ) -> Result<(String, Base)> {
        let info = u.sn.stat(key).await?;
        if info.kind != strata_snapshot::Kind::Active {
            return Err(Error::failed_precondition(format!(
                "snapshot {key:?} is {}, not active",
                info.kind
            )));
        }
        let base_name = opts
            .base_image
            .clone()
            .or_else(|| info.labels.get(IMAGE_LABEL).cloned());
        let base = self.commit_base(base_name.as_deref(), &info.parent).await?;
        Ok((info.parent, base))
    }

    /// Steps 1 and 3: diffs the container against its parent into a layer blob while
    /// the uncompressed tar is applied, as it is produced, into a scratch snapshot on
    /// the base chain; then commits that snapshot as the new ChainID (unless the diff is
    /// empty), so the new image needs no unpack.
    async fn diff_and_apply(
        &self,
        u: &LayerUnpacker,
        key: &str,
        parent: &str,
        base: &Base,
        opts: &CommitOptions,
    ) -> Result<NewLayer> {
        let base_chain = chain_id(&base.diff_ids);
        let scratch = u
            .prepare(
                &format!("commit-{}", super::nanos()),
                None,
                base_chain.as_ref(),
            )
            .await?;
        let (tee, rx) = tokio::sync::mpsc::channel(8);
        let open: OpenLayer =
            Box::new(move || Ok(Box::new(ChannelReader::new(rx)) as Box<dyn std::io::Read + Send>));
        let apply = u.start_apply(scratch.mounts, Compression::None, open, false);
        let diffed = self
            .diff_container(u, key, parent, opts.compression, tee)
            .await;
        let applied = apply.wait().await;
        let res = match diffed {
            Ok((layer, diff_id)) if diff_id.as_ref() == EMPTY_LAYER_DIFF_ID => Ok(NewLayer {
                layer,
                diff_id,
                empty: true,
                chain: base_chain,
            }),
            Ok((layer, diff_id)) => {
                let chain = chain_id_step(base_chain.as_ref(), &diff_id);
                let stats = applied.map_err(|e| e.context("apply the new layer"));
                match stats {
                    Ok(stats) => u
                        .settle(&scratch.key, &layer, &chain, &stats.diff_id, &diff_id, None)
                        .await
                        .map(|_| NewLayer {
                            layer,
                            diff_id,
                            empty: false,
                            chain: Some(chain),
                        }),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        if !matches!(&res, Ok(n) if !n.empty) {
            let _ = u.sn.remove(&scratch.key).await;
        }
        res
    }

    /// The diff of container `key` against `parent` (a short-lived view of it), as a
    /// layer blob held by the lease, and its DiffID; the uncompressed tar also goes to
    /// `tee`.
    async fn diff_container(
        &self,
        u: &LayerUnpacker,
        key: &str,
        parent: &str,
        compression: Compression,
        tee: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<(Descriptor, Digest)> {
        let hold = |r: Resource| async move {
            if let Some((m, id)) = &u.lease {
                m.add_resource(id, &r).await?;
            }
            Ok::<(), Error>(())
        };
        let upper = u.sn.mounts(key).await?;
        let view_key = format!("commit-view-{}-{key}", super::nanos());
        let lower = if parent.is_empty() {
            Vec::new()
        } else {
            hold(Resource::snapshot(&u.sn_name, view_key.clone())).await?;
            u.sn.view(&view_key, parent, Labels::new()).await?
        };
        let reference = format!("commit-{}", super::nanos());
        hold(Resource::ingest(reference.clone())).await?;
        let opts = DiffOpts {
            media_type: Some(compression.media_type().into()),
            reference: Some(reference),
            tee: Some(tee),
            ..Default::default()
        };
        let diffed = WalkingDiff::new(self.content.clone())
            .compare(&lower, &upper, opts)
            .await;
        if !parent.is_empty() {
            let _ = u.sn.remove(&view_key).await;
        }
        let layer = diffed?;
        hold(Resource::content(layer.digest().to_string())).await?;
        let blob = self.content.info(layer.digest()).await?;
        let diff_id = blob
            .labels
            .get(UNCOMPRESSED)
            .ok_or_else(|| {
                Error::internal(format!(
                    "layer {} has no {UNCOMPRESSED} label",
                    layer.digest()
                ))
            })
            .and_then(|d| digest::parse(d))?;
        Ok((layer, diff_id))
    }

    async fn commit_base(&self, name: Option<&str>, parent: &str) -> Result<Base> {
        let Some(name) = name else {
            if !parent.is_empty() {
                return Err(Error::failed_precondition(format!(
                    "snapshot parent {parent} has no base image: pass the image the container came from"
                )));
            }
            return Ok(Base::scratch());
        };
        let image = self.images.get(name).await?;
        let provider: &dyn strata_content::Provider = self.content.as_ref();
        let m = img::manifest(provider, &image.target, platforms::default_arc().as_ref()).await?;
        let raw = img::read_blob(provider, m.manifest.config()).await?;
        let diff_ids = img::decode_diff_ids(&raw)?;
        let config: Map<String, Value> = serde_json::from_slice(&raw).map_err(|e| {
            Error::invalid_argument(format!(
                "config {} of image {name}",
                m.manifest.config().digest()
            ))
            .with_source(e)
        })?;
        let top = chain_id(&diff_ids)
            .map(|d| d.to_string())
            .unwrap_or_default();
        if top != parent {
            return Err(Error::failed_precondition(format!(
                "container snapshot's parent is {parent:?} but image {name} has top snapshot {top:?}"
            )));
        }
        Ok(Base {
            layers: m.manifest.layers().clone(),
            config,
            diff_ids,
        })
    }
}

impl Base {
    /// The base of a commit from scratch: no layers, the host's platform.
    fn scratch() -> Base {
        let p = platforms::default_spec();
        let mut config = Map::new();
        config.insert("architecture".into(), Value::String(p.architecture.clone()));
        config.insert("os".into(), Value::String(p.os.clone()));
        config.insert("rootfs".into(), json!({"type": "layers", "diff_ids": []}));
        config.insert("config".into(), json!({}));
        Base {
            layers: Vec::new(),
            config,
            diff_ids: Vec::new(),
        }
    }
}

/// Step 2: the new image config: the base's, with the new DiffID, a history entry and
/// the options' changes.
fn new_config(
    mut config: Map<String, Value>,
    base_diff_ids: &[Digest],
    new: &NewLayer,
    opts: &CommitOptions,
) -> Value {
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let mut diff_ids: Vec<Value> = base_diff_ids
        .iter()
        .map(|d| Value::String(d.to_string()))
        .collect();
    if !new.empty {
        diff_ids.push(Value::String(new.diff_id.to_string()));
    }
    config.insert("created".into(), Value::String(now.clone()));
    if let Some(a) = &opts.author {
        config.insert("author".into(), Value::String(a.clone()));
    }
    let rootfs = config
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers"}));
    rootfs["type"] = json!("layers");
    rootfs["diff_ids"] = Value::Array(diff_ids);
    let history = config.entry("history").or_insert_with(|| json!([]));
    if !history.is_array() {
        *history = json!([]);
    }
    let entry = history_entry(now, new.empty, opts);
    history.as_array_mut().expect("array").push(entry);
    let cfg = config.entry("config").or_insert_with(|| json!({}));
    if !cfg.is_object() {
        *cfg = json!({});
    }
    opts.changes.apply(cfg.as_object_mut().expect("object"));
    Value::Object(config)
}

/// The config's history entry for a commit made at `now`.
fn history_entry(now: String, empty: bool, opts: &CommitOptions) -> Value {
    let mut entry = Map::new();
    entry.insert("created".into(), Value::String(now));
    let created_by = opts.created_by.as_deref().unwrap_or("strata commit");
    entry.insert("created_by".into(), Value::String(created_by.into()));
    if let Some(a) = &opts.author {
        entry.insert("author".into(), Value::String(a.clone()));
    }
    if let Some(m) = &opts.message {
        entry.insert("comment".into(), Value::String(m.clone()));
    }
    if empty {
        entry.insert("empty_layer".into(), Value::Bool(true));
    }
    Value::Object(entry)
}

/// The OCI media type for a Docker layer type (the bytes are the same).
fn to_oci_layer(d: &Descriptor) -> Descriptor {
    let m = d.media_type().to_string();
    let oci = match m.as_str() {
        mt::DOCKER_LAYER_GZIP => mt::OCI_LAYER_GZIP,
        mt::DOCKER_LAYER => mt::OCI_LAYER,
        mt::DOCKER_LAYER_ZSTD => mt::OCI_LAYER_ZSTD,
        _ => return d.clone(),
    };
    let mut out = d.clone();
    out.set_media_type(MediaType::from(oci));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tar_diff_id() {
        assert_eq!(
            digest::sha256(&[0u8; 1024]).to_string(),
            EMPTY_LAYER_DIFF_ID
        );
    }

    #[test]
    fn changes_parse_and_apply() {
        let mut c = ConfigChanges::default();
        for l in [
            "CMD echo hi",
            r#"ENTRYPOINT ["/init"]"#,
            "ENV PATH=/x A=1",
            "WORKDIR /srv",
            "LABEL a=b",
            "EXPOSE 80 53/udp",
            "USER 1000",
        ] {
            c.apply_instruction(l).unwrap();
        }
        assert!(
            c.apply_instruction("RUN rm -rf /")
                .unwrap_err()
                .is_invalid_argument()
        );
        let mut cfg: Map<String, Value> = serde_json::from_value(
            json!({"Env": ["PATH=/usr/bin", "KEEP=1"], "Labels": {"x": "y"}}),
        )
        .unwrap();
        c.apply(&mut cfg);
        assert_eq!(cfg["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(cfg["Entrypoint"], json!(["/init"]));
        assert_eq!(cfg["Env"], json!(["KEEP=1", "PATH=/x", "A=1"]));
        assert_eq!(cfg["WorkingDir"], json!("/srv"));
        assert_eq!(cfg["Labels"], json!({"x": "y", "a": "b"}));
        assert_eq!(cfg["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(cfg["User"], json!("1000"));
    }

    #[test]
    fn docker_layers_become_oci() {
        let d = Descriptor::new(
            MediaType::from(mt::DOCKER_LAYER_GZIP),
            3,
            digest::sha256(b"abc"),
        );
        assert_eq!(
            to_oci_layer(&d).media_type().to_string(),
            mt::OCI_LAYER_GZIP
        );
        assert_eq!(to_oci_layer(&d).digest(), d.digest());
    }
}
