//! The pure half of garbage collection: from a picture of every object ([`World`]), find
//! the roots, mark what they reach (tricolour) and list what may go ([`Plan`]).
//!
//! Kept free of I/O so the rules can be tested exactly, as containerd tests `scanRoots`,
//! `references` and `Tricolor` separately.

use crate::leases::{Lease, Resource};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, SystemTime};
use strata_content::labels::{self, Labels};

/// Marks everything reachable from `roots` through `refs` (containerd's `gc.Tricolor`):
/// grey nodes are queued, black nodes are done; the result is the black set.
///
/// ```
/// use strata_image::gc::tricolor;
/// let reach = tricolor(vec!['a'], |n| match n { 'a' => vec!['b'], 'b' => vec!['a'], _ => vec![] });
/// assert_eq!(reach.len(), 2);
/// ```
pub fn tricolor<N, F, I>(roots: impl IntoIterator<Item = N>, refs: F) -> HashSet<N>
where
    N: Eq + Hash + Clone,
    F: Fn(&N) -> I,
    I: IntoIterator<Item = N>,
{
    let mut black = HashSet::new();
    let mut grey: VecDeque<N> = VecDeque::new();
    for r in roots {
        if black.insert(r.clone()) {
            grey.push_back(r);
        }
    }
    while let Some(n) = grey.pop_front() {
        for m in refs(&n) {
            if black.insert(m.clone()) {
                grey.push_back(m);
            }
        }
    }
    black
}

/// An object the collector knows about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// A blob record in a namespace.
    Content {
        /// Namespace.
        ns: String,
        /// Digest string.
        digest: String,
    },
    /// An in-progress ingest in a namespace.
    Ingest {
        /// Namespace.
        ns: String,
        /// Ingest ref.
        reference: String,
    },
    /// An image record in a namespace.
    Image {
        /// Namespace.
        ns: String,
        /// Image name.
        name: String,
    },
    /// A snapshot (snapshots are not namespaced).
    Snapshot {
        /// Snapshotter name.
        snapshotter: String,
        /// Snapshot key.
        key: String,
    },
}

/// A blob record.
#[derive(Debug, Clone)]
pub struct ContentRecord {
    /// Namespace.
    pub ns: String,
    /// Digest.
    pub digest: String,
    /// Labels.
    pub labels: Labels,
}

/// An ingest.
#[derive(Debug, Clone)]
pub struct IngestRecord {
    /// Namespace.
    pub ns: String,
    /// Ingest ref.
    pub reference: String,
    /// The digest it is expected to produce.
    pub expected: Option<String>,
    /// When it last changed.
    pub updated_at: SystemTime,
}

/// An image record.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    /// Namespace.
    pub ns: String,
    /// Name.
    pub name: String,
    /// Target digest.
    pub target: String,
    /// Labels.
    pub labels: Labels,
}

/// A snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotRecord {
    /// Snapshotter name.
    pub snapshotter: String,
    /// Key (name).
    pub key: String,
    /// Parent key.
    pub parent: Option<String>,
    /// Labels.
    pub labels: Labels,
}

/// Everything the collector sees, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct World {
    /// Leases with their namespace and resources.
    pub leases: Vec<(String, Lease, Vec<Resource>)>,
    /// Image records.
    pub images: Vec<ImageRecord>,
    /// Blob records.
    pub content: Vec<ContentRecord>,
    /// Ingests.
    pub ingests: Vec<IngestRecord>,
    /// Snapshots.
    pub snapshots: Vec<SnapshotRecord>,
}

/// How long an ingest that no lease holds stays a root after its last write (containerd:
/// 24 h).
pub const INGEST_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// What a collection may remove, in a safe order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Expired leases (namespace, id).
    pub leases: Vec<(String, String)>,
    /// Expired images (namespace, name).
    pub images: Vec<(String, String)>,
    /// Unreferenced blob records (namespace, digest).
    pub content: Vec<(String, String)>,
    /// Unreferenced ingests (namespace, ref).
    pub ingests: Vec<(String, String)>,
    /// Unreferenced snapshots (snapshotter, key), children before parents.
    pub snapshots: Vec<(String, String)>,
}

fn expired(labels: &Labels, now: SystemTime) -> bool {
    labels
        .get(labels::GC_EXPIRE)
        .and_then(|v| humantime::parse_rfc3339_weak(v).ok())
        .is_some_and(|t| t <= now)
}

/// The nodes a label set refers to: `containerd.io/gc.ref.content[.x|/x]=<digest>` (in
/// namespace `ns`, or in every namespace when `ns` is `None`) and
/// `containerd.io/gc.ref.snapshot.<sn>[/x]=<key>`.
fn label_refs(labels: &Labels, ns: Option<&str>, all_ns: &BTreeSet<String>, out: &mut Vec<Node>) {
    for (k, v) in labels {
        if let Some(rest) = k.strip_prefix(labels::GC_REF_CONTENT) {
            if rest.is_empty() || rest.starts_with('.') || rest.starts_with('/') {
                match ns {
                    Some(ns) => out.push(Node::Content {
                        ns: ns.into(),
                        digest: v.clone(),
                    }),
                    None => out.extend(all_ns.iter().map(|ns| Node::Content {
                        ns: ns.clone(),
                        digest: v.clone(),
                    })),
                }
            }
        } else if let Some(rest) = k.strip_prefix(labels::GC_REF_SNAPSHOT) {
            let sn = rest.split('/').next().unwrap_or("");
            if !sn.is_empty() {
                out.push(Node::Snapshot {
                    snapshotter: sn.into(),
                    key: v.clone(),
                });
            }
        }
    }
}

impl World {
    /// The roots at `now`: what unexpired leases hold, unexpired images, content and
    /// snapshots labelled `containerd.io/gc.root`, and ingests written to within
    /// [`INGEST_EXPIRY`]. Flat leases (`containerd.io/gc.flat`) are returned separately: their
    /// objects are kept but their references are not followed (snapshot parents still are).
    pub fn roots(&self, now: SystemTime) -> (Vec<Node>, Vec<Node>) {
        let mut roots = Vec::new();
        let mut flat = Vec::new();
        for (ns, lease, resources) in &self.leases {
            if lease.is_expired(now) {
                continue;
            }
            let into = if lease.labels.contains_key(labels::GC_FLAT) {
                &mut flat
            } else {
                &mut roots
            };
            for r in resources {
                let node = match r.kind.as_str() {
                    "content" => Node::Content {
                        ns: ns.clone(),
                        digest: r.id.clone(),
                    },
                    "ingests" => Node::Ingest {
                        ns: ns.clone(),
                        reference: r.id.clone(),
                    },
                    "images" => Node::Image {
                        ns: ns.clone(),
                        name: r.id.clone(),
                    },
                    k => match k.strip_prefix("snapshots/") {
                        Some(sn) => Node::Snapshot {
                            snapshotter: sn.into(),
                            key: r.id.clone(),
                        },
                        None => continue,
                    },
                };
                into.push(node);
            }
        }
        for i in &self.images {
            if !expired(&i.labels, now) {
                roots.push(Node::Image {
                    ns: i.ns.clone(),
                    name: i.name.clone(),
                });
            }
        }
        for c in &self.content {
            if c.labels.contains_key(labels::GC_ROOT) {
                roots.push(Node::Content {
                    ns: c.ns.clone(),
                    digest: c.digest.clone(),
                });
            }
        }
        for s in &self.snapshots {
            if s.labels.contains_key(labels::GC_ROOT) {
                roots.push(Node::Snapshot {
                    snapshotter: s.snapshotter.clone(),
                    key: s.key.clone(),
                });
            }
        }
        for i in &self.ingests {
            if now.duration_since(i.updated_at).unwrap_or_default() < INGEST_EXPIRY {
                roots.push(Node::Ingest {
                    ns: i.ns.clone(),
                    reference: i.reference.clone(),
                });
            }
        }
        (roots, flat)
    }

    /// Marks from the roots and returns what is reachable.
    pub fn mark(&self, now: SystemTime) -> HashSet<Node> {
        let all_ns: BTreeSet<String> = self.content.iter().map(|c| c.ns.clone()).collect();
        let mut edges: BTreeMap<Node, Vec<Node>> = BTreeMap::new();
        let mut parents: BTreeMap<Node, Node> = BTreeMap::new();
        for i in &self.images {
            let mut out = vec![Node::Content {
                ns: i.ns.clone(),
                digest: i.target.clone(),
            }];
            label_refs(&i.labels, Some(&i.ns), &all_ns, &mut out);
            edges.insert(
                Node::Image {
                    ns: i.ns.clone(),
                    name: i.name.clone(),
                },
                out,
            );
        }
        for c in &self.content {
            let mut out = Vec::new();
            label_refs(&c.labels, Some(&c.ns), &all_ns, &mut out);
            edges.insert(
                Node::Content {
                    ns: c.ns.clone(),
                    digest: c.digest.clone(),
                },
                out,
            );
        }
        for i in &self.ingests {
            if let Some(d) = &i.expected {
                edges.insert(
                    Node::Ingest {
                        ns: i.ns.clone(),
                        reference: i.reference.clone(),
                    },
                    vec![Node::Content {
                        ns: i.ns.clone(),
                        digest: d.clone(),
                    }],
                );
            }
        }
        for s in &self.snapshots {
            let node = Node::Snapshot {
                snapshotter: s.snapshotter.clone(),
                key: s.key.clone(),
            };
            let mut out = Vec::new();
            if let Some(p) = &s.parent {
                let parent = Node::Snapshot {
                    snapshotter: s.snapshotter.clone(),
                    key: p.clone(),
                };
                parents.insert(node.clone(), parent.clone());
                out.push(parent);
            }
            label_refs(&s.labels, None, &all_ns, &mut out);
            edges.insert(node, out);
        }
        let (roots, flat) = self.roots(now);
        let mut reach = tricolor(roots, |n| edges.get(n).cloned().unwrap_or_default());
        // Flat roots keep themselves and their snapshot parents only.
        reach.extend(tricolor(flat, |n| parents.get(n).cloned()));
        reach
    }

    /// What a collection at `now` removes.
    pub fn plan(&self, now: SystemTime) -> Plan {
        let reach = self.mark(now);
        let mut plan = Plan::default();
        for (ns, lease, _) in &self.leases {
            if lease.is_expired(now) {
                plan.leases.push((ns.clone(), lease.id.clone()));
            }
        }
        for i in &self.images {
            if !reach.contains(&Node::Image {
                ns: i.ns.clone(),
                name: i.name.clone(),
            }) {
                plan.images.push((i.ns.clone(), i.name.clone()));
            }
        }
        for c in &self.content {
            if !reach.contains(&Node::Content {
                ns: c.ns.clone(),
                digest: c.digest.clone(),
            }) {
                plan.content.push((c.ns.clone(), c.digest.clone()));
            }
        }
        for i in &self.ingests {
            if !reach.contains(&Node::Ingest {
                ns: i.ns.clone(),
                reference: i.reference.clone(),
            }) {
                plan.ingests.push((i.ns.clone(), i.reference.clone()));
            }
        }
        // Snapshots: children first. An unmarked snapshot's children are unmarked too
        // (marking follows parents), so removing deepest-first never hits a live child.
        let by_key: BTreeMap<(&str, &str), &SnapshotRecord> = self
            .snapshots
            .iter()
            .map(|s| ((s.snapshotter.as_str(), s.key.as_str()), s))
            .collect();
        let depth = |s: &SnapshotRecord| {
            let mut d = 0usize;
            let mut cur = s;
            while let Some(p) = cur
                .parent
                .as_deref()
                .and_then(|p| by_key.get(&(cur.snapshotter.as_str(), p)))
            {
                d += 1;
                cur = p;
                if d > by_key.len() {
                    break;
                }
            }
            d
        };
        let mut dead: Vec<(usize, &SnapshotRecord)> = self
            .snapshots
            .iter()
            .filter(|s| {
                !reach.contains(&Node::Snapshot {
                    snapshotter: s.snapshotter.clone(),
                    key: s.key.clone(),
                })
            })
            .map(|s| (depth(s), s))
            .collect();
        dead.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.key.cmp(&b.1.key)));
        plan.snapshots = dead
            .into_iter()
            .map(|(_, s)| (s.snapshotter.clone(), s.key.clone()))
            .collect();
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// containerd `pkg/gc` TestTricolorBasic: roots A, C; A→B, B→A, C→{D,F,B}, E→{F,G}, F→H.
    #[test]
    fn tricolor_basic() {
        let refs = |n: &char| -> Vec<char> {
            match n {
                'A' => vec!['B'],
                'B' => vec!['A'],
                'C' => vec!['D', 'F', 'B'],
                'E' => vec!['F', 'G'],
                'F' => vec!['H'],
                _ => vec![],
            }
        };
        let reach = tricolor(vec!['A', 'C'], refs);
        let mut got: Vec<char> = reach.into_iter().collect();
        got.sort();
        assert_eq!(got, vec!['A', 'B', 'C', 'D', 'F', 'H']);
    }

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn content(ns: &str, d: &str, l: &[(&str, &str)]) -> ContentRecord {
        ContentRecord {
            ns: ns.into(),
            digest: d.into(),
            labels: labels(l),
        }
    }

    fn snap(key: &str, parent: Option<&str>, l: &[(&str, &str)]) -> SnapshotRecord {
        SnapshotRecord {
            snapshotter: "overlay".into(),
            key: key.into(),
            parent: parent.map(Into::into),
            labels: labels(l),
        }
    }

    fn lease(id: &str, l: &[(&str, &str)]) -> Lease {
        Lease {
            id: id.into(),
            created_at: SystemTime::now(),
            labels: labels(l),
        }
    }

    #[test]
    fn ref_label_keys_must_be_exact_or_continue_with_dot_or_slash() {
        let mut out = Vec::new();
        let all = BTreeSet::new();
        label_refs(
            &labels(&[
                ("containerd.io/gc.ref.content", "a"),
                ("containerd.io/gc.ref.content.l.0", "b"),
                ("containerd.io/gc.ref.content/x", "c"),
                ("containerd.io/gc.ref.contentbad", "d"),
                ("containerd.io/gc.ref.snapshot.overlay", "s1"),
                ("containerd.io/gc.ref.snapshot.native/x", "s2"),
            ]),
            Some("ns"),
            &all,
            &mut out,
        );
        let digests: Vec<_> = out
            .iter()
            .filter_map(|n| match n {
                Node::Content { digest, .. } => Some(digest.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(digests, vec!["a", "b", "c"]);
        assert!(out.contains(&Node::Snapshot {
            snapshotter: "overlay".into(),
            key: "s1".into()
        }));
        assert!(out.contains(&Node::Snapshot {
            snapshotter: "native".into(),
            key: "s2".into()
        }));
    }

    /// After containerd's TestMetadataCollector: blobs (some gc.root), a snapshot chain
    /// 1←2←3←{4,5}, an image, a normal lease holding content and a snapshot with a content
    /// ref, and a flat lease whose content refs are not followed but whose snapshot parents
    /// are kept.
    #[test]
    fn metadata_collector_scenario() {
        let now = SystemTime::now();
        let ns = "ns1";
        let w = World {
            leases: vec![
                (
                    ns.into(),
                    lease("lease-1", &[]),
                    vec![
                        Resource::content("c-leased"),
                        Resource::snapshot("overlay", "6"),
                    ],
                ),
                (
                    ns.into(),
                    lease("lease-2", &[(labels::GC_FLAT, "")]),
                    vec![
                        Resource::content("c-flat"),
                        Resource::snapshot("overlay", "9"),
                    ],
                ),
                (
                    ns.into(),
                    lease("expired", &[(labels::GC_EXPIRE, "2000-01-01T00:00:00Z")]),
                    vec![Resource::content("c-exp")],
                ),
            ],
            images: vec![ImageRecord {
                ns: ns.into(),
                name: "img".into(),
                target: "c-manifest".into(),
                labels: Labels::new(),
            }],
            content: vec![
                content(ns, "c-root", &[(labels::GC_ROOT, "")]),
                content(
                    ns,
                    "c-manifest",
                    &[
                        ("containerd.io/gc.ref.content.config", "c-config"),
                        ("containerd.io/gc.ref.content.l.0", "c-layer"),
                    ],
                ),
                content(
                    ns,
                    "c-config",
                    &[("containerd.io/gc.ref.snapshot.overlay", "4")],
                ),
                content(ns, "c-layer", &[]),
                content(
                    ns,
                    "c-leased",
                    &[("containerd.io/gc.ref.content.0", "c-child")],
                ),
                content(ns, "c-child", &[]),
                content(
                    ns,
                    "c-flat",
                    &[("containerd.io/gc.ref.content.0", "c-flat-child")],
                ),
                content(ns, "c-flat-child", &[]),
                content(ns, "c-exp", &[]),
                content(ns, "c-orphan", &[]),
                content(ns, "c-from-snap", &[]),
            ],
            ingests: vec![
                IngestRecord {
                    ns: ns.into(),
                    reference: "fresh".into(),
                    expected: Some("c-ingest-target".into()),
                    updated_at: now,
                },
                IngestRecord {
                    ns: ns.into(),
                    reference: "stale".into(),
                    expected: None,
                    updated_at: now - INGEST_EXPIRY * 2,
                },
            ],
            snapshots: vec![
                snap("1", None, &[]),
                snap("2", Some("1"), &[]),
                snap("3", Some("2"), &[]),
                snap("4", Some("3"), &[]),
                snap("5", Some("3"), &[]),
                snap(
                    "6",
                    None,
                    &[("containerd.io/gc.ref.content.0", "c-from-snap")],
                ),
                snap("7", None, &[]),
                snap("8", Some("7"), &[]),
                snap(
                    "9",
                    Some("8"),
                    &[("containerd.io/gc.ref.content.0", "c-orphan")],
                ),
                snap("10", None, &[]),
            ],
        };
        let plan = w.plan(now);
        let content: Vec<&str> = plan.content.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(content, vec!["c-flat-child", "c-exp", "c-orphan"]);
        let snaps: Vec<&str> = plan.snapshots.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(snaps, vec!["5", "10"]);
        assert_eq!(plan.ingests, vec![(ns.to_string(), "stale".to_string())]);
        assert_eq!(plan.leases, vec![(ns.to_string(), "expired".to_string())]);
        assert!(plan.images.is_empty());
    }

    #[test]
    fn expired_images_are_not_roots_and_dead_chains_go_leaf_first() {
        let now = SystemTime::now();
        let w = World {
            images: vec![ImageRecord {
                ns: "n".into(),
                name: "old".into(),
                target: "m".into(),
                labels: labels(&[(labels::GC_EXPIRE, "2001-01-01T00:00:00Z")]),
            }],
            content: vec![content(
                "n",
                "m",
                &[("containerd.io/gc.ref.snapshot.overlay", "c")],
            )],
            snapshots: vec![
                snap("a", None, &[]),
                snap("b", Some("a"), &[]),
                snap("c", Some("b"), &[]),
            ],
            ..Default::default()
        };
        let plan = w.plan(now);
        assert_eq!(plan.images, vec![("n".to_string(), "old".to_string())]);
        assert_eq!(plan.content, vec![("n".to_string(), "m".to_string())]);
        let snaps: Vec<&str> = plan.snapshots.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(snaps, vec!["c", "b", "a"]);
    }
}
