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
use strata_content::labels::{GC_REF_CONTENT, GC_REF_SNAPSHOT, UNCOMPRESSED};
use strata_content::{Descriptor, Digest, Error, Labels, MediaType, Result, digest};
use strata_diff::{ApplyOptions, Comparer, Compression, DiffOpts, WalkingDiff};
use strata_snapshot::unpack_key;

use super::ImageService;
use crate::identity::{chain_id, chain_id_step};
use crate::image::{self as img, Image};
use crate::leases::{LeaseManager, LeaseOpts, Resource};
use crate::media_types as mt;
use crate::platforms;

/// The label `snapshot prepare --from-image` puts on a container snapshot: the image it
/// was made from, which [`ImageService::commit`] uses as the base.
pub const IMAGE_LABEL: &str = "strata.io/image";

/// DiffID of an empty tar (1024 zero bytes): what an empty diff produces.
pub const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// Layer compression for [`CommitOptions::compression`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerCompression {
    /// gzip (level 1, as containerd).
    #[default]
    Gzip,
    /// zstd.
    Zstd,
    /// Uncompressed tar.
    None,
}

impl LayerCompression {
    fn media_type(self) -> &'static str {
        match self {
            LayerCompression::Gzip => mt::OCI_LAYER_GZIP,
            LayerCompression::Zstd => mt::OCI_LAYER_ZSTD,
            LayerCompression::None => mt::OCI_LAYER,
        }
    }
}

impl std::str::FromStr for LayerCompression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gzip" => Ok(LayerCompression::Gzip),
            "zstd" => Ok(LayerCompression::Zstd),
            "none" | "uncompressed" => Ok(LayerCompression::None),
            _ => Err(Error::invalid_argument(format!(
                "unknown compression {s:?} (gzip, zstd or none)"
            ))),
        }
    }
}

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
    /// Layer compression.
    pub compression: LayerCompression,
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

impl ImageService {
    async fn commit_base(&self, name: Option<&str>, parent: &str) -> Result<Base> {
        let Some(name) = name else {
            if !parent.is_empty() {
                return Err(Error::failed_precondition(format!(
                    "snapshot parent {parent} has no base image: pass the image the container came from"
                )));
            }
            let p = platforms::default_spec();
            let mut config = Map::new();
            config.insert("architecture".into(), Value::String(p.architecture.clone()));
            config.insert("os".into(), Value::String(p.os.clone()));
            config.insert("rootfs".into(), json!({"type": "layers", "diff_ids": []}));
            config.insert("config".into(), json!({}));
            return Ok(Base {
                layers: Vec::new(),
                config,
                diff_ids: Vec::new(),
            });
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
        let lease = match &self.leases {
            Some(m) => {
                let l = m
                    .create(LeaseOpts::default().expires_in(std::time::Duration::from_secs(3600)))
                    .await?;
                Some((m.clone(), l.id))
            }
            None => None,
        };
        let res = self
            .commit_leased(container_key, new_ref, &opts, lease.clone())
            .await;
        if let Some((m, id)) = lease {
            let _ = m.delete(&id).await;
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
        let info = sn.stat(key).await?;
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
        let hold = |r: Resource| {
            let lease = lease.clone();
            async move {
                if let Some((m, id)) = &lease {
                    m.add_resource(id, &r).await?;
                }
                Ok::<(), Error>(())
            }
        };

        // 1. Diff against the parent. The tar is also applied, as it is produced, into a
        //    scratch snapshot on the base chain, which step 3 commits under the new
        //    ChainID: the new image needs no unpack, and applying overlaps compressing.
        let base_chain = chain_id(&base.diff_ids);
        let upper = sn.mounts(key).await?;
        let view_key = format!("commit-view-{}-{key}", super::nanos());
        let lower = if info.parent.is_empty() {
            Vec::new()
        } else {
            hold(Resource::snapshot(&sn_name, view_key.clone())).await?;
            sn.view(&view_key, &info.parent, Labels::new()).await?
        };
        let scratch = unpack_key(&format!("commit-{}", super::nanos()));
        hold(Resource::snapshot(&sn_name, scratch.clone())).await?;
        let base_key = base_chain
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default();
        let mounts = match sn.prepare(&scratch, &base_key, Labels::new()).await {
            Ok(m) => m,
            Err(e) => {
                if !info.parent.is_empty() {
                    let _ = sn.remove(&view_key).await;
                }
                return Err(e);
            }
        };
        let (tee, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        let apply = tokio::task::spawn_blocking(move || {
            let reader = StdChannelReader {
                rx,
                cur: Vec::new(),
                pos: 0,
            };
            strata_diff::walking::apply_to_mounts(
                reader,
                Compression::None,
                &mounts,
                ApplyOptions::default(),
            )
        });
        let differ = WalkingDiff::new(self.content.clone());
        let reference = format!("commit-{}", super::nanos());
        hold(Resource::ingest(reference.clone())).await?;
        let diffed = differ
            .compare(
                &lower,
                &upper,
                DiffOpts {
                    media_type: Some(opts.compression.media_type().into()),
                    reference: Some(reference),
                    tee: Some(tee),
                    ..Default::default()
                },
            )
            .await;
        if !info.parent.is_empty() {
            let _ = sn.remove(&view_key).await;
        }
        let applied = apply
            .await
            .map_err(|e| Error::internal(format!("apply task failed: {e}")))
            .and_then(|r| r);
        let layer = match diffed {
            Ok(l) => l,
            Err(e) => {
                let _ = sn.remove(&scratch).await;
                return Err(e);
            }
        };
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
        let empty = diff_id.as_ref() == EMPTY_LAYER_DIFF_ID;
        if empty {
            let _ = sn.remove(&scratch).await;
        }
        if empty && opts.refuse_empty {
            return Err(Error::failed_precondition(format!(
                "snapshot {key:?} has no changes"
            )));
        }

        // 2. The new config.
        let mut config = base.config;
        let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let mut diff_ids: Vec<Digest> = base.diff_ids.clone();
        if !empty {
            diff_ids.push(diff_id.clone());
        }
        config.insert("created".into(), Value::String(now.clone()));
        if let Some(a) = &opts.author {
            config.insert("author".into(), Value::String(a.clone()));
        }
        let rootfs = config
            .entry("rootfs")
            .or_insert_with(|| json!({"type": "layers"}));
        rootfs["type"] = json!("layers");
        rootfs["diff_ids"] = Value::Array(
            diff_ids
                .iter()
                .map(|d| Value::String(d.to_string()))
                .collect(),
        );
        let mut entry = Map::new();
        entry.insert("created".into(), Value::String(now));
        entry.insert(
            "created_by".into(),
            Value::String(
                opts.created_by
                    .clone()
                    .unwrap_or_else(|| "strata commit".into()),
            ),
        );
        if let Some(a) = &opts.author {
            entry.insert("author".into(), Value::String(a.clone()));
        }
        if let Some(m) = &opts.message {
            entry.insert("comment".into(), Value::String(m.clone()));
        }
        if empty {
            entry.insert("empty_layer".into(), Value::Bool(true));
        }
        let history = config.entry("history").or_insert_with(|| json!([]));
        if !history.is_array() {
            *history = json!([]);
        }
        history
            .as_array_mut()
            .expect("array")
            .push(Value::Object(entry));
        let cfg = config.entry("config").or_insert_with(|| json!({}));
        if !cfg.is_object() {
            *cfg = json!({});
        }
        opts.changes.apply(cfg.as_object_mut().expect("object"));

        // 3. The new layer's snapshot: the scratch one, committed as the new ChainID.
        let new_chain = if empty {
            base_chain.clone()
        } else {
            let chain = chain_id_step(base_chain.as_ref(), &diff_id);
            let done = match applied {
                Ok(stats) if stats.diff_id == diff_id => {
                    hold(Resource::snapshot(&sn_name, chain.to_string())).await?;
                    match sn.commit(chain.as_ref(), &scratch, Labels::new()).await {
                        Ok(()) => Ok(()),
                        // Made meanwhile by someone else: theirs is as good.
                        Err(e) if e.is_already_exists() => sn.remove(&scratch).await,
                        Err(e) => Err(e.context(format!("commit snapshot {chain}"))),
                    }
                }
                Ok(stats) => Err(Error::internal(format!(
                    "the layer applied while diffing has DiffID {}, the stored one {diff_id}",
                    stats.diff_id
                ))),
                Err(e) => Err(e.context("apply the new layer")),
            };
            if let Err(e) = done {
                let _ = sn.remove(&scratch).await;
                return Err(e);
            }
            Some(chain)
        };

        // 4. Config and manifest blobs.
        let config_bytes = serde_json::to_vec(&Value::Object(config))
            .map_err(|e| Error::internal(format!("encode config: {e}")))?;
        let mut config_labels = Labels::new();
        if let Some(c) = &new_chain {
            config_labels.insert(format!("{GC_REF_SNAPSHOT}{sn_name}"), c.to_string());
        }
        let config_desc = Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            digest::sha256(&config_bytes),
        );
        hold(Resource::ingest(crate::build::ingest_ref(&config_desc))).await?;
        hold(Resource::content(config_desc.digest().to_string())).await?;
        crate::build::put(
            self.content.as_ref(),
            &config_bytes,
            &config_desc,
            config_labels,
        )
        .await?;

        let mut layers: Vec<Descriptor> = base.layers.iter().map(to_oci_layer).collect();
        if !empty {
            layers.push(layer.clone());
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": mt::OCI_MANIFEST,
            "config": descriptor_json(&config_desc),
            "layers": layers.iter().map(descriptor_json).collect::<Vec<_>>(),
        });
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| Error::internal(format!("encode manifest: {e}")))?;
        let manifest_desc = Descriptor::new(
            MediaType::ImageManifest,
            manifest_bytes.len() as u64,
            digest::sha256(&manifest_bytes),
        );
        let mut manifest_labels = Labels::new();
        manifest_labels.insert(
            format!("{GC_REF_CONTENT}.config"),
            config_desc.digest().to_string(),
        );
        for (i, l) in layers.iter().enumerate() {
            manifest_labels.insert(format!("{GC_REF_CONTENT}.l.{i}"), l.digest().to_string());
        }
        hold(Resource::ingest(crate::build::ingest_ref(&manifest_desc))).await?;
        hold(Resource::content(manifest_desc.digest().to_string())).await?;
        crate::build::put(
            self.content.as_ref(),
            &manifest_bytes,
            &manifest_desc,
            manifest_labels,
        )
        .await?;

        // 5. The image record.
        let name = crate::reference::Reference::parse_normalized(new_ref)
            .map(|r| r.with_default_tag().to_string())
            .unwrap_or_else(|_| new_ref.to_string());
        let mut image = Image::new(name, manifest_desc);
        image.labels = opts.image_labels.clone();
        let image = self.put_image(image).await?;
        Ok(Committed {
            image,
            config: config_desc,
            layer: (!empty).then_some(layer),
            diff_id: (!empty).then_some(diff_id),
            chain_id: new_chain,
        })
    }
}

/// A blocking [`std::io::Read`] over chunks from a channel; EOF when the sender is gone.
struct StdChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl std::io::Read for StdChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.cur = c;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
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

fn descriptor_json(d: &Descriptor) -> Value {
    let mut v = json!({
        "mediaType": d.media_type().to_string(),
        "digest": d.digest().to_string(),
        "size": d.size(),
    });
    if let Some(a) = d.annotations().as_ref().filter(|a| !a.is_empty()) {
        let sorted: BTreeMap<_, _> = a.iter().collect();
        v["annotations"] = json!(sorted);
    }
    if let Some(u) = d.urls().as_ref().filter(|u| !u.is_empty()) {
        v["urls"] = json!(u);
    }
    v
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
