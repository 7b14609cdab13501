//! The reference model: POSIX as a few maps in memory. Inodes live in an
//! arena (so hard links share one), folders map names to inode ids. Paths
//! are walked as the kernel walks them for the core (no symlink followed:
//! a symlink or a file in the middle of a path is ENOTDIR), and each
//! operation checks in the order the kernel and the core do, so the errno
//! agrees as well as the outcome.

use std::collections::{BTreeMap, HashMap};

use super::ops::{Op, P, R};
use super::Tree;

type Id = u64;

enum Body {
    Dir(BTreeMap<String, Id>),
    File(Vec<u8>),
    Symlink(String),
}

struct Node {
    body: Body,
    perm: u16,
    nlink: u32,
}

pub struct Model {
    nodes: HashMap<Id, Node>,
    next: Id,
}

const ROOT: Id = 0;

impl Model {
    pub fn new() -> Model {
        let root = Node {
            body: Body::Dir(BTreeMap::new()),
            perm: 0o755,
            nlink: 2,
        };
        Model {
            nodes: HashMap::from([(ROOT, root)]),
            next: 1,
        }
    }

    fn node(&self, id: Id) -> &Node {
        &self.nodes[&id]
    }

    fn dir(&self, id: Id) -> Result<&BTreeMap<String, Id>, i32> {
        match &self.node(id).body {
            Body::Dir(m) => Ok(m),
            _ => Err(libc::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, id: Id) -> &mut BTreeMap<String, Id> {
        match &mut self.nodes.get_mut(&id).expect("node").body {
            Body::Dir(m) => m,
            _ => panic!("not a folder"),
        }
    }

    /// The inode at `p`.
    fn resolve(&self, p: &[String]) -> Result<Id, i32> {
        let mut cur = ROOT;
        for c in p {
            cur = *self.dir(cur)?.get(c).ok_or(libc::ENOENT)?;
        }
        Ok(cur)
    }

    /// The folder holding `p`'s last name, and the name.
    fn parent(&self, p: &P) -> Result<(Id, String), i32> {
        let (last, init) = p.split_last().expect("non-empty path");
        let d = self.resolve(init)?;
        self.dir(d)?;
        Ok((d, last.clone()))
    }

    fn entry(&self, p: &P) -> Result<Option<Id>, i32> {
        let (d, n) = self.parent(p)?;
        Ok(self.dir(d)?.get(&n).copied())
    }

    fn add(&mut self, p: &P, body: Body, perm: u16) -> R {
        let (d, n) = self.parent(p)?;
        if self.dir(d)?.contains_key(&n) {
            return Err(libc::EEXIST);
        }
        let id = self.next;
        self.next += 1;
        let is_dir = matches!(body, Body::Dir(_));
        // A set-group-id folder passes its bit on to new folders.
        let perm = if is_dir && self.node(d).perm & 0o2000 != 0 {
            perm | 0o2000
        } else {
            perm
        };
        let nlink = if is_dir { 2 } else { 1 };
        self.nodes.insert(id, Node { body, perm, nlink });
        self.dir_mut(d).insert(n, id);
        Ok(None)
    }

    /// A file's bytes to change: EISDIR on a folder, EINVAL on a symlink
    /// (the core opens neither for I/O).
    fn file_mut(&mut self, p: &P) -> Result<&mut Vec<u8>, i32> {
        let id = self.entry(p)?.ok_or(libc::ENOENT)?;
        match &mut self.nodes.get_mut(&id).expect("node").body {
            Body::File(v) => Ok(v),
            Body::Dir(_) => Err(libc::EISDIR),
            Body::Symlink(_) => Err(libc::EINVAL),
        }
    }

    fn drop_name(&mut self, d: Id, n: &str) {
        if let Some(id) = self.dir_mut(d).remove(n) {
            let node = self.nodes.get_mut(&id).expect("node");
            node.nlink = node.nlink.saturating_sub(1);
        }
    }

    pub fn apply(&mut self, op: &Op) -> R {
        match op {
            Op::Mkdir(p) => self.add(p, Body::Dir(BTreeMap::new()), 0o755),
            Op::Create(p) => self.add(p, Body::File(vec![]), 0o644),
            Op::Symlink(p, t) => self.add(p, Body::Symlink(t.clone()), 0o777),
            Op::Write(p, off, len, b) => {
                let v = self.file_mut(p)?;
                let (start, end) = (*off as usize, *off as usize + len);
                if *len > 0 {
                    if v.len() < end {
                        v.resize(end, 0);
                    }
                    v[start..end].fill(*b);
                }
                Ok(None)
            }
            Op::Truncate(p, s) => {
                let id = self.resolve(p)?;
                match &mut self.nodes.get_mut(&id).expect("node").body {
                    Body::File(v) => {
                        v.resize(*s as usize, 0);
                        Ok(None)
                    }
                    Body::Dir(_) => Err(libc::EISDIR),
                    Body::Symlink(_) => Err(libc::EINVAL),
                }
            }
            Op::Read(p) => Ok(Some(self.file_mut(p)?.clone())),
            Op::Readlink(p) => {
                let id = self.resolve(p)?;
                match &self.node(id).body {
                    Body::Symlink(t) => Ok(Some(t.clone().into_bytes())),
                    _ => Err(libc::EINVAL),
                }
            }
            Op::Chmod(p, m) => {
                let id = self.resolve(p)?;
                self.nodes.get_mut(&id).expect("node").perm = *m;
                Ok(None)
            }
            Op::Unlink(p) => {
                let (d, n) = self.parent(p)?;
                match self.dir(d)?.get(&n).map(|id| &self.node(*id).body) {
                    None => Err(libc::ENOENT),
                    Some(Body::Dir(_)) => Err(libc::EISDIR),
                    Some(_) => {
                        self.drop_name(d, &n);
                        Ok(None)
                    }
                }
            }
            Op::Rmdir(p) => {
                let (d, n) = self.parent(p)?;
                match self.dir(d)?.get(&n).map(|id| &self.node(*id).body) {
                    None => Err(libc::ENOENT),
                    Some(Body::Dir(m)) if !m.is_empty() => Err(libc::ENOTEMPTY),
                    Some(Body::Dir(_)) => {
                        self.drop_name(d, &n);
                        Ok(None)
                    }
                    Some(_) => Err(libc::ENOTDIR),
                }
            }
            Op::OpenUnlinkRead(p) => {
                let data = self.file_mut(p)?.clone();
                self.apply(&Op::Unlink(p.clone()))?;
                Ok(Some(data))
            }
            Op::ListAcrossEdit(d, name) => {
                let id = self.resolve(d)?;
                let names: Vec<&str> = self.dir(id)?.keys().map(String::as_str).collect();
                let listed = names.join("/").into_bytes();
                let mut made = d.clone();
                made.push(name.clone());
                // The edit's own outcome is not the point (it may collide).
                let _ = self.apply(&Op::Mkdir(made));
                Ok(Some(listed))
            }
            Op::Link(a, b) => {
                let src = self.resolve(a)?;
                let (d, n) = self.parent(b)?;
                if matches!(self.node(src).body, Body::Dir(_)) {
                    return Err(libc::EPERM);
                }
                if self.dir(d)?.contains_key(&n) {
                    return Err(libc::EEXIST);
                }
                self.dir_mut(d).insert(n, src);
                self.nodes.get_mut(&src).expect("node").nlink += 1;
                Ok(None)
            }
            Op::Rename(a, b) => self.rename(a, b),
        }
    }

    fn rename(&mut self, a: &P, b: &P) -> R {
        // As the kernel does: walk both parent paths first.
        let (da, na) = self.parent(a)?;
        let (db, nb) = self.parent(b)?;
        let src = self.dir(da)?.get(&na).copied().ok_or(libc::ENOENT)?;
        let dst = self.dir(db)?.get(&nb).copied();
        if dst == Some(src) {
            // Two names of one inode (or the same name): nothing to do.
            return Ok(None);
        }
        let src_dir = matches!(self.node(src).body, Body::Dir(_));
        if src_dir && b.len() > a.len() && b[..a.len()] == a[..] {
            return Err(libc::EINVAL);
        }
        if let Some(t) = dst {
            match (&self.node(t).body, src_dir) {
                (Body::Dir(_), false) => return Err(libc::EISDIR),
                (Body::Dir(m), true) if !m.is_empty() => return Err(libc::ENOTEMPTY),
                (Body::File(_) | Body::Symlink(_), true) => return Err(libc::ENOTDIR),
                _ => {}
            }
            self.drop_name(db, &nb);
        }
        let id = self.dir_mut(da).remove(&na).expect("present");
        self.dir_mut(db).insert(nb, id);
        Ok(None)
    }

    /// The tree as a front end sees it.
    pub fn tree(&self) -> Tree {
        self.tree_of(ROOT)
    }

    fn tree_of(&self, id: Id) -> Tree {
        let n = self.node(id);
        match &n.body {
            Body::Dir(m) => Tree::Dir {
                perm: n.perm,
                entries: m
                    .iter()
                    .map(|(k, v)| (k.clone(), self.tree_of(*v)))
                    .collect(),
            },
            Body::File(v) => Tree::File {
                perm: n.perm,
                nlink: n.nlink,
                data: v.clone(),
            },
            Body::Symlink(t) => Tree::Symlink(t.clone()),
        }
    }
}
